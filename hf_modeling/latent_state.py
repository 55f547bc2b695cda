"""The state of latent rollouts and what they return: rows, keys, caches, outputs.

``LatentState`` is the per-row decoding state that ``prefill`` / ``latent_step``
/ ``decode_answer`` advance and that searches branch (``select``,
``repeat_interleave``); ``RolloutSetup`` the checked inputs of a rollout;
``LatentGenerateOutput`` what ``generate`` returns.  The helpers here also keep
a question's numbers independent of its batch (keys, ghost rows, the attention
kernel).  Only torch and transformers are imported: this file is copied next to
saved checkpoints for ``trust_remote_code`` loading.
"""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from transformers.cache_utils import DynamicCache
from transformers.utils import ModelOutput

from .latent_cache import LatentCache, map_cache
from .latent_sampling import LatentSampler, fold, token_key


@dataclass
class LatentState:
    """Decoding state of a batch of rows: everything needed to take the next step.

    ``attention_mask`` covers every position in the cache (left padding, and
    for dynamic backbones the masked slots of rows that already stopped);
    ``positions`` is the position id of each row's next input, so a prompt
    gives the same result whatever it is batched with.  ``row_keys`` key the
    row's random numbers (see ``latent_sampling``); a search that branches a
    row into several must give the branches new keys (``fold``).
    """

    cache: DynamicCache
    attention_mask: torch.Tensor  # (rows, cached length)
    positions: torch.Tensor  # (rows,) position id of the next input
    hidden: torch.Tensor  # (rows, hidden) last layer's hidden state at the last real input
    latents: list  # fed-back vectors so far, each (rows, hidden)
    latent_active: list  # per step, (rows,) bool: the row consumed that latent
    stopped: torch.Tensor  # (rows,) bool: the row has left its latent phase
    row_keys: torch.Tensor  # (rows,) int64 keys of the rows' random numbers

    @property
    def rows(self) -> int:
        return self.hidden.shape[0]

    def repeat_interleave(self, n: int) -> "LatentState":
        """A new state in which each row becomes n consecutive rows (same keys: re-key the copies to sample)."""
        if n == 1:
            return self
        return self._map(lambda t: t.repeat_interleave(n, dim=0))

    def select(self, index: torch.Tensor) -> "LatentState":
        """A new state with the rows ``index`` (1-D LongTensor, repeats allowed), in that order.

        The original state stays valid: beam search and Monte Carlo annotation
        branch many continuations off one prefix.
        """
        return self._map(lambda t: t[index])

    def _map(self, fn) -> "LatentState":
        return LatentState(
            cache=map_cache(self.cache, fn),
            attention_mask=fn(self.attention_mask),
            positions=fn(self.positions),
            hidden=fn(self.hidden),
            latents=[fn(z) for z in self.latents],
            latent_active=[fn(a) for a in self.latent_active],
            stopped=fn(self.stopped),
            row_keys=fn(self.row_keys),
        )


def sample_keys(question_keys: torch.Tensor, n: int, offset: int = 0) -> torch.Tensor:
    """Row keys of samples ``offset .. offset+n-1`` of each question, question-major: (questions * n,)."""
    index = torch.arange(offset, offset + n, device=question_keys.device).repeat(question_keys.shape[0])
    return fold(question_keys.repeat_interleave(n), index)


@dataclass
class LatentGenerateOutput(ModelOutput):
    """What ``generate(..., return_dict_in_generate=True)`` returns.

    sequences: (rows, prompt_length + steps + 1 + answer) token ids: the prompt,
        ``latent_id`` at every latent slot (pad where a dynamic row had already
        stopped), the end marker, then the greedy answer (pad after EOS).
    attention_mask: same shape; 0 on padding and on the slots a row skipped.
    latents: (rows, steps, hidden) the fed-back vectors (zeros on skipped slots).
    latent_lengths: (rows,) number of latent steps each row took.
    prompt_length: width of the prompt part of ``sequences``.
    num_return_sequences: N; rows are question-major (the N samples of a
        question are consecutive).
    """

    sequences: torch.Tensor | None = None
    attention_mask: torch.Tensor | None = None
    latents: torch.Tensor | None = None
    latent_lengths: torch.Tensor | None = None
    prompt_length: int | None = None
    num_return_sequences: int | None = None

    @property
    def answer_start(self) -> int:
        return self.prompt_length + self.latents.shape[1] + 1

    @property
    def answer_ids(self) -> torch.Tensor:
        return self.sequences[:, self.answer_start :]

    def first_rows(self, rows: int) -> "LatentGenerateOutput":
        """The output restricted to its first ``rows`` rows (drops ghost rows)."""
        if rows == self.sequences.shape[0]:
            return self
        return LatentGenerateOutput(
            sequences=self.sequences[:rows], attention_mask=self.attention_mask[:rows], latents=self.latents[:rows],
            latent_lengths=self.latent_lengths[:rows], prompt_length=self.prompt_length,
            num_return_sequences=self.num_return_sequences,
        )


@dataclass
class RolloutSetup:
    """Checked inputs and resolved settings of one rollout (see ``prepare_rollout``)."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    steps: int  # latent steps (fixed backbones) or their cap (dynamic)
    max_new_tokens: int
    sampler: LatentSampler
    eos_token_id: object
    pad_token_id: int
    question_keys: torch.Tensor  # (questions,) int64: fold(seed, prompt tokens) per prompt row
    answer_room: torch.Tensor | None = None  # (questions,) answer tokens that fit after each prompt; None: no limit

    @property
    def width(self) -> int:
        """Positions a rollout of this setup fills: prompt, latent steps, end marker, answer tokens (the KV
        cache's capacity)."""
        return self.input_ids.shape[1] + self.steps + 1 + self.max_new_tokens

    def room(self, n: int = 1) -> torch.Tensor | None:
        """``answer_room`` repeated for the n rows of each question."""
        return None if self.answer_room is None else self.answer_room.repeat_interleave(n)

    def with_ghosts(self, rows_per_question: int) -> tuple["RolloutSetup", int]:
        """This setup with ghost questions appended so that a forward has >= MIN_ROWS rows; (setup, questions).

        Matrix kernels pick their code path by the number of rows, and the
        paths for a few rows round differently; with at least ``MIN_ROWS``
        rows a question's numbers are the same bits whatever else is in the
        batch.  Ghosts are copies of the last question; their rows are dropped.
        """
        questions = self.input_ids.shape[0]
        extra = ghost_questions(questions, rows_per_question)
        if not extra:
            return self, questions
        last = torch.full((extra,), questions - 1, dtype=torch.long, device=self.input_ids.device)
        index = torch.cat([torch.arange(questions, device=self.input_ids.device), last])
        grown = copy.copy(self)
        grown.input_ids, grown.attention_mask = self.input_ids[index], self.attention_mask[index]
        grown.question_keys = self.question_keys[index]
        grown.answer_room = None if self.answer_room is None else self.answer_room[index]
        return grown, questions


MIN_ROWS = 16  # rows per forward below which CPU/GPU matrix kernels take size-dependent code paths


def attention_kernel(device: torch.device | str, phase: str = "steps") -> SDPBackend:
    """The scaled-dot-product attention kernel of a rollout ``phase`` on ``device``: chosen per device and
    phase, each one measured batch-invariant there (``tests/test_batch_invariance.py``).

    ``"prompt"`` (queries of many tokens) on CPU: the fused (flash) kernel.  It
    runs each (row, head, block of queries) on one thread over the keys in a
    fixed order, so a row's bits do not change with the batch size or the
    thread count, and it was 4 to 85 times faster than the math kernel at
    GSM8K prompt widths (see benchmarks/real_prompts.py).  ``"steps"`` (one-token
    queries: latent steps, answer tokens, RM steps) and every phase elsewhere:
    the math kernel.  The CPU flash kernel splits the keys of one-token
    queries over threads when rows x heads are fewer than threads (measured:
    the bits change with the batch), and GPU kernels are not measured yet.
    """
    if phase == "prompt" and torch.device(device).type == "cpu":
        return SDPBackend.FLASH_ATTENTION
    return SDPBackend.MATH


def batch_invariant_attention(device: torch.device | str = "cpu", phase: str = "steps") -> \
        contextlib.AbstractContextManager:
    """Run scaled-dot-product attention with ``attention_kernel(device, phase)`` inside the block.

    Kernels that split a row's keys over threads differently for different
    batch sizes change a row's attention output -- and from there its answer
    and RM score -- in the last bits with its batch neighbours; the kernels
    chosen here compute each row alike.
    """
    return sdpa_kernel(attention_kernel(device, phase))


def ghost_questions(questions: int, rows_per_question: int) -> int:
    """How many ghost questions bring ``questions * rows_per_question`` up to ``MIN_ROWS`` rows."""
    return max(0, -(-MIN_ROWS // max(rows_per_question, 1)) - questions)


def prompt_pass(base_model: torch.nn.Module, config, input_ids: torch.Tensor,
                attention_mask: torch.Tensor, capacity: int | None = None) -> tuple:
    """(output, position ids) of one pass over left-padded prompts into a fresh KV cache.

    Position ids count real tokens only, so a prompt gets the same positions
    whatever it is padded to; backbones and LatentRMs both start this way.
    ``capacity``: the cache's final width (prompt + every position the caller
    will feed), allocated once (``latent_cache.LatentCache``); None, or with
    gradients on (training), a ``DynamicCache``.
    """
    positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
    cache = DynamicCache(config=config) if capacity is None or torch.is_grad_enabled() else \
        LatentCache(config, capacity)
    out = base_model(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions,
                     cache=cache, use_cache=True)
    return out, positions


def question_keys(input_ids: torch.Tensor, attention_mask: torch.Tensor, seed: int) -> torch.Tensor:
    """(rows,) int64 keys, each a function of ``seed`` and the row's unpadded prompt tokens only."""
    ids, mask = input_ids.tolist(), attention_mask.tolist()
    keys = [token_key(seed, [t for t, m in zip(row, row_mask) if m]) for row, row_mask in zip(ids, mask)]
    return torch.tensor(keys, dtype=torch.int64, device=input_ids.device)


@contextlib.contextmanager
def eval_mode(*models: torch.nn.Module):
    """Put ``models`` in eval mode for the block and give each back the mode it had: the one place for it
    (``generate``, beam search, annotation, RM scoring).  Monte Carlo dropout is switched on by the sampler
    alone, never by train mode."""
    # a model already in eval mode throughout is left alone: switching walks every module (about 2 ms a call
    # for the shipped model, more than one of its rollout steps)
    switched = [(model, model.training) for model in models if any(m.training for m in model.modules())]
    for model, _ in switched:
        model.eval()
    try:
        yield
    finally:
        for model, mode in switched:
            model.train(mode)
