"""Accuracy of selectors with paired 95% bootstrap intervals over questions (the project's one bootstrap).

Per question, a selector's accuracy is averaged over the seeds; two selectors are compared on the same
questions and resampled together (paired).  Headroom recovered = (selector - greedy) / (coverage - greedy),
its interval from the same resamples (a ratio of means per resample).
"""

from __future__ import annotations

import numpy as np
import torch

from evidence_lib.bootstrap import bootstrap_ci, bootstrap_indices, percentile_interval


def accuracy_per_question(choice: np.ndarray, gold: np.ndarray) -> np.ndarray:
    """(S, Q) choices -> (Q,) accuracy averaged over seeds."""
    return (np.asarray(choice) == np.asarray(gold)[None, :]).mean(0)


def mean_ci(values: np.ndarray) -> dict:
    values = np.asarray(values, dtype=np.float64)
    return {"mean": float(values.mean()), "ci95": bootstrap_ci(values.tolist())}


def paired(a: np.ndarray, b: np.ndarray) -> dict:
    """a - b per question: mean and 95% paired bootstrap interval."""
    return mean_ci(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))


def headroom_recovered(sel: np.ndarray, greedy: np.ndarray, coverage: np.ndarray, resamples: int = 1000) -> dict:
    """(mean(sel) - mean(greedy)) / (mean(coverage) - mean(greedy)) with a paired bootstrap interval."""
    sel, greedy, coverage = (np.asarray(x, dtype=np.float64) for x in (sel, greedy, coverage))
    idx = bootstrap_indices(len(sel), resamples).numpy()
    num = sel[idx].mean(-1) - greedy[idx].mean(-1)
    den = coverage[idx].mean(-1) - greedy[idx].mean(-1)
    ok = den > 0
    gap = coverage.mean() - greedy.mean()
    point = (sel.mean() - greedy.mean()) / gap if gap > 0 else float("nan")
    ci = percentile_interval(torch.tensor(num[ok] / den[ok])) if ok.any() else [float("nan")] * 2
    return {"mean": float(point), "ci95": ci}


def coverage_per_question(correct: np.ndarray) -> np.ndarray:
    """(S, Q, n) correctness -> (Q,) pass@n averaged over seeds."""
    return np.asarray(correct).any(-1).mean(0)


def per_question_auroc(scores: np.ndarray, correct: np.ndarray) -> np.ndarray:
    """(Q,) within-question AUROC averaged over the seeds where the question has both classes (NaN: never)."""
    s, q, n = scores.shape
    per_q = np.full((s, q), np.nan)
    for seed in range(s):
        for i in range(q):
            y = correct[seed, i].astype(bool)
            if y.all() or not y.any():
                continue
            d = scores[seed, i][y][:, None] - scores[seed, i][~y][None, :]
            per_q[seed, i] = float(((d > 0) + 0.5 * (d == 0)).mean())
    out = np.full(q, np.nan)
    has = ~np.isnan(per_q).all(0)
    out[has] = np.nanmean(per_q[:, has], 0)
    return out


def paired_auroc(a: np.ndarray, b: np.ndarray, correct: np.ndarray) -> dict:
    """Within-question AUROC of scores ``a`` minus that of ``b`` on the same trajectories, paired over questions."""
    pa, pb = per_question_auroc(a, correct), per_question_auroc(b, correct)
    ok = ~np.isnan(pa)
    return paired(pa[ok], pb[ok])


def within_auroc(scores: np.ndarray, correct: np.ndarray) -> dict:
    """Within-question AUROC of trajectory ``scores`` (S, Q, N) for ``correct``: per question, the AUROC
    averaged over seeds that have both classes; then the mean over questions with its 95% interval."""
    values = per_question_auroc(scores, correct)
    values = values[~np.isnan(values)]
    out = mean_ci(values) if len(values) else {"mean": float("nan"), "ci95": [float("nan")] * 2}
    out["questions"] = int(len(values))
    return out


def fmt(entry: dict, scale: float = 100.0, digits: int = 1) -> str:
    lo, hi = entry["ci95"]
    return f"{scale * entry['mean']:.{digits}f} [{scale * lo:.{digits}f}, {scale * hi:.{digits}f}]"


def load_npz(path) -> dict:
    """A split's committed per-question arrays (see ``benchmarks/selection.py export``)."""
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def rm_names(data: dict) -> list:
    return sorted(k[len("scores__"):] for k in data if k.startswith("scores__"))


def trajectory_scores(data: dict, name: str, n: int | None = None) -> np.ndarray:
    """(S, Q, n) sum of the RM ``name``'s step scores (SPEC: a trajectory's score)."""
    s = data[f"scores__{name}"].astype(np.float64).sum(-1)
    return s if n is None else s[..., :n]
