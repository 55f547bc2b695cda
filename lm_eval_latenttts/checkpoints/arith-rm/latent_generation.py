"""Stochastic, parallel latent rollouts: the ``generate`` of every latent backbone.

A rollout is prompt pass -> latent steps (the fed-back vector becomes the next
input embedding) -> end marker -> greedy answer.  Test-time scaling needs N
different rollouts per question, so the latent steps are made stochastic
(Monte Carlo dropout or Gaussian noise on the fed-back vector, see
``latent_sampling``) and the N rollouts of a batch of questions run as one
batch of B*N rows.

**Reproducibility.**  Sample j of a question is a function of (seed, the
question's prompt tokens, j) only: every random number is keyed by the row's
key ``fold(question_key, j)`` and the position it is drawn for.  So a question
gets the same rollouts whatever it is batched with, whatever the batch size,
however the N samples are split over calls (``sample_offset``) and however
many processes run.

The pieces are public so that search strategies (RM-guided beam search,
Monte Carlo annotation) can drive the steps themselves: ``LatentSampler``
holds the sampling settings, ``LatentState`` is the per-row decoding state
(KV cache, mask, positions, row keys), and the model's ``prefill`` /
``latent_step`` / ``decode_answer`` advance it.

Only torch and transformers are imported: this file is copied next to saved
checkpoints for ``trust_remote_code`` loading.
"""


from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from transformers.cache_utils import DynamicCache
from transformers.utils import ModelOutput

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
            cache=_map_cache(self.cache, fn),
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


def _map_cache(cache, fn):
    """A new cache whose key/value tensors are ``fn`` of the old ones (batch dimension first)."""
    new = copy.copy(cache)
    new.layers = [copy.copy(layer) for layer in cache.layers]
    for layer in new.layers:
        if getattr(layer, "is_initialized", False) and layer.keys is not None and layer.keys.numel():
            layer.keys = fn(layer.keys)
            layer.values = fn(layer.values)
    return new


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
    def answer_start(self):
        return self.prompt_length + self.latents.shape[1] + 1

    @property
    def answer_ids(self):
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


def batch_invariant_attention():
    """Run scaled-dot-product attention with its math kernel for the duration of a rollout.

    The fused (flash) kernels split the keys of one-token queries over threads
    differently for different batch sizes, so a row's attention output -- and
    from there its answer and RM score -- changed in the last bits with its
    batch neighbours.  The math kernel computes each row alike; on CPU it was
    as fast for latent and answer steps (see benchmarks/rollouts.py).
    """
    return sdpa_kernel(SDPBackend.MATH)


def ghost_questions(questions: int, rows_per_question: int) -> int:
    """How many ghost questions bring ``questions * rows_per_question`` up to ``MIN_ROWS`` rows."""
    return max(0, -(-MIN_ROWS // max(rows_per_question, 1)) - questions)


def _check_count(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}.")
    return value


def _base_seed(seed, generator) -> int:
    """The run's seed: ``seed``, else a draw from ``generator``, else from torch's global generator."""
    if seed is not None:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"seed must be an integer; got {seed!r}.")
        return seed
    device = generator.device if generator is not None else "cpu"
    return int(torch.randint(0, 2**62, (1,), generator=generator, device=device).item())


def question_keys(input_ids: torch.Tensor, attention_mask: torch.Tensor, seed: int) -> torch.Tensor:
    """(rows,) int64 keys, each a function of ``seed`` and the row's unpadded prompt tokens only."""
    ids, mask = input_ids.tolist(), attention_mask.tolist()
    keys = [token_key(seed, [t for t, m in zip(row, row_mask) if m]) for row, row_mask in zip(ids, mask)]
    return torch.tensor(keys, dtype=torch.int64, device=input_ids.device)


def _as_list(token_ids):
    if token_ids is None:
        return []
    if isinstance(token_ids, int):
        return [token_ids]
    return list(token_ids)


class LatentGenerationMixin:
    """``generate`` and its step functions for a latent backbone.

    A backbone class provides: ``base_model`` (the bare transformer returning
    ``last_hidden_state``), ``latent_vector(h)`` (the vector it feeds back),
    ``dropout_sites()``, ``start_marker_id()``, ``end_marker_id()`` and, for a
    dynamic number of steps, ``latent_should_stop(h)``.
    """

    dynamic_latent_length = False
    latent_kind = None  # "coconut" | "codi" | "colar": prompt and answer formats (SPEC)
    prompt_template = "{question}"

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        """As transformers', but exact: a missing, unexpected or mis-shaped weight is an error naming it."""
        from .loading import exact_from_pretrained

        return exact_from_pretrained(super(), cls, pretrained_model_name_or_path, *args, **kwargs)

    def format_prompt(self, question: str) -> str:
        """The backbone's prompt format (SPEC) around a bare question, ending with the start marker."""
        return self.prompt_template.replace("{question}", question)

    def encode_prompt(self, tokenizer, question: str) -> list[int]:
        """Token ids of the prompt for ``question``; special-token text inside the question stays text.

        A question that contains e.g. ``<|latent|>`` would otherwise be parsed
        into the control token itself; such questions are tokenised in pieces
        cut where a special token's text starts, so it can never match.
        """
        text = self.format_prompt(question)
        specials = [s for s in getattr(tokenizer, "added_tokens_encoder", {}) if s and s in question]
        if not specials:
            return list(tokenizer(text)["input_ids"])
        prefix, suffix = self.prompt_template.split("{question}")
        cuts = sorted({i for s in specials for i in _occurrences(question, s)} | {
            i + 1 for s in specials for i in _occurrences(question, s)})
        bounds = [0] + [c for c in cuts if 0 < c < len(question)] + [len(question)]
        chunks = [question[a:b] for a, b in zip(bounds, bounds[1:])]
        chunks[0], chunks[-1] = prefix + chunks[0], chunks[-1] + suffix
        if len(chunks) == 1:  # cannot happen (a special token was found); kept for clarity
            return list(tokenizer(chunks[0])["input_ids"])
        ids = list(tokenizer(chunks[0])["input_ids"])
        for chunk in chunks[1:]:
            ids += tokenizer(chunk, add_special_tokens=False)["input_ids"]
        return ids

    # -- hooks the backbones override -------------------------------------------------
    def latent_vector(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden

    def dropout_sites(self) -> list:
        return []

    def start_marker_id(self) -> int | None:
        return self.config.latent_start_id

    def end_marker_id(self) -> int | None:
        return self.config.latent_end_id

    def latent_should_stop(self, hidden: torch.Tensor) -> torch.Tensor:
        return torch.zeros(hidden.shape[0], dtype=torch.bool, device=hidden.device)

    def max_context_length(self) -> int | None:
        return getattr(self.config, "max_position_embeddings", None)

    # -- one forward pass ---------------------------------------------------------------
    def _forward_step(self, state, inputs_embeds, active=None, sampler=None):
        """Feed one input per row; rows where ``active`` is False get a masked slot."""
        rows = inputs_embeds.shape[0]
        if active is None:
            active = torch.ones(rows, dtype=torch.bool, device=inputs_embeds.device)
        mask = torch.cat([state.attention_mask, active.to(state.attention_mask.dtype)[:, None]], dim=1)
        if sampler is not None:
            sampler.at(state.row_keys, state.positions[:, None])
        positions = state.positions
        limit = self.max_context_length()
        if limit is not None:  # a masked slot of a row at the end of the window must still index the table
            positions = torch.where(active, positions, positions.clamp(max=limit - 1))
        out = self.base_model(
            inputs_embeds=inputs_embeds[:, None, :],
            attention_mask=mask,
            position_ids=positions[:, None],
            cache=state.cache,
            use_cache=True,
        )
        hidden = out.last_hidden_state[:, -1]
        state.attention_mask = mask
        state.hidden = torch.where(active[:, None], hidden, state.hidden)
        state.positions = state.positions + active.to(state.positions.dtype)
        return hidden

    def _embed_tokens(self, token_ids):
        return self.get_input_embeddings()(token_ids)

    # -- the three phases ------------------------------------------------------------------
    def prefill(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, sampler: LatentSampler,
                row_keys: torch.Tensor) -> LatentState:
        """Run the prompt (left padded, ending with the start marker) once; ``row_keys`` key its dropout."""
        positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        sampler.at(row_keys, positions)
        with sampler.phase("prompt"):
            out = self.base_model(
                input_ids=input_ids,
                attention_mask=attention_mask,
                position_ids=positions,
                cache=DynamicCache(config=self.config),
                use_cache=True,
            )
        rows = input_ids.shape[0]
        return LatentState(
            cache=out.cache,
            attention_mask=attention_mask,
            positions=positions[:, -1] + 1,
            hidden=out.last_hidden_state[:, -1],
            latents=[],
            latent_active=[],
            stopped=torch.zeros(rows, dtype=torch.bool, device=input_ids.device),
            row_keys=row_keys,
        )

    def latent_step(self, state: LatentState, sampler: LatentSampler) -> torch.Tensor:
        """Feed back one latent vector per row (rows that stopped get a masked slot)."""
        with sampler.phase("latent"):
            if self.dynamic_latent_length:
                state.stopped = state.stopped | self.latent_should_stop(state.hidden)
            active = ~state.stopped
            latent = sampler.perturb(self.latent_vector(state.hidden), state.row_keys, state.positions)
            latent = torch.where(active[:, None], latent, torch.zeros_like(latent))
            self._forward_step(state, latent, active if self.dynamic_latent_length else None, sampler)
        state.latents.append(latent)
        state.latent_active.append(active)
        return latent

    def decode_answer(self, state: LatentState, max_new_tokens: int, eos_token_id=None,
                      pad_token_id: int | None = None, room: torch.Tensor | None = None) -> torch.Tensor:
        """Feed the end marker, then decode greedily until EOS, ``max_new_tokens`` or the row's ``room``."""
        eos = torch.tensor(_as_list(eos_token_id), device=state.hidden.device, dtype=torch.long)
        rows = state.rows
        device = state.hidden.device
        token = torch.full((rows,), self.end_marker_id(), dtype=torch.long, device=device)
        done = torch.zeros(rows, dtype=torch.bool, device=device)
        generated = []
        lm_head = self.get_output_embeddings()
        room = None if room is None else room.to(device)
        for i in range(max_new_tokens):
            if room is not None:  # a row whose context window is full stops (and feeds masked slots)
                done = done | (room <= i)
            if bool(done.all()):
                break
            hidden = self._forward_step(state, self._embed_tokens(token), None if room is None else ~done)
            token = lm_head(hidden).argmax(-1)
            token = torch.where(done, torch.full_like(token, pad_token_id), token)
            generated.append(token)
            done = done | torch.isin(token, eos)
        if not generated:
            return torch.empty(rows, 0, dtype=torch.long, device=device)
        return torch.stack(generated, dim=1)

    # -- validation ------------------------------------------------------------------------
    def _check_prompts(self, input_ids, attention_mask):
        if not isinstance(input_ids, torch.Tensor) or input_ids.dtype.is_floating_point or input_ids.dtype == torch.bool:
            what = type(input_ids).__name__ if not isinstance(input_ids, torch.Tensor) else f"a {input_ids.dtype} tensor"
            raise TypeError(
                f"input_ids must be an integer tensor of token ids (torch.long); got {what}. "
                "Pass the tokenizer's input_ids (return_tensors='pt')."
            )
        if input_ids.dim() != 2 or input_ids.shape[1] == 0:
            raise ValueError(f"input_ids must be a non-empty (batch, length) tensor; got shape {tuple(input_ids.shape)}.")
        if attention_mask.shape != input_ids.shape:
            raise ValueError(
                f"attention_mask shape {tuple(attention_mask.shape)} does not match input_ids {tuple(input_ids.shape)}."
            )
        if not bool(attention_mask[:, -1].all()):
            raise ValueError(
                "Prompts must be left padded (the last column is padding for some rows): "
                "set tokenizer.padding_side = 'left'."
            )
        for name in ("latent_id", "latent_start_id", "latent_end_id"):
            if getattr(self.config, name, None) is None and not (self.dynamic_latent_length and name != "latent_id"):
                raise ValueError(
                    f"The model config has no {name}: the latent special tokens are unknown. Load the model with "
                    "hf_modeling.AutoLatentModel.from_pretrained(path), which reads them from the checkpoint's "
                    "tokenizer, or set config.latent_id / latent_start_id / latent_end_id."
                )
        start = self.start_marker_id()
        if start is None:
            raise ValueError("The model config does not say which token starts the latent phase.")
        bad = (input_ids[:, -1] != start).nonzero().flatten().tolist()
        if bad:
            raise ValueError(
                f"Prompt rows {bad} do not end with the start marker (token id {start}). Build prompts with "
                "model.encode_prompt(tokenizer, question) (the backbone's prompt format, e.g. COCONUT: "
                "question + '\\n<|start-latent|>')."
            )

    def prepare_rollout(self, input_ids, attention_mask=None, *, latent_sampling=None, dropout_p=0.0, noise_std=0.0,
                        dropout_scope="all", seed=None, generator=None, latent_length=None, max_latent_length=None,
                        max_new_tokens=32, eos_token_id=None, pad_token_id=None) -> RolloutSetup:
        """Check the prompts and settings of a rollout and resolve their defaults (shared by every search)."""
        if attention_mask is None and isinstance(input_ids, torch.Tensor):
            attention_mask = torch.ones_like(input_ids)
        self._check_prompts(input_ids, attention_mask)
        device = self.get_input_embeddings().weight.device
        input_ids = input_ids.to(device=device, dtype=torch.long)
        attention_mask = attention_mask.to(device)
        if self.dynamic_latent_length:
            steps = max_latent_length if max_latent_length is not None else self.config.max_latent_length
            _check_count("max_latent_length", steps, 0)
        else:
            steps = latent_length if latent_length is not None else self.config.latent_length
            _check_count("latent_length", steps, 0)
        _check_count("max_new_tokens", max_new_tokens, 1)
        room = self._answer_room(attention_mask, steps, max_new_tokens)
        sampler = LatentSampler(latent_sampling, dropout_p, noise_std, dropout_scope)
        if latent_sampling is not None and sampler.is_deterministic:
            warnings.warn(
                f"latent_sampling={latent_sampling!r} with strength 0 (dropout_p={dropout_p}, noise_std={noise_std}) "
                "samples nothing: every rollout of a prompt is the same. Raise the strength or use latent_sampling=None.",
                UserWarning, stacklevel=4,
            )
        if steps == 0:
            warnings.warn(
                "latent_length=0: the model takes no latent reasoning step and answers right after the start "
                "marker; this is not the latent model's reasoning.", UserWarning, stacklevel=4,
            )
        eos_token_id = eos_token_id if eos_token_id is not None else self.config.eos_token_id
        if pad_token_id is None:
            pad_token_id = self.config.pad_token_id
            if pad_token_id is None:
                pad_token_id = _as_list(eos_token_id)[0] if _as_list(eos_token_id) else 0
        keys = question_keys(input_ids, attention_mask, _base_seed(seed, generator))
        return RolloutSetup(input_ids, attention_mask, steps, max_new_tokens, sampler, eos_token_id, pad_token_id, keys,
                            room)

    # -- the public entry point --------------------------------------------------------------
    @torch.no_grad()
    def generate(
        self,
        input_ids=None,
        attention_mask=None,
        *,
        latent_sampling=None,
        dropout_p=0.0,
        noise_std=0.0,
        dropout_scope="all",
        num_return_sequences=1,
        sample_offset=0,
        seed=None,
        generator=None,
        latent_length=None,
        max_latent_length=None,
        max_new_tokens=32,
        eos_token_id=None,
        pad_token_id=None,
        return_dict_in_generate=False,
        **unused,
    ):
        """Draw ``num_return_sequences`` latent rollouts per prompt, in one batch.

        Args:
            input_ids, attention_mask: left-padded prompts ending with the start marker.
            latent_sampling: None (deterministic), "dropout" (Monte Carlo dropout
                with ``dropout_p``) or "noise" (``z + N(0, noise_std^2)`` on every
                fed-back vector).
            dropout_scope: "all" (dropout on the prompt pass and the latent steps,
                as in the paper) or "latent" (latent steps only; the prompt is then
                run once per question and its cache shared by the N samples).
            num_return_sequences: N samples per prompt; output rows are question-major.
            sample_offset: index of the first sample: samples are numbered per
                question, so ``num_return_sequences=4, sample_offset=4`` draws
                samples 4..7 of the sequence that ``num_return_sequences=8`` draws.
            seed: sample j of a prompt is a function of (seed, its unpadded token
                ids, j) only, whatever else is in the batch.  Without a seed, one
                is drawn from ``generator`` (or torch's global generator).
            latent_length: latent steps of a fixed-length backbone (default: config).
            max_latent_length: cap for a dynamic backbone (CoLaR).
            max_new_tokens: answer tokens after the end marker (an integer >= 1).
        Returns:
            ``sequences`` (LongTensor), or a ``LatentGenerateOutput`` when
            ``return_dict_in_generate=True``.
        """
        if unused:
            raise TypeError(
                f"generate() got unexpected arguments {sorted(unused)}; latent backbones take latent_sampling, "
                "dropout_p, noise_std, dropout_scope, num_return_sequences, sample_offset, seed, generator, "
                "latent_length, max_latent_length, max_new_tokens, eos_token_id, pad_token_id, return_dict_in_generate."
            )
        if input_ids is None:
            raise ValueError("generate() needs input_ids: the tokenized prompts (model.encode_prompt).")
        n = _check_count("num_return_sequences", num_return_sequences, 1)
        offset = _check_count("sample_offset", sample_offset, 0)
        setup = self.prepare_rollout(
            input_ids, attention_mask, latent_sampling=latent_sampling, dropout_p=dropout_p, noise_std=noise_std,
            dropout_scope=dropout_scope, seed=seed, generator=generator, latent_length=latent_length,
            max_latent_length=max_latent_length, max_new_tokens=max_new_tokens, eos_token_id=eos_token_id,
            pad_token_id=pad_token_id,
        )
        if n > 1 and latent_sampling is None:
            warnings.warn(
                f"num_return_sequences={n} without sampling gives {n} identical rollouts per prompt; "
                "pass latent_sampling='dropout' or 'noise'.", UserWarning, stacklevel=3,
            )
        setup, questions = setup.with_ghosts(n)
        input_ids, attention_mask, sampler = setup.input_ids, setup.attention_mask, setup.sampler
        keys = sample_keys(setup.question_keys, n, offset)

        was_training = self.training
        self.eval()
        try:
            with sampler.attached(self), batch_invariant_attention():
                if sampler.prompt_is_deterministic:
                    state = self.prefill(input_ids, attention_mask, sampler, setup.question_keys).repeat_interleave(n)
                    state.row_keys = keys
                else:
                    state = self.prefill(
                        input_ids.repeat_interleave(n, dim=0), attention_mask.repeat_interleave(n, dim=0), sampler,
                        keys,
                    )
                for _ in range(setup.steps):
                    if self.dynamic_latent_length and bool(state.stopped.all()):
                        break
                    self.latent_step(state, sampler)
                answer = self.decode_answer(state, setup.max_new_tokens, setup.eos_token_id, setup.pad_token_id,
                                            setup.room(n))
        finally:
            self.train(was_training)

        output = self._assemble(input_ids.repeat_interleave(n, dim=0), state, answer, setup.pad_token_id, n,
                                setup.eos_token_id, setup.room(n)).first_rows(questions * n)
        return output if return_dict_in_generate else output.sequences

    def _answer_room(self, attention_mask, steps, max_new_tokens):
        """Per row, how many answer tokens fit in the context window after its own prompt (None: no limit).

        Each row is limited by its own prompt length, never by a longer
        neighbour in the batch, so batching does not change a row's answer.
        """
        limit = self.max_context_length()
        if limit is None:
            return None
        lengths = attention_mask.long().sum(-1)
        longest = int(lengths.max())
        if longest + steps + 1 > limit:
            raise ValueError(
                f"A prompt of {longest} tokens plus {steps} latent steps and the end marker exceeds the model's "
                f"context window of {limit} positions; shorten the prompt or lower the latent length."
            )
        room = limit - (lengths + steps + 1)
        if bool((room < max_new_tokens).any()):
            warnings.warn(
                f"max_new_tokens={max_new_tokens} does not fit in the context window of {limit} positions after "
                f"the longest prompt; such answers are cut at {int(room.min())} tokens.", UserWarning, stacklevel=5,
            )
        return room

    def _assemble(self, prompt_ids, state, answer, pad_token_id, n, eos_token_id, room=None):
        rows = prompt_ids.shape[0]
        device = prompt_ids.device
        steps = len(state.latents)
        hidden_size = state.hidden.shape[-1]
        if steps:
            latents = torch.stack(state.latents, dim=1)
            active = torch.stack(state.latent_active, dim=1)
        else:
            latents = state.hidden.new_zeros(rows, 0, hidden_size)
            active = torch.zeros(rows, 0, dtype=torch.bool, device=device)
        slot_ids = torch.where(
            active,
            torch.full_like(active, self.config.latent_id, dtype=torch.long),
            torch.full_like(active, pad_token_id, dtype=torch.long),
        )
        end = torch.full((rows, 1), self.end_marker_id(), dtype=torch.long, device=device)
        sequences = torch.cat([prompt_ids, slot_ids, end, answer], dim=1)
        # answer positions: real up to and including the first EOS
        eos = torch.tensor(_as_list(eos_token_id), device=device, dtype=torch.long)
        is_eos = torch.isin(answer, eos).long()
        after_eos = (is_eos.cumsum(-1) - is_eos) > 0
        if room is not None:  # positions past a row's context window were never decoded
            after_eos = after_eos | (torch.arange(answer.shape[1], device=device)[None, :] >= room.to(device)[:, None])
        prompt_mask = state.attention_mask[:, : prompt_ids.shape[1]]
        mask = torch.cat(
            [prompt_mask, active.long(), torch.ones_like(end), (~after_eos).long()], dim=1
        )
        return LatentGenerateOutput(
            sequences=sequences,
            attention_mask=mask,
            latents=latents,
            latent_lengths=active.sum(-1),
            prompt_length=prompt_ids.shape[1],
            num_return_sequences=n,
        )


def _occurrences(text: str, sub: str) -> list[int]:
    """Start indices of every (possibly overlapping) occurrence of ``sub`` in ``text``."""
    found, start = [], text.find(sub)
    while start != -1:
        found.append(start)
        start = text.find(sub, start + 1)
    return found
