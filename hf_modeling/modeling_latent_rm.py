"""LatentRM: a reward model that scores every latent step of a latent rollout.

A LatentRM is the backbone architecture (GPT-2 or Llama) with a one-output
token-classification head.  Its input is the rollout's prompt tokens followed
by the latent trajectory: the latent slots hold the fed-back vectors as input
embeddings (not rows of the embedding table).

**Which output is the score of step t.**  The score of latent step t is the
classifier output at the position of latent slot t, i.e. the position whose
input embedding is the t-th fed-back vector.  The RM has then seen the prompt
and latents 1..t, exactly the prefix whose Monte Carlo value is the training
label of step t.  The trajectory score is the sum of its step scores (SPEC);
``min``, ``last`` and ``mean`` are available as alternatives.

**Sharing the prompt.**  The N rollouts of a question share its prompt, so
:meth:`score_rollouts` runs the RM's prompt pass once per question, repeats
the KV cache N times and then feeds all latent vectors of all rows in one
forward pass.  Beam search uses :meth:`rm_prefill` / :meth:`rm_step` /
:class:`RMState` to score one latent step at a time with the RM's own cache.

Class names follow the released checkpoint (``COCONUTGPT2ForTokenClassification``,
``transformer.*`` + ``classifier.*`` weights).  Only torch, transformers and
sibling files are imported: this file is copied next to saved checkpoints for
``trust_remote_code`` loading.
"""

from __future__ import annotations


import os

import torch
from torch import nn
from transformers import GPT2ForTokenClassification, LlamaForTokenClassification, LlamaModel, LlamaPreTrainedModel

from .configuration_latent_rm import LatentRMGPT2Config, LatentRMLlamaConfig
from .fast_gpt2 import use_fused_gelu
from .generation_config import REDUCTIONS
from .hub import LatentHubMixin
from .latent_state import batch_invariant_attention, eval_mode, ghost_questions, prompt_pass
from .rm_state import RMScores, RMState, reduce_step_scores

LATENT_ID_FIELDS = ("latent_id", "latent_start_id", "latent_end_id")


class LatentRMMixin(LatentHubMixin):
    """Scoring of latent trajectories; the classes provide ``base_model`` and ``rm_head(h)``."""

    auto_classes = ("AutoModel", "AutoModelForTokenClassification")
    card_pipeline_tag = "token-classification"

    head_prefixes: tuple = ()  # parameter names of the one-output head (new when initialised from a backbone)

    def post_init(self):
        super().post_init()
        use_fused_gelu(self)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, *args, new_head: bool = False,
                        **kwargs):
        """As transformers', but exact (see ``hf_modeling.loading``).

        ``new_head=True`` initialises the RM from a *backbone* checkpoint: the
        classifier head is new (one log line says so) and backbone-only weights
        (LM head, projector, latent head) are not used; anything else missing
        is still an error.
        """
        from .loading import exact_from_pretrained

        prefixes = cls.head_prefixes if new_head else ()
        return exact_from_pretrained(super(), cls, pretrained_model_name_or_path, *args, new_head=prefixes, **kwargs)

    def forward(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                latents: torch.Tensor | None = None, inputs_embeds: torch.Tensor | None = None, **kwargs):
        """The parent's token-classification forward; ``latents`` (rows, steps, hidden) fill the ``latent_id``
        slots of ``input_ids`` (for training: per-position logits (rows, length, 1)).

        There is no built-in loss: the parent's would be a one-class cross-entropy (always 0 for integer labels,
        an error for float ones), so ``labels`` is refused rather than trained on silently.
        """
        if kwargs.get("labels") is not None:
            raise ValueError("a LatentRM has no built-in loss (one output per position); compute the loss from the "
                             "returned logits, or train with `latent-tts-train-rm` (step-wise objective).")
        if latents is not None:
            if input_ids is None:
                raise ValueError("latents need input_ids with latent_id slots to be placed in.")
            inputs_embeds, input_ids = self.embed_with_latents(input_ids, latents), None
        return super().forward(input_ids=input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds,
                               **kwargs)

    # -- hooks -----------------------------------------------------------------------
    def rm_head(self, hidden: torch.Tensor) -> torch.Tensor:
        """(..., hidden) -> (...,) the one-output classifier (no dropout), computed by ``one_output``."""
        raise NotImplementedError

    @property
    def latent_size(self) -> int:
        """Size of the latent vectors this RM reads (its embedding size)."""
        return self.get_input_embeddings().weight.shape[1]

    def card_description(self) -> str:
        return ("A LatentRM: a reward model for latent reasoning trajectories (Parallel Test-Time Scaling for "
                "Latent Reasoning Models, arXiv 2510.07745). It reads a question and a latent trajectory and emits "
                "one score per latent step (`score_rollouts`); a trajectory's score is the sum of its step scores.")

    # -- compatibility checks ------------------------------------------------------------
    def check_backbone(self, backbone) -> None:
        """Raise ValueError if ``backbone`` (a latent model or its config) does not fit this RM."""
        config = getattr(backbone, "config", backbone)
        name = type(backbone).__name__
        size = getattr(config, "hidden_size", None)
        if size is not None and size != self.latent_size:
            raise ValueError(
                f"LatentRM hidden size {self.latent_size} does not match the backbone {name}'s latent size {size}; "
                "the RM must be built on the same architecture size as the backbone whose latents it scores."
            )
        for field in LATENT_ID_FIELDS:
            mine, theirs = getattr(self.config, field, None), getattr(config, field, None)
            if mine is not None and theirs is not None and mine != theirs:
                raise ValueError(
                    f"LatentRM {field}={mine} does not match the backbone {name}'s {field}={theirs}; "
                    "the RM and the backbone must share the tokenizer with the latent special tokens."
                )
        vocab = getattr(config, "vocab_size", None)
        if vocab is not None and vocab > self.config.vocab_size:
            raise ValueError(
                f"The backbone {name} has {vocab} token ids but the LatentRM's vocabulary has only "
                f"{self.config.vocab_size}; they must share the tokenizer."
            )

    def _check_latents(self, latents):
        if latents.shape[-1] != self.latent_size:
            raise ValueError(
                f"LatentRM hidden size {self.latent_size} does not match the backbone's latent size "
                f"{latents.shape[-1]}; score a backbone of the RM's size."
            )

    def _check_tokens(self, input_ids):
        if input_ids.numel() and int(input_ids.max()) >= self.config.vocab_size:
            raise ValueError(
                f"Token id {int(input_ids.max())} is outside the LatentRM's vocabulary of {self.config.vocab_size}; "
                "the RM and the backbone must share the tokenizer."
            )

    # -- inputs with latent slots ----------------------------------------------------------
    def embed_with_latents(self, input_ids: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        """Input embeddings of ``input_ids`` with the k-th ``latent_id`` slot of a row holding ``latents[row, k]``."""
        latent_id = self.config.latent_id
        if latent_id is None:
            raise ValueError("The LatentRM config has no latent_id, so latent slots in input_ids cannot be found.")
        self._check_latents(latents)
        self._check_tokens(input_ids)
        embeds = self.get_input_embeddings()(input_ids)
        slots = input_ids == latent_id
        most = int(slots.sum(-1).max()) if slots.numel() else 0
        if latents.shape[1] < most:
            raise ValueError(
                f"input_ids have up to {most} latent slots but only {latents.shape[1]} latent vectors were given."
            )
        if latents.shape[1] == 0:
            return embeds
        index = (slots.long().cumsum(-1) - 1).clamp(min=0)
        picked = latents.to(embeds.dtype).gather(1, index[..., None].expand(-1, -1, embeds.shape[-1]))
        return torch.where(slots[..., None], picked, embeds)

    # -- incremental scoring ---------------------------------------------------------------
    @torch.no_grad()
    def rm_prefill(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                   steps: int = 0) -> RMState:
        """Run the (left-padded) prompt once; returns the RM state to feed latents into (its KV cache allocated
        for ``steps`` latent steps after the prompt, growing if more are fed)."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        self._check_tokens(input_ids)
        device = self.get_input_embeddings().weight.device
        input_ids, attention_mask = input_ids.to(device), attention_mask.to(device)
        with batch_invariant_attention(device, "prompt"):
            out, positions = prompt_pass(self.base_model, self.config, input_ids, attention_mask,
                                         input_ids.shape[1] + steps)
        return RMState(cache=out.cache, attention_mask=attention_mask, positions=positions[:, -1] + 1)

    @torch.no_grad()
    def rm_step(self, state: RMState, latents: torch.Tensor, active: torch.Tensor | None = None) -> torch.Tensor:
        """Feed latent vectors and return their scores; updates ``state`` in place.

        latents: (rows, hidden) for one step or (rows, k, hidden) for k steps.
        active: optional bool (rows,) / (rows, k); inactive slots are masked out
            (a row that already stopped) and get score 0.
        Returns scores of shape (rows,) or (rows, k).
        """
        single = latents.dim() == 2
        if single:
            latents = latents[:, None]
            active = None if active is None else active[:, None]
        self._check_latents(latents)
        rows, k = latents.shape[:2]
        device = state.positions.device
        if active is None:
            active = torch.ones(rows, k, dtype=torch.bool, device=device)
        active = active.to(device).bool()
        dtype = self.get_input_embeddings().weight.dtype
        mask = torch.cat([state.attention_mask, active.to(state.attention_mask.dtype)], dim=1)
        before = active.long().cumsum(-1) - active.long()
        positions = state.positions[:, None] + before
        with batch_invariant_attention(device):
            out = self.base_model(
                inputs_embeds=latents.to(device=device, dtype=dtype),
                attention_mask=mask,
                position_ids=positions,
                cache=state.cache,
                use_cache=True,
            )
        scores = self.rm_head(out.last_hidden_state).float()
        scores = torch.where(active, scores, torch.zeros_like(scores))
        state.attention_mask = mask
        state.positions = state.positions + active.long().sum(-1)
        return scores[:, 0] if single else scores

    # -- scoring whole rollouts ----------------------------------------------------------------
    @torch.no_grad()
    def score_rollouts(self, output, reduction: str = "sum", num_return_sequences: int | None = None) -> RMScores:
        """Score the latent steps of a ``LatentGenerateOutput`` -> :class:`RMScores`.

        The prompt pass runs once per question (rows are question-major, N =
        ``output.num_return_sequences``); its KV cache is repeated N times and
        all latent steps of all rows are scored in one more forward pass.
        Steps beyond a row's ``latent_lengths`` are masked and do not count.
        """
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}; got {reduction!r}.")
        latents, prompt_ids, prompt_mask, step_mask = self._scored_parts(output)
        rows, steps = latents.shape[:2]
        device, p = prompt_ids.device, prompt_ids.shape[1]
        n = num_return_sequences or getattr(output, "num_return_sequences", None) or 1
        shared = n > 1 and rows % n == 0
        if shared:
            q_ids = prompt_ids.view(rows // n, n, p)
            q_mask = prompt_mask.view(rows // n, n, p)
            shared = bool((q_ids == q_ids[:, :1]).all()) and bool((q_mask == q_mask[:, :1]).all())
        group = n if shared else 1
        # ghost copies of the last question keep every forward at >= MIN_ROWS rows (see RolloutSetup.with_ghosts)
        extra = ghost_questions(rows // group, group) * group
        index = torch.cat([torch.arange(rows, device=device), torch.arange(rows - group, rows, device=device).repeat(
            extra // group)]) if extra else None
        grow = (lambda t: t[index]) if extra else (lambda t: t)
        with eval_mode(self):
            if shared:
                state = self.rm_prefill(grow(prompt_ids)[::n], grow(prompt_mask)[::n], steps).repeat_interleave(n)
            else:
                state = self.rm_prefill(grow(prompt_ids), grow(prompt_mask), steps)
            if steps:
                step_scores = self.rm_step(state, grow(latents.to(device)), grow(step_mask))[:rows]
            else:
                step_scores = torch.zeros(rows, 0, device=device)
        return RMScores(
            step_scores=step_scores,
            step_mask=step_mask,
            trajectory_scores=reduce_step_scores(step_scores, step_mask, reduction),
            reduction=reduction,
        )

    def _scored_parts(self, output) -> tuple:
        """(latents, prompt ids, prompt mask, step mask) of a ``LatentGenerateOutput`` to score, on the RM's device;
        refuses anything else, and latent slots that are not the RM's ``latent_id``."""
        if not all(getattr(output, name, None) is not None for name in ("sequences", "latents", "prompt_length")):
            got = f"a {type(output).__name__}" + (f" of shape {tuple(output.shape)}" if hasattr(output, "shape") else "")
            raise TypeError(
                f"score_rollouts expects the LatentGenerateOutput of model.generate(..., "
                f"return_dict_in_generate=True); got {got}. Call generate with return_dict_in_generate=True."
            )
        latents = output.latents
        self._check_latents(latents)
        rows, steps = latents.shape[:2]
        device = self.get_input_embeddings().weight.device
        p = output.prompt_length
        prompt_ids = output.sequences[:, :p].to(device)
        prompt_mask = output.attention_mask[:, :p].to(device)
        lengths = output.latent_lengths
        if lengths is None:
            lengths = torch.full((rows,), steps, dtype=torch.long)
        step_mask = torch.arange(steps, device=device)[None, :] < lengths.to(device)[:, None]
        latent_id = self.config.latent_id
        if latent_id is not None and steps:
            slot_ids = output.sequences[:, p : p + steps].to(device)
            wrong = step_mask & (slot_ids != latent_id)
            if bool(wrong.any()):
                found = int(slot_ids[wrong][0])
                raise ValueError(
                    f"The rollout's latent slots hold token id {found} but the LatentRM's latent_id is {latent_id}; "
                    "the RM and the backbone must share the latent special tokens."
                )
        return latents, prompt_ids, prompt_mask, step_mask


def one_output(linear: nn.Linear, hidden: torch.Tensor) -> torch.Tensor:
    """(..., hidden) -> (...,): a one-output ``linear`` as a row-wise product and sum, the same bits for a row
    whatever else is in the batch.

    As a matrix product with one output column, CPU kernels run a matrix-vector
    product that handles the rows in blocks and the last rows of a call (its
    row count modulo 4) on another path, which rounds differently: a question
    whose rows came last in a call of 17 or 33 questions got an RM score that
    differed from its batch-1 score in the 6th decimal.  The product and sum
    reduce each row on its own, in one order.
    """
    score = (hidden * linear.weight[0].to(hidden.dtype)).sum(-1)
    return score if linear.bias is None else score + linear.bias[0].to(hidden.dtype)


class COCONUTGPT2ForTokenClassification(LatentRMMixin, GPT2ForTokenClassification):
    """GPT-2 LatentRM (the released ``ModalityDance/latent-tts-rm`` layout: ``transformer.*`` + ``classifier.*``)."""

    config_class = LatentRMGPT2Config
    head_prefixes = ("classifier.",)

    def rm_head(self, hidden: torch.Tensor) -> torch.Tensor:
        return one_output(self.classifier, hidden)


class LatentRMLlamaForTokenClassification(LatentRMMixin, LlamaForTokenClassification):
    """Llama LatentRM (for CoLaR): ``model.*`` + ``score.*`` weights, as ``LlamaForTokenClassification``."""

    config_class = LatentRMLlamaConfig
    head_prefixes = ("score.",)

    def __init__(self, config):
        # the parent's __init__ builds its body with AutoModel.from_config, which maps this config class back to
        # this RM (it is registered for AutoModel): build the same modules directly instead
        LlamaPreTrainedModel.__init__(self, config)
        self.num_labels = config.num_labels
        self.model = LlamaModel(config)
        dropout = getattr(config, "classifier_dropout", None)
        self.dropout = nn.Dropout(dropout if dropout is not None else 0.0)
        self.score = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def rm_head(self, hidden: torch.Tensor) -> torch.Tensor:
        return one_output(self.score, hidden)


__all__ = [
    "COCONUTGPT2ForTokenClassification",
    "LatentRMLlamaForTokenClassification",
    "LatentRMMixin",
    "RMScores",
    "RMState",
    "reduce_step_scores",
    "REDUCTIONS",
]
