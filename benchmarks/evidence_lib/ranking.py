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
from evidence_lib.bootstrap import bootstrap_ci


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
