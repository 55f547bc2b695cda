"""Per-question metrics of test-time scaling, and their intervals: one definition for lm-eval and the report.

``question_metrics`` turns one question's typed result (``scaling.result``)
into the rows that the ``latent_*`` tasks report (``acc``, ``single_acc``,
``majority``, ``best_of_n``, ``weighted``, ``greedy``, ``coverage``,
``pass@k``, ``rollouts``, ``latent_forwards``, and ``extra_positions`` for a strategy with work of its own
per candidate); the benchmarks call the same
function on the results the same engine builds, so the reports and ``lm_eval``
cannot disagree.

With adaptive sampling a question draws a number of rollouts that depends on
its answers, and an average over such a stopped sample is biased (the draws
stop when they agree).  So ``single_acc`` and ``pass@k`` are computed on the
first round only (``first_round`` in the record: k rollouts that every
question draws), for k up to the round size; ``coverage`` is over every drawn
rollout.
"""

from __future__ import annotations

from hf_modeling.answers import answers_equal


def pass_ks(n: int) -> list[int]:
    """k = 1, 2, 4, ... <= n: the pass@k rows reported for N = n."""
    ks, k = [], 1
    while k <= n:
        ks.append(k)
        k *= 2
    return ks


def coverage(correct: list) -> float:
    """pass@N of one question: 1.0 if any of its N answers is right."""
    return 1.0 if any(bool(c) for c in correct) else 0.0


def pass_at_k(n, c, k):
    """Unbiased pass@k: ``1 - C(n-c, k) / C(n, k)`` for n samples of which c are right.

    Computed as ``1 - prod_{i=n-c+1..n} (1 - k/i)``, which never forms large
    binomials.  Requires ``0 <= c <= n`` and ``1 <= k <= n``.
    """
    n, c, k = int(n), int(c), int(k)
    if n < 1:
        raise ValueError(f"pass_at_k needs n >= 1 samples, got n={n}.")
    if not 0 <= c <= n:
        raise ValueError(f"pass_at_k needs 0 <= c <= n, got c={c}, n={n}.")
    if not 1 <= k <= n:
        raise ValueError(f"pass_at_k needs 1 <= k <= n, got k={k}, n={n}.")
    if n - c < k:
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


RUN_ROWS = ("rollouts", "latent_forwards", "extra_positions")  # compute per question, reported as is (when set)


def question_metrics(gold, result) -> dict[str, float]:
    """The metric rows of one question from its typed result (``scaling.result.QuestionResult``).

    ``acc`` (the strategy's answer), ``single_acc``, the answer of every strategy with a row of its own
    (``scaling.strategies``: ``majority``; ``best_of_n`` and ``weighted`` with a LatentRM), ``greedy`` (when
    the run reports the greedy decode), ``coverage``, ``pass@k`` (adaptive sampling: on the first round only,
    see the module docstring) and the compute rows ``rollouts``, ``latent_forwards`` and (a strategy with work of
    its own per candidate, e.g. the consistency vote's read-backs) ``extra_positions``.
    """
    from lm_eval_latenttts.scaling.strategies import STRATEGIES

    correct = [answers_equal(a, gold) for a in result.answers]
    first = result.first_round
    sampled = correct[:first] if first else correct  # the rollouts every question drew, whatever its answers
    c, drawn = sum(sampled), len(sampled)
    out = {"acc": float(answers_equal(result.selection.answer, gold)), "single_acc": c / drawn if drawn else 0.0}
    for rule in STRATEGIES.values():
        if rule.row and (result.has_rm or not rule.needs_rm) and (result.has_greedy or not rule.needs_greedy):
            out[rule.row] = float(answers_equal(result.selection.rows.get(rule.row), gold))
    if result.has_greedy:
        out["greedy"] = float(answers_equal(result.greedy, gold))
    out["coverage"] = coverage(correct)
    for k in pass_ks(first or result.n or drawn or 1):
        out[f"pass@{k}"] = pass_at_k(drawn, c, k) if drawn >= k else 0.0
    for key in RUN_ROWS:
        if getattr(result, key) is not None:
            out[key] = float(getattr(result, key))
    return out


__all__ = ["RUN_ROWS", "coverage", "pass_at_k", "pass_ks", "question_metrics"]
