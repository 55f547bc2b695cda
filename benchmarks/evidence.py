"""Answer the referee: what the latents say, what the LatentRM sees, and token chain of thought at equal compute.

One command, for the shipped model (``arith-coconut``), its LatentRM (``arith-rm``)
and the shipped arithmetic task::

    python benchmarks/evidence.py      # reuses runs/arith-cot if it holds the finished CoT recipe run, else trains it
    python benchmarks/evidence.py --cot-model DIR         # reuse (or train into) another folder
    python benchmarks/evidence.py --quick                 # ~1-3 min smoke run (40 questions); not a result
    python benchmarks/evidence.py --plots-only            # redraw the PNGs from benchmarks/results/evidence.json

Training the CoT baseline (``python -m lm_eval_latenttts.training.recipes.train_backbone --out runs/arith-cot
--stage-steps 3600,0,0``) took 65 min wall / 35 min CPU on a shared 2-core box; the rest takes about 13 min.

1. **What the latents say** (``latent_semantics``): probes per latent step
   trained on greedy latents of all training-split questions to predict the
   true intermediate (x1 after step 1, x2 after step 2; x1 from step 2 and x2
   from step 1 as controls): 100-way linear and one-hidden-layer MLP probes
   (the better on held-out greedy latents of the valid split is used) and a
   10-way linear probe of x1's ones digit; the logit lens beside them.  A
   latent "decodes to no number" when the probe's top probability is below
   min(0.5, its 5% quantile on held-out greedy latents).  Per sampling setting
   (dropout p 0.1/0.2/0.3, noise sigma 0.5/1/2), N=16, seed 0, on the 500 test
   questions: accuracy of the decoded intermediate, how often it differs from
   the greedy trajectory's, P(answer right | decoded right / wrong), the
   no-number fraction, whether the answer follows a changed intermediate, and
   a verdict ("semantically distinct" or "noise", rule in ``verdict``).  A
   probe trained on dropout latents checks whether the whole x1 survives
   dropout.
2. **What the LatentRM sees** (``rm_step_auroc``): within-question AUROC of
   the RM's step score for "the decoded intermediate is right" (and "the
   answer is right"), beside vote share.
3. **Token CoT at equal compute** (``cot_baseline``): a token chain-of-thought
   model of the same size trained with the backbone recipe's CoT stage for the
   whole 3,600-step budget (``--stage-steps 3600,0,0``), temperature sampling
   and majority vote at N = 1, 4, 16, 64 (3 seeds; temperature picked on the
   valid split) against the latent model with dropout p=0.2; x-axis = forward
   token positions per question; 95% bootstrap intervals over questions.

Writes ``evidence.json`` and ``evidence_*.png`` into ``--out``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import subprocess
import sys
import time
import zlib
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from hf_modeling import AutoLatentModel, load_latent_tokenizer  # noqa: E402
from lm_eval_latenttts.data import arith  # noqa: E402
from lm_eval_latenttts import evidence as ev  # noqa: E402
from hf_modeling.answers import answers_equal, extract_answer  # noqa: E402
from lm_eval_latenttts.scaling.aggregation import majority_vote  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
CHECKPOINTS = REPO / "lm_eval_latenttts" / "checkpoints"
SETTINGS = [("dropout", 0.1), ("dropout", 0.2), ("dropout", 0.3), ("noise", 0.5), ("noise", 1.0), ("noise", 2.0)]
NS = [1, 4, 16, 64]
TEMPERATURES = [0.4, 0.6, 0.8, 1.0, 1.2]
PROBE_HIDDEN = 256
UNSTRUCTURED_QUANTILE = 0.05
UNSTRUCTURED_CAP = 0.5
COT_SUFFIX = "\n<|start-latent|><|end-latent|>"  # the recipe's stage-0 (chain of thought) prompt


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def setting_name(method, strength):
    return f"dropout_p={strength}" if method == "dropout" else f"noise_std={strength}"


def sampling_kwargs(method, strength):
    if method is None:
        return {}
    if method == "dropout":
        return {"latent_sampling": "dropout", "dropout_p": strength}
    return {"latent_sampling": "noise", "noise_std": strength}


# --------------------------------------------------------------------------- latent rollouts
@torch.no_grad()
def latent_rollouts(model, tok, rm, examples, n, sampling, seed, batch_rows=1024, max_new_tokens=8):
    """N rollouts per question -> answers, correctness, latents, generated lengths, prompt lengths, RM step scores."""
    bq = max(1, batch_rows // n)
    eos = model.config.eos_token_id
    answers, correct, latents, gen, plen, steps_scores = [], [], [], [], [], []
    for b in range(0, len(examples), bq):
        chunk = examples[b:b + bq]
        enc = tok([model.format_prompt(e["question"]) for e in chunk], return_tensors="pt", padding=True)
        out = model.generate(**enc, num_return_sequences=n, seed=seed, max_new_tokens=max_new_tokens,
                             return_dict_in_generate=True, **sampling)
        texts = tok.batch_decode(out.answer_ids, skip_special_tokens=True)
        lens = ev.generated_lengths(out.answer_ids, eos).view(len(chunk), n)
        lat = out.latents.float().view(len(chunk), n, *out.latents.shape[1:])
        sc = rm.score_rollouts(out).step_scores.float().view(len(chunk), n, -1) if rm is not None else None
        for i, e in enumerate(chunk):
            a = [extract_answer(t, "coconut") for t in texts[i * n:(i + 1) * n]]
            answers.append(a)
            correct.append([answers_equal(x, e["answer"]) for x in a])
            plen.append(int(enc.attention_mask[i].sum()))
        latents.append(lat)
        gen.append(lens)
        if sc is not None:
            steps_scores.append(sc)
    return {
        "answers": answers,
        "correct": torch.tensor(correct, dtype=torch.bool),
        "latents": torch.cat(latents),
        "generated": torch.cat(gen),
        "prompt_lengths": plen,
        "step_scores": torch.cat(steps_scores) if steps_scores else None,
    }


def first_n(roll, n):
    return {
        "answers": [a[:n] for a in roll["answers"]],
        "correct": roll["correct"][:, :n],
        "latents": roll["latents"][:, :n],
        "generated": roll["generated"][:, :n],
        "prompt_lengths": roll["prompt_lengths"],
        "step_scores": None if roll["step_scores"] is None else roll["step_scores"][:, :n],
    }


# --------------------------------------------------------------------------- token chain of thought
def question_seed(seed, question):
    return (zlib.crc32(question.encode()) * 1_000_003 + seed) % (2**63 - 1)


@torch.no_grad()
def cot_sample(model, tok, examples, n, temperature, seed, batch_rows=1024, max_new_tokens=40):
    """N chains of thought per question with temperature sampling (temperature 0: greedy).

    The prompt is run once per question and its KV cache repeated for the N
    samples.  Sample j of a question is a function of (seed, question, j) only:
    its Gumbel noise comes from a generator seeded by the question and the seed.
    """
    from transformers import DynamicCache

    eos = tok.eos_token_id
    bq = max(1, batch_rows // n)
    answers, correct, gen, plen = [], [], [], []
    for b in range(0, len(examples), bq):
        chunk = examples[b:b + bq]
        ids = [tok(e["question"] + COT_SUFFIX, add_special_tokens=False)["input_ids"] for e in chunk]
        if len({len(x) for x in ids}) != 1:  # every arith question has the same token length
            raise ValueError("cot_sample expects prompts of one token length per batch")
        prompt = torch.tensor(ids)
        p = prompt.shape[1]
        out = model.transformer(input_ids=prompt, cache=DynamicCache(config=model.config), use_cache=True,
                                attention_mask=torch.ones_like(prompt), position_ids=torch.arange(p)[None].expand(len(chunk), p))
        cache = out.cache
        cache.batch_repeat_interleave(n)
        hidden = out.last_hidden_state[:, -1].repeat_interleave(n, 0)
        gens = [torch.Generator().manual_seed(question_seed(seed, e["question"])) for e in chunk]
        rows = len(chunk) * n
        done = torch.zeros(rows, dtype=torch.bool)
        toks = []
        for step in range(max_new_tokens):
            logits = model.lm_head(hidden).float()
            if temperature > 0:
                u = torch.cat([torch.rand(n, logits.shape[-1], generator=g, dtype=torch.float64) for g in gens])
                gumbel = -torch.log(-torch.log(u.clamp(1e-300, 1 - 1e-16)))
                nxt = (logits.double() / temperature + gumbel).argmax(-1)
            else:
                nxt = logits.argmax(-1)
            nxt = torch.where(done, torch.full_like(nxt, eos), nxt)
            toks.append(nxt)
            done = done | (nxt == eos)
            if bool(done.all()) or step == max_new_tokens - 1:
                break
            out = model.transformer(input_ids=nxt[:, None], cache=cache, use_cache=True,
                                    attention_mask=torch.ones(rows, p + step + 1, dtype=torch.long),
                                    position_ids=torch.full((rows, 1), p + step))
            cache, hidden = out.cache, out.last_hidden_state[:, -1]
        seqs = torch.stack(toks, 1)
        lens = ev.generated_lengths(seqs, eos).view(len(chunk), n)
        texts = tok.batch_decode(seqs, skip_special_tokens=True)
        for i, e in enumerate(chunk):
            a = [extract_answer(t, "coconut") for t in texts[i * n:(i + 1) * n]]
            answers.append(a)
            correct.append([answers_equal(x, e["answer"]) for x in a])
            plen.append(p)
        gen.append(lens)
    return {"answers": answers, "correct": torch.tensor(correct, dtype=torch.bool), "generated": torch.cat(gen),
            "prompt_lengths": plen}


def majority_correct(roll, examples, n):
    return [float(answers_equal(majority_vote(a[:n]), e["answer"])) for a, e in zip(roll["answers"], examples)]


# --------------------------------------------------------------------------- section 1
def greedy_latents(model, tok, examples, batch_rows=2048, max_new_tokens=8):
    roll = latent_rollouts(model, tok, None, examples, 1, {}, 0, batch_rows=batch_rows, max_new_tokens=max_new_tokens)
    return roll["latents"][:, 0], roll  # (Q, steps, d)


# (name, latent step, target intermediate, kind): "value" = 100-way read-out of the intermediate (linear and
# MLP probes, the better on held-out greedy latents is used); "ones" = its ones digit, 10-way linear probe
PROBES = [("step1_x1", 0, 0, "value"), ("step2_x2", 1, 1, "value"), ("step2_x1", 1, 0, "value"),
          ("step1_x2", 0, 1, "value"), ("step1_x1_ones", 0, 0, "ones"), ("step2_x1_ones", 1, 0, "ones")]


@contextlib.contextmanager
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def target_values(examples, t, kind):
    y = torch.tensor([ev.intermediates(e)[t] for e in examples])
    return y % 10 if kind == "ones" else y


def train_readout(model, tok, train, valid, args):
    """Probes per (latent step, target) and the logit lens; accuracies on held-out greedy latents."""
    t0 = time.time()
    z_tr, _ = greedy_latents(model, tok, train, max_new_tokens=1)  # only the latents are needed
    z_va, _ = greedy_latents(model, tok, valid)
    log(f"greedy latents of {len(train)} train + {len(valid)} valid questions ({time.time() - t0:.0f} s)")
    probes, report = {}, {}
    for name, s, t, kind in PROBES:
        y_tr, y_va = target_values(train, t, kind), target_values(valid, t, kind)
        classes = 10 if kind == "ones" else 100
        r, fitted = {}, {}
        for arch, hidden in (("linear", 0),) + ((("mlp", PROBE_HIDDEN),) if kind == "value" else ()):
            t1 = time.time()
            with one_thread():  # small matrices: a second thread only adds synchronisation (stalls on a busy box)
                pr = ev.fit_probe(z_tr[:, s], y_tr, hidden=hidden, epochs=args.probe_epochs, seed=0, classes=classes)
            v_tr, _ = pr.decode(z_tr[:, s])
            v_va, top_va = pr.decode(z_va[:, s])
            r[arch] = {"train_accuracy": float((v_tr == y_tr).float().mean()),
                       "heldout_accuracy": float((v_va == y_va).float().mean()),
                       "seconds": round(time.time() - t1, 1)}
            fitted[arch] = (pr, top_va)
        used = max(r, key=lambda a: (r[a]["heldout_accuracy"], a == "linear"))
        pr, top_va = fitted[used]
        tau = ev.threshold_from_heldout(top_va, UNSTRUCTURED_QUANTILE, cap=UNSTRUCTURED_CAP)
        v_va, _ = pr.decode(z_va[:, s], tau)
        r.update({"used": used, "classes": classes, "threshold": tau,
                  "heldout_unstructured": float((v_va == ev.NO_NUMBER).float().mean()),
                  "heldout_accuracy_thresholded": float((v_va == y_va).float().mean()),
                  "chance": 1 / classes})
        probes[name] = (pr, tau, s, t, kind)
        report[name] = r
        log(f"probe {name}: " + " ".join(f"{a} {r[a]['heldout_accuracy']:.3f}" for a in ("linear", "mlp") if a in r)
            + f" held-out; used {used}, threshold {tau:.3f}")
    # logit lens on held-out greedy latents
    digit_ids = [tok.convert_tokens_to_ids(str(d)) for d in range(10)]
    y_va = torch.tensor([ev.intermediates(e) for e in valid])
    lens = {}
    for s in range(z_va.shape[1]):
        is_digit, digit = ev.logit_lens_digit(z_va[:, s], model.lm_head.weight, digit_ids)
        lens[f"step{s + 1}"] = {
            "top_token_is_digit": float(is_digit.float().mean()),
            "best_digit_is_ones_digit_of_x1": float((digit == y_va[:, 0] % 10).float().mean()),
            "best_digit_is_tens_digit_of_x1": float((digit == y_va[:, 0] // 10).float().mean()),
            "best_digit_is_ones_digit_of_x2": float((digit == y_va[:, 1] % 10).float().mean()),
            "best_digit_is_tens_digit_of_x2": float((digit == y_va[:, 1] // 10).float().mean()),
        }
    return probes, {"probes": report, "logit_lens_heldout_greedy": lens, "train_questions": len(train),
                    "heldout_questions": len(valid), "seconds": round(time.time() - t0, 1),
                    "unstructured_rule": (f"a latent decodes to no number when the probe's top probability is below "
                                          f"min({UNSTRUCTURED_CAP}, its {UNSTRUCTURED_QUANTILE:.0%} quantile on held-out "
                                          "greedy latents): greedy latents are then at most 5% unstructured; the cap "
                                          "(no value has the majority of the probability) matters only for a probe that "
                                          "is sure of nearly every greedy latent (the ones digit)")}


def decode_all(probes, latents):
    """latents (Q, N, steps, d) -> {probe name: decoded values (Q, N)}."""
    out = {}
    for name, (pr, tau, s, _, _) in probes.items():
        q, n = latents.shape[:2]
        v, _ = pr.decode(latents[:, :, s].reshape(q * n, -1), tau)
        out[name] = v.view(q, n)
    return out


def section1_setting(examples, roll, greedy, probes, greedy_dec):
    res = {}
    dec = decode_all(probes, roll["latents"])
    for name, (_, _, s, t, kind) in probes.items():
        res[name] = ev.readout_metrics(dec[name], target_values(examples, t, kind), greedy_dec[name][:, 0],
                                       roll["correct"])
    greedy_answers = [a[0] for a in greedy["answers"]]
    for name, ones in (("step1_x1", False), ("step2_x1", False), ("step1_x1_ones", True), ("step2_x1_ones", True)):
        res["follow_" + name] = ev.follow_metrics(examples, dec[name], greedy_dec[name][:, 0], roll["answers"],
                                                  greedy_answers, ones_digit=ones)
    changed = torch.tensor([[not answers_equal(a, g) for a in row] for row, g in zip(roll["answers"], greedy_answers)])
    res["answer_differs_from_greedy"] = float(changed.float().mean())
    same_digit = dec["step2_x1_ones"] == greedy_dec["step2_x1_ones"][:, :1]
    res["answer_changed_but_step2_digit_same"] = (float((changed & same_digit).sum() / changed.sum())
                                                  if changed.any() else float("nan"))
    res["verdict"] = verdict(res)
    return res, dec


MIN_DIFFERS = 0.05  # below this the sampled latents carry the greedy intermediate: nothing distinct to speak of
MIN_FOLLOWS = 0.5  # a changed intermediate must reach the answer in most cases


def verdict(res, max_unstructured=2 * UNSTRUCTURED_QUANTILE):
    """The rule for "semantically distinct" vs "noise", on the last latent (step 2, the one the answer reads)
    and its read-out of x1's ones digit (exact on greedy latents, linear, robust under sampling; the 100-way
    value read-out does not transfer to sampled latents, see the report).

    semantically distinct: the sampled latents decode to a digit (unstructured at most 10%), a real share of
    them (at least 5%) decode to another digit than the greedy trajectory's, and such a changed digit is
    carried into the answer (the answer's ones digit is the second operation applied to it) in most cases
    (at least half) and more often than the greedy answer is kept;
    noise: otherwise; ``why`` says which condition fails.
    """
    m, f = res["step2_x1_ones"], res["follow_step2_x1_ones"]
    checks = {
        "structured": m["unstructured"] <= max_unstructured,
        "differs": m["differs_from_greedy"] >= MIN_DIFFERS,
        "carried": f["changed_trajectories"] > 0 and f["follows"] >= MIN_FOLLOWS and f["follows"] > f["stays"],
    }
    label = "semantically distinct" if all(checks.values()) else "noise"
    failed = [k for k, ok in checks.items() if not ok]
    why = (f"step-2 latent, ones digit of x1: no number {m['unstructured']:.1%} (limit {max_unstructured:.0%}); "
           f"differs from greedy {m['differs_from_greedy']:.1%} (need {MIN_DIFFERS:.0%}); of the "
           f"{f['changed_trajectories']} changed trajectories the answer follows the decoded digit "
           f"{f['follows']:.1%} (need {MIN_FOLLOWS:.0%}) vs keeps the greedy answer {f['stays']:.1%}"
           + (f"; fails: {', '.join(failed)}" if failed else ""))
    return {"label": label, "why": why, "checks": checks}


def sampled_probe_check(model, tok, train, valid, test, roll, greedy, probes, greedy_dec, args):
    """Is the whole x1 still in dropout latents?  The value probe trained on greedy latents does not transfer to
    sampled ones, so train the same MLP probe on dropout p=0.2 latents (1 draw, seed 1, per training question),
    read its held-out accuracy on dropout latents of the valid questions, and use it on the test rollouts."""
    t0 = time.time()
    samp = sampling_kwargs("dropout", 0.2)
    z_tr = latent_rollouts(model, tok, None, train, 1, samp, 1, args.batch_rows, max_new_tokens=1)["latents"][:, 0]
    z_va = latent_rollouts(model, tok, None, valid, 1, samp, 1, args.batch_rows, max_new_tokens=1)["latents"][:, 0]
    y_tr, y_va, y_te = (target_values(x, 0, "value") for x in (train, valid, test))
    greedy_answers = [a[0] for a in greedy["answers"]]
    out = {"sampling": "dropout_p=0.2", "train_questions": len(train), "heldout_questions": len(valid)}
    for name, s in (("step1_x1", 0), ("step2_x1", 1)):
        with one_thread():
            pr = ev.fit_probe(z_tr[:, s], y_tr, hidden=PROBE_HIDDEN, epochs=args.probe_epochs, seed=0)
        v_va, top_va = pr.decode(z_va[:, s])
        greedy_probe = probes[name][0]
        v_va_greedy_probe, _ = greedy_probe.decode(z_va[:, s])
        tau = ev.threshold_from_heldout(top_va, UNSTRUCTURED_QUANTILE, cap=UNSTRUCTURED_CAP)
        q, n = roll["latents"].shape[:2]
        dec, _ = pr.decode(roll["latents"][:, :, s].reshape(q * n, -1), tau)
        dec = dec.view(q, n)
        out[name] = {
            "heldout_sampled_accuracy": float((v_va == y_va).float().mean()),
            "heldout_sampled_accuracy_of_greedy_trained_probe": float((v_va_greedy_probe == y_va).float().mean()),
            "threshold": tau,
            "test": ev.readout_metrics(dec, y_te, greedy_dec[name][:, 0], roll["correct"]),
            "follow": ev.follow_metrics(test, dec, greedy_dec[name][:, 0], roll["answers"], greedy_answers),
        }
        log(f"dropout-trained probe {name}: held-out dropout latents {out[name]['heldout_sampled_accuracy']:.3f} "
            f"(greedy-trained probe {out[name]['heldout_sampled_accuracy_of_greedy_trained_probe']:.3f}); test: "
            f"differs from greedy {out[name]['test']['differs_from_greedy']:.3f}, follows "
            f"{out[name]['follow']['follows']:.3f} / stays {out[name]['follow']['stays']:.3f}")
    out["seconds"] = round(time.time() - t0, 1)
    return out


# --------------------------------------------------------------------------- section 2
def section2_setting(examples, roll, dec):
    true = torch.tensor([ev.intermediates(e) for e in examples])
    shares = torch.tensor([ev.vote_shares(a) for a in roll["answers"]], dtype=torch.float64)
    sc = roll["step_scores"]
    out = {}
    labels = {
        "step1_x1": (0, dec["step1_x1"] == true[:, :1]),
        "step1_x1_ones": (0, dec["step1_x1_ones"] == true[:, :1] % 10),
        "step2_x2": (1, dec["step2_x2"] == true[:, 1:2]),
        "step2_x1": (1, dec["step2_x1"] == true[:, :1]),
        "step2_final_answer": (1, roll["correct"]),
    }
    for name, (s, y) in labels.items():
        out[name] = {"rm_step_score": ev.within_question_auroc(sc[:, :, s], y),
                     "vote_share": ev.within_question_auroc(shares, y),
                     "positive_rate": float(y.float().mean())}
    out["trajectory_final_answer"] = {"rm_trajectory_score": ev.within_question_auroc(sc.sum(-1), roll["correct"]),
                                      "vote_share": ev.within_question_auroc(shares, roll["correct"])}
    return out


# --------------------------------------------------------------------------- section 3
def points(method_rolls, examples, positions_fn, flops_fn, resamples, seed=0):
    """Per N: majority accuracy (mean of seeds per question, then over questions) with a bootstrap CI,
    the per-seed accuracies and the mean forward token positions per question."""
    res = {}
    for n in NS:
        per_seed = [majority_correct(r, examples, n) for r in method_rolls]
        per_q = [sum(v) / len(v) for v in zip(*per_seed)]
        pos = [positions_fn(r, q, n) for r in method_rolls for q in range(len(examples))]
        flops = [flops_fn(r, q, n) for r in method_rolls for q in range(len(examples))]
        res[n] = {"majority_accuracy": sum(per_q) / len(per_q),
                  "ci95": ev.bootstrap_mean_ci(per_q, resamples, seed),
                  "seed_accuracies": [sum(v) / len(v) for v in per_seed],
                  "single_sample_accuracy": float(sum(r["correct"][:, :n].float().mean() for r in method_rolls)
                                                  / len(method_rolls)),
                  "positions_per_question": sum(pos) / len(pos),
                  "gflops_per_question": sum(flops) / len(flops) / 1e9,
                  "per_question": per_q}
    return res


def matched(ref, other, resamples, seed=0):
    """At each N of ``ref``: ``other``'s accuracy interpolated (log positions) at ``ref``'s positions, and the
    difference ref - other with a paired bootstrap interval over questions."""
    out = []
    q = len(ref[NS[0]]["per_question"])
    idx = ev.bootstrap_indices(q, resamples, seed)
    xs_o = [other[n]["positions_per_question"] for n in NS]
    for n in NS:
        x = ref[n]["positions_per_question"]
        y_o = ev.interp_log(x, xs_o, [other[m]["majority_accuracy"] for m in NS])
        if math.isnan(y_o):
            out.append({"n": n, "positions": x, "other_accuracy": None, "difference": None, "ci95": None})
            continue
        ref_q = torch.tensor(ref[n]["per_question"], dtype=torch.float64)
        oth_q = torch.stack([torch.tensor(other[m]["per_question"], dtype=torch.float64) for m in NS])  # (len NS, Q)
        ref_b = ref_q[idx].mean(-1)
        oth_b = oth_q[:, idx].mean(-1)  # (len NS, R)
        diffs = torch.tensor([float(ref_b[r]) - ev.interp_log(x, xs_o, oth_b[:, r].tolist()) for r in range(resamples)])
        out.append({"n": n, "positions": x, "ref_accuracy": ref[n]["majority_accuracy"], "other_accuracy": y_o,
                    "difference": ref[n]["majority_accuracy"] - y_o, "ci95": ev.percentile_interval(diffs)})
    return out


def ensure_cot_model(args):
    path = Path(args.cot_model)
    if (path / "config.json").is_file() and (path / "training_info.json").is_file():
        info = json.loads((path / "training_info.json").read_text())
        if info.get("complete") and info.get("stage_steps", [None])[1:] == [0, 0]:
            return path, False, info
        if info.get("stage_steps", [None])[1:] != [0, 0]:
            raise SystemExit(f"{path} holds a model that is not a chain-of-thought-only recipe run "
                             f"(stage_steps {info.get('stage_steps')}); point --cot-model elsewhere")
    cmd = [sys.executable, "-m", "lm_eval_latenttts.training.recipes.train_backbone", "--out", str(path),
           "--stage-steps", "3600,0,0", "--no-progress", "--resume", "--threads", str(args.threads)]
    if args.cot_max_steps:
        cmd += ["--max-steps", str(args.cot_max_steps)]
    log("training the chain-of-thought baseline: " + " ".join(cmd))
    t0 = time.time()
    subprocess.run(cmd, check=True, cwd=REPO)
    log(f"chain-of-thought baseline trained ({time.time() - t0:.0f} s)")
    return path, True, json.loads((path / "training_info.json").read_text())


def section3(args, model, tok, test, valid, greedy, greedy_acc, lat_rolls, cot_path, cot_info, cot_trained_here,
             out_dir):
    """Token chain of thought vs the latent model (dropout p=0.2), majority vote at N = 1..64, equal compute."""
    from transformers import AutoTokenizer, GPT2LMHeadModel

    cot = GPT2LMHeadModel.from_pretrained(str(cot_path)).eval()
    cot_tok = AutoTokenizer.from_pretrained(str(cot_path))
    assert sum(x.numel() for x in cot.parameters()) == sum(x.numel() for x in model.parameters())
    t0 = time.time()
    temp_grid, temp_single = {}, {}
    for temp in TEMPERATURES:
        r = cot_sample(cot, cot_tok, valid, 16, temp, 0, args.batch_rows)
        temp_grid[temp] = sum(majority_correct(r, valid, 16)) / len(valid)
        temp_single[temp] = float(r["correct"].float().mean())
    temperature = max(TEMPERATURES, key=lambda t: (temp_grid[t], temp_single[t], -t))
    cot_valid_greedy = float(cot_sample(cot, cot_tok, valid, 1, 0.0, 0, args.batch_rows)["correct"].float().mean())
    log(f"CoT temperature on valid (majority@16, seed 0): {temp_grid}, single {temp_single} -> {temperature} "
        f"({time.time() - t0:.0f} s)")

    t0 = time.time()
    cot_greedy = cot_sample(cot, cot_tok, test, 1, 0.0, 0, args.batch_rows)
    cot_rolls = [cot_sample(cot, cot_tok, test, max(NS), temperature, s, args.batch_rows) for s in range(args.seeds)]
    log(f"CoT test sampling ({time.time() - t0:.0f} s)")
    t0 = time.time()
    for s in range(1, args.seeds):
        lat_rolls[s] = latent_rollouts(model, tok, None, test, max(NS), sampling_kwargs("dropout", 0.2), s,
                                       args.batch_rows)
    log(f"latent test sampling, seeds 1.. ({time.time() - t0:.0f} s)")
    lat_list = [lat_rolls[s] for s in range(args.seeds)]
    L = model.config.latent_length

    def lat_pos(r, q, n):
        return ev.latent_positions(r["prompt_lengths"][q], L, r["generated"][q, :n].tolist(), shared_prompt=False)

    def cot_pos(r, q, n):
        return ev.cot_positions(r["prompt_lengths"][q], r["generated"][q, :n].tolist())

    n_params = sum(x.numel() for x in model.parameters())
    n_emb = model.transformer.wte.weight.numel() + model.transformer.wpe.weight.numel()
    shape = {"n_params_nonembedding": n_params - n_emb, "n_layer": model.config.n_layer,
             "d_model": model.config.n_embd, "vocab": model.config.vocab_size}

    def lat_flops(r, q, n):
        return ev.latent_flops(shape, r["prompt_lengths"][q], L, r["generated"][q, :n].tolist(), shared_prompt=False)

    def cot_fl(r, q, n):
        return ev.cot_flops(shape, r["prompt_lengths"][q], r["generated"][q, :n].tolist())

    cot_pts = points(cot_rolls, test, cot_pos, cot_fl, args.bootstrap)
    lat_pts = points(lat_list, test, lat_pos, lat_flops, args.bootstrap)
    greedy_points = {
        "cot": (sum(cot_pos(cot_greedy, q, 1) for q in range(len(test))) / len(test),
                float(cot_greedy["correct"].float().mean())),
        "latent": (sum(ev.latent_positions(greedy["prompt_lengths"][q], L, greedy["generated"][q, :1].tolist(), True)
                       for q in range(len(test))) / len(test), greedy_acc),
    }
    cot_section = {
        "cot_model": str(cot_path), "cot_trained_by_this_run": cot_trained_here,
        "cot_training": {"stage_steps": cot_info.get("stage_steps"), "train_seconds": cot_info.get("train_seconds"),
                         "batch_size": cot_info.get("args", {}).get("batch_size"),
                         "history": cot_info.get("history")},
        "latent_training_steps": 3600, "parameters": n_params, "parameters_nonembedding": n_params - n_emb,
        "flops_rule": ("approximate forward FLOPs (2 * non-embedding parameters + 2 * n_layer * context * d per "
                       "position, + 2 * d * vocab where the LM head runs); the x-axis is positions"),
        "temperature": {"grid_valid_majority_at_16": temp_grid, "grid_valid_single_sample": temp_single,
                        "chosen": temperature,
                        "rule": ("highest majority@16 accuracy on the valid split (seed 0, N=16); ties -> higher "
                                 "single-sample accuracy, then the lower T")},
        "cot_valid_greedy_accuracy": cot_valid_greedy,
        "greedy": {k: {"positions_per_question": v[0], "accuracy": v[1]} for k, v in greedy_points.items()},
        "cot": cot_pts, "latent_dropout_p0.2": lat_pts, "seeds": args.seeds, "questions": len(test),
        "positions_rule": ("per question, what the forward passes process for that question's rows: latent, "
                           "dropout_scope='all': every sample runs its own prompt pass (prompt + 2 latent steps + "
                           "end marker + generated tokens but the last); CoT: the prompt once (KV cache shared by "
                           "the N samples, sampling only after it) + each sample's generated tokens but the last "
                           "(the generated tokens count up to and including EOS). Batch padding rows and finished rows kept in a batch are not counted."),
        "latent_vs_cot_at_latent_points": matched(lat_pts, cot_pts, args.bootstrap),
        "cot_vs_latent_at_cot_points": matched(cot_pts, lat_pts, args.bootstrap),
    }
    for n in NS:
        log(f"N={n}: CoT {cot_pts[n]['majority_accuracy']:.3f} @ {cot_pts[n]['positions_per_question']:.0f} pos; "
            f"latent {lat_pts[n]['majority_accuracy']:.3f} @ {lat_pts[n]['positions_per_question']:.0f} pos")

    return cot_section


# --------------------------------------------------------------------------- plots (from the written JSON)
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_cot(cb, path):
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.6, 4.3))
    keys = [str(n) for n in NS]
    for name, pts, color in (("token CoT, temperature %g" % cb["temperature"]["chosen"], cb["cot"], "tab:orange"),
                             ("latent (COCONUT), MC dropout p=0.2", cb["latent_dropout_p0.2"], "tab:blue")):
        xs = [pts[k]["positions_per_question"] for k in keys]
        ys = [100 * pts[k]["majority_accuracy"] for k in keys]
        lo = [100 * (pts[k]["majority_accuracy"] - pts[k]["ci95"][0]) for k in keys]
        hi = [100 * (pts[k]["ci95"][1] - pts[k]["majority_accuracy"]) for k in keys]
        ax.errorbar(xs, ys, yerr=[lo, hi], marker="o", capsize=3, color=color, label=name + ", majority@N")
        for k, x, y in zip(keys, xs, ys):
            ax.annotate(f"N={k}", (x, y), textcoords="offset points", xytext=(4, -12), fontsize=7, color=color)
    for name, key, color in (("CoT greedy", "cot", "tab:orange"), ("latent greedy", "latent", "tab:blue")):
        g = cb["greedy"][key]
        ax.scatter([g["positions_per_question"]], [100 * g["accuracy"]], marker="*", s=110, color=color,
                   edgecolor="k", zorder=5, label=name)
    ax.set_xscale("log")
    ax.set_xlabel("forward token positions per question (prompt + latent steps + generated tokens)")
    ax.set_ylabel(f"test accuracy, % ({cb['questions']} questions, mean of {cb['seeds']} seeds)")
    ax.set_title("Equal compute: token chain of thought vs latent reasoning (95% bootstrap CI)", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="center right")
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def plot_readout(sem, path):
    plt = _plt()
    names = ["greedy"] + list(sem["settings"])
    metrics = [("decoded_accuracy", "decoded right"), ("differs_from_greedy", "differs from greedy"),
               ("unstructured", "no number"), ("p_final_right_given_right", "P(answer right | decoded right)"),
               ("p_final_right_given_wrong", "P(answer right | decoded wrong)")]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6), sharey=True)
    panels = [("step1_x1", "step-1 latent: value of x1 (MLP probe on greedy latents)"),
              ("step2_x1_ones", "step-2 latent: ones digit of x1 (linear probe)")]
    w = 0.8 / len(metrics)
    for ax, (probe, title) in zip(axes, panels):
        rows = [sem["greedy"][probe]] + [sem["settings"][n][probe] for n in names[1:]]
        for k, (key, label) in enumerate(metrics):
            ax.bar([i + k * w for i in range(len(names))], [100 * (r[key] if r[key] is not None else 0) for r in rows],
                   width=w, label=label)
        ans = [0] + [100 * sem["settings"][n]["answer_differs_from_greedy"] for n in names[1:]]
        ax.scatter([i + 0.4 - w / 2 for i in range(len(names))], ans, marker="_", s=300, color="k", zorder=5,
                   label="final answer differs from greedy")
        ax.set_xticks([i + 0.4 - w / 2 for i in range(len(names))])
        ax.set_xticklabels(names, fontsize=8, rotation=20)
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3, axis="y")
    axes[0].set_ylabel(f"% of trajectories (N={sem['n']}, {sem['questions']} test questions)")
    handles, labels = axes[1].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="lower center", ncol=6)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, dpi=130)
    plt.close(fig)


def plot_auroc(rm, path):
    plt = _plt()
    names = list(rm["settings"])
    fig, ax = plt.subplots(figsize=(8, 3.8))
    series = [("step1_x1_ones", "rm_step_score", "RM step-1 score / x1 (ones digit) right"),
              ("step1_x1_ones", "vote_share", "vote share / x1 (ones digit) right"),
              ("step2_final_answer", "rm_step_score", "RM step-2 score / answer right"),
              ("step2_final_answer", "vote_share", "vote share / answer right")]
    w = 0.8 / len(series)
    for k, (lab, score, label) in enumerate(series):
        vals = [rm["settings"][nm][lab][score] for nm in names]
        num = lambda x: float("nan") if x is None else x  # noqa: E731  (no qualifying question)
        ys = [num(v["mean"]) for v in vals]
        err = [[y - num(v["ci"][0]) for y, v in zip(ys, vals)], [num(v["ci"][1]) - y for y, v in zip(ys, vals)]]
        ax.bar([i + k * w for i in range(len(names))], ys, width=w, label=label, yerr=err, capsize=2)
    ax.axhline(0.5, color="k", lw=0.8, ls="--")
    ax.set_ylim(0.3, 1.0)
    ax.set_xticks([i + 0.4 - w / 2 for i in range(len(names))])
    ax.set_xticklabels(names, fontsize=8)
    ax.set_ylabel("within-question AUROC (mean over questions)")
    ax.legend(fontsize=7, ncol=2, loc="upper left")
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def plot_all(report, out_dir):
    out_dir = Path(out_dir)
    plot_readout(report["latent_semantics"], out_dir / "evidence_latent_readout.png")
    plot_auroc(report["rm_step_auroc"], out_dir / "evidence_rm_auroc.png")
    if isinstance(report.get("cot_baseline"), dict):
        plot_cot(report["cot_baseline"], out_dir / "evidence_cot_vs_latent.png")


# --------------------------------------------------------------------------- main
def strip(obj):
    """Drop per-question lists from the JSON (they are large)."""
    if isinstance(obj, dict):
        return {str(k): strip(v) for k, v in obj.items() if k != "per_question"}
    if isinstance(obj, list):
        return [strip(v) for v in obj]
    if isinstance(obj, float) and math.isnan(obj):
        return None
    return obj


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cot-model", default=None,
                   help="chain-of-thought baseline folder (default runs/arith-cot; --quick: runs/arith-cot-quick): "
                        "reused if it holds a finished 3600,0,0 recipe run, else trained there by the backbone recipe")
    p.add_argument("--cot-max-steps", type=int, default=None, help="(quick runs) cap the CoT training steps")
    p.add_argument("--limit", type=int, default=0, help="test questions (0 = all 500)")
    p.add_argument("--valid-limit", type=int, default=0, help="valid questions for temperature and probe (0 = all 500)")
    p.add_argument("--probe-train", type=int, default=0, help="training-split questions for the probes (0 = all)")
    p.add_argument("--sampled-probe-train", type=int, default=20000,
                   help="training questions for the probe trained on dropout p=0.2 latents")
    p.add_argument("--probe-epochs", type=int, default=60, help="MLP probe training epochs")
    p.add_argument("--seeds", type=int, default=3, help="seeds of the equal-compute comparison")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--batch-rows", type=int, default=1024, help="rollout rows per forward")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 40 test/valid questions, 3000 probe questions, 5 probe epochs, 1 seed, "
                        "100 CoT training steps if it has to train; the numbers are not results")
    p.add_argument("--skip-cot", action="store_true", help="sections 1 and 2 only (no CoT baseline)")
    p.add_argument("--out", default=None, help="output folder (default benchmarks/results; --quick: runs/evidence-quick)")
    p.add_argument("--plots-only", action="store_true", help="redraw the plots from OUT/evidence.json and stop")
    args = p.parse_args(argv)
    if args.plots_only:
        out = Path(args.out or REPO / "benchmarks" / "results")
        plot_all(json.loads((out / "evidence.json").read_text()), out)
        return
    if args.quick:
        args.limit, args.valid_limit = args.limit or 40, args.valid_limit or 40
        args.probe_train, args.probe_epochs, args.seeds = args.probe_train or 3000, 5, 1
        args.bootstrap = min(args.bootstrap, 200)
        args.cot_max_steps = args.cot_max_steps or 100
    args.cot_model = args.cot_model or str(REPO / "runs" / ("arith-cot-quick" if args.quick else "arith-cot"))
    args.out = args.out or str(REPO / ("runs/evidence-quick" if args.quick else "benchmarks/results"))
    torch.set_num_threads(args.threads)
    t_start = time.time()
    load_start = os.getloadavg()
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)

    cot_path, cot_trained_here, cot_info = (None, False, None) if args.skip_cot else ensure_cot_model(args)
    t_after_cot = time.time()

    model_path, rm_path = CHECKPOINTS / "arith-coconut", CHECKPOINTS / "arith-rm"
    model = AutoLatentModel.from_pretrained(str(model_path)).eval()
    tok = load_latent_tokenizer(str(model_path), model.config)
    rm = AutoLatentModel.from_pretrained(str(rm_path)).eval()
    splits = arith.make_splits(seed=0)
    test, valid = arith.load_split("test"), arith.load_split("valid")
    assert test == splits["test"] and valid == splits["valid"], "shipped splits differ from make_splits(seed=0)"
    train = splits["train"][:args.probe_train] if args.probe_train else splits["train"]
    test = test[:args.limit] if args.limit else test
    valid = valid[:args.valid_limit] if args.valid_limit else valid
    log(f"{len(test)} test, {len(valid)} valid, {len(train)} probe-train questions; {args.threads} threads")

    # ---- 1. what the latents say
    probes, readout = train_readout(model, tok, train, valid, args)
    _, greedy = greedy_latents(model, tok, test)
    greedy_dec = decode_all(probes, greedy["latents"])
    greedy_metrics = {name: ev.readout_metrics(greedy_dec[name], target_values(test, t, kind), greedy_dec[name][:, 0],
                                               greedy["correct"]) for name, (_, _, s, t, kind) in probes.items()}
    for name in probes:
        readout["probes"][name]["test_greedy_accuracy"] = greedy_metrics[name]["decoded_accuracy"]
        readout["probes"][name]["test_greedy_unstructured"] = greedy_metrics[name]["unstructured"]
    greedy_acc = float(greedy["correct"].float().mean())
    log(f"latent greedy accuracy {greedy_acc:.3f}")

    sem = {"readout": readout, "greedy": greedy_metrics, "greedy_accuracy": greedy_acc, "settings": {},
           "n": 16, "seed": 0, "questions": len(test)}
    rm_auc = {}
    lat_rolls = {}
    for method, strength in SETTINGS:
        name = setting_name(method, strength)
        t0 = time.time()
        if (method, strength) == ("dropout", 0.2) and not args.skip_cot:
            # the equal-compute comparison's seed-0 draws; sample j depends only on (seed, question, j),
            # so their first 16 are exactly the N=16, seed-0 rollouts
            full = latent_rollouts(model, tok, rm, test, max(NS), sampling_kwargs(method, strength), 0,
                                   args.batch_rows)
            lat_rolls[0] = full
            roll = first_n(full, 16)
        else:
            roll = latent_rollouts(model, tok, rm, test, 16, sampling_kwargs(method, strength), 0, args.batch_rows)
        res, dec = section1_setting(test, roll, greedy, probes, greedy_dec)
        sem["settings"][name] = res
        rm_auc[name] = section2_setting(test, roll, dec)
        if (method, strength) == ("dropout", 0.2):
            roll_p02 = roll
        log(f"{name}: x1 decoded {res['step1_x1']['decoded_accuracy']:.3f} (ones {res['step1_x1_ones']['decoded_accuracy']:.3f}), "
            f"differs {res['step1_x1']['differs_from_greedy']:.3f} (ones {res['step1_x1_ones']['differs_from_greedy']:.3f}), "
            f"unstructured {res['step1_x1']['unstructured']:.3f}; {res['verdict']['why']} -> {res['verdict']['label']}; RM AUROC step1 "
            f"{rm_auc[name]['step1_x1']['rm_step_score']['mean']:.3f} vote {rm_auc[name]['step1_x1']['vote_share']['mean']:.3f} "
            f"({time.time() - t0:.0f} s)")

    n_sampled_probe = min(len(train), args.sampled_probe_train)
    sem["dropout_trained_probe"] = sampled_probe_check(model, tok, train[:n_sampled_probe], valid, test, roll_p02,
                                                       greedy, probes, greedy_dec, args)
    cot_section = None
    if not args.skip_cot:
        cot_section = section3(args, model, tok, test, valid, greedy, greedy_acc, lat_rolls, cot_path, cot_info,
                               cot_trained_here, out_dir)

    wall = time.time() - t_start
    report = {
        "meta": {
            "command": "python benchmarks/evidence.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "wall_seconds": round(wall, 1),
            "wall_seconds_without_cot_training": round(time.time() - t_after_cot, 1),
            "cot_training_included": cot_trained_here,
            "load_average_1_5_15_min_at_start": [round(x, 2) for x in load_start],
            "load_average_1_5_15_min_at_end": [round(x, 2) for x in os.getloadavg()], "cpus": os.cpu_count(),
            "threads": args.threads, "quick": args.quick, "torch": torch.__version__,
            "python": platform.python_version(), "model": str(model_path.relative_to(REPO)),
            "rm": str(rm_path.relative_to(REPO)),
        },
        "latent_semantics": sem,
        "rm_step_auroc": {
            "averaging": ("per question with both classes among its N=16 trajectories: AUROC (ties 1/2), then the "
                          "mean over those questions ('mean', 95% bootstrap 'ci' over them); 'pooled': every "
                          "within-question (right, wrong) pair pooled; 'questions': how many qualify"),
            "labels": {"step1_x1": "step-1 probe read-out == true x1",
                       "step1_x1_ones": "step-1 ones-digit read-out == ones digit of the true x1",
                       "step2_x2": "step-2 probe read-out == true x2 (the answer)",
                       "step2_x1": "step-2 probe read-out == true x1",
                       "step2_final_answer": "final answer right (x2 as the model itself reads it out)"},
            "settings": rm_auc,
        },
        "cot_baseline": cot_section if cot_section is not None else "skipped (--skip-cot)",
    }
    path = out_dir / "evidence.json"
    path.write_text(json.dumps(strip(report), indent=1, sort_keys=False) + "\n")
    plot_all(json.loads(path.read_text()), out_dir)
    log(f"wrote {path} ({wall / 60:.1f} min in all, {(time.time() - t_after_cot) / 60:.1f} min without CoT training)")


if __name__ == "__main__":
    main()
