"""Choosing one answer among a question's N: majority vote, best-of-N, RM-weighted vote.

Pure Python.  Answers are compared with ``hf_modeling.answers`` (numbers as
numbers; ``None`` never wins).  Ties go to the earliest first occurrence among
the N answers, for every rule here, so a choice never depends on dict order.
:func:`select` is the one place that applies the rule a run asked for; the
lm-eval model and the scaling report both call it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from hf_modeling.answers import answer_key

def _check_scores(answers, scores):
    answers, scores = list(answers), [float(s) for s in scores]
    if len(answers) != len(scores):
        raise ValueError(f"{len(answers)} answers but {len(scores)} scores; give one score per answer.")
    return answers, scores


def vote_totals(answers, weights=None) -> dict:
    """Per answer (``answer_key``): ``[votes, index of its first occurrence, that occurrence]``.

    One vote per answer, or ``weights[i]`` for answer i; ``None`` answers carry no vote.
    """
    totals = {}
    for i, a in enumerate(answers):
        k = answer_key(a)
        if k is None:
            continue
        weight = 1.0 if weights is None else weights[i]
        if k in totals:
            totals[k][0] += weight
        else:
            totals[k] = [weight, i, a]
    return totals


def _leader(totals: dict):
    """The answer with the most votes (ties -> earliest first occurrence), None without votes."""
    if not totals:
        return None
    return max(totals.values(), key=lambda t: (t[0], -t[1]))[2]


def majority_vote(answers):
    """The most frequent answer (first occurrence's form); ties -> earliest first occurrence; None if all are None."""
    return _leader(vote_totals(answers))


def best_of_n_index(scores):
    """Index of the highest score (earliest on ties; NaN counts as -inf)."""
    scores = [float(s) for s in scores]
    if not scores:
        raise ValueError("best_of_n needs at least one score.")
    clean = [-math.inf if math.isnan(s) else s for s in scores]
    return max(range(len(clean)), key=lambda i: (clean[i], -i))


def answer_weights(scores):
    """Non-negative weights from trajectory scores, used by :func:`weighted_vote`: ``softmax(scores)``.

    Shift invariant, so negative scores need no special handling.  NaN scores count as ``-inf``
    (weight 0); if no score is finite every trajectory gets weight 1.
    """
    scores = [-math.inf if math.isnan(float(s)) else float(s) for s in scores]
    if not scores:
        return []
    if all(s == -math.inf for s in scores):
        return [1.0] * len(scores)
    top = max(scores)
    if top == math.inf:
        return [1.0 if s == math.inf else 0.0 for s in scores]
    return [math.exp(s - top) for s in scores]


def weighted_vote(answers, scores):
    """RM-weighted vote: the answer with the largest total weight (see :func:`answer_weights`).

    Weights are a softmax over the N trajectory scores, so negative scores are
    fine.  None answers carry no vote.  Ties -> earliest first occurrence.
    Returns None if no answer could be extracted.
    """
    answers, scores = _check_scores(answers, scores)
    return _leader(vote_totals(answers, answer_weights(scores)))


@dataclass(frozen=True)
class Selection:
    """One question's choice: ``answer`` (by the run's rule), the index of a candidate that gives it
    (``chosen``; None if no candidate does), and every rule's answer for the metric rows."""

    answer: str | None
    chosen: int | None
    majority: str | None
    best_of_n: str | None
    weighted: str | None


def select(answers: list, scores: list | None, how: str, chosen: int | None = None) -> Selection:
    """Apply the aggregation ``how`` ('majority', 'best_of_n', 'weighted', 'beam') to N candidates.

    ``scores`` are the RM trajectory scores (None without an RM); for ``beam``
    the search already chose the candidate ``chosen``.
    """
    if scores is not None:
        answers, scores = _check_scores(answers, scores)
    majority = majority_vote(answers)
    best = weighted = None
    if scores is not None and answers:
        best = answers[best_of_n_index(scores)]
        weighted = weighted_vote(answers, scores)
    if how == "beam":
        answer = answers[chosen] if answers and chosen is not None else None
    elif how == "best_of_n":
        chosen = best_of_n_index(scores) if answers else None
        answer = best
    elif how in ("majority", "weighted"):
        answer = majority if how == "majority" else weighted
        chosen = next((i for i, a in enumerate(answers) if answer_key(a) is not None
                       and answer_key(a) == answer_key(answer)), None)
    else:
        raise ValueError(f"aggregate must be 'majority', 'best_of_n', 'weighted' or 'beam'; got {how!r}.")
    return Selection(answer=answer, chosen=chosen, majority=majority, best_of_n=best, weighted=weighted)


__all__ = [
    "Selection",
    "answer_weights",
    "best_of_n_index",
    "majority_vote",
    "select",
    "vote_totals",
    "weighted_vote",
]
