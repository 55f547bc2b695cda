"""Stochastic, parallel latent rollouts: the ``generate`` of every latent backbone.

A rollout is prompt pass -> latent steps (the fed-back vector becomes the next
input embedding) -> end marker -> greedy answer.  Test-time scaling needs N
different rollouts per question, so this module makes the latent steps
stochastic (Monte Carlo dropout or Gaussian noise on the fed-back vector) and
runs the N rollouts of a batch of questions as one batch of B*N rows.

The pieces are public so that search strategies (RM-guided beam search) can
drive the steps themselves: ``LatentSampler`` owns the randomness,
``LatentState`` is the per-row decoding state (KV cache, mask, positions), and
the model's ``prefill`` / ``latent_step`` / ``decode_answer`` advance it.

Only torch and transformers are imported: this file is copied next to saved
checkpoints for ``trust_remote_code`` loading.
"""

import contextlib
import copy
import logging
import math
from dataclasses import dataclass

import torch
from transformers.cache_utils import DynamicCache
from transformers.utils import ModelOutput

logger = logging.getLogger(__name__)

SAMPLING_MODES = (None, "dropout", "noise")
DROPOUT_SCOPES = ("all", "latent")


class LatentSampler:
    """Where the randomness of a rollout comes from.

    Dropout is applied by forward hooks on the backbone's dropout sites (GPT-2:
    the residual dropouts; Llama: the output of each MLP ``down_proj``) rather
    than by switching modules to train mode, so attention/embedding dropout
    stay off and every random draw comes from one ``torch.Generator``.
    """

    def __init__(self, mode=None, dropout_p=0.0, noise_std=0.0, dropout_scope="all", generator=None):
        if mode not in SAMPLING_MODES:
            raise ValueError(f"latent_sampling must be one of None, 'dropout', 'noise'; got {mode!r}.")
        if dropout_scope not in DROPOUT_SCOPES:
            raise ValueError(f"dropout_scope must be 'all' or 'latent'; got {dropout_scope!r}.")
        dropout_p = float(dropout_p)
        noise_std = float(noise_std)
        if not (0.0 <= dropout_p < 1.0) or math.isnan(dropout_p):
            raise ValueError(f"dropout_p must be in [0, 1); got {dropout_p}.")
        if not math.isfinite(noise_std) or noise_std < 0:
            raise ValueError(f"noise_std must be a finite number >= 0; got {noise_std}.")
        if mode != "dropout" and dropout_p > 0:
            raise ValueError(
                f"dropout_p={dropout_p} is set but latent_sampling={mode!r}; "
                "pass latent_sampling='dropout' to use Monte Carlo dropout."
            )
        if mode != "noise" and noise_std > 0:
            raise ValueError(
                f"noise_std={noise_std} is set but latent_sampling={mode!r}; "
                "pass latent_sampling='noise' to add Gaussian noise to the latents."
            )
        self.mode = mode
        self.dropout_p = dropout_p
        self.noise_std = noise_std
        self.dropout_scope = dropout_scope
        self.generator = generator
        self._dropout_on = False

    @property
    def uses_dropout(self):
        return self.mode == "dropout" and self.dropout_p > 0

    @property
    def prompt_is_deterministic(self):
        """True when the prompt pass gives the same cache for every sample."""
        return not self.uses_dropout or self.dropout_scope == "latent"

    @contextlib.contextmanager
    def attached(self, model):
        """Install the dropout hooks on ``model`` for the duration of a rollout."""
        handles = []
        if self.uses_dropout:
            sites = model.dropout_sites()
            if not sites:
                raise ValueError(
                    f"{type(model).__name__} has no dropout sites, so latent_sampling='dropout' cannot "
                    "perturb it; use latent_sampling='noise' instead."
                )
            handles = [site.register_forward_hook(self._dropout_hook) for site in sites]
        try:
            yield self
        finally:
            for handle in handles:
                handle.remove()
            self._dropout_on = False

    @contextlib.contextmanager
    def phase(self, name):
        """Switch dropout for a phase: 'prompt', 'latent' or 'answer'."""
        previous = self._dropout_on
        if name == "prompt":
            self._dropout_on = self.uses_dropout and self.dropout_scope == "all"
        elif name == "latent":
            self._dropout_on = self.uses_dropout
        else:
            self._dropout_on = False
        try:
            yield
        finally:
            self._dropout_on = previous

    def _dropout_hook(self, module, inputs, output):
        if not self._dropout_on:
            return output
        keep = 1.0 - self.dropout_p
        mask = torch.empty(output.shape, device=output.device, dtype=torch.float32)
        mask.bernoulli_(keep, generator=self.generator)
        return output * (mask / keep).to(output.dtype)

    def perturb(self, latent):
        """Add N(0, noise_std^2) to fed-back latent vectors (noise sampling only)."""
        if self.mode != "noise" or self.noise_std == 0:
            return latent
        noise = torch.randn(latent.shape, device=latent.device, dtype=torch.float32, generator=self.generator)
        return latent + (noise * self.noise_std).to(latent.dtype)


@dataclass
class LatentState:
    """Decoding state of a batch of rows: everything needed to take the next step.

    ``attention_mask`` covers every position in the cache (left padding, and
    for dynamic backbones the masked slots of rows that already stopped);
    ``positions`` is the position id of each row's next input, so a prompt
    gives the same result whatever it is batched with.
    """

    cache: DynamicCache
    attention_mask: torch.Tensor  # (rows, cached length)
    positions: torch.Tensor  # (rows,) position id of the next input
    hidden: torch.Tensor  # (rows, hidden) last layer's hidden state at the last real input
    latents: list  # fed-back vectors so far, each (rows, hidden)
    latent_active: list  # per step, (rows,) bool: the row consumed that latent
    stopped: torch.Tensor  # (rows,) bool: the row has left its latent phase

    @property
    def rows(self):
        return self.hidden.shape[0]

    def repeat_interleave(self, n):
        """A new state in which each row becomes n consecutive rows (the N samples of one question)."""
        if n == 1:
            return self
        return self._map(lambda t: t.repeat_interleave(n, dim=0))

    def select(self, index):
        """A new state with the rows ``index`` (1-D LongTensor, repeats allowed), in that order.

        The original state stays valid: beam search and Monte Carlo annotation
        branch many continuations off one prefix.
        """
        return self._map(lambda t: t[index])

    def _map(self, fn):
        return LatentState(
            cache=_map_cache(self.cache, fn),
            attention_mask=fn(self.attention_mask),
            positions=fn(self.positions),
            hidden=fn(self.hidden),
            latents=[fn(z) for z in self.latents],
            latent_active=[fn(a) for a in self.latent_active],
            stopped=fn(self.stopped),
        )


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


def _as_list(token_ids):
    if token_ids is None:
        return []
    if isinstance(token_ids, int):
        return [token_ids]
    return list(token_ids)


class LatentGenerationMixin:
    """``generate`` and its step functions for a latent backbone.

    A backbone class provides: ``backbone()`` (the bare transformer returning
    ``last_hidden_state``), ``latent_vector(h)`` (the vector it feeds back),
    ``dropout_sites()``, ``start_marker_id()``, ``end_marker_id()`` and, for a
    dynamic number of steps, ``latent_should_stop(h)``.
    """

    dynamic_latent_length = False
    latent_kind = None  # "coconut" | "codi" | "colar": prompt and answer formats (SPEC)
    prompt_template = "{question}"

    def format_prompt(self, question):
        """The backbone's prompt format (SPEC) around a bare question, ending with the start marker."""
        return self.prompt_template.replace("{question}", question)

    # -- hooks the backbones override -------------------------------------------------
    def backbone(self):
        raise NotImplementedError

    def latent_vector(self, hidden):
        return hidden

    def dropout_sites(self):
        return []

    def start_marker_id(self):
        return self.config.latent_start_id

    def end_marker_id(self):
        return self.config.latent_end_id

    def latent_should_stop(self, hidden):
        return torch.zeros(hidden.shape[0], dtype=torch.bool, device=hidden.device)

    def max_context_length(self):
        return getattr(self.config, "max_position_embeddings", None)

    # -- one forward pass ---------------------------------------------------------------
    def _forward_step(self, state, inputs_embeds, active=None):
        """Feed one input per row; rows where ``active`` is False get a masked slot."""
        rows = inputs_embeds.shape[0]
        if active is None:
            active = torch.ones(rows, dtype=torch.bool, device=inputs_embeds.device)
        mask = torch.cat([state.attention_mask, active.to(state.attention_mask.dtype)[:, None]], dim=1)
        out = self.backbone()(
            inputs_embeds=inputs_embeds[:, None, :],
            attention_mask=mask,
            position_ids=state.positions[:, None],
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
    def prefill(self, input_ids, attention_mask, sampler):
        """Run the prompt (left padded, ending with the start marker) once."""
        positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        with sampler.phase("prompt"):
            out = self.backbone()(
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
        )

    def latent_step(self, state, sampler):
        """Feed back one latent vector per row (rows that stopped get a masked slot)."""
        with sampler.phase("latent"):
            if self.dynamic_latent_length:
                state.stopped = state.stopped | self.latent_should_stop(state.hidden)
            active = ~state.stopped
            latent = sampler.perturb(self.latent_vector(state.hidden))
            latent = torch.where(active[:, None], latent, torch.zeros_like(latent))
            self._forward_step(state, latent, active if self.dynamic_latent_length else None)
        state.latents.append(latent)
        state.latent_active.append(active)
        return latent

    def decode_answer(self, state, max_new_tokens, eos_token_id=None, pad_token_id=None):
        """Feed the end marker, then decode greedily until EOS or ``max_new_tokens``."""
        eos = torch.tensor(_as_list(eos_token_id), device=state.hidden.device, dtype=torch.long)
        rows = state.rows
        device = state.hidden.device
        token = torch.full((rows,), self.end_marker_id(), dtype=torch.long, device=device)
        done = torch.zeros(rows, dtype=torch.bool, device=device)
        generated = []
        lm_head = self.get_output_embeddings()
        for _ in range(max_new_tokens):
            hidden = self._forward_step(state, self._embed_tokens(token))
            token = lm_head(hidden).argmax(-1)
            token = torch.where(done, torch.full_like(token, pad_token_id), token)
            generated.append(token)
            done = done | torch.isin(token, eos)
            if bool(done.all()):
                break
        if not generated:
            return torch.empty(rows, 0, dtype=torch.long, device=device)
        return torch.stack(generated, dim=1)

    # -- validation ------------------------------------------------------------------------
    def _check_prompts(self, input_ids, attention_mask):
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
                f"Prompt rows {bad} do not end with the start marker (token id {start}). Build prompts with the "
                "backbone's prompt format (e.g. COCONUT: question + '\\n<|start-latent|>')."
            )

    def prepare_rollout(self, input_ids, attention_mask=None, *, latent_sampling=None, dropout_p=0.0, noise_std=0.0,
                        dropout_scope="all", seed=None, generator=None, latent_length=None, max_latent_length=None,
                        max_new_tokens=32, eos_token_id=None, pad_token_id=None):
        """Check the prompts and settings of a rollout and resolve their defaults (shared by every search)."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        device = self.get_input_embeddings().weight.device
        input_ids = input_ids.to(device)
        attention_mask = attention_mask.to(device)
        self._check_prompts(input_ids, attention_mask)
        if self.dynamic_latent_length:
            steps = max_latent_length if max_latent_length is not None else self.config.max_latent_length
        else:
            steps = latent_length if latent_length is not None else self.config.latent_length
        if not isinstance(steps, int) or steps < 0:
            raise ValueError(f"latent length must be an integer >= 0; got {steps!r}.")
        max_new_tokens = self._fit_context(attention_mask, steps, max_new_tokens)
        if generator is None and seed is not None:
            generator = torch.Generator(device=device).manual_seed(int(seed))
        sampler = LatentSampler(latent_sampling, dropout_p, noise_std, dropout_scope, generator)
        eos_token_id = eos_token_id if eos_token_id is not None else self.config.eos_token_id
        if pad_token_id is None:
            pad_token_id = self.config.pad_token_id
            if pad_token_id is None:
                pad_token_id = _as_list(eos_token_id)[0] if _as_list(eos_token_id) else 0
        return RolloutSetup(input_ids, attention_mask, steps, max_new_tokens, sampler, eos_token_id, pad_token_id)

    # -- the public entry point --------------------------------------------------------------
    @torch.no_grad()
    def generate(
        self,
        input_ids,
        attention_mask=None,
        *,
        latent_sampling=None,
        dropout_p=0.0,
        noise_std=0.0,
        dropout_scope="all",
        num_return_sequences=1,
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
            seed / generator: source of randomness (same seed, same output).
            latent_length: latent steps of a fixed-length backbone (default: config).
            max_latent_length: cap for a dynamic backbone (CoLaR).
            max_new_tokens: answer tokens after the end marker.
        Returns:
            ``sequences`` (LongTensor), or a ``LatentGenerateOutput`` when
            ``return_dict_in_generate=True``.
        """
        if unused:
            raise TypeError(
                f"generate() got unexpected arguments {sorted(unused)}; latent backbones take latent_sampling, "
                "dropout_p, noise_std, dropout_scope, num_return_sequences, seed, latent_length, "
                "max_latent_length, max_new_tokens."
            )
        n = num_return_sequences
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"num_return_sequences must be an integer >= 1; got {n!r}.")
        setup = self.prepare_rollout(
            input_ids, attention_mask, latent_sampling=latent_sampling, dropout_p=dropout_p, noise_std=noise_std,
            dropout_scope=dropout_scope, seed=seed, generator=generator, latent_length=latent_length,
            max_latent_length=max_latent_length, max_new_tokens=max_new_tokens, eos_token_id=eos_token_id,
            pad_token_id=pad_token_id,
        )
        input_ids, attention_mask, sampler = setup.input_ids, setup.attention_mask, setup.sampler
        steps, max_new_tokens = setup.steps, setup.max_new_tokens
        eos_token_id, pad_token_id = setup.eos_token_id, setup.pad_token_id

        was_training = self.training
        self.eval()
        try:
            with sampler.attached(self):
                if sampler.prompt_is_deterministic:
                    state = self.prefill(input_ids, attention_mask, sampler).repeat_interleave(n)
                else:
                    state = self.prefill(
                        input_ids.repeat_interleave(n, dim=0), attention_mask.repeat_interleave(n, dim=0), sampler
                    )
                for _ in range(steps):
                    if self.dynamic_latent_length and bool(state.stopped.all()):
                        break
                    self.latent_step(state, sampler)
                answer = self.decode_answer(state, max_new_tokens, eos_token_id, pad_token_id)
        finally:
            self.train(was_training)

        output = self._assemble(input_ids.repeat_interleave(n, dim=0), state, answer, pad_token_id, n, eos_token_id)
        return output if return_dict_in_generate else output.sequences

    def _fit_context(self, attention_mask, steps, max_new_tokens):
        limit = self.max_context_length()
        if limit is None:
            return max_new_tokens
        longest = int(attention_mask.sum(-1).max())
        if longest + steps + 1 > limit:
            raise ValueError(
                f"A prompt of {longest} tokens plus {steps} latent steps and the end marker exceeds the model's "
                f"context window of {limit} positions; shorten the prompt or lower the latent length."
            )
        room = limit - (longest + steps + 1)
        if max_new_tokens > room:
            logger.warning(
                "max_new_tokens=%d does not fit in the context window of %d positions; using %d.",
                max_new_tokens, limit, room,
            )
            return room
        return max_new_tokens

    def _assemble(self, prompt_ids, state, answer, pad_token_id, n, eos_token_id):
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
