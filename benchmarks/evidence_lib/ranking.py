"""How well a score ranks a question's right trajectories above its wrong ones: AUROC and vote share.

The LatentRM is useful for best-of-N only if its score separates right from
wrong trajectories *of the same question*, so the AUROC is taken inside each
question (:func:`within_question_auroc`) and set beside the score every
sampler has for free, the vote share (:func:`vote_shares`).  Across questions
(:func:`across_question_auroc`) a score can also carry the question itself
(:func:`score_by_difficulty`, :func:`across_pair_types`, :func:`centred`).
Everything works on whole (questions x N) tensors at once.
"""

from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch

from evidence_lib.bootstrap import bootstrap_ci, bootstrap_indices, percentile_interval

NAN2 = [float("nan"), float("nan")]


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


def per_question_auroc(scores: torch.Tensor, labels: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(auroc (Q,), concordant (Q,), pairs (Q,)) of ``scores`` (Q, N) for ``labels`` (Q, N) inside each question;
    the AUROC is NaN for a question without both classes."""
    s, y = scores.double(), labels.bool()
    diff = s[:, :, None] - s[:, None, :]  # (Q, i, j): i positive, j negative
    win = (diff > 0).double() + 0.5 * (diff == 0).double()
    mask = (y[:, :, None] & ~y[:, None, :]).double()
    conc, pairs = (win * mask).sum((1, 2)), mask.sum((1, 2))
    return torch.where(pairs > 0, conc / pairs.clamp_min(1), torch.full_like(conc, float("nan"))), conc, pairs


def within_question_auroc(scores: torch.Tensor, labels: torch.Tensor, resamples: int = 1000,
                          seed: int = 0) -> Dict[str, object]:
    """AUROC of ``scores`` (Q, N) for ``labels`` (Q, N) inside each question.

    ``mean``: the AUROC of every question that has both a positive and a
    negative trajectory, averaged with equal weight (``ci``: 95% bootstrap,
    :func:`qualifying_mean_ci`); ``pooled``: all within-question positive-negative pairs
    pooled (questions weighted by their number of pairs); ``questions``: how
    many qualify.
    """
    a, conc, pairs = per_question_auroc(scores, labels)
    ok = pairs > 0
    per_q = a[ok].tolist()
    return {
        "mean": sum(per_q) / len(per_q) if per_q else float("nan"),
        "ci": qualifying_mean_ci(a, ok, resamples, seed),
        "pooled": float(conc.sum() / pairs.sum()) if ok.any() else float("nan"),
        "questions": len(per_q),
        "pairs": int(pairs.sum()),
    }


def paired_within_difference(scores_a: torch.Tensor, scores_b: torch.Tensor, labels: torch.Tensor,
                             resamples: int = 1000, seed: int = 0) -> Dict[str, object]:
    """Per question with both classes, AUROC of ``scores_a`` minus AUROC of ``scores_b`` (the same question's
    trajectories and labels): the mean and its 95% bootstrap interval over those questions (paired)."""
    a, _, pairs = per_question_auroc(scores_a, labels)
    b, _, _ = per_question_auroc(scores_b, labels)
    ok = pairs > 0
    diffs = (a - b)[ok].tolist()
    return {"mean": sum(diffs) / len(diffs) if diffs else float("nan"),
            "ci": qualifying_mean_ci(a - b, ok, resamples, seed), "questions": len(diffs)}


def qualifying_mean_ci(values: torch.Tensor, ok: torch.Tensor, resamples: int = 1000, seed: int = 0) -> List[float]:
    """95% bootstrap interval of the mean of ``values`` over the questions where ``ok``: all questions are
    resampled (which ones qualify varies with the resample, as it would with another draw of questions), and
    each resample's mean is over its qualifying questions."""
    from evidence_lib.readout import ratio_ci

    if not bool(ok.any()):
        return NAN2
    v = torch.where(ok, values.double(), torch.zeros_like(values, dtype=torch.float64))
    return ratio_ci(list(zip(v.tolist(), ok.double().tolist())), resamples, seed)


def vote_shares(answers: Sequence) -> List[float]:
    """Per trajectory, the fraction of the question's N trajectories whose answer equals its answer
    (itself included; an unparsable answer ``None`` shares with nothing but itself)."""
    from evidence_lib.selection import vote_shares as shares
    from evidence_lib.store import answer_codes

    return shares(answer_codes([list(answers)]))[0].tolist()


def concordance(scores: torch.Tensor, labels: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """C (Q, Q): concordance (ties 1/2) of question a's positives against question b's negatives, and the
    positives and negatives per question.  On the scores' distinct values, no positives x negatives matrix:
    per question the count of positives at or above each value, read at each negative."""
    s, y = scores.double(), labels.bool()
    q = s.shape[0]
    values, inv = torch.unique(s.flatten(), return_inverse=True)  # sorted distinct values
    inv = inv.view(s.shape)
    qid = torch.arange(q)[:, None].expand_as(s)
    hist = torch.zeros(q, len(values), dtype=torch.float64)
    hist.index_put_((qid[y], inv[y]), torch.ones(int(y.sum()), dtype=torch.float64), accumulate=True)
    at_or_above = hist.flip(1).cumsum(1).flip(1)  # positives of question a with a value >= each value
    win = (at_or_above - 0.5 * hist)[:, inv[~y]]  # (Q, negatives): strictly above + half of the ties
    conc = torch.zeros(q, q, dtype=torch.float64).index_add_(1, qid[~y], win)
    return conc, y.sum(-1).double(), (~y).sum(-1).double()


def across_question_auroc(scores: torch.Tensor, labels: torch.Tensor, resamples: int = 1000,
                          seed: int = 0) -> Dict[str, object]:
    """AUROC of ``scores`` (Q, N) for ``labels`` (Q, N) over all trajectories of all questions pooled (a
    positive of one question against a negative of any question), with a 95% bootstrap interval resampling
    questions.

    Beside :func:`within_question_auroc`: a score can rank a question's own trajectories well and still put
    an easy question's wrong trajectories above a hard question's right ones (or the reverse).
    """
    y = labels.bool()
    if not y.any() or y.all():
        return {"auroc": float("nan"), "ci": NAN2}
    conc, n_pos, n_neg = concordance(scores, y)
    q = conc.shape[0]
    point = float(conc.sum() / (n_pos.sum() * n_neg.sum()))
    idx = bootstrap_indices(q, resamples, seed)
    w = torch.zeros(resamples, q, dtype=torch.float64).scatter_add_(1, idx, torch.ones(idx.shape, dtype=torch.float64))
    pairs = (w @ n_pos) * (w @ n_neg)
    stat = ((w @ conc) * w).sum(-1)
    ok = pairs > 0
    return {"auroc": point, "ci": percentile_interval(stat[ok] / pairs[ok])}


def centred(scores: torch.Tensor) -> torch.Tensor:
    """``scores`` (Q, N) minus each question's mean score: what is left of a score once the question is fixed."""
    s = scores.double()
    return s - s.mean(-1, keepdim=True)


def _ranks(x: torch.Tensor) -> torch.Tensor:
    """Ranks 1..n of ``x`` (1-D), ties sharing their average rank."""
    return _weighted_ranks(x, torch.ones(1, len(x), dtype=torch.float64))[0]


def _weighted_ranks(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Ranks of ``x`` (n,) in each bootstrap resample given as multiplicities ``w`` (R, n): the average rank of
    each value among the resample's copies (ties share it)."""
    v = x.double()
    order = torch.argsort(v, stable=True)
    sv = v[order]
    new = torch.ones(len(v), dtype=torch.bool)
    new[1:] = sv[1:] != sv[:-1]
    group = torch.cumsum(new.long(), 0) - 1  # tie group of each sorted value
    g = int(group[-1]) + 1
    wg = torch.zeros(w.shape[0], g, dtype=torch.float64).index_add_(1, group, w[:, order].double())
    before = torch.cumsum(wg, 1) - wg
    rank_g = before + (wg + 1) / 2
    ranks = torch.empty_like(w, dtype=torch.float64)
    ranks[:, order] = rank_g[:, group]
    return ranks


def _weighted_pearson(a: torch.Tensor, b: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    tot = w.sum(-1, keepdim=True)
    ma, mb = (w * a).sum(-1, keepdim=True) / tot, (w * b).sum(-1, keepdim=True) / tot
    cov = (w * (a - ma) * (b - mb)).sum(-1)
    den = ((w * (a - ma) ** 2).sum(-1) * (w * (b - mb) ** 2).sum(-1)).sqrt()
    return torch.where(den > 0, cov / den.clamp_min(1e-300), torch.full_like(cov, float("nan")))


def spearman(x: torch.Tensor, y: torch.Tensor) -> float:
    """Spearman rank correlation of two 1-D series (average ranks for ties)."""
    rx, ry = _ranks(x), _ranks(y)
    return float(_weighted_pearson(rx[None], ry[None], torch.ones(1, len(rx), dtype=torch.float64))[0])


def score_by_difficulty(scores: torch.Tensor, correct: torch.Tensor, resamples: int = 1000,
                        seed: int = 0) -> Dict[str, object]:
    """Does a trajectory score track the question rather than the trajectory?  Per question, its mean score
    and its accuracy (share of its N trajectories right).  ``spearman`` between the two over questions;
    ``hard`` / ``easy``: the mean of the per-question mean scores of the questions with at most / more than
    half of their trajectories right, and ``easy_minus_hard``; 95% bootstrap intervals over questions."""
    m = scores.double().mean(-1)
    acc = correct.double().mean(-1)
    hard = acc <= 0.5
    q = len(m)
    idx = bootstrap_indices(q, resamples, seed)
    w = torch.zeros(resamples, q, dtype=torch.float64).scatter_add_(1, idx, torch.ones(idx.shape, dtype=torch.float64))
    rho = _weighted_pearson(_weighted_ranks(m, w), _weighted_ranks(acc, w), w)
    rho = rho[~torch.isnan(rho)]  # a resample of constant accuracy has no rank correlation
    wh, we = w * hard.double(), w * (~hard).double()
    ok = (wh.sum(-1) > 0) & (we.sum(-1) > 0)
    diffs = ((we @ m) / we.sum(-1).clamp_min(1) - (wh @ m) / wh.sum(-1).clamp_min(1))[ok]
    both = bool(hard.any() and (~hard).any())
    return {"spearman": spearman(m, acc), "spearman_ci": percentile_interval(rho) if len(rho) else NAN2,
            "hard_questions": int(hard.sum()), "easy_questions": int((~hard).sum()),
            "hard_mean_score": float(m[hard].mean()) if hard.any() else float("nan"),
            "easy_mean_score": float(m[~hard].mean()) if (~hard).any() else float("nan"),
            "easy_minus_hard": float(m[~hard].mean() - m[hard].mean()) if both else float("nan"),
            "easy_minus_hard_ci": percentile_interval(diffs) if len(diffs) else NAN2}


def across_pair_types(scores: torch.Tensor, labels: torch.Tensor) -> Dict[str, Dict[str, float]]:
    """The pooled (across-question) AUROC's pairs by type: a right trajectory of question a against a wrong one
    of question b, with a = b (``within``) or a != b, and then by whether a and b are hard or easy (at most /
    more than half of their trajectories right): the share of all pairs of each type and its AUROC."""
    y = labels.bool()
    conc, n_pos, n_neg = concordance(scores, y)
    q = conc.shape[0]
    pairs = n_pos[:, None] * n_neg[None, :]
    hard = y.double().mean(-1) <= 0.5
    total = float(pairs.sum())
    eye = torch.eye(q, dtype=torch.bool)
    types = {"within": eye}
    for pa, pname in ((False, "easy"), (True, "hard")):
        for na, nname in ((False, "easy"), (True, "hard")):
            types[f"right of {pname} vs wrong of {nname}"] = (~eye) & (hard[:, None] == pa) & (hard[None, :] == na)
    out = {}
    for name, mask in types.items():
        p = float(pairs[mask].sum())
        out[name] = {"share_of_pairs": p / total if total else float("nan"),
                     "auroc": float(conc[mask].sum()) / p if p else float("nan")}
    return out
