"""What a latent backbone adds to its transformers causal LM, in one base class: ``LatentBackboneMixin``.

- ``generate`` and the steps of a latent rollout (``LatentGenerationMixin``, ``latent_generation``);
- ``save_pretrained`` with ``auto_map`` and a model card (``LatentHubMixin``, ``hub``, shared with the LatentRMs);
- the text side: the prompt format (SPEC) and where the answer is: ``format_prompt``, ``encode_prompt``
  (special-token text in a question stays text), ``extract_answer`` and ``is_correct``; the lm-eval model, the
  tasks, annotation, the recipes and the benchmarks call these instead of knowing the formats themselves;
- ``forward`` with latent slots, for training: on a sequence whose ``latent_id`` slots mark where the latent
  steps go it runs what the model does at test time: the tokens before the slots in one pass, then one pass
  per slot whose input embedding is the fed-back vector of the previous position (``latent_vector(h)``,
  gradients flow through it, as in COCONUT), then the tokens after the slots in one pass, all on one KV
  cache.  Logits cover every position and the loss is the usual causal LM loss on ``labels`` (-100 is
  ignored; give the latent slots -100).  A sequence without latent slots is the base model's ordinary
  ``forward``.  Every row must have its slots in the same columns (left-pad the part before them, right-pad
  the part after).

A backbone class names this base and its transformers class (``class COCONUTGPT2(_GPT2LatentMixin,
GPT2LMHeadModel)``) and sets ``latent_kind`` and ``prompt_template``.  Besides torch and transformers it
imports only sibling modules, which ``save_pretrained`` copies next to a checkpoint (``trust_remote_code``).
"""

from __future__ import annotations

import torch
from transformers import PreTrainedTokenizerBase
from transformers.modeling_outputs import CausalLMOutputWithPast

from .answers import answers_equal, extract_answer
from .hub import LatentHubMixin
from .latent_generation import LatentGenerationMixin
from .latent_state import prompt_pass


class LatentBackboneMixin(LatentHubMixin, LatentGenerationMixin):
    """The base of every latent backbone (see the module docstring); the transformers class comes after it."""

    auto_classes = ("AutoModelForCausalLM", "AutoModel")
    card_pipeline_tag = "text-generation"
    latent_kind: str | None = None  # "coconut" | "codi" | "colar": prompt and answer formats (SPEC)
    prompt_template = "{question}"

    def card_description(self) -> str:
        config = self.latent_generation_config()
        steps = (f"up to {self.config.max_latent_length} latent steps (stops at its end marker)"
                 if self.dynamic_latent_length else f"{self.config.latent_length} latent steps")
        sampling = config.latent_sampling or "none"
        strength = {"dropout": f", dropout_p={config.dropout_p}", "noise": f", noise_std={config.noise_std}"}
        return "\n".join([
            f"A {self.latent_kind.upper()} latent reasoning model (Parallel Test-Time Scaling for Latent Reasoning "
            "Models, arXiv 2510.07745): it reasons in continuous latent vectors before decoding its answer.",
            "",
            f"- Prompt format: `{self.prompt_template!r}`; {steps}.",
            f"- Recommended test-time scaling (generation_config.json): sampling={sampling}"
            f"{strength.get(sampling, '')}, N={config.num_return_sequences}, seed={config.seed}.",
        ])

    # -- the text side -------------------------------------------------------------------------------
    def format_prompt(self, question: str) -> str:
        """The backbone's prompt format (SPEC) around a bare question, ending with the start marker."""
        return self.prompt_template.replace("{question}", question)

    def encode_prompt(self, tokenizer: PreTrainedTokenizerBase, question: str) -> list[int]:
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
        ids = list(tokenizer(chunks[0])["input_ids"])
        for chunk in chunks[1:]:
            ids += tokenizer(chunk, add_special_tokens=False)["input_ids"]
        return ids

    def extract_answer(self, text: str | None) -> str | None:
        """The answer in a decoded answer ``text``, in this backbone's answer format (SPEC)."""
        return extract_answer(text, self.latent_kind)

    def is_correct(self, text: str | None, gold: str | int | float | None) -> bool:
        """True when the answer in ``text`` equals ``gold`` (numbers compare as numbers)."""
        return answers_equal(self.extract_answer(text), gold)

    # -- forward with latent slots (training) --------------------------------------------------------
    def forward(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, latent_noise_std: float = 0.0, **kwargs) -> CausalLMOutputWithPast:
        latent_id = getattr(self.config, "latent_id", None)
        if input_ids is None or latent_id is None or not bool((input_ids == latent_id).any()):
            return super().forward(input_ids=input_ids, attention_mask=attention_mask, labels=labels, **kwargs)
        if kwargs.get("inputs_embeds") is not None or kwargs.get("cache") is not None:
            raise ValueError("A sequence with latent slots is run from input_ids alone (no inputs_embeds / cache).")
        return self._forward_through_latents(input_ids, attention_mask, labels, latent_noise_std)

    def _latent_columns(self, input_ids: torch.Tensor) -> tuple[int, int]:
        slots = input_ids == self.config.latent_id
        first_row = slots[0].nonzero().flatten()
        start, end = int(first_row[0]), int(first_row[-1]) + 1
        if not bool((slots == slots[0]).all()) or end - start != first_row.numel():
            raise ValueError(
                "Every row must hold its latent slots in the same, contiguous columns: left-pad the tokens before "
                "them and right-pad the tokens after them."
            )
        return start, end

    def _forward_through_latents(self, input_ids, attention_mask, labels, latent_noise_std):
        start, end = self._latent_columns(input_ids)
        if start == 0:
            raise ValueError("A latent slot needs at least one token before it (the start marker).")
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        out, _ = prompt_pass(self.base_model, self.config, input_ids[:, :start], attention_mask[:, :start])
        cache = out.cache
        positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)  # of the whole row, for the later passes
        hidden = [out.last_hidden_state]
        last = out.last_hidden_state[:, -1:]
        for column in range(start, end):
            latent = self.latent_vector(last)
            if latent_noise_std:
                latent = latent + latent_noise_std * torch.randn_like(latent)
            last = self.base_model(inputs_embeds=latent, attention_mask=attention_mask[:, : column + 1],
                                   position_ids=positions[:, column: column + 1], cache=cache,
                                   use_cache=True).last_hidden_state
            hidden.append(last)
        if end < input_ids.shape[1]:
            hidden.append(self.base_model(input_ids=input_ids[:, end:], attention_mask=attention_mask,
                                          position_ids=positions[:, end:], cache=cache,
                                          use_cache=True).last_hidden_state)
        logits = self.get_output_embeddings()(torch.cat(hidden, dim=1))
        loss = None
        if labels is not None:
            loss = self.loss_function(logits=logits, labels=labels, vocab_size=self.config.vocab_size)
        return CausalLMOutputWithPast(loss=loss, logits=logits)


def _occurrences(text: str, sub: str) -> list[int]:
    """Start indices of every (possibly overlapping) occurrence of ``sub`` in ``text``."""
    found, start = [], text.find(sub)
    while start != -1:
        found.append(start)
        start = text.find(sub, start + 1)
    return found


__all__ = ["LatentBackboneMixin"]
