"""Per-question metrics of test-time scaling, and their intervals: one definition for lm-eval and the report.

``question_metrics`` turns one question's N candidate answers and selection
into the rows that the ``latent_*`` tasks report (``acc``, ``single_acc``,
``majority``, ``best_of_n``, ``weighted``, ``coverage``, ``pass@k``);
``benchmarks/scaling.py`` calls the same function, so the report and
``lm_eval`` cannot disagree.
"""

from __future__ import annotations

import random

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


def question_metrics(gold, answers: list, selection, has_rm: bool, n: int | None = None) -> dict[str, float]:
    """The metric rows of one question from its candidate answers and ``Selection`` (or payload dict)."""
    get = selection.get if isinstance(selection, dict) else (lambda key: getattr(selection, key))
    correct = [answers_equal(a, gold) for a in answers]
    c, drawn = sum(correct), len(answers)
    out = {
        "acc": float(answers_equal(get("answer"), gold)),
        "single_acc": c / drawn if drawn else 0.0,
        "majority": float(answers_equal(get("majority"), gold)),
    }
    if has_rm:
        out["best_of_n"] = float(answers_equal(get("best_of_n"), gold))
        out["weighted"] = float(answers_equal(get("weighted"), gold))
    out["coverage"] = coverage(correct)
    for k in pass_ks(n or drawn or 1):
        out[f"pass@{k}"] = pass_at_k(drawn, c, k) if drawn >= k else 0.0
    return out


def bootstrap_ci(values: list[float], resamples: int = 1000, seed: int = 0) -> list[float]:
    """95% percentile interval of the mean of per-question ``values`` (resampling questions)."""
    if not values:
        return [float("nan"), float("nan")]
    rng = random.Random(seed)
    size = len(values)
    means = sorted(sum(values[rng.randrange(size)] for _ in range(size)) / size for _ in range(resamples))
    return [means[int(0.025 * resamples)], means[int(0.975 * resamples) - 1]]


__all__ = ["bootstrap_ci", "coverage", "pass_at_k", "pass_ks", "question_metrics"]
