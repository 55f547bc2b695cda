"""Selectors as plain functions over per-question arrays (research prototypes; phase 2 makes the best one a
strategy class).

Arrays (numpy), for S seeds, Q questions and the first n of N samples:

* ``answers`` (S, Q, N) int: the answer as an integer 0..99, or a negative code (no number: never votes);
* ``traj`` (S, Q, N) float: a trajectory score (e.g. the LatentRM's sum of step scores);
* ``greedy`` (Q,) int: the greedy decode's answer.

Every selector returns the chosen answer (S, Q) (negative: no answer).  Ties go to the answer whose first
occurrence among the samples comes first, as in ``lm_eval_latenttts.scaling.aggregation``.
"""

from __future__ import annotations

import numpy as np

VALUES = 100  # the arithmetic task's answer space (answers mod 100)


def one_hot(answers: np.ndarray) -> np.ndarray:
    """(..., N) answer codes -> (..., N, VALUES) one-hot (all zero for a negative or out-of-range code)."""
    valid = (answers >= 0) & (answers < VALUES)
    out = np.zeros(answers.shape + (VALUES,), dtype=np.float64)
    idx = np.where(valid, answers, 0)
    np.put_along_axis(out, idx[..., None], valid[..., None].astype(np.float64), axis=-1)
    return out


def first_occurrence(answers: np.ndarray) -> np.ndarray:
    """(..., VALUES) index of each value's first occurrence among the N samples (N where absent)."""
    hot = one_hot(answers) > 0
    n = answers.shape[-1]
    index = np.where(hot, np.arange(n)[:, None], n)
    return index.min(axis=-2)


def leader(totals: np.ndarray, answers: np.ndarray) -> np.ndarray:
    """The value with the largest total (ties: earliest first occurrence); -1 where no value has a vote."""
    first = first_occurrence(answers)
    present = first < answers.shape[-1]
    key = np.where(present, totals, -np.inf)
    best = key.max(axis=-1, keepdims=True)
    tied = present & (key >= best - 1e-12 * np.maximum(1.0, np.abs(best)))
    choice = np.where(tied, first, np.iinfo(np.int64).max).argmin(axis=-1)
    return np.where(present.any(-1), choice, -1)


def vote_counts(answers: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """(..., VALUES) votes per value (one per sample, or ``weights``)."""
    hot = one_hot(answers)
    if weights is not None:
        hot = hot * weights[..., None]
    return hot.sum(axis=-2)


def majority(answers):
    return leader(vote_counts(answers), answers)


def best_of_n(answers, traj):
    """The answer of the highest-scoring trajectory (earliest on ties)."""
    idx = np.argmax(np.where(np.isnan(traj), -np.inf, traj), axis=-1)
    return np.take_along_axis(answers, idx[..., None], axis=-1)[..., 0]


def softmax_weights(traj, temperature=1.0):
    z = traj / temperature
    z = z - z.max(axis=-1, keepdims=True)
    return np.exp(z)


def weighted(answers, traj, temperature=1.0):
    """RM-weighted vote: votes weighted by softmax(score / temperature) over the question's N samples."""
    return leader(vote_counts(answers, softmax_weights(traj, temperature)), answers)


def with_greedy(answers, greedy, weight):
    """Majority vote with the greedy decode as one more voter of weight ``weight`` (a tie-breaker at 0.5)."""
    totals = vote_counts(answers) + weight * one_hot(np.broadcast_to(greedy, answers.shape[:-1])[..., None])[..., 0, :]
    return leader(totals, answers) if weight == 0 else _leader_with_extra(totals, answers, greedy)


def _leader_with_extra(totals, answers, greedy):
    """Leader of ``totals`` over the samples' values and the greedy answer (which may be no sample's)."""
    g = np.broadcast_to(greedy, answers.shape[:-1])
    extended = np.concatenate([answers, g[..., None]], axis=-1)
    return leader(totals, extended)


def abstain_to_greedy(answers, greedy, threshold):
    """Majority vote when its share of the votes is at least ``threshold``, else the greedy answer."""
    counts = vote_counts(answers)
    choice = leader(counts, answers)
    share = counts.max(axis=-1) / answers.shape[-1]
    g = np.broadcast_to(greedy, choice.shape)
    return np.where(share >= threshold, choice, g)


def consistency_vote(answers, readback, epsilon):
    """Majority vote in which a trajectory whose answer differs from its read-back answer (what the backbone
    writes when it verbalises the rest from the trajectory's latent 0) votes with weight ``epsilon`` instead of 1
    (epsilon -> 0: the consistent trajectories decide, the others only break ties or stand in when none is)."""
    k = readback.shape[-1]
    weights = np.ones(answers.shape)
    weights[..., :k] = np.where(answers[..., :k] == readback, 1.0, epsilon)
    return leader(vote_counts(answers, weights), answers)


def candidate_features(answers, greedy, traj=None, extra=None):
    """Per (seed, question, value) features of every candidate answer for a calibrated vote.

    ``log_share``: log of its vote share; ``is_greedy``: it is the greedy answer; with ``traj``: ``rm_max`` and
    ``rm_mean``, the max and mean score of its trajectories, centred on the question's mean score; ``extra``
    (S, Q, N) per-trajectory values averaged per candidate.  Returns (features (S, Q, VALUES, F), present mask,
    names).
    """
    n = answers.shape[-1]
    hot = one_hot(answers)
    counts = hot.sum(-2)
    present = counts > 0
    g = np.broadcast_to(greedy, answers.shape[:-1])
    feats = [np.log(np.maximum(counts, 1) / n), one_hot(g[..., None])[..., 0, :]]
    names = ["log_share", "is_greedy"]
    if traj is not None:
        centred = traj - traj.mean(-1, keepdims=True)
        masked = np.where(hot > 0, centred[..., None], -np.inf)
        rm_max = np.where(present, masked.max(-2), 0.0)
        rm_mean = np.where(present, (hot * centred[..., None]).sum(-2) / np.maximum(counts, 1), 0.0)
        feats += [rm_max, rm_mean]
        names += ["rm_max", "rm_mean"]
    if extra is not None:
        feats.append(np.where(present, (hot * extra[..., None]).sum(-2) / np.maximum(counts, 1), 0.0))
        names.append("extra")
    return np.stack(feats, -1), present, names


def fit_calibrated_vote(features, present, target, l2=1e-3, iters=300):
    """Weights of a conditional logit over candidate answers, fitted by maximum likelihood on ``target``
    (S, Q) the gold value (questions whose gold is no candidate do not count).  Returns weights (F,)."""
    import torch

    x = torch.tensor(features, dtype=torch.float64)
    mask = torch.tensor(present)
    gold = torch.tensor(target, dtype=torch.long)
    has = mask.gather(-1, gold.clamp(0, VALUES - 1)[..., None])[..., 0] & (gold >= 0)
    w = torch.zeros(x.shape[-1], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w], lr=1, max_iter=iters, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        logits = (x @ w).masked_fill(~mask, -1e9)
        logp = torch.log_softmax(logits, -1).gather(-1, gold.clamp(0, VALUES - 1)[..., None])[..., 0]
        loss = -(logp[has]).mean() + l2 * (w ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach().numpy()


def calibrated_vote(features, present, weights, answers):
    """The candidate with the largest ``features @ weights`` (ties: earliest first occurrence)."""
    score = np.where(present, features @ weights, -np.inf)
    return leader(score, answers)


__all__ = ["abstain_to_greedy", "consistency_vote", "best_of_n", "calibrated_vote", "candidate_features", "fit_calibrated_vote",
           "leader", "majority", "one_hot", "vote_counts", "weighted", "with_greedy"]
