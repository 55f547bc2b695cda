"""Two methods' accuracy-vs-compute curves compared at equal compute, with a paired bootstrap interval.

Latent rollouts and token chains of thought reach their Ns at different
costs, so one curve is read at the other's compute by interpolating on log
compute (:func:`interp_log`); the difference gets an interval from resampling
the same questions for both methods (:func:`difference_at_equal_compute`).
"""

from __future__ import annotations

import math
from typing import Dict, List, Sequence

import torch

from evidence_lib.bootstrap import bootstrap_indices, percentile_interval


def interp_log(x: float, xs: Sequence[float], ys: Sequence[float]) -> float:
    """``y`` at ``x`` on the piecewise-linear curve through (log xs, ys); NaN outside [min xs, max xs]."""
    pts = sorted(zip(xs, ys))
    if not pts or x < pts[0][0] or x > pts[-1][0]:
        return float("nan")
    for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
        if x0 <= x <= x1:
            if x1 == x0:
                return float(y1)
            w = (math.log(x) - math.log(x0)) / (math.log(x1) - math.log(x0))
            return float(y0 + w * (y1 - y0))
    return float(pts[-1][1])


def difference_at_equal_compute(ref: Dict[int, Dict], other: Dict[int, Dict], resamples: int = 1000,
                                seed: int = 0) -> List[Dict]:
    """At each N of ``ref``: ``other``'s accuracy interpolated (log positions) at ``ref``'s positions, and the
    difference ref - other with a paired bootstrap interval over questions.

    ``ref`` and ``other`` map N to ``positions_per_question``, ``majority_accuracy`` and ``per_question``
    (the per-question accuracies, the same questions in the same order for both).
    """
    out = []
    q = len(next(iter(ref.values()))["per_question"])
    idx = bootstrap_indices(q, resamples, seed)
    xs_o = [other[m]["positions_per_question"] for m in other]
    ys_o = [other[m]["majority_accuracy"] for m in other]
    oth_q = torch.stack([torch.tensor(other[m]["per_question"], dtype=torch.float64) for m in other])  # (Ns, Q)
    oth_b = oth_q[:, idx].mean(-1)  # (Ns, R)
    for n in ref:
        x = ref[n]["positions_per_question"]
        y_o = interp_log(x, xs_o, ys_o)
        if math.isnan(y_o):
            out.append({"n": n, "positions": x, "other_accuracy": None, "difference": None, "ci95": None})
            continue
        ref_b = torch.tensor(ref[n]["per_question"], dtype=torch.float64)[idx].mean(-1)
        diffs = torch.tensor([float(ref_b[r]) - interp_log(x, xs_o, oth_b[:, r].tolist()) for r in range(resamples)])
        out.append({"n": n, "positions": x, "ref_accuracy": ref[n]["majority_accuracy"], "other_accuracy": y_o,
                    "difference": ref[n]["majority_accuracy"] - y_o, "ci95": percentile_interval(diffs)})
    return out
