"""The selectors of the scaling report on stored answer codes, for whole (questions x N) arrays at once.

``lm_eval_latenttts.scaling`` selects one question at a time from answer texts
(``majority_vote``, ``weighted_vote``, ``best_of_n_index``, ``question_metrics``);
the evidence recomputes them for 1,500 questions x 64 samples x several N from
the integer codes of ``evidence_lib.store``, which that per-question path
cannot do in the report's time budget.  Same rules, same ties (the earliest
first occurrence wins), same float arithmetic for the weighted vote (Python's
``math.exp``, sums in index order); ``tests/test_evidence.py`` checks them
against the scaling code's functions.
"""

from __future__ import annotations

import math
from typing import Dict, Optional

import numpy as np

from evidence_lib.store import NONE


def same_answer(codes: np.ndarray) -> np.ndarray:
    """(Q, N, N) bool: trajectory i and j of a question have the same answer (no answer equals nothing)."""
    valid = codes != NONE
    return (codes[:, :, None] == codes[:, None, :]) & valid[:, :, None] & valid[:, None, :]


def _leader(totals: np.ndarray, eq: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Per question the index of a trajectory with the leading answer (most ``totals``, ties -> earliest first
    occurrence), -1 when no trajectory has an answer."""
    n = eq.shape[-1]
    first = np.argmax(eq, axis=-1)  # the first trajectory with the same answer (itself if none before)
    t = np.where(valid, totals, -np.inf)
    cand = valid & (t == t.max(-1, keepdims=True))
    best = np.argmin(np.where(cand, first, n), axis=-1)
    return np.where(valid.any(-1), best, -1)


def majority_index(codes: np.ndarray) -> np.ndarray:
    """Per question (row of ``codes``) a trajectory holding the majority answer, -1 if none has an answer."""
    eq = same_answer(codes)
    return _leader(eq.sum(-1).astype(float), eq, codes != NONE)


def answer_weights(scores: np.ndarray) -> np.ndarray:
    """``lm_eval_latenttts.scaling.aggregation.answer_weights`` per row (Python floats, the same arithmetic)."""
    out = np.empty(scores.shape, dtype=np.float64)
    for q, row in enumerate(scores.tolist()):
        row = [-math.inf if math.isnan(s) else s for s in row]
        if all(s == -math.inf for s in row):
            out[q] = 1.0
            continue
        top = max(row)
        out[q] = [1.0 if s == math.inf else 0.0 for s in row] if top == math.inf else [math.exp(s - top) for s in row]
    return out


def weighted_index(codes: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Per question a trajectory holding the RM-weighted vote's answer (-1 if none has an answer)."""
    eq = same_answer(codes)
    w = answer_weights(scores)
    totals = np.zeros(codes.shape, dtype=np.float64)
    for j in range(codes.shape[1]):  # in index order, as vote_totals accumulates (adding 0.0 changes nothing)
        totals = totals + np.where(eq[:, :, j], w[:, j:j + 1], 0.0)
    return _leader(totals, eq, codes != NONE)


def best_of_n_index(scores: np.ndarray) -> np.ndarray:
    """Per question the index of the highest score (earliest on ties; NaN counts as -inf)."""
    return np.argmax(np.where(np.isnan(scores), -np.inf, scores), axis=-1)


def selector_correct(codes: np.ndarray, gold: np.ndarray, scores: Optional[np.ndarray], n: int) -> Dict[str, np.ndarray]:
    """Per question, on the first ``n`` samples: coverage, single-sample accuracy, and whether majority,
    RM-weighted vote and best-of-N pick a right answer (the rows of ``benchmarks/scaling.py``'s ``metrics_at``)."""
    c = codes[:, :n]
    right = (c == gold[:, None]) & (c != NONE)
    rows = np.arange(len(c))

    def picked(index):
        return np.where(index >= 0, right[rows, np.maximum(index, 0)], False).astype(float)

    out = {"coverage": right.any(-1).astype(float), "single": right.mean(-1), "majority": picked(majority_index(c))}
    if scores is not None:
        s = scores[:, :n]
        out["weighted"] = picked(weighted_index(c, s))
        out["best_of_n"] = picked(best_of_n_index(s))
    return out


def vote_shares(codes: np.ndarray) -> np.ndarray:
    """Per trajectory the share of its question's N trajectories with its answer (itself included; a
    trajectory without an answer shares with nothing but itself): ``evidence_lib.ranking.vote_shares``."""
    eq = same_answer(codes)
    n = codes.shape[1]
    return np.where(codes != NONE, eq.sum(-1) / n, 1 / n)
