"""How many bytes a rollout call needs, from the model config: the CUDA batch size without trial and error.

A call of Q questions whose prompts are left-padded to width W, with N
rollouts each, allocates (``call_bytes``):

- the backbone's KV cache, allocated once at its final width
  (``hf_modeling.latent_cache``): layers x 2 x rows x KV heads x head dim x
  (W + latent steps + 1 + answer tokens); a prompt pass shared by the N samples
  (no dropout on the prompt) runs on Q rows and is then copied to Q*N rows, so
  both are alive for a moment;
- the prompt pass's activations, one layer at a time: the QKV projection, the
  attention output and the MLP's intermediate (before and after the
  activation) of every prompt token, plus the dropout masks' 64-bit random
  bits where dropout is on;
- the attention scores of the kernel in use (``latent_state.attention_kernel``):
  the math kernel materialises rows x heads x queries x keys scores, the float
  mask and the softmax (three such tensors); fused kernels (flash) keep them
  in on-chip blocks, so only their output counts;
- the one-token steps: the math kernel's scaled copy of one layer's keys and
  its scores, the logits of the answer tokens (rows x vocabulary);
- the LatentRM's pass (when there is one): its own cache over the prompt and
  the latent steps, and its prompt pass.

Ghost rows (``latent_state.MIN_ROWS``) count as rows.  The model's weights
are already resident, so the budget is the device's free memory
(``free_bytes``).  ``fit_questions`` is the largest Q whose call fits a
budget; the engine chooses the CUDA ``batch_size=auto`` from it per group of
prompt width, and keeps halving on out-of-memory as the fallback (what it
learns there scales later predictions down).  The numbers are a model: the
allocator's rounding and fragmentation are covered by ``HEADROOM``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

HEADROOM = 0.85  # the share of free memory a call is planned to use


@dataclass(frozen=True)
class Shape:
    """The sizes of a transformer that decide its memory (``of``: read from a transformers config)."""

    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    inner: int
    vocab: int

    @classmethod
    def of(cls, config) -> "Shape":
        hidden = config.hidden_size
        heads = config.num_attention_heads
        inner = getattr(config, "intermediate_size", None) or getattr(config, "n_inner", None) or 4 * hidden
        return cls(layers=config.num_hidden_layers, hidden=hidden, heads=heads,
                   kv_heads=getattr(config, "num_key_value_heads", None) or heads,
                   head_dim=getattr(config, "head_dim", None) or hidden // heads, inner=inner,
                   vocab=config.vocab_size)

    def cache_bytes(self, rows: int, positions: int, element: int) -> int:
        return self.layers * 2 * rows * self.kv_heads * self.head_dim * positions * element

    def prompt_bytes(self, rows: int, width: int, element: int, fused_attention: bool, dropout: bool) -> int:
        """The largest layer's temporaries of a pass over ``rows`` prompts of ``width`` tokens."""
        tokens = rows * width
        layer = tokens * element * (2 * self.hidden + (self.heads + 2 * self.kv_heads) * self.head_dim
                                    + 2 * self.inner)
        if dropout:  # 64-bit random bits and a shifted copy, the mask, the masked output
            layer += tokens * self.hidden * (16 + 2 * element)
        scores = 0 if fused_attention else 3 * rows * self.heads * width * width * element
        return layer + scores

    def step_bytes(self, rows: int, positions: int, element: int, fused_attention: bool) -> int:
        """The temporaries of a one-token step over ``rows`` rows with ``positions`` cached keys."""
        layer = rows * element * (2 * self.hidden + (self.heads + 2 * self.kv_heads) * self.head_dim
                                  + 2 * self.inner + self.vocab)
        if not fused_attention:  # the math kernel scales a copy of the keys and materialises the scores
            layer += rows * self.heads * positions * element * (self.head_dim + 3)
        return layer


def ghost_rows(questions: int, n: int) -> int:
    from hf_modeling.latent_state import ghost_questions

    return (questions + ghost_questions(questions, n)) * n


def call_bytes(model, rm, config, questions: int, width: int, search: bool = False) -> int:
    """Bytes a rollout call of ``questions`` prompts padded to ``width`` tokens needs beyond the weights.

    ``config``: the resolved ``LatentGenerationConfig`` of the call (N, latent steps, answer tokens,
    sampling); ``search``: RM-guided beam search (B*C rows per question, both caches alive at once).
    """
    from hf_modeling.latent_state import attention_kernel
    from torch.nn.attention import SDPBackend

    device = model.device
    fused_prompt = attention_kernel(device, "prompt") != SDPBackend.MATH
    fused_steps = attention_kernel(device, "steps") != SDPBackend.MATH
    element = torch.finfo(model.dtype).bits // 8
    shape = Shape.of(model.config)
    n = config.latent_beams * config.latent_candidates if search else (config.num_return_sequences
                                                                          if config.samples else 1)
    rows = ghost_rows(questions, n)
    steps = model.latent_steps_of(config)
    positions = width + steps + 1 + config.max_new_tokens
    dropout = config.latent_sampling == "dropout" and bool(config.dropout_p)
    shared = not dropout or config.dropout_scope == "latent" or search
    prompt_rows = questions * (1 if shared else n)  # ghost questions copy the last one's prompt state
    cache = shape.cache_bytes(rows, positions, element)
    prompt_cache = shape.cache_bytes(prompt_rows, positions, element)
    prompt_pass = shape.prompt_bytes(prompt_rows, width, element, fused_prompt, dropout and not shared)
    copied = cache if prompt_rows != rows else 0  # the prompt's cache copied to the samples' and ghosts' rows
    backbone = max(prompt_cache + max(prompt_pass, copied),
                   cache + shape.step_bytes(rows, positions, element, fused_steps))
    if rm is None:
        return backbone
    rm_shape = Shape.of(rm.config)
    rm_element = torch.finfo(rm.dtype).bits // 8
    rm_positions = width + steps
    rm_cache = rm_shape.cache_bytes(rows, rm_positions, rm_element)
    if search:  # the RM's cache lives beside the backbone's through the whole search
        return backbone + rm_cache
    questions_cache = rm_shape.cache_bytes(rows // n, rm_positions, rm_element)
    rm_prompt = questions_cache + max(rm_shape.prompt_bytes(rows // n, width, rm_element, fused_prompt, False),
                                      rm_cache)
    latent_scores = 0 if fused_steps else 3 * rows * rm_shape.heads * steps * rm_positions * rm_element
    rm_steps = rm_cache + rm_shape.prompt_bytes(rows, steps, rm_element, True, False) + latent_scores
    return max(backbone, rm_prompt, rm_steps)


def fit_questions(budget: int, model, rm, config, width: int, most: int, search: bool = False) -> int:
    """The largest number of questions (1 .. ``most``) whose call needs at most ``budget`` bytes (1 when even
    one does not fit: the out-of-memory fallback then splits its rollouts)."""
    low, high = 1, most
    while low < high:  # call_bytes grows with the number of questions
        mid = (low + high + 1) // 2
        if call_bytes(model, rm, config, mid, width, search) <= budget:
            low = mid
        else:
            high = mid - 1
    return low


def free_bytes(device) -> int:
    """Memory a call may use on ``device``: CUDA's free memory plus what torch's caching allocator holds
    unused, times ``HEADROOM``."""
    device = torch.device(device)
    free, _ = torch.cuda.mem_get_info(device)
    cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    return int((free + cached) * HEADROOM)


def memory_sizer(model, rm, device):
    """The engine's ``sizer(plan, width, most)`` on ``device``: how many questions of ``plan`` at prompt width
    ``width`` (at most ``most``) the free device memory holds now (``scaling.engine.Engine``, ``batch_size=auto``)."""
    from lm_eval_latenttts.scaling.strategies import DrawMode

    def sizer(plan, width: int, most: int) -> int:
        return fit_questions(free_bytes(device), model, rm, plan.config, width, most,
                             search=plan.mode is DrawMode.SEARCH)
    return sizer


__all__ = ["HEADROOM", "Shape", "call_bytes", "fit_questions", "free_bytes", "memory_sizer"]
