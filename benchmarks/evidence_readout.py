"""Sections 1 and 2 of the evidence: what the latents say, and what the LatentRM sees of it.

Two halves, so that the report is recomputed from stored per-question data:

* collection (``benchmarks/evidence.py`` runs it once): :func:`train_readout` trains the probes on greedy
  latents and reads the held-out ones, :func:`decode_all` reads sampled latents,
  :func:`dropout_probe_arrays` trains a probe on dropout latents;
* metrics (``benchmarks/evidence_recompute.py`` runs them on the stored arrays): :func:`section1_metrics`
  and its :func:`verdict`, :func:`dropout_probe_metrics`, :func:`section2_setting`.
"""

from __future__ import annotations

import contextlib
import logging
import time

import numpy as np
import torch

import evidence_lib as ev  # sibling package (benchmarks/ is on sys.path)
from evidence_lib.selection import vote_shares
from evidence_lib.store import NONE, answer_codes

PROBE_HIDDEN = 256
UNSTRUCTURED_QUANTILE = 0.05
UNSTRUCTURED_CAP = 0.5

log = logging.getLogger("evidence").info


# --------------------------------------------------------------------------- collection
def greedy_latents(model, tok, examples, batch_rows=2048, max_new_tokens=8):
    """The greedy trajectory's latents (Q, steps, d) and its rollout record."""
    roll = ev.latent_rollouts(model, tok, None, examples, 1, ev.sampling_kwargs(None), 0, batch_rows=batch_rows,
                              max_new_tokens=max_new_tokens)
    return roll["latents"][:, 0], roll  # (Q, steps, d)


# (name, latent step, target intermediate, kind): "value" = 100-way read-out of the intermediate (linear and
# MLP probes, the better on held-out greedy latents is used); "ones" = its ones digit, 10-way linear probe
PROBES = [("step1_x1", 0, 0, "value"), ("step2_x2", 1, 1, "value"), ("step2_x1", 1, 0, "value"),
          ("step1_x2", 0, 1, "value"), ("step1_x1_ones", 0, 0, "ones"), ("step2_x1_ones", 1, 0, "ones")]
# the verdict's two read-outs of latent 2's x1 ones digit: the 10-way linear (logistic) ones-digit probe, and
# the ones digit of the MLP value probe's x1 (a read-out of the whole value, trained separately)
VERDICT_PROBES = {"step2_x1_ones": "ones-digit probe (10-way logistic)",
                  "step2_x1_value_ones": "MLP value probe (its x1, ones digit)"}


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
    """Probes per (latent step, target), trained on greedy latents of ``train``; their reads of the held-out
    greedy latents of ``valid`` and the logit lens there.

    Returns ``(probes, info, valid_arrays, z_train)``: ``probes[name] = (probe, threshold, step, target,
    kind)`` (the architecture used: the better on held-out latents), ``info`` (training accuracies,
    thresholds, timings), ``valid_arrays`` (per valid question: each architecture's unthresholded read, the
    used probe's top probability, the logit lens), ``z_train`` the training latents (Q, steps, d)."""
    t0 = time.time()
    z_tr, _ = greedy_latents(model, tok, train, max_new_tokens=1)  # only the latents are needed
    z_va, _ = greedy_latents(model, tok, valid)
    log(f"greedy latents of {len(train)} train + {len(valid)} valid questions ({time.time() - t0:.0f} s)")
    probes, info, arrays = {}, {}, {}
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
            arrays[f"valid/read_{arch}/{name}"] = v_va
            r[arch] = {"train_accuracy": float((v_tr == y_tr).float().mean()),
                       "heldout_accuracy": float((v_va == y_va).float().mean()), "seconds": round(time.time() - t1, 1)}
            fitted[arch] = (pr, top_va)
        used = max(r, key=lambda a: (r[a]["heldout_accuracy"], a == "linear"))
        pr, top_va = fitted[used]
        arrays[f"valid/top_probability/{name}"] = top_va
        tau = ev.threshold_from_heldout(top_va, UNSTRUCTURED_QUANTILE, cap=UNSTRUCTURED_CAP)
        r.update({"used": used, "classes": classes, "threshold": tau})
        probes[name] = (pr, tau, s, t, kind)
        info[name] = r
        log(f"probe {name}: " + " ".join(f"{a} {r[a]['heldout_accuracy']:.3f}" for a in ("linear", "mlp") if a in r)
            + f" held-out; used {used}, threshold {tau:.3f}")
    digit_ids = [tok.convert_tokens_to_ids(str(d)) for d in range(10)]
    for s in range(z_va.shape[1]):
        is_digit, digit = ev.logit_lens_digit(z_va[:, s], model.lm_head.weight, digit_ids)
        arrays[f"valid/lens_is_digit/step{s + 1}"] = is_digit
        arrays[f"valid/lens_digit/step{s + 1}"] = digit
    return probes, {"probes": info, "train_questions": len(train), "heldout_questions": len(valid),
                    "seconds": round(time.time() - t0, 1)}, arrays, z_tr


def decode_all(probes, latents):
    """latents (Q, N, steps, d) -> {probe name: decoded values (Q, N)} (thresholded: NO_NUMBER below it)."""
    out = {}
    for name, (pr, tau, s, _, _) in probes.items():
        q, n = latents.shape[:2]
        v, _ = pr.decode(latents[:, :, s].reshape(q * n, -1), tau)
        out[name] = v.view(q, n)
    return out


def dropout_probe_arrays(model, tok, train, valid, roll, probes, args):
    """Is the whole x1 still in dropout latents?  The value probe trained on greedy latents does not transfer to
    sampled ones, so train the same MLP probe on dropout p=0.2 latents (1 draw, seed 1, per training question):
    its reads (and the greedy-trained probe's) of dropout latents of the valid questions, and its reads of the
    test rollouts ``roll`` (thresholded).  Returns ``(arrays, info)``."""
    t0 = time.time()
    samp = ev.sampling_kwargs("dropout", 0.2)
    z_tr = ev.latent_rollouts(model, tok, None, train, 1, samp, 1, args.batch_rows, max_new_tokens=1)["latents"][:, 0]
    z_va = ev.latent_rollouts(model, tok, None, valid, 1, samp, 1, args.batch_rows, max_new_tokens=1)["latents"][:, 0]
    y_tr = target_values(train, 0, "value")
    arrays, info = {}, {"sampling": "dropout_p=0.2", "train_questions": len(train), "heldout_questions": len(valid)}
    for name, s in (("step1_x1", 0), ("step2_x1", 1)):
        with one_thread():
            pr = ev.fit_probe(z_tr[:, s], y_tr, hidden=PROBE_HIDDEN, epochs=args.probe_epochs, seed=0)
        v_va, top_va = pr.decode(z_va[:, s])
        arrays[f"valid/dropout_latents/dropout_probe/{name}"] = v_va
        arrays[f"valid/dropout_latents/greedy_probe/{name}"] = probes[name][0].decode(z_va[:, s])[0]
        tau = ev.threshold_from_heldout(top_va, UNSTRUCTURED_QUANTILE, cap=UNSTRUCTURED_CAP)
        q, n = roll["latents"].shape[:2]
        arrays[f"dropout_probe/{name}"] = pr.decode(roll["latents"][:, :, s].reshape(q * n, -1), tau)[0].view(q, n)
        info[name] = {"threshold": tau}
    info["seconds"] = round(time.time() - t0, 1)
    return arrays, info


# --------------------------------------------------------------------------- section 1 metrics
def codes_of(answers) -> np.ndarray:
    """Answer codes (Q, N) of per-question answer lists (or the codes themselves)."""
    return answers if isinstance(answers, np.ndarray) else answer_codes(answers)



def section1_metrics(examples, roll, greedy, greedy_dec, dec, resamples=1000):
    """One sampling setting's read-out metrics per probe, follow metrics under both verdict probes, the share
    of answer changes each read-out sees, and the verdicts.

    ``roll``: answers (per question, N), correct (Q, N); ``greedy``: the greedy record (answers, correct);
    ``greedy_dec`` / ``dec``: {probe: read (Q, 1) / (Q, N)}, with ``step2_x1_value_ones`` (the MLP value
    probe's x1 mod 10) among them."""
    res = {}
    kinds = {name: (t, kind) for name, _, t, kind in PROBES}
    kinds["step2_x1_value_ones"] = (0, "ones")
    for name, (t, kind) in kinds.items():
        res[name] = ev.readout_metrics(dec[name], target_values(examples, t, kind), greedy_dec[name][:, 0],
                                       roll["correct"])
    codes, gcodes = codes_of(roll["answers"]), codes_of(greedy["answers"])[:, 0]
    for name, ones in (("step1_x1", False), ("step2_x1", False), ("step1_x1_ones", True), ("step2_x1_ones", True),
                       ("step2_x1_value_ones", True)):
        res["follow_" + name] = ev.follow_metrics(examples, dec[name], greedy_dec[name][:, 0], codes, gcodes,
                                                  ones_digit=ones, resamples=resamples)
    changed = torch.from_numpy(~((codes == gcodes[:, None]) & (codes != NONE)))  # not answers_equal
    res["answer_differs_from_greedy"] = float(changed.float().mean())
    res["answer_changes"] = int(changed.sum())
    for name in ("step1_x1_ones", "step2_x1_ones", "step2_x1_value_ones"):
        seen = dec[name] != greedy_dec[name][:, :1]
        res["answer_changes_seen_by_" + name] = float((changed & seen).sum() / changed.sum()) if changed.any() \
            else float("nan")
    # where the two read-outs disagree: of the latent-2 digits the value probe reads as changed, the share the
    # ones-digit probe reads as unchanged (then the value probe's "change" is its own reading error or the ones
    # probe's blind spot; the implants of the causal section tell which one the answer follows)
    vchg = (dec["step2_x1_value_ones"] != greedy_dec["step2_x1_value_ones"][:, :1]) & (dec["step2_x1_value_ones"] >= 0)
    same = dec["step2_x1_ones"] == greedy_dec["step2_x1_ones"][:, :1]
    res["value_probe_changes_unchanged_for_ones_probe"] = float((vchg & same).sum() / vchg.sum()) if vchg.any() \
        else float("nan")
    res["verdicts"] = {name: verdict(res, name) for name in VERDICT_PROBES}
    labels = {v["label"] for v in res["verdicts"].values()}
    res["probes_agree"] = len(labels) == 1
    return res


MIN_CHANGED = 30  # changed read-outs needed before the follow rate is judged at all


def verdict(res, probe="step2_x1_ones", max_unstructured=2 * UNSTRUCTURED_QUANTILE):
    """The rule for "distinct", "not distinct", "undetermined", "too few changes" or "unreadable", on the last
    latent (step 2, the one the answer reads) and a read-out ``probe`` of its x1 ones digit:

    * unreadable: more than 10% of the sampled latents decode to no digit: the read-out cannot judge them;
    * too few changes: fewer than 30 trajectories whose read-out digit changed (and can tell following from
      keeping): nothing to judge;
    * distinct: where the read-out digit changed, the answer follows it above chance (the 95% bootstrap
      interval of ``follows`` lies above 1/10) *and* follows it more often than it keeps the greedy answer
      (the paired 95% interval of follows - keeps lies above 0);
    * not distinct: the answer follows the changed digit no more than chance (interval of follows at or
      below 1/10) or keeps the greedy answer more often than it follows (paired interval below 0);
    * undetermined: neither: the data cannot tell.

    The label speaks only of the changes the read-out sees: ``seen`` is the share of answer changes whose
    latent-2 digit changed too; the rest are invisible to this test.
    """
    m, f = res[probe], res["follow_" + probe]
    seen = res["answer_changes_seen_by_" + probe]
    lo, hi = f["follows_ci"]
    d_lo, d_hi = f["follows_minus_keeps_ci"]
    if m["unstructured"] > max_unstructured:
        label = "unreadable"
    elif f["changed_trajectories"] < MIN_CHANGED:
        label = "too few changes"
    elif lo > f["chance"] and d_lo > 0:
        label = "distinct"
    elif hi <= f["chance"] or d_hi < 0:
        label = "not distinct"
    else:
        label = "undetermined"
    why = (f"{VERDICT_PROBES.get(probe, probe)}: no number {m['unstructured']:.1%} (limit {max_unstructured:.0%}); "
           f"{f['changed_trajectories']} trajectories with a changed digit (need {MIN_CHANGED}); the answer follows "
           f"it {f['follows']:.1%} [{lo:.1%}, {hi:.1%}] (chance {f['chance']:.0%}), keeps the greedy answer "
           f"{f['keeps']:.1%}; follows - keeps {f['follows_minus_keeps']:+.1%} [{d_lo:+.1%}, {d_hi:+.1%}]; the "
           f"read-out sees {seen:.1%} of the {res['answer_changes']} answer changes")
    return {"label": label, "why": why, "answer_changes_seen": seen, "follows": f["follows"],
            "follows_ci": f["follows_ci"], "keeps": f["keeps"], "follows_minus_keeps": f["follows_minus_keeps"],
            "follows_minus_keeps_ci": f["follows_minus_keeps_ci"], "chance": f["chance"],
            "changed_trajectories": f["changed_trajectories"]}


def dropout_probe_metrics(valid, test, greedy, greedy_dec, roll, arrays, resamples=1000):
    """The dropout-trained probe's held-out accuracy on dropout latents (and the greedy-trained probe's there),
    and its reads of the test rollouts: read-out metrics and follow metrics."""
    y_va, y_te = target_values(valid, 0, "value"), target_values(test, 0, "value")
    greedy_answers = codes_of(greedy["answers"])[:, 0]
    out = {}
    for name in ("step1_x1", "step2_x1"):
        dec = arrays[f"dropout_probe/{name}"]
        out[name] = {
            "heldout_sampled_accuracy": float((arrays[f"valid/dropout_latents/dropout_probe/{name}"] == y_va)
                                              .float().mean()),
            "heldout_sampled_accuracy_of_greedy_trained_probe": float(
                (arrays[f"valid/dropout_latents/greedy_probe/{name}"] == y_va).float().mean()),
            "test": ev.readout_metrics(dec, y_te, greedy_dec[name][:, 0], roll["correct"]),
            "follow": ev.follow_metrics(test, dec, greedy_dec[name][:, 0], codes_of(roll["answers"]),
                                        greedy_answers, resamples=resamples),
        }
    return out


# --------------------------------------------------------------------------- section 2
ACROSS_LABELS = ("step1_x1_ones", "step2_final_answer")  # reliable labels: the across-question AUROCs too
ALL_LABELS = ("step1_x1", "step1_x1_ones", "step2_x2", "step2_x1", "step2_final_answer")


def section2_setting(examples, roll, dec, resamples=1000, wanted=ALL_LABELS):
    """The RM's step scores (and vote share) against each label in ``wanted``: within-question AUROC (and the
    paired per-question difference RM - vote share); for the reliable labels (:data:`ACROSS_LABELS`) the
    across-question AUROC raw and centred (each question's mean score subtracted); for the trajectory score
    its relation to question difficulty and the pooled pairs by type."""
    true = torch.tensor([ev.intermediates(e) for e in examples])
    shares = torch.from_numpy(vote_shares(codes_of(roll["answers"])).astype(np.float64))
    sc = roll["step_scores"].double()
    out = {}
    labels = {
        "step1_x1": (0, dec["step1_x1"] == true[:, :1]),
        "step1_x1_ones": (0, dec["step1_x1_ones"] == true[:, :1] % 10),
        "step2_x2": (1, dec["step2_x2"] == true[:, 1:2]),
        "step2_x1": (1, dec["step2_x1"] == true[:, :1]),
        "step2_final_answer": (1, roll["correct"]),
    }
    for name, (s, y) in labels.items():
        if name not in wanted:
            continue
        rate = float(y.float().mean())
        out[name] = {"rm_step_score": ev.within_question_auroc(sc[:, :, s], y, resamples),
                     "vote_share": ev.within_question_auroc(shares, y, resamples),
                     "rm_minus_vote_share": ev.paired_within_difference(sc[:, :, s], shares, y, resamples),
                     "positive_rate": rate}
        if name in ACROSS_LABELS:  # the pooled AUROCs of the labels that can judge a score (the costly part)
            out[name].update({
                "rm_step_score_across_questions": ev.across_question_auroc(sc[:, :, s], y, resamples),
                "rm_step_score_across_questions_centred": ev.across_question_auroc(ev.centred(sc[:, :, s]), y,
                                                                                   resamples),
                "vote_share_across_questions": ev.across_question_auroc(shares, y, resamples)})
        if name != "step2_final_answer":  # a read-out label: right only as often as the read-out reads right
            out[name]["label_noise"] = rate < LABEL_NOISE_BELOW
    traj = sc.sum(-1)
    out["trajectory_final_answer"] = {
        "rm_trajectory_score": ev.within_question_auroc(traj, roll["correct"], resamples),
        "vote_share": ev.within_question_auroc(shares, roll["correct"], resamples),
        "rm_minus_vote_share": ev.paired_within_difference(traj, shares, roll["correct"], resamples),
        "rm_trajectory_score_across_questions": ev.across_question_auroc(traj, roll["correct"], resamples),
        "rm_trajectory_score_across_questions_centred": ev.across_question_auroc(ev.centred(traj), roll["correct"],
                                                                                 resamples),
        "vote_share_across_questions": ev.across_question_auroc(shares, roll["correct"], resamples),
        "difficulty": ev.score_by_difficulty(traj, roll["correct"], resamples),
        "pair_types": ev.across_pair_types(traj, roll["correct"]),
    }
    return out


# a read-out label whose read-out is right on fewer than half of the setting's latents is mostly the probe's
# error, not the latent's: it cannot judge a score (the x1 and x2 values under sampling; see the report)
LABEL_NOISE_BELOW = 0.5
