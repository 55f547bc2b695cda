"""The reports' one bootstrap: percentile intervals over questions, with draws that can be shared.

Every interval in the benchmark reports (scaling, adaptive, evidence) comes
from here.  :func:`bootstrap_indices` gives the resampled question indices
themselves, so that two methods evaluated on the same questions are resampled
together (see :func:`~evidence_lib.equal_compute.difference_at_equal_compute`);
:func:`bootstrap_ci` is the interval of one mean on those same draws.  The
draws come from ``random.Random(seed)`` (the scaling report's bootstrap, kept
so its committed intervals stay as they are).
"""

from __future__ import annotations

import functools
import math
import random
from typing import List, Sequence

import torch


@functools.lru_cache(maxsize=32)
def _draws(n: int, resamples: int, seed: int) -> tuple:
    rng = random.Random(seed)
    return tuple(tuple(rng.randrange(n) for _ in range(n)) for _ in range(resamples))


@functools.lru_cache(maxsize=32)
def _indices(n: int, resamples: int, seed: int) -> torch.Tensor:
    return torch.tensor(_draws(n, resamples, seed), dtype=torch.long).view(resamples, n)


def bootstrap_indices(n: int, resamples: int = 1000, seed: int = 0) -> torch.Tensor:
    """(resamples, n) question indices drawn with replacement; the same (n, resamples, seed) gives the same
    draws, so two methods evaluated on the same questions can be compared pairwise.  (A shared tensor: read it,
    do not write into it.)"""
    return _indices(n, resamples, seed)


def percentile_interval(samples: torch.Tensor | Sequence[float], level: float = 0.95) -> List[float]:
    """Percentile interval of bootstrap statistics ``samples`` (resamples,)."""
    v = sorted(float(x) for x in (samples.tolist() if isinstance(samples, torch.Tensor) else samples))
    r = len(v)
    lo = int(math.floor((1 - level) / 2 * r + 1e-9))
    hi = int(math.ceil((1 + level) / 2 * r - 1e-9)) - 1
    return [v[lo], v[min(hi, r - 1)]]


def bootstrap_ci(values: Sequence[float], resamples: int = 1000, seed: int = 0,
                 level: float = 0.95) -> List[float]:
    """95% percentile bootstrap interval of the mean of per-question ``values`` (resampling questions)."""
    values = [float(v) for v in values]
    if not values:
        return [float("nan"), float("nan")]
    means = torch.tensor(values, dtype=torch.float64)[bootstrap_indices(len(values), resamples, seed)].mean(-1)
    return percentile_interval(means, level)
