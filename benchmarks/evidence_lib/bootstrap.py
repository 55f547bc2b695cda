"""Percentile bootstrap over questions, with indices that can be shared to compare methods pairwise.

``lm_eval_latenttts.scaling.metrics.bootstrap_ci`` gives the reports' interval
of one mean; the evidence needs the resampled question indices themselves
(:func:`bootstrap_indices`), so that two methods evaluated on the same
questions are resampled together (see
:func:`~evidence_lib.equal_compute.difference_at_equal_compute`).
"""

from __future__ import annotations

import math
from typing import List, Sequence

import torch


def bootstrap_indices(n: int, resamples: int = 1000, seed: int = 0) -> torch.Tensor:
    """(resamples, n) question indices drawn with replacement; the same seed gives the same draws, so two
    methods evaluated on the same questions can be compared pairwise."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, n, (resamples, n), generator=g)


def percentile_interval(samples: torch.Tensor, level: float = 0.95) -> List[float]:
    """Percentile interval of bootstrap statistics ``samples`` (resamples,)."""
    v = samples.double().sort().values
    r = len(v)
    lo = int(math.floor((1 - level) / 2 * r))
    hi = int(math.ceil((1 + level) / 2 * r)) - 1
    return [float(v[lo]), float(v[min(hi, r - 1)])]


def bootstrap_mean_ci(values: Sequence[float], resamples: int = 1000, seed: int = 0,
                      level: float = 0.95) -> List[float]:
    """95% percentile bootstrap interval of the mean of per-question ``values``."""
    t = torch.as_tensor(list(values), dtype=torch.float64)
    if len(t) == 0:
        return [float("nan"), float("nan")]
    idx = bootstrap_indices(len(t), resamples, seed)
    return percentile_interval(t[idx].mean(-1), level)
