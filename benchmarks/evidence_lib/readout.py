"""What a latent says about the arithmetic task: true intermediates, logit lens, read-out and follow metrics.

A sampled latent is "semantically distinct" only if it names another
intermediate than the greedy one *and* the answer carries that value
forward; these functions measure both on a probe's read-out (values or
:data:`~evidence_lib.probe.NO_NUMBER`), Q questions x N
trajectories at a time.
"""

from __future__ import annotations

import re
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from lm_eval_latenttts.data.arith import MOD, apply_op
from evidence_lib.bootstrap import bootstrap_indices, percentile_interval
from evidence_lib.probe import NO_NUMBER
from evidence_lib.store import answer_code, answer_codes, is_number

_STEP_RE = re.compile(r"<<(\d+)([+\-*])(\d+)=(\d+)>>")


# --------------------------------------------------------------------------- the task's intermediates
def parse_steps(example: Dict) -> List[tuple]:
    """``[(left, op, operand, result), ...]`` of the example's ``steps`` (``"<<47+8=55>>"``)."""
    out = []
    for step in example["steps"]:
        m = _STEP_RE.fullmatch(step)
        if not m:
            raise ValueError(f"not an arithmetic step: {step!r}")
        out.append((int(m.group(1)), m.group(2), int(m.group(3)), int(m.group(4))))
    return out


def intermediates(example: Dict) -> List[int]:
    """The true value after each reasoning step: ``[x1, x2]`` (x2 is the answer)."""
    return [r for _, _, _, r in parse_steps(example)]


def answer_from_first(example: Dict, x1: int) -> Optional[int]:
    """The answer the question's second operation gives from first intermediate ``x1`` (None for no number)."""
    if x1 is None or x1 < 0:
        return None
    _, op, operand, _ = parse_steps(example)[1]
    return apply_op(op, int(x1), operand)


def implied_answers(examples: Sequence[Dict]) -> np.ndarray:
    """(Q, 100): the answer each question's second operation gives from each first intermediate 0..99
    (:func:`answer_from_first` for every value at once)."""
    d = np.arange(MOD, dtype=np.int64)
    rows = []
    for ex in examples:
        _, op, c, _ = parse_steps(ex)[1]
        rows.append({"+": d + c, "-": d - c, "*": d * c}[op] % MOD)
    return np.stack(rows) if rows else np.zeros((0, MOD), dtype=np.int64)


# --------------------------------------------------------------------------- logit lens
def logit_lens_digit(hidden: torch.Tensor, lm_head_weight: torch.Tensor, digit_ids: Sequence[int]):
    """The LM head applied to fed-back vectors ``hidden`` (..., d).

    Returns ``(top_is_digit, digit)``: whether the top token over the whole
    vocabulary is a digit token, and the best digit among the digit tokens
    (``digit_ids[k]`` is the token of digit k).  One token can name at most one
    digit, so the lens cannot name a two-digit intermediate by itself.
    """
    logits = hidden.float() @ lm_head_weight.float().T
    ids = torch.as_tensor(list(digit_ids), dtype=torch.long, device=logits.device)
    top_is_digit = torch.isin(logits.argmax(-1), ids)
    digit = logits.index_select(-1, ids).argmax(-1)
    return top_is_digit, digit


# --------------------------------------------------------------------------- read-out metrics
def readout_metrics(decoded: torch.Tensor, true: torch.Tensor, greedy_decoded: torch.Tensor,
                    final_correct: torch.Tensor) -> Dict[str, float]:
    """Metrics of one latent step's read-out over Q questions x N trajectories.

    decoded (Q, N) values or NO_NUMBER; true (Q,) the true intermediates;
    greedy_decoded (Q,) the greedy trajectory's read-out; final_correct (Q, N) bool.
    """
    decoded, true, greedy_decoded = decoded.long(), true.long(), greedy_decoded.long()
    final_correct = final_correct.bool()
    right = decoded == true[:, None]
    structured = decoded != NO_NUMBER
    differs = decoded != greedy_decoded[:, None]

    def cond(mask):
        n = int(mask.sum())
        return (float(final_correct[mask].float().mean()) if n else float("nan")), n

    p_right, n_right = cond(right)
    p_wrong, n_wrong = cond(~right)
    p_wrong_num, n_wrong_num = cond(~right & structured)
    return {
        "decoded_accuracy": float(right.float().mean()),
        "differs_from_greedy": float(differs.float().mean()),
        "p_final_right_given_right": p_right,
        "p_final_right_given_wrong": p_wrong,
        "p_final_right_given_wrong_number": p_wrong_num,
        "n_right": n_right,
        "n_wrong": n_wrong,
        "n_wrong_number": n_wrong_num,
        "unstructured": float((~structured).float().mean()),
        "final_accuracy": float(final_correct.float().mean()),
    }


def follow_metrics(examples: Sequence[Dict], decoded_x1: torch.Tensor, greedy_x1: torch.Tensor,
                   answers: Sequence[Sequence], greedy_answers: Sequence, ones_digit: bool = False,
                   resamples: int = 1000, seed: int = 0) -> Dict[str, object]:
    """Does the final answer carry the decoded first intermediate forward?

    Over trajectories whose decoded x1 is a number that differs from the
    greedy trajectory's and that can tell following from keeping: ``follows``
    = fraction whose final answer equals the question's second operation
    applied to the decoded x1; ``keeps`` = fraction whose final answer equals
    the greedy trajectory's answer; ``other`` = neither.  The three are
    exclusive: a change is skipped (``ambiguous``) when the answer it implies
    equals the greedy answer (the second operation can map two values to one,
    e.g. ``* 5``, or the greedy answer is itself not the one its read-out
    implies), since an answer there would both follow and keep.  A distinct,
    meaningful latent path shows ``follows`` above ``chance`` (1/100, or 1/10
    for ones digits: the answer a random read-out would imply) and above
    ``keeps``; ``follows_ci`` is a 95% bootstrap interval over questions (the
    share of the resampled questions' changed trajectories), ``keeps_ci`` the
    same for ``keeps`` and ``follows_minus_keeps_ci`` the paired interval of the
    difference (the same resampled questions for both shares).

    ``answers`` (per question, N) and ``greedy_answers`` (per question) are
    answers or their codes (``evidence_lib.store``).  ``ones_digit=True``: the
    read-out is x1's ones digit (0..9) and answers compare by ones digit: the ones digit of ``x1 + c``, ``x1 - c`` and
    ``x1 * c`` (mod 100) is a function of the ones digit of x1 alone.
    """
    base = 10 if ones_digit else MOD
    codes = answers if isinstance(answers, np.ndarray) else answer_codes(answers)
    gcodes = np.asarray(greedy_answers if isinstance(greedy_answers, np.ndarray)
                        else [answer_code(a) for a in greedy_answers]).reshape(-1)
    dec = np.asarray(decoded_x1.cpu() if isinstance(decoded_x1, torch.Tensor) else decoded_x1).astype(np.int64)
    g = np.asarray(greedy_x1.cpu() if isinstance(greedy_x1, torch.Tensor) else greedy_x1).astype(np.int64).reshape(-1)
    # the answer each read-out value implies: the question's second operation applied to it
    table = implied_answers(examples) % base
    rows = np.arange(len(examples))[:, None]
    implied = table[rows, np.clip(dec, 0, MOD - 1)]
    gnum, anum = is_number(gcodes), is_number(codes)
    changed = (dec != NO_NUMBER) & (dec != g[:, None])
    ambiguous = changed & gnum[:, None] & (implied == (gcodes % base)[:, None])
    counted = changed & ~ambiguous
    follows = counted & anum & (codes % base == implied)
    keeps = counted & anum & gnum[:, None] & (codes % base == (gcodes % base)[:, None])
    per_q = list(zip(follows.sum(1).tolist(), keeps.sum(1).tolist(), counted.sum(1).tolist()))
    total = int(counted.sum())
    share = (lambda k: sum(x[k] for x in per_q) / total) if total else (lambda k: float("nan"))
    return {"changed_trajectories": total, "ambiguous": int(ambiguous.sum()), "follows": share(0), "keeps": share(1),
            "other": 1 - share(0) - share(1) if total else float("nan"), "chance": 1 / base,
            "follows_ci": ratio_ci([(f, c) for f, _, c in per_q], resamples, seed),
            "keeps_ci": ratio_ci([(k, c) for _, k, c in per_q], resamples, seed),
            "follows_minus_keeps": share(0) - share(1) if total else float("nan"),
            "follows_minus_keeps_ci": ratio_ci([(f - k, c) for f, k, c in per_q], resamples, seed),
            "per_question": per_q}


def ratio_ci(pairs: Sequence[tuple], resamples: int = 1000, seed: int = 0) -> List[float]:
    """95% bootstrap interval over questions of ``sum(hits) / sum(counts)`` for per-question (hits, counts)
    (``hits`` may be a paired difference, e.g. follows - keeps, and negative)."""
    if not sum(c for _, c in pairs):
        return [float("nan"), float("nan")]
    t = torch.tensor(pairs, dtype=torch.float64)
    idx = bootstrap_indices(len(pairs), resamples, seed)
    hits, counts = t[:, 0][idx].sum(-1), t[:, 1][idx].sum(-1)
    ok = counts != 0  # a resample without a changed trajectory has no share
    if not bool(ok.any()):
        return [float("nan"), float("nan")]
    return percentile_interval(hits[ok] / counts[ok])
