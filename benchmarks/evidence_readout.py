"""Sections 1 and 2 of ``benchmarks/evidence.py``: what the latents say, and what the LatentRM sees of it.

Section 1 trains probes on greedy latents (:func:`train_readout`), reads every
sampled latent with them and judges each sampling setting "semantically
distinct" or "noise" (:func:`section1_setting`, rule in :func:`verdict`); a
probe trained on dropout latents checks whether the whole x1 survives dropout
(:func:`sampled_probe_check`).  Section 2 asks whether the LatentRM's step
score ranks the trajectories whose read-out is right above the others
(:func:`section2_setting`).
"""

from __future__ import annotations

import contextlib
import logging
import time

import torch

from hf_modeling.answers import answers_equal
import evidence_lib as ev  # sibling package (benchmarks/ is on sys.path)

PROBE_HIDDEN = 256
UNSTRUCTURED_QUANTILE = 0.05
UNSTRUCTURED_CAP = 0.5

log = logging.getLogger("evidence").info


# --------------------------------------------------------------------------- section 1
def greedy_latents(model, tok, examples, batch_rows=2048, max_new_tokens=8):
    """The greedy trajectory's latents (Q, steps, d) and its rollout record."""
    roll = ev.latent_rollouts(model, tok, None, examples, 1, ev.sampling_kwargs(None), 0, batch_rows=batch_rows,
                              max_new_tokens=max_new_tokens)
    return roll["latents"][:, 0], roll  # (Q, steps, d)


# (name, latent step, target intermediate, kind): "value" = 100-way read-out of the intermediate (linear and
# MLP probes, the better on held-out greedy latents is used); "ones" = its ones digit, 10-way linear probe
PROBES = [("step1_x1", 0, 0, "value"), ("step2_x2", 1, 1, "value"), ("step2_x1", 1, 0, "value"),
          ("step1_x2", 0, 1, "value"), ("step1_x1_ones", 0, 0, "ones"), ("step2_x1_ones", 1, 0, "ones")]


@contextlib.contextmanager
def one_thread():
    """Run the block on one torch thread (the probes' matrices are small)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def target_values(examples, t, kind):
    """The true intermediate ``t`` of each example, or its ones digit (``kind="ones"``)."""
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


def section1_setting(examples, roll, greedy, probes, greedy_dec, resamples=1000):
    """One sampling setting's read-out metrics per probe, follow metrics and verdict; also the decoded values."""
    res = {}
    dec = decode_all(probes, roll["latents"])
    for name, (_, _, s, t, kind) in probes.items():
        res[name] = ev.readout_metrics(dec[name], target_values(examples, t, kind), greedy_dec[name][:, 0],
                                       roll["correct"])
    greedy_answers = [a[0] for a in greedy["answers"]]
    for name, ones in (("step1_x1", False), ("step2_x1", False), ("step1_x1_ones", True), ("step2_x1_ones", True)):
        res["follow_" + name] = ev.follow_metrics(examples, dec[name], greedy_dec[name][:, 0], roll["answers"],
                                                  greedy_answers, ones_digit=ones, resamples=resamples)
    changed = torch.tensor([[not answers_equal(a, g) for a in row] for row, g in zip(roll["answers"], greedy_answers)])
    res["answer_differs_from_greedy"] = float(changed.float().mean())
    res["answer_changes"] = int(changed.sum())
    for name in ("step1_x1_ones", "step2_x1_ones"):
        seen = dec[name] != greedy_dec[name][:, :1]
        res["answer_changes_seen_by_" + name] = float((changed & seen).sum() / changed.sum()) if changed.any() \
            else float("nan")
    res["answer_changed_but_step2_digit_same"] = 1 - res["answer_changes_seen_by_step2_x1_ones"]
    res["verdict"] = verdict(res)
    return res, dec


MIN_CHANGED = 30  # changed read-outs needed before the follow rate is judged at all


def verdict(res, max_unstructured=2 * UNSTRUCTURED_QUANTILE):
    """The rule for "distinct", "not distinct", "too few changes" or "unreadable", on the last latent (step 2,
    the one the answer reads) and its read-out of x1's ones digit (exact on greedy latents, linear, robust
    under sampling; the 100-way value read-out does not transfer to sampled latents, see the report).

    Fixed before the full rerun of issue 18 (it replaces a rule that said "noise" whenever fewer than 5% of
    the read-outs changed, whatever the answers did where they changed):

    * unreadable: more than 10% of the sampled latents decode to no digit: the read-out cannot judge them;
    * too few changes: fewer than 30 trajectories whose read-out digit changed (and can tell following from
      keeping): nothing to judge;
    * distinct: where the read-out digit changed, the answer follows it above chance (the lower end of the
      95% bootstrap interval of ``follows`` is above 1/10) and more often than it keeps the greedy answer;
    * not distinct: otherwise (the answer ignores the changed digit).

    The label speaks only of the changes the read-out sees: ``seen`` is the share of answer changes whose
    latent-2 digit changed too; the rest are invisible to this test, neither distinct nor noise by it.
    """
    m, f = res["step2_x1_ones"], res["follow_step2_x1_ones"]
    seen = res["answer_changes_seen_by_step2_x1_ones"]
    lo = f["follows_ci"][0]
    if m["unstructured"] > max_unstructured:
        label = "unreadable"
    elif f["changed_trajectories"] < MIN_CHANGED:
        label = "too few changes"
    elif lo > f["chance"] and f["follows"] > f["keeps"]:
        label = "distinct"
    else:
        label = "not distinct"
    why = (f"step-2 latent, ones digit of x1: no number {m['unstructured']:.1%} (limit {max_unstructured:.0%}); "
           f"{f['changed_trajectories']} trajectories with a changed digit (need {MIN_CHANGED}); the answer follows "
           f"it {f['follows']:.1%} [{lo:.1%}, {f['follows_ci'][1]:.1%}] (chance {f['chance']:.0%}), keeps the greedy "
           f"answer {f['keeps']:.1%}, other {f['other']:.1%}; the read-out sees {seen:.1%} of the "
           f"{res['answer_changes']} answer changes")
    return {"label": label, "why": why, "answer_changes_seen": seen, "follows": f["follows"],
            "follows_ci": f["follows_ci"], "keeps": f["keeps"], "chance": f["chance"],
            "changed_trajectories": f["changed_trajectories"]}


def sampled_probe_check(model, tok, train, valid, test, roll, greedy, probes, greedy_dec, args):
    """Is the whole x1 still in dropout latents?  The value probe trained on greedy latents does not transfer to
    sampled ones, so train the same MLP probe on dropout p=0.2 latents (1 draw, seed 1, per training question),
    read its held-out accuracy on dropout latents of the valid questions, and use it on the test rollouts."""
    t0 = time.time()
    samp = ev.sampling_kwargs("dropout", 0.2)
    z_tr = ev.latent_rollouts(model, tok, None, train, 1, samp, 1, args.batch_rows, max_new_tokens=1)["latents"][:, 0]
    z_va = ev.latent_rollouts(model, tok, None, valid, 1, samp, 1, args.batch_rows, max_new_tokens=1)["latents"][:, 0]
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
            "follow": ev.follow_metrics(test, dec, greedy_dec[name][:, 0], roll["answers"], greedy_answers,
                                        resamples=args.bootstrap),
        }
        log(f"dropout-trained probe {name}: held-out dropout latents {out[name]['heldout_sampled_accuracy']:.3f} "
            f"(greedy-trained probe {out[name]['heldout_sampled_accuracy_of_greedy_trained_probe']:.3f}); test: "
            f"differs from greedy {out[name]['test']['differs_from_greedy']:.3f}, follows "
            f"{out[name]['follow']['follows']:.3f} / keeps {out[name]['follow']['keeps']:.3f}")
    out["seconds"] = round(time.time() - t0, 1)
    return out


# --------------------------------------------------------------------------- section 2
def section2_setting(examples, roll, dec, resamples=1000):
    """Within-question AUROC of the RM's step scores (and of vote share) for each read-out being right."""
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
        rate = float(y.float().mean())
        out[name] = {"rm_step_score": ev.within_question_auroc(sc[:, :, s], y, resamples),
                     "vote_share": ev.within_question_auroc(shares, y, resamples),
                     "rm_step_score_across_questions": ev.across_question_auroc(sc[:, :, s], y, resamples),
                     "vote_share_across_questions": ev.across_question_auroc(shares, y, resamples),
                     "positive_rate": rate}
        if name != "step2_final_answer":  # a read-out label: right only as often as the read-out reads right
            out[name]["label_noise"] = rate < LABEL_NOISE_BELOW
    out["trajectory_final_answer"] = {
        "rm_trajectory_score": ev.within_question_auroc(sc.sum(-1), roll["correct"], resamples),
        "vote_share": ev.within_question_auroc(shares, roll["correct"], resamples),
        "rm_trajectory_score_across_questions": ev.across_question_auroc(sc.sum(-1), roll["correct"], resamples),
        "vote_share_across_questions": ev.across_question_auroc(shares, roll["correct"], resamples)}
    return out


# a read-out label whose read-out is right on fewer than half of the setting's latents is mostly the probe's
# error, not the latent's: it cannot judge a score (the x1 and x2 values under sampling; see the report)
LABEL_NOISE_BELOW = 0.5

