"""The selection study's tables from the committed per-question arrays: every choice made on valid, reported
on test once.

* Parameters (a softmax temperature per RM for its weighted vote, the greedy decode's weight as a voter, the
  vote share below which to fall back to greedy, the weights of the calibrated votes) are chosen on the valid
  split at N=16 (grid search, or maximum likelihood for the calibrated votes) and then applied to test as they
  are.
* Every test number: mean over questions of the per-question accuracy averaged over the 3 seeds, with its 95%
  bootstrap interval; differences paired over questions; headroom recovered = (selector - greedy) /
  (coverage - greedy) with its paired interval.
"""

from __future__ import annotations

import numpy as np

from selection_lib import selectors as sel
from selection_lib.tables import (accuracy_per_question, coverage_per_question, headroom_recovered, mean_ci,
                                  paired, paired_auroc, rm_names, trajectory_scores, within_auroc)

TEMPERATURES = (0.03, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0, 5.0)
GREEDY_WEIGHTS = (0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0)
EPSILONS = (0.0, 0.001, 0.01, 0.1, 0.3)
THRESHOLDS = (0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.7)
MAIN_N = 16


def _greedy(d, shape):
    return np.broadcast_to(d["greedy_answer"].astype(np.int64), shape)


def _acc(choice, d):
    return float(accuracy_per_question(choice, d["gold"]).mean())


def readback_agreement(d, n):
    """(S, Q, n) per trajectory: its answer equals the answer the backbone writes when it verbalises the rest from
    that trajectory's latent 0 (the read-back); NaN past the read-back samples (counted as 0.5)."""
    a = d["answers"][..., :n].astype(np.int64)
    r = d["readback_answer"].astype(np.int64)
    k = min(n, r.shape[-1])
    out = np.full(a.shape, 0.5)
    out[..., :k] = (a[..., :k] == r[..., :k]).astype(np.float64)
    return out


def candidates(d, n, rm=None, extra=False):
    """Features of every candidate answer (``selectors.candidate_features``) at N=n."""
    a = d["answers"][..., :n].astype(np.int64)
    traj = None if rm is None else trajectory_scores(d, rm, n)
    return sel.candidate_features(a, d["greedy_answer"].astype(np.int64), traj,
                                  readback_agreement(d, n) if extra else None)


def fit(valid: dict, n: int = MAIN_N) -> dict:
    """Every selector parameter, chosen on ``valid`` at N=n."""
    a = valid["answers"][..., :n].astype(np.int64)
    g = valid["greedy_answer"].astype(np.int64)
    gold = np.broadcast_to(valid["gold"].astype(np.int64), a.shape[:2])
    params = {"chosen_on": "valid", "n": n}
    params["greedy_weight"] = max(GREEDY_WEIGHTS, key=lambda w: (_acc(sel.with_greedy(a, g, w), valid), -w))
    params["abstain_threshold"] = max(THRESHOLDS,
                                      key=lambda t: (_acc(sel.abstain_to_greedy(a, g, t), valid), -t))
    r = valid["readback_answer"].astype(np.int64)[..., :n]
    params["consistency_epsilon"] = max(EPSILONS, key=lambda e: (_acc(sel.consistency_vote(a, r, e), valid), -e))
    feats, present, _ = candidates(valid, n)
    params["calibrated"] = sel.fit_calibrated_vote(feats, present, gold).tolist()
    feats, present, _ = candidates(valid, n, extra=True)
    params["calibrated_readback"] = sel.fit_calibrated_vote(feats, present, gold).tolist()
    for rm in rm_names(valid):
        traj = trajectory_scores(valid, rm, n)
        params[f"temperature[{rm}]"] = max(TEMPERATURES,
                                           key=lambda t: (_acc(sel.weighted(a, traj, t), valid), t))
        feats, present, _ = candidates(valid, n, rm)
        params[f"calibrated[{rm}]"] = sel.fit_calibrated_vote(feats, present, gold).tolist()
    return params


def choices(d: dict, n: int, params: dict, rms=None) -> dict:
    """Every selector's choice (S, Q) at N=n, with ``params`` from :func:`fit`."""
    a = d["answers"][..., :n].astype(np.int64)
    g = d["greedy_answer"].astype(np.int64)
    out = {"greedy": _greedy(d, a.shape[:2]), "majority": sel.majority(a),
           f"greedy as a voter (w={params['greedy_weight']})": sel.with_greedy(a, g, params["greedy_weight"]),
           f"abstain to greedy (share<{params['abstain_threshold']})":
               sel.abstain_to_greedy(a, g, params["abstain_threshold"])}
    r = d["readback_answer"].astype(np.int64)[..., :n]
    out[f"read-back consistency vote (eps={params['consistency_epsilon']})"] = sel.consistency_vote(
        a, r, params["consistency_epsilon"])
    # not selectors among the N latent answers: the backbone's own token continuations from latent 0
    out["[other decoding] greedy read-back (the first latent read back, step 2 in tokens)"] = _greedy(
        {"greedy_answer": d["greedy_readback_answer"]}, a.shape[:2])
    out["[other decoding] majority of the N read-back answers"] = sel.majority(r)
    feats, present, _ = candidates(d, n)
    out["calibrated vote (share, greedy)"] = sel.calibrated_vote(feats, present, np.array(params["calibrated"]), a)
    feats, present, _ = candidates(d, n, extra=True)
    out["calibrated vote (share, greedy, read-back)"] = sel.calibrated_vote(
        feats, present, np.array(params["calibrated_readback"]), a)
    for rm in (rms if rms is not None else rm_names(d)):
        traj = trajectory_scores(d, rm, n)
        out[f"best-of-N [{rm}]"] = sel.best_of_n(a, traj)
        out[f"RM-weighted [{rm}]"] = sel.weighted(a, traj, 1.0)
        t = params.get(f"temperature[{rm}]")
        if t is not None:
            out[f"RM-weighted T={t} [{rm}]"] = sel.weighted(a, traj, t)
        w = params.get(f"calibrated[{rm}]")
        if w is not None:
            feats, present, _ = candidates(d, n, rm)
            out[f"calibrated vote (share, greedy, RM) [{rm}]"] = sel.calibrated_vote(feats, present, np.array(w), a)
    return out


def selector_table(d: dict, n: int, params: dict, rms=None) -> dict:
    """Per selector at N=n: accuracy, difference with greedy and with majority (paired), headroom recovered."""
    per_q = {name: accuracy_per_question(c, d["gold"]) for name, c in choices(d, n, params, rms).items()}
    greedy, majority = per_q["greedy"], per_q["majority"]
    coverage = coverage_per_question(d["correct"][..., :n])
    rows = {"coverage": {"accuracy": mean_ci(coverage)}}
    for name, acc in per_q.items():
        rows[name] = {"accuracy": mean_ci(acc), "minus_greedy": paired(acc, greedy),
                      "minus_majority": paired(acc, majority),
                      "headroom_recovered": headroom_recovered(acc, greedy, coverage)}
    return rows


def auroc_table(d: dict, n: int) -> dict:
    """Within-question AUROC for answer correctness: each RM's trajectory score and the vote share."""
    correct = d["correct"][..., :n]
    a = d["answers"][..., :n].astype(np.int64)
    counts = sel.vote_counts(a)
    share = np.take_along_axis(counts, np.clip(a, 0, sel.VALUES - 1), -1) * (a >= 0) / n
    out = {"vote share": within_auroc(share, correct)}
    k = d["readback_answer"].shape[-1]
    if k >= n:  # agreement of a trajectory's answer with its read-back answer (a 0/1 score)
        out["read-back agreement"] = within_auroc(readback_agreement(d, n), correct)
    for rm in rm_names(d):
        out[rm] = within_auroc(trajectory_scores(d, rm, n), correct)
    return out


def scaling_table(d: dict, ns, rms, epsilon: float = 0.001, shipped: str = "shipped") -> dict:
    """Per N: greedy, single sample, majority, the ``shipped`` RM's weighted vote and best-of-N, the read-back
    consistency vote (``epsilon``: chosen on valid at N=16) and coverage; per selector its difference with
    greedy and with majority (paired) and the headroom it recovers, (selector - greedy) / (coverage - greedy),
    with a paired interval; best-of-N by each of ``rms`` against majority."""
    out = {}
    greedy = accuracy_per_question(_greedy(d, d["answers"].shape[:2]), d["gold"])
    for n in ns:
        a = d["answers"][..., :n].astype(np.int64)
        maj = accuracy_per_question(sel.majority(a), d["gold"])
        cov = coverage_per_question(d["correct"][..., :n])
        row = {"greedy": mean_ci(greedy), "single": mean_ci(np.asarray(d["correct"][..., :n]).mean((0, 2))),
               "majority": mean_ci(maj), "coverage": mean_ci(cov)}
        picked = {"majority": maj}
        if shipped in rm_names(d):
            traj = trajectory_scores(d, shipped, n)
            picked["RM-weighted"] = accuracy_per_question(sel.weighted(a, traj, 1.0), d["gold"])
            picked["best-of-N (RM)"] = accuracy_per_question(sel.best_of_n(a, traj), d["gold"])
        if d["readback_answer"].shape[-1] >= n:
            r = d["readback_answer"].astype(np.int64)[..., :n]
            picked["consistency"] = accuracy_per_question(sel.consistency_vote(a, r, epsilon), d["gold"])
        for name, acc in picked.items():
            row[name] = {**mean_ci(acc), "minus_greedy": paired(acc, greedy), "minus_majority": paired(acc, maj),
                         "headroom_recovered": headroom_recovered(acc, greedy, cov)}
        for rm in rms:
            bon = accuracy_per_question(sel.best_of_n(a, trajectory_scores(d, rm, n)), d["gold"])
            row[f"best-of-N [{rm}]"] = mean_ci(bon)
            row[f"best-of-N [{rm}] - majority"] = paired(bon, maj)
        out[n] = row
    return out


def rm_rows(d: dict, n: int, rms, reference: str | None = None) -> dict:
    """One row per RM (the learning-curve and lever tables) on one split at N=n: within-question AUROC, its paired
    difference with the ``reference`` RM's on the same trajectories, and best-of-N and the RM-weighted vote
    (temperature 1) minus majority, paired over questions."""
    a = d["answers"][..., :n].astype(np.int64)
    correct = d["correct"][..., :n]
    majority = accuracy_per_question(sel.majority(a), d["gold"])
    out = {}
    for rm in rms:
        traj = trajectory_scores(d, rm, n)
        row = {"auroc": within_auroc(traj, correct)}
        if reference and rm != reference:
            row["auroc_minus_reference"] = paired_auroc(traj, trajectory_scores(d, reference, n), correct)
        row["best_of_n_minus_majority"] = paired(accuracy_per_question(sel.best_of_n(a, traj), d["gold"]), majority)
        row["weighted_minus_majority"] = paired(accuracy_per_question(sel.weighted(a, traj, 1.0), d["gold"]), majority)
        out[rm] = row
    return out
