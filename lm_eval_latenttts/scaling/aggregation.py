"""The votes behind a choice among a question's N answers: majority vote, best-of-N, RM-weighted vote, the
read-back consistency vote, tallies.

Pure Python.  Answers are compared with ``hf_modeling.answers`` (numbers as
numbers; ``None`` never wins).  Ties go to the earliest first occurrence among
the N answers, for every rule here, so a choice never depends on dict order.
The strategies that apply them are ``scaling.strategies``.
"""

from __future__ import annotations

import math
from fractions import Fraction

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


def consistency_vote(answers, readbacks, epsilon):
    """The read-back consistency vote: a majority vote in which answer i votes with weight 1 when it equals
    ``readbacks[i]`` (what the backbone writes after that candidate's latent prefix) and with ``epsilon``
    otherwise; ties -> earliest first occurrence; None if no answer could be extracted.

    Weights are summed exactly (``epsilon`` as a ``Fraction``), so ties are ties whatever the order.  With every
    weight ``epsilon`` (no consistent candidate) it is the majority vote.
    """
    answers, readbacks = list(answers), list(readbacks)
    if len(answers) != len(readbacks):
        raise ValueError(f"{len(answers)} answers but {len(readbacks)} read-backs; give one read-back per answer.")
    low = Fraction(epsilon).limit_denominator(10**9)
    weights = [Fraction(1) if answer_key(a) is not None and answer_key(a) == answer_key(r) else low
               for a, r in zip(answers, readbacks)]
    return _leader(vote_totals(answers, weights))


def tally(answers: list, scores: list | None = None) -> list[tuple[float, int, str]]:
    """Votes per answer as ``(votes, first index, answer)``, leader first (ties: earliest first occurrence).

    Counts, or with ``scores`` RM-weighted votes (``answer_weights``) that add up to the number of answered
    candidates, so a flat RM gives the counts.
    """
    totals = vote_totals(answers, None if scores is None else answer_weights(scores)).values()
    mass = sum(votes for votes, _, _ in totals)
    answered = sum(1 for a in answers if answer_key(a) is not None)
    scale = answered / mass if scores is not None and mass > 0 else 1.0
    return sorted(((votes * scale, first, answer) for votes, first, answer in totals), key=lambda v: (-v[0], v[1]))


__all__ = ["answer_weights", "best_of_n_index", "consistency_vote", "majority_vote", "tally", "vote_totals", "weighted_vote"]
