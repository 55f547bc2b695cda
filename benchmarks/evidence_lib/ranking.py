"""How well a score ranks a question's right trajectories above its wrong ones: AUROC and vote share.

The LatentRM is useful for best-of-N only if its score separates right from
wrong trajectories *of the same question*, so the AUROC is taken inside each
question (:func:`within_question_auroc`) and set beside the score every
sampler has for free, the vote share (:func:`vote_shares`).
"""

from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import torch

from hf_modeling.answers import answer_key
from lm_eval_latenttts.scaling.aggregation import vote_totals
from evidence_lib.bootstrap import bootstrap_ci, bootstrap_indices, percentile_interval


def pair_counts(scores: Sequence[float], labels: Sequence[bool]) -> Tuple[float, int]:
    """(concordant + ties/2, number of positive-negative pairs)."""
    s = torch.as_tensor(list(scores), dtype=torch.float64)
    y = torch.as_tensor(list(labels), dtype=torch.bool)
    pos, neg = s[y], s[~y]
    diff = pos[:, None] - neg[None, :]
    return float(((diff > 0).double() + 0.5 * (diff == 0).double()).sum()), len(pos) * len(neg)


def auroc(scores: Sequence[float], labels: Sequence[bool]) -> float:
    """P(score of a random positive > score of a random negative), ties counting 1/2; NaN without both classes."""
    concordant, pairs = pair_counts(scores, labels)
    return concordant / pairs if pairs else float("nan")


def within_question_auroc(scores: torch.Tensor, labels: torch.Tensor, resamples: int = 1000,
                          seed: int = 0) -> Dict[str, object]:
    """AUROC of ``scores`` (Q, N) for ``labels`` (Q, N) inside each question.

    ``mean``: the AUROC of every question that has both a positive and a
    negative trajectory, averaged with equal weight (``ci``: 95% bootstrap over
    those questions); ``pooled``: all within-question positive-negative pairs
    pooled (questions weighted by their number of pairs); ``questions``: how
    many qualify.
    """
    per_q, conc, pairs = [], 0.0, 0
    for s, y in zip(scores.tolist(), labels.bool().tolist()):
        if any(y) and not all(y):
            c, p = pair_counts(s, y)
            per_q.append(c / p)
            conc, pairs = conc + c, pairs + p
    return {
        "mean": sum(per_q) / len(per_q) if per_q else float("nan"),
        "ci": bootstrap_ci(per_q, resamples, seed) if per_q else [float("nan")] * 2,
        "pooled": conc / pairs if pairs else float("nan"),
        "questions": len(per_q),
        "pairs": pairs,
    }


def vote_shares(answers: Sequence) -> List[float]:
    """Per trajectory, the fraction of the question's N trajectories whose answer equals its answer
    (itself included; an unparsable answer ``None`` shares with nothing but itself)."""
    totals, n = vote_totals(answers), len(answers)
    return [totals[k][0] / n if (k := answer_key(a)) is not None else 1 / n for a in answers]


def across_question_auroc(scores: torch.Tensor, labels: torch.Tensor, resamples: int = 1000,
                          seed: int = 0) -> Dict[str, object]:
    """AUROC of ``scores`` (Q, N) for ``labels`` (Q, N) over all trajectories of all questions pooled (a
    positive of one question against a negative of any question), with a 95% bootstrap interval resampling
    questions.

    Beside :func:`within_question_auroc`: a score can rank a question's own trajectories well and still put
    an easy question's wrong trajectories above a hard question's right ones (or the reverse).
    """
    s, y = scores.double(), labels.bool()
    q = s.shape[0]
    qid = torch.arange(q)[:, None].expand_as(s)
    pos_s, neg_s = s[y], s[~y]
    if not len(pos_s) or not len(neg_s):
        return {"auroc": float("nan"), "ci": [float("nan")] * 2}
    diff = pos_s[:, None] - neg_s[None, :]
    win = (diff > 0).double() + 0.5 * (diff == 0).double()  # (positives, negatives)
    # concordance between question a's positives and question b's negatives: C[a, b]
    by_pos = torch.zeros(q, len(neg_s), dtype=torch.float64).index_add_(0, qid[y], win)
    conc = torch.zeros(q, q, dtype=torch.float64).index_add_(1, qid[~y], by_pos)
    n_pos, n_neg = y.sum(-1).double(), (~y).sum(-1).double()
    point = float(conc.sum() / (n_pos.sum() * n_neg.sum()))
    idx = bootstrap_indices(q, resamples, seed)
    w = torch.zeros(resamples, q, dtype=torch.float64).scatter_add_(1, idx, torch.ones(idx.shape, dtype=torch.float64))
    pairs = (w @ n_pos) * (w @ n_neg)
    stat = ((w @ conc) * w).sum(-1)
    ok = pairs > 0
    return {"auroc": point, "ci": percentile_interval(stat[ok] / pairs[ok])}
