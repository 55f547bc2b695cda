"""Choosing one answer among a question's N: majority vote, best-of-N, RM-weighted vote.

Pure Python.  Answers are compared with ``hf_modeling.answers`` (numbers as
numbers; ``None`` never wins).  Ties go to the earliest first occurrence among
the N answers, for every rule here, so a choice never depends on dict order.
:func:`select` is the one place that applies the rule a run asked for; the
lm-eval model and the scaling report both call it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
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


@dataclass(frozen=True)
class Aggregation:
    """One way of choosing a question's answer: an entry of ``AGGREGATIONS``.

    ``choose(answers, scores, chosen, rules)`` returns ``(answer, index of a candidate giving it)``;
    ``rules`` holds every rule's answer (``majority``, ``best_of_n``, ``weighted``).  ``search``: the
    candidates come from one RM-guided search per question (beam search), not from N samples, so there
    are no rounds of samples to draw or split.  Which names need a LatentRM is the config's fact
    (``hf_modeling.generation_config.RM_AGGREGATES``).
    """

    name: str
    choose: Callable[[list, list | None, int | None, dict], tuple]
    search: bool = False


def _first_giving(answers: list, answer) -> int | None:
    key = answer_key(answer)
    return next((i for i, a in enumerate(answers) if key is not None and answer_key(a) == key), None)


def _by_rule(rule: str):
    def choose(answers, scores, chosen, rules):
        return rules[rule], _first_giving(answers, rules[rule])
    return choose


def _best_of_n(answers, scores, chosen, rules):
    return rules["best_of_n"], (best_of_n_index(scores) if answers else None)


def _searched(answers, scores, chosen, rules):
    return (answers[chosen] if answers and chosen is not None else None), chosen


# the aggregations a run can ask for (``aggregate``): adding one is an entry here and its name in
# hf_modeling.generation_config.AGGREGATES (and RM_AGGREGATES when it needs a LatentRM)
AGGREGATIONS = {
    "majority": Aggregation("majority", _by_rule("majority")),
    "best_of_n": Aggregation("best_of_n", _best_of_n),
    "weighted": Aggregation("weighted", _by_rule("weighted")),
    "beam": Aggregation("beam", _searched, search=True),
}


def aggregation(how: str | Aggregation) -> Aggregation:
    """The table entry of ``how`` (a name or an entry)."""
    if isinstance(how, Aggregation):
        return how
    if how not in AGGREGATIONS:
        raise ValueError(f"aggregate must be one of {', '.join(map(repr, AGGREGATIONS))}; got {how!r}.")
    return AGGREGATIONS[how]


def select(answers: list, scores: list | None, how: str | Aggregation, chosen: int | None = None) -> Selection:
    """Apply the aggregation ``how`` (a name or an ``AGGREGATIONS`` entry) to N candidates.

    ``scores`` are the RM trajectory scores (None without an RM); for ``beam``
    the search already chose the candidate ``chosen``.
    """
    rule = aggregation(how)
    if scores is not None:
        answers, scores = _check_scores(answers, scores)
    rules = {"majority": majority_vote(answers), "best_of_n": None, "weighted": None}
    if scores is not None and answers:
        rules["best_of_n"] = answers[best_of_n_index(scores)]
        rules["weighted"] = weighted_vote(answers, scores)
    answer, chosen = rule.choose(answers, scores, chosen, rules)
    return Selection(answer=answer, chosen=chosen, **rules)


__all__ = [
    "AGGREGATIONS",
    "Aggregation",
    "Selection",
    "aggregation",
    "answer_weights",
    "best_of_n_index",
    "majority_vote",
    "select",
    "vote_totals",
    "weighted_vote",
]
