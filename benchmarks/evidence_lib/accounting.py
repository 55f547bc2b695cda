"""What a question's N samples cost: generated lengths, forward token positions and approximate FLOPs.

Latent rollouts and token chains of thought are compared at equal compute, so
both are counted in the same unit: the token positions their forward passes
process for that question (and, beside it, approximate forward FLOPs).  The
tests check the position counts against hooks on the real forward passes.
"""

from __future__ import annotations

from typing import Dict, Sequence

import numpy as np
import torch


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


def _span_sum(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a + (a+1) + ... + b (0 where b < a)."""
    return np.where(b >= a, (a + b) * (b - a + 1) // 2, 0)


def latent_cost(prompt_lengths, latent_steps: int, generated, shared_prompt: bool, shape: Dict[str, int] | None = None):
    """Per question, :func:`latent_positions` and (with ``shape``) :func:`latent_flops` of its samples, for
    arrays: ``prompt_lengths`` (Q,), ``generated`` (Q, n).  Closed forms of the same sums (tested equal)."""
    p = np.asarray(prompt_lengths, dtype=np.int64)
    k = np.asarray(generated, dtype=np.int64)
    n = k.shape[1]
    prompts = 1 if shared_prompt else n
    positions = prompts * p + (latent_steps + k).sum(1)
    if shape is None:
        return positions, None
    ctx = prompts * p * (p + 1) // 2 + _span_sum(p[:, None] + 1, p[:, None] + latent_steps + k).sum(1)
    flops = (2 * shape["n_params_nonembedding"] * positions + 2 * shape["n_layer"] * shape["d_model"] * ctx
             + 2 * shape["d_model"] * shape["vocab"] * k.sum(1))
    return positions, flops.astype(np.float64)


def cot_cost(prompt_lengths, generated, shape: Dict[str, int] | None = None):
    """Per question, :func:`cot_positions` and (with ``shape``) :func:`cot_flops` for arrays (see
    :func:`latent_cost`)."""
    p = np.asarray(prompt_lengths, dtype=np.int64)
    k = np.asarray(generated, dtype=np.int64)
    positions = p + (k - 1).sum(1)
    if shape is None:
        return positions, None
    ctx = p * (p + 1) // 2 + _span_sum(p[:, None] + 1, p[:, None] + k - 1).sum(1)
    flops = (2 * shape["n_params_nonembedding"] * positions + 2 * shape["n_layer"] * shape["d_model"] * ctx
             + 2 * shape["d_model"] * shape["vocab"] * (1 + (k - 1).sum(1)))
    return positions, flops.astype(np.float64)
