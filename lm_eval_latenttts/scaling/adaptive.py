"""Adaptive sampling: draw a question's rollouts in rounds and stop as soon as its answer is settled.

A question's budget is N rollouts (``num_return_sequences``).  With
``adaptive=True`` they are drawn in rounds of k (``adaptive_round``): round r
is samples ``r*k .. r*k+k-1`` (``generate(sample_offset=r*k)``), and after
each round the question's stopping rule (``adaptive_rule``) decides whether it
goes on.  Because sample j of a question is a function of (seed, question, j)
only, the rollouts a question draws are exactly the first ones of the fixed-N
run, whatever the other questions do or when they stop.

Rounds are level-synchronous (:func:`draw_in_rounds`): round r is drawn for
every question still undecided, in calls of as many questions as fit the row
budget of a call (``rows_per_call() // k``), so early stopping saves whole
calls rather than leaving rows idle.  With ``adaptive=False`` (or beam search,
or sampling off) the same driver draws one round of N: the fixed-N run.

The rules (:func:`stop_reason`):

* ``exact``: stop when the leading answer can no longer be overtaken by the
  rollouts left in the budget (ties included, broken as ``majority_vote``
  breaks them: the earliest first occurrence).  The majority vote of the drawn
  rollouts is then the majority vote of all N (majority@N), with fewer drawn.
* ``confidence``: the Beta stopping criterion of Adaptive-Consistency
  (Aggarwal, Madaan, Yang and Mausam, "Let's Sample Step by Step:
  Adaptive-Consistency for Efficient Reasoning and Coding with LLMs", EMNLP
  2023, section 3): with v1, v2 the votes of the leading and the second answer
  and a uniform prior, stop when P(p1 > p2) = P(X > 1/2), X ~ Beta(v1+1, v2+1),
  reaches ``adaptive_threshold``.  With ``adaptive_votes="rm"`` the votes are
  RM-weighted: each answer gets the drawn rollouts' softmax weight share (the
  weights of the RM-weighted vote, ``aggregation.answer_weights``) times the
  number of answered rollouts, so the votes still add up to the rollouts drawn
  and a flat RM gives the counts.
* ``esc``: early-stopping self-consistency (Li et al., "Escape Sky-high Cost:
  Early-stopping Self-Consistency for Multi-step Reasoning", ICLR 2024): stop
  when all answers of the last round (the window, ``adaptive_round`` >= 2)
  agree.

A question also stops when its budget is spent.  Answers that could not be
extracted (``None``) carry no vote, as in the majority vote.
"""

from __future__ import annotations

import math
from typing import Callable

from hf_modeling.answers import answer_key
from lm_eval_latenttts.scaling.aggregation import tally
from lm_eval_latenttts.scaling.strategies import DrawMode, Schedule

# draw(question indices, sample offset, count) -> per question its QuestionDraw of the call
Draw = Callable[[list[int], int, int], list]


def exact_settled(votes: list[tuple[float, int, str]], left: int) -> bool:
    """True when no answer, seen or not yet seen, can overtake the leader with ``left`` more votes."""
    if not votes:
        return left == 0
    lead, lead_first, _ = votes[0]
    if left > lead:  # an answer not drawn yet could win every remaining vote
        return False
    # an unseen answer reaching a tie loses it (its first occurrence comes later); a seen one wins a tie if earlier
    return all(count + left < lead or (count + left == lead and first > lead_first) for count, first, _ in votes[1:])


def leader_probability(v1: float, v2: float) -> float:
    """Adaptive-Consistency's Beta criterion: P(p1 > p2) for X = p1/(p1+p2) ~ Beta(v1+1, v2+1), i.e. I_{1/2}(v2+1, v1+1)."""
    return regularized_beta(0.5, v2 + 1.0, v1 + 1.0)


def regularized_beta(x: float, a: float, b: float) -> float:
    """The regularized incomplete beta function I_x(a, b) (continued fraction, modified Lentz; a, b > 0)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    if x > (a + 1.0) / (a + b + 2.0):  # the fraction converges fast below this point: use the symmetry
        return 1.0 - regularized_beta(1.0 - x, b, a)
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    tiny, c, d = 1e-300, 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    fraction = d
    for m in range(1, 500):
        for numerator in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                          -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            fraction *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return math.exp(log_front) * fraction / a


def stop_reason(draw, schedule: Schedule, config) -> str | None:
    """Why the question stops drawing after its rollouts so far (``draw``, a ``QuestionDraw``; ``None``: it
    goes on), under the plan's ``schedule`` and the rule of ``config``."""
    n, drawn, mode = schedule.n, len(draw.answers), schedule.mode
    if mode is not DrawMode.ROUNDS:
        return {DrawMode.SEARCH: "beam search: one search per question", DrawMode.SAMPLES: f"fixed: all {n} rollouts",
                DrawMode.ONE: "deterministic: one rollout stands for all"}[mode]
    if drawn >= n:
        return f"budget: all {n} rollouts drawn"
    rule, left = config.adaptive_rule, n - drawn
    if rule == "exact":
        votes = tally(draw.answers)
        if exact_settled(votes, left):
            leader = f"{votes[0][2]!r} with {votes[0][0]:g} of {drawn} votes" if votes else "no answer"
            return f"exact: leader {leader} cannot be overtaken by the {left} rollouts left"
        return None
    if rule == "confidence":
        return _confident(tally(draw.answers, draw.scores if config.adaptive_votes == "rm" else None), drawn,
                          config.adaptive_threshold)
    window = draw.answers[-schedule.round:]
    keys = {answer_key(a) for a in window}
    if len(keys) == 1 and None not in keys:
        return f"esc: the last {len(window)} answers agree after {drawn} rollouts"
    return None


def _confident(votes: list, drawn: int, threshold: float) -> str | None:
    """The confidence rule's reason to stop (None: go on)."""
    if not votes:
        return None
    v1, v2 = votes[0][0], votes[1][0] if len(votes) > 1 else 0.0
    chance = leader_probability(v1, v2)
    if chance >= threshold:
        return (f"confidence: P(leader {votes[0][2]!r} beats the runner-up) = {chance:.4f} >= {threshold:g} after "
                f"{drawn} rollouts ({v1:.3g} vs {v2:.3g} votes)")
    return None


def draw_in_rounds(questions: int, schedule: Schedule, config, draw: Draw,
                   rows_per_call: Callable[[], int]) -> list:
    """Every question's ``QuestionDraw``, drawn in level-synchronous rounds of the plan's ``schedule``; see the
    module docstring.

    ``draw(indices, offset, count)`` draws samples ``offset .. offset+count-1``
    of the questions ``indices`` in one call and returns, per question, its
    ``QuestionDraw`` (an error in a draw is raised, never a question's result).
    ``rows_per_call()`` is the current row budget of a call (it may shrink
    after an out-of-memory error).  Each draw's ``stopped`` says why it stopped.
    """
    n, k = schedule.n, schedule.round
    found: list = [None] * questions
    undecided, offset = list(range(questions)), 0
    while undecided:
        count = min(k, n - offset)
        start = 0
        while start < len(undecided):
            part = undecided[start:start + max(1, rows_per_call() // count)]
            for q, got in zip(part, draw(part, offset, count)):
                if found[q] is None:
                    found[q] = got
                else:
                    found[q].extend(got)
            start += len(part)
        offset += count
        still = []
        for q in undecided:
            found[q].stopped = stop_reason(found[q], schedule, config)
            if found[q].stopped is None:
                still.append(q)
        undecided = still
    return found


__all__ = ["draw_in_rounds", "exact_settled", "leader_probability", "regularized_beta", "stop_reason", "tally"]
