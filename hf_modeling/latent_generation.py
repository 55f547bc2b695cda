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

import os
import warnings
from collections.abc import Callable, Iterator

import torch
from transformers import GenerationConfig

from .generation_config import ROLLOUT_FIELDS, LatentGenerationConfig
from .latent_rollout import answer_room, as_list, assemble, base_seed, check_prompts
from .latent_sampling import LatentSampler
from .latent_state import (
    MIN_ROWS,
    LatentGenerateOutput,
    LatentState,
    RolloutSetup,
    batch_invariant_attention,
    eval_mode,
    prompt_pass,
    question_keys,
    sample_keys,
)


# generate() arguments of the released LatentTTS reference code -> the LatentGenerationConfig field of the same meaning
REFERENCE_NAMES = {"max_latent_length": "latent_length"}
REFERENCE_MEANING = {"max_latent_length": "the latent steps of a fixed-length backbone, the cap of CoLaR's dynamic ones"}


class PromptTooLongError(ValueError):
    """A prompt with the latent steps and the end marker leaves no room for one answer token in the model's
    context window (``context_room``): a named failure of one question, which the lm-eval harness scores as
    failed and counts; any other error stops its run."""


class LatentGenerationMixin:
    """``generate`` and its step functions for a latent backbone.

    A backbone class provides: ``base_model`` (the bare transformer returning
    ``last_hidden_state``), ``latent_vector(h)`` (the vector it feeds back),
    ``dropout_sites()``, ``start_marker_id()``, ``end_marker_id()`` and, for a
    dynamic number of steps, ``latent_should_stop(h)``.
    """

    dynamic_latent_length = False
    # trained to write in tokens the reasoning steps after a latent prefix and its end marker (COCONUT's curriculum
    # stages); what a read-back (``lm_eval_latenttts.scaling.readback``) needs
    explicit_continuation = False

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, *args, **kwargs):
        """As transformers', but exact (a missing, unexpected or mis-shaped weight is an error naming it); the
        checkpoint's ``generation_config.json`` becomes a ``LatentGenerationConfig`` (its recommended settings)."""
        from .loading import exact_from_pretrained

        model = exact_from_pretrained(super(), cls, pretrained_model_name_or_path, *args, **kwargs)
        target = model[0] if isinstance(model, tuple) else model
        target.generation_config = LatentGenerationConfig.from_generation_config(target.generation_config)
        return model

    def latent_generation_config(self, generation_config: GenerationConfig | None = None,
                                 **overrides) -> LatentGenerationConfig:
        """The settings of a rollout: ``generation_config`` (default: the model's) updated with ``overrides``,
        validated and resolved for this backbone (typical sampling strength when unset).

        A config that this method resolved for this backbone, passed without
        overrides, is returned as is: resolved once, it is not copied or
        validated again (the harness resolves each distinct setting once).
        """
        if not overrides and isinstance(generation_config, LatentGenerationConfig) and \
                generation_config.resolved_for(self.latent_kind):
            return generation_config
        renamed = sorted(set(overrides) & set(REFERENCE_NAMES))
        if renamed:
            raise TypeError("; ".join(
                f"{name} is the released LatentTTS reference's name of {REFERENCE_NAMES[name]}: pass "
                f"{REFERENCE_NAMES[name]}={overrides[name]!r} ({REFERENCE_MEANING[name]})" for name in renamed) + ".")
        unknown = sorted(set(overrides) - ROLLOUT_FIELDS)
        if unknown:
            raise TypeError(
                f"unexpected generation settings {unknown}: a latent model decodes its answer greedily after the "
                "latent phase, so token-sampling settings do not apply. Rollouts take the fields of "
                f"LatentGenerationConfig: {', '.join(sorted(ROLLOUT_FIELDS))}."
            )
        config = LatentGenerationConfig.from_generation_config(
            generation_config if generation_config is not None else self.generation_config)
        config.update(**overrides)
        return config.for_backbone(self.latent_kind)

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

    def latent_steps_of(self, config: LatentGenerationConfig) -> int:
        """The latent steps a rollout with ``config`` takes (its cap on a dynamic backbone): ``latent_length``,
        else the model config's."""
        if config.latent_length is not None:
            return config.latent_length
        return self.config.max_latent_length if self.dynamic_latent_length else self.config.latent_length

    def context_room(self, prompt_lengths: torch.Tensor, steps: int) -> torch.Tensor | None:
        """Per prompt, how many answer tokens fit in the context window after it (None: no limit).

        Prompt, ``steps`` latent slots and the end marker take their positions,
        and one more is kept free; a prompt that leaves no room for one answer
        token is an error (``PromptTooLongError``, a ``ValueError``; the
        harness answers that document as failed and counts it).  The one place
        the window is checked, for ``generate``, beam search, annotation and
        the harness.
        """
        limit = self.max_context_length()
        if limit is None:
            return None
        room = limit - (prompt_lengths.long() + steps + 1)
        if bool((room < 1).any()):
            longest = int(prompt_lengths.max())
            raise PromptTooLongError(
                f"a prompt of {longest} tokens with {steps} latent steps and the end marker leaves no room for an "
                f"answer in the model's context window of {limit} positions; shorten the prompt or lower the "
                "latent length.")
        return room

    def latent_loop(self, steps: int, stopped: Callable[[], torch.Tensor]) -> Iterator[int]:
        """The latent steps 0 .. ``steps``-1 of a rollout, ending early on a dynamic backbone once every row
        has stopped (``stopped()``: the rows' flags, read before each step).  The one step loop of
        ``generate``, beam search and annotation."""
        for t in range(steps):
            if self.dynamic_latent_length and bool(stopped().all()):
                return
            yield t

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
        hidden = self.one_token_forward(inputs_embeds, mask, positions, state.cache)
        state.attention_mask = mask
        state.hidden = torch.where(active[:, None], hidden, state.hidden)
        state.positions = state.positions + active.to(state.positions.dtype)
        return hidden

    def one_token_forward(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor,
                          cache) -> torch.Tensor:
        """The last hidden state (rows, hidden) of one input per row (``inputs_embeds`` (rows, hidden)) after the
        cached positions; ``attention_mask`` covers the cache and the new input.  Backbones with a leaner
        path of the same bits override it (GPT-2: ``fast_gpt2.gpt2_one_token``)."""
        out = self.base_model(inputs_embeds=inputs_embeds[:, None, :], attention_mask=attention_mask,
                              position_ids=position_ids[:, None], cache=cache, use_cache=True)
        return out.last_hidden_state[:, -1]

    def _embed_tokens(self, token_ids):
        return self.get_input_embeddings()(token_ids)

    # -- the three phases ------------------------------------------------------------------
    def prefill(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, sampler: LatentSampler,
                row_keys: torch.Tensor, capacity: int | None = None) -> LatentState:
        """Run the prompt (left padded, ending with the start marker) once; ``row_keys`` key its dropout.
        ``capacity``: the positions the KV cache is allocated for (``rollout_width``; default: the prompt's,
        growing as needed)."""
        sampler.at(row_keys, (attention_mask.long().cumsum(-1) - 1).clamp(min=0))
        with sampler.phase("prompt"), batch_invariant_attention(input_ids.device, "prompt"):
            out, positions = prompt_pass(self.base_model, self.config, input_ids, attention_mask,
                                         capacity or input_ids.shape[1])
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

    def start_samples(self, setup: RolloutSetup, n: int, keys: torch.Tensor,
                      questions: int | None = None) -> LatentState:
        """The state of n samples per prompt of ``setup``, keyed ``keys``, after the prompt pass.

        With a deterministic prompt pass (no dropout on it) the prompt runs once
        per question and its cache is shared by the n samples; else each sample
        runs its own (dropout on the prompt, as in the paper).

        Only the first ``questions`` prompts are real (default: all); the ghost
        questions after them (``RolloutSetup.with_ghosts``) copy the last real
        question's state instead of running their prompts.  The prompt pass
        itself needs MIN_ROWS token rows to be batch-invariant; when the real
        prompts are that short it runs copies of the last one too.
        """
        ids, mask, sampler = setup.input_ids, setup.attention_mask, setup.sampler
        total = ids.shape[0]
        real = total if questions is None else questions
        per_question = 1 if sampler.prompt_is_deterministic else n
        run = max(real, -(-MIN_ROWS // (per_question * ids.shape[1])))  # questions in the prompt pass
        source = torch.arange(run, device=ids.device).clamp(max=real - 1)  # the real ones, then copies of the last
        width = setup.width
        if sampler.prompt_is_deterministic:
            state = self.prefill(ids[source], mask[source], sampler, setup.question_keys[source], width)
        else:
            sample_rows = (source[:, None] * n + torch.arange(n, device=ids.device)).flatten()
            state = self.prefill(ids[source].repeat_interleave(n, dim=0), mask[source].repeat_interleave(n, dim=0),
                                 sampler, keys[sample_rows], width)
        if not (run == real == total and per_question == n):  # else the state's rows are already the result's
            question = torch.arange(total, device=ids.device).clamp(max=real - 1)  # ghosts: the last real question
            index = (question[:, None] * per_question + torch.arange(per_question, device=ids.device)).flatten()
            state = state.select(index.repeat_interleave(n // per_question))
        state.row_keys = keys
        return state

    def latent_step(self, state: LatentState, sampler: LatentSampler) -> torch.Tensor:
        """Feed back one latent vector per row (rows that stopped get a masked slot)."""
        latent, active = self.next_latent(state, sampler)
        self.feed_latent(state, latent, active, sampler)
        return latent

    def next_latent(self, state: LatentState, sampler: LatentSampler) -> tuple[torch.Tensor, torch.Tensor]:
        """(latent, active): the vector each row feeds back next, from its last hidden state, and whether it does.

        No forward pass: under dropout the latent's randomness is that of the
        forward that produced ``state.hidden``; under noise it is drawn here
        with the rows' keys.  Dynamic backbones mark the rows that stop.
        """
        if self.dynamic_latent_length:
            state.stopped = state.stopped | self.latent_should_stop(state.hidden)
        active = ~state.stopped
        latent = sampler.perturb(self.latent_vector(state.hidden), state.row_keys, state.positions)
        return torch.where(active[:, None], latent, torch.zeros_like(latent)), active

    def feed_latent(self, state: LatentState, latent: torch.Tensor, active: torch.Tensor,
                    sampler: LatentSampler) -> None:
        """One latent forward, dropout keyed by the rows' keys: ``latent`` where ``active``, else a masked slot."""
        with sampler.phase("latent"):
            self._forward_step(state, latent, active if self.dynamic_latent_length else None, sampler)
        state.latents.append(latent)
        state.latent_active.append(active)

    def decode_answer(self, state: LatentState, max_new_tokens: int, eos_token_id: int | list[int] | None = None,
                      pad_token_id: int | None = None, room: torch.Tensor | None = None) -> torch.Tensor:
        """Feed the end marker, then decode greedily until EOS, ``max_new_tokens`` or the row's ``room``."""
        eos = torch.tensor(as_list(eos_token_id), device=state.hidden.device, dtype=torch.long)
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
    def prepare_rollout(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
                        config: LatentGenerationConfig, generator: torch.Generator | None = None) -> RolloutSetup:
        """Check the prompts of a rollout and resolve ``config`` (from ``latent_generation_config``) into a
        setup; shared by ``generate``, beam search and annotation."""
        if attention_mask is None and isinstance(input_ids, torch.Tensor):
            attention_mask = torch.ones_like(input_ids)
        check_prompts(self, input_ids, attention_mask)
        device = self.get_input_embeddings().weight.device
        input_ids = input_ids.to(device=device, dtype=torch.long)
        attention_mask = attention_mask.to(device)
        steps = self.latent_steps_of(config)
        if steps == 0:
            warnings.warn(
                "latent_length=0: the model takes no latent reasoning step and answers right after the start "
                "marker; this is not the latent model's reasoning.", UserWarning, stacklevel=6,
            )
        eos_token_id = config.eos_token_id if config.eos_token_id is not None else self.config.eos_token_id
        pad_token_id = config.pad_token_id if config.pad_token_id is not None else self.config.pad_token_id
        if pad_token_id is None:
            pad_token_id = as_list(eos_token_id)[0] if as_list(eos_token_id) else 0
        room = answer_room(self, attention_mask, steps, config.max_new_tokens)
        keys = question_keys(input_ids, attention_mask, base_seed(config.seed, generator))
        return RolloutSetup(input_ids, attention_mask, steps, config.max_new_tokens, LatentSampler(config),
                            eos_token_id, pad_token_id, keys, room)

    # -- the public entry point --------------------------------------------------------------
    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                 generation_config: GenerationConfig | None = None, *, sample_offset: int = 0,
                 generator: torch.Generator | None = None, **kwargs) -> torch.Tensor | LatentGenerateOutput:
        """Draw N latent rollouts per prompt, in one batch.

        Args:
            input_ids, attention_mask: left-padded prompts ending with the start
                marker (``model.encode_prompt``).
            generation_config: a ``LatentGenerationConfig`` (default: the
                model's, i.e. the checkpoint's recommended settings); keyword
                arguments override its fields: ``latent_sampling``, ``dropout_p``,
                ``noise_std``, ``dropout_scope``, ``num_return_sequences`` (N),
                ``seed``, ``latent_length``, ``max_new_tokens``, ``eos_token_id``,
                ``pad_token_id``, ``return_dict_in_generate`` (see the config).
            sample_offset: index of the first sample: samples are numbered per
                question, so ``num_return_sequences=4, sample_offset=4`` draws
                samples 4..7 of the sequence that ``num_return_sequences=8`` draws.
            generator: draws the seed instead of ``seed`` (reproducible with the
                generator's state).  With ``seed=None`` and no generator the seed
                is drawn from torch's global generator, as transformers' sampling
                draws from it: once per call, so two calls (two batches) get
                different seeds; pass an int ``seed`` for samples that are a
                function of (seed, question, j) only.
        Returns:
            ``sequences`` (LongTensor), or a ``LatentGenerateOutput`` when
            ``return_dict_in_generate=True``; rows are question-major.
        """
        if input_ids is None:
            raise ValueError("generate() needs input_ids: the tokenized prompts (model.encode_prompt).")
        if isinstance(sample_offset, bool) or not isinstance(sample_offset, int) or sample_offset < 0:
            raise ValueError(f"sample_offset must be an integer >= 0; got {sample_offset!r}.")
        config = self.latent_generation_config(generation_config, **kwargs)
        for _, message in config.idle_settings():
            warnings.warn(message, UserWarning, stacklevel=3)
        output = self.rollout(input_ids, attention_mask, config, sample_offset=sample_offset, generator=generator)
        return output if config.return_dict_in_generate else output.sequences

    @torch.no_grad()
    def rollout(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, config: LatentGenerationConfig,
                n: int | None = None, *, sample_offset: int = 0,
                generator: torch.Generator | None = None) -> LatentGenerateOutput:
        """``generate``'s rollouts for a resolved ``config`` (``latent_generation_config``; used as is):
        samples ``sample_offset .. sample_offset + n - 1`` of each prompt (``n``: default N), always as a
        ``LatentGenerateOutput``.  What the harness and the scaling code call for every batch."""
        config = self.latent_generation_config(config)
        n = config.num_return_sequences if n is None else n
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n (samples per prompt) must be an integer >= 1; got {n!r}.")
        setup, questions = self.prepare_rollout(input_ids, attention_mask, config, generator).with_ghosts(n)
        input_ids, sampler = setup.input_ids, setup.sampler
        keys = sample_keys(setup.question_keys, n, sample_offset)

        with eval_mode(self), sampler.attached(self), batch_invariant_attention(input_ids.device):
            state = self.start_samples(setup, n, keys, questions)
            for _ in self.latent_loop(setup.steps, lambda: state.stopped):
                self.latent_step(state, sampler)
            answer = self.decode_answer(state, setup.max_new_tokens, setup.eos_token_id, setup.pad_token_id,
                                        setup.room(n))
        return assemble(self, input_ids.repeat_interleave(n, dim=0), state, answer, setup.pad_token_id, n,
                              setup.eos_token_id, setup.room(n)).first_rows(questions * n)
