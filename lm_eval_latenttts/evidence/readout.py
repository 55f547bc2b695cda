"""Pure pieces of the referee evidence (``benchmarks/evidence.py``): read-out, compute, AUROC, bootstrap.

Everything here is a small function of tensors or lists, so it can be tested
on hand-made inputs without a trained model:

* **What the latents say** -- the true intermediates of an arithmetic question
  (:func:`intermediates`), what the answer would be from another first
  intermediate (:func:`answer_from_first`), the logit lens on a latent
  (:func:`logit_lens_digit`) and a 100-way probe (:class:`LatentProbe`) that
  reads a latent as a value 0..99, or as "no number" (``-1``) when its top
  probability is below a threshold chosen on held-out greedy latents
  (:func:`threshold_from_heldout`);
* **compute** -- forward token positions (and approximate FLOPs) of a latent
  rollout and of a token chain of thought (:func:`latent_positions`,
  :func:`cot_positions`, :func:`forward_flops`);
* **statistics** -- AUROC with ties (:func:`auroc`), its within-question mean
  and pooled-pair versions (:func:`within_question_auroc`), vote share
  (:func:`vote_shares`) and percentile bootstrap intervals over questions
  (:func:`bootstrap_ci`, :func:`bootstrap_mean_ci`).
"""

from __future__ import annotations

import math
import re
from typing import Dict, List, Optional, Sequence

import torch

NO_NUMBER = -1  # what a read-out returns for a latent that names no number
MOD = 100

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


def apply_op(op: str, x: int, y: int) -> int:
    if op == "+":
        return (x + y) % MOD
    if op == "-":
        return (x - y) % MOD
    if op == "*":
        return (x * y) % MOD
    raise ValueError(op)


def answer_from_first(example: Dict, x1: int) -> Optional[int]:
    """The answer the question's second operation gives from first intermediate ``x1`` (None for no number)."""
    if x1 is None or x1 < 0:
        return None
    _, op, operand, _ = parse_steps(example)[1]
    return apply_op(op, int(x1), operand)


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


# --------------------------------------------------------------------------- probe
class LatentProbe(torch.nn.Module):
    """A 100-way read-out of one latent step: standardise, then linear (``hidden=0``) or one-hidden-layer MLP.

    ``decode(z, threshold)`` gives the argmax value, or :data:`NO_NUMBER`
    where the top probability is below ``threshold``.
    """

    def __init__(self, dim: int, classes: int = MOD, hidden: int = 0):
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))
        if hidden:
            self.net = torch.nn.Sequential(torch.nn.Linear(dim, hidden), torch.nn.GELU(), torch.nn.Linear(hidden, classes))
        else:
            self.net = torch.nn.Linear(dim, classes)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net((z.float() - self.mean) / self.std)

    @torch.no_grad()
    def proba(self, z: torch.Tensor) -> torch.Tensor:
        return self(z).softmax(-1)

    @torch.no_grad()
    def decode(self, z: torch.Tensor, threshold: float = 0.0):
        """``(values, top_probability)``; values are :data:`NO_NUMBER` where top probability < threshold."""
        p = self.proba(z)
        top, value = p.max(-1)
        value = torch.where(top < threshold, torch.full_like(value, NO_NUMBER), value)
        return value, top


def fit_probe(z: torch.Tensor, y: torch.Tensor, hidden: int = 0, epochs: int = 60, batch_size: int = 256,
              lr: float = 3e-3, seed: int = 0, classes: int = MOD, lbfgs_iters: int = 300,
              l2: float = 1e-5) -> LatentProbe:
    """Train a :class:`LatentProbe` on latents ``z`` (rows, d) and integer targets ``y`` (rows,).

    Linear (``hidden=0``): full-batch L-BFGS (``lbfgs_iters``, L2 ``l2``), i.e.
    multinomial logistic regression to convergence.  MLP: Adam, ``epochs``
    passes of ``batch_size`` with a cosine learning-rate decay.
    """
    z = z.float()
    probe = LatentProbe(z.shape[-1], classes, hidden)
    probe.mean.copy_(z.mean(0))
    probe.std.copy_(z.std(0).clamp_min(1e-6))
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        probe.net.apply(lambda m: m.reset_parameters() if isinstance(m, torch.nn.Linear) else None)
    probe.train()
    if not hidden:
        opt = torch.optim.LBFGS(probe.net.parameters(), lr=1, max_iter=lbfgs_iters, history_size=20,
                                line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(probe(z), y) + l2 * probe.net.weight.pow(2).sum()
            loss.backward()
            return loss

        opt.step(closure)
        probe.eval()
        return probe
    opt = torch.optim.Adam(probe.net.parameters(), lr=lr)
    steps_per_epoch = max(1, math.ceil(len(z) / batch_size))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs * steps_per_epoch)
    for _ in range(epochs):
        perm = torch.randperm(len(z), generator=g)
        for b in range(0, len(z), batch_size):
            i = perm[b:b + batch_size]
            loss = torch.nn.functional.cross_entropy(probe(z[i]), y[i])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    probe.eval()
    return probe


def threshold_from_heldout(top_probability: torch.Tensor, quantile: float = 0.05, cap: float = 1.0) -> float:
    """The ``quantile`` of the probe's top probability on held-out greedy latents, at most ``cap``.

    A latent whose top probability is below it is less sure of any value than
    ``1 - quantile`` of the model's own greedy latents, and counts as
    "decodes to no number"; greedy latents are then (about) ``quantile``
    unstructured by construction, which is the baseline a sampling setting is
    compared to.  ``cap`` (the benchmark uses 0.5: "no value has the majority
    of the probability") keeps a saturated probe, sure of almost every greedy
    latent, from calling a latent whose read-out is still a clear majority
    "no number".
    """
    v = top_probability.float().flatten().sort().values
    if len(v) == 0:
        raise ValueError("no held-out latents")
    # lower empirical quantile: the largest value with at most `quantile` of the values strictly below it
    k = int(math.floor(quantile * len(v)))
    return min(float(v[min(k, len(v) - 1)]), cap)


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
                   answers: Sequence[Sequence], greedy_answers: Sequence, ones_digit: bool = False) -> Dict[str, float]:
    """Does the final answer carry the decoded first intermediate forward?

    Over trajectories whose decoded x1 is a number that differs from the
    greedy trajectory's *and implies a different answer* (the second
    operation can map two values to one, e.g. ``* 5``; such trajectories
    cannot tell following from staying and are skipped): ``follows`` =
    fraction whose final answer equals the question's second operation
    applied to the decoded x1; ``stays`` = fraction whose final answer equals
    the greedy trajectory's answer.  A distinct, meaningful latent path shows
    ``follows`` well above ``stays`` (and above chance, 1/100 or 1/10).

    ``ones_digit=True``: the read-out is x1's ones digit (0..9) and ``follows``
    compares ones digits: the ones digit of ``x1 + c``, ``x1 - c`` and
    ``x1 * c`` (mod 100) is a function of the ones digit of x1 alone.
    """
    follows = stays = n = 0
    for q, ex in enumerate(examples):
        for j, a in enumerate(answers[q]):
            d, g = int(decoded_x1[q, j]), int(greedy_x1[q])
            if d == NO_NUMBER or d == g:
                continue
            implied = answer_from_first(ex, d)
            implied_greedy = answer_from_first(ex, g)
            base = 10 if ones_digit else MOD
            if implied_greedy is not None and implied % base == implied_greedy % base:
                continue
            n += 1
            value = _as_int(a)
            follows += value is not None and value % base == implied % base
            stays += value is not None and value == _as_int(greedy_answers[q])
    return {"changed_trajectories": n, "follows": follows / n if n else float("nan"),
            "stays": stays / n if n else float("nan")}


def _as_int(a) -> Optional[int]:
    try:
        return int(str(a).strip())
    except (TypeError, ValueError):
        return None


# --------------------------------------------------------------------------- compute accounting
def generated_lengths(answer_ids: torch.Tensor, eos_token_id: int) -> torch.Tensor:
    """Tokens each row generated, up to and including its first EOS (all of them if none)."""
    is_eos = answer_ids == eos_token_id
    any_eos = is_eos.any(-1)
    first = is_eos.float().argmax(-1)
    return torch.where(any_eos, first + 1, torch.full_like(first, answer_ids.shape[-1]))


def latent_positions(prompt_length: int, latent_steps: int, generated: Sequence[int], shared_prompt: bool) -> int:
    """Forward token positions of one question's N latent rollouts.

    Each sample feeds ``latent_steps`` latent vectors, then the end marker and
    its generated tokens but the last (the end marker's output is the first
    answer token, the k-th token's input produces the (k+1)-th), so a sample
    that generated k tokens costs ``latent_steps + k`` positions after its
    prompt.  The prompt pass costs ``prompt_length`` once per question when
    the samples share it (deterministic prompt: noise, ``dropout_scope=
    "latent"``) and once per sample otherwise (``dropout_scope="all"``).
    """
    n = len(generated)
    prompt = prompt_length if shared_prompt else prompt_length * n
    return prompt + sum(latent_steps + int(k) for k in generated)


def cot_positions(prompt_length: int, generated: Sequence[int]) -> int:
    """Forward token positions of one question's N sampled chains of thought.

    The prompt runs once (its KV cache is shared by the samples; sampling
    starts after it) and its last position gives the first token's
    distribution; a sample that generated k tokens then feeds its first k-1
    tokens (the last one, EOS, is never fed): ``prompt_length + sum(k - 1)``.
    """
    return prompt_length + sum(int(k) - 1 for k in generated)


def forward_flops(n_params_nonembedding: int, n_layer: int, d_model: int, contexts: Sequence[int],
                  vocab: int = 0, lm_head_positions: int = 0) -> float:
    """Approximate forward FLOPs (Kaplan et al. 2020): ``2 N + 2 n_layer c d`` per position at context
    length ``c`` (c counts the position itself), plus ``2 d V`` for each position whose logits are computed."""
    return float(sum(2 * n_params_nonembedding + 2 * n_layer * c * d_model for c in contexts)
                 + 2 * d_model * vocab * lm_head_positions)


def latent_flops(shape: Dict[str, int], prompt_length: int, latent_steps: int, generated: Sequence[int],
                 shared_prompt: bool) -> float:
    """Approximate forward FLOPs of one question's N latent rollouts (the positions of
    :func:`latent_positions`, each at its own context length; the LM head runs on the end marker and on
    the fed answer tokens, k per sample).  ``shape``: n_params_nonembedding, n_layer, d_model, vocab."""
    prompt = list(range(1, prompt_length + 1))
    contexts = prompt if shared_prompt else []
    for k in generated:
        contexts = contexts + ([] if shared_prompt else prompt) + list(
            range(prompt_length + 1, prompt_length + latent_steps + int(k) + 1))
    return forward_flops(shape["n_params_nonembedding"], shape["n_layer"], shape["d_model"], contexts,
                         shape["vocab"], sum(int(k) for k in generated))


def cot_flops(shape: Dict[str, int], prompt_length: int, generated: Sequence[int]) -> float:
    """Approximate forward FLOPs of one question's N sampled chains of thought (the positions of
    :func:`cot_positions`; the LM head runs on the last prompt position and on every fed token)."""
    contexts = list(range(1, prompt_length + 1))
    for k in generated:
        contexts += list(range(prompt_length + 1, prompt_length + int(k)))
    return forward_flops(shape["n_params_nonembedding"], shape["n_layer"], shape["d_model"], contexts,
                         shape["vocab"], 1 + sum(int(k) - 1 for k in generated))


# --------------------------------------------------------------------------- AUROC
def auroc(scores: Sequence[float], labels: Sequence[bool]) -> float:
    """P(score of a random positive > score of a random negative), ties counting 1/2; NaN without both classes."""
    s = torch.as_tensor(list(scores), dtype=torch.float64)
    y = torch.as_tensor(list(labels), dtype=torch.bool)
    pos, neg = s[y], s[~y]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    diff = pos[:, None] - neg[None, :]
    return float(((diff > 0).double() + 0.5 * (diff == 0).double()).mean())


def pair_counts(scores: Sequence[float], labels: Sequence[bool]):
    """(concordant + ties/2, number of positive-negative pairs)."""
    s = torch.as_tensor(list(scores), dtype=torch.float64)
    y = torch.as_tensor(list(labels), dtype=torch.bool)
    pos, neg = s[y], s[~y]
    diff = pos[:, None] - neg[None, :]
    return float(((diff > 0).double() + 0.5 * (diff == 0).double()).sum()), len(pos) * len(neg)


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
            per_q.append(auroc(s, y))
            c, p = pair_counts(s, y)
            conc, pairs = conc + c, pairs + p
    return {
        "mean": sum(per_q) / len(per_q) if per_q else float("nan"),
        "ci": bootstrap_mean_ci(per_q, resamples, seed) if per_q else [float("nan")] * 2,
        "pooled": conc / pairs if pairs else float("nan"),
        "questions": len(per_q),
        "pairs": pairs,
    }


def vote_shares(answers: Sequence) -> List[float]:
    """Per trajectory, the fraction of the question's N trajectories whose answer equals its answer
    (itself included; an unparsable answer ``None`` shares with nothing but itself)."""
    from hf_modeling.answers import answer_key

    keys = []
    for i, a in enumerate(answers):
        k = answer_key(a) if a is not None else None
        keys.append(("none", i) if k is None else k)
    n = len(keys)
    return [sum(k == other for other in keys) / n for k in keys]


# --------------------------------------------------------------------------- bootstrap
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


def bootstrap_ci(values: Sequence[float], resamples: int = 1000, seed: int = 0) -> List[float]:
    """Alias of :func:`bootstrap_mean_ci` (the interval of a per-question mean)."""
    return bootstrap_mean_ci(values, resamples, seed)


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
