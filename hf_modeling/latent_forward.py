"""The latent-aware ``forward`` of a latent backbone: teacher forcing through latent slots, for training.

``model(input_ids, attention_mask, labels=...)`` on a sequence whose
``latent_id`` slots mark where the latent steps go runs what the model does at
test time: the tokens before the slots in one pass, then one pass per slot
whose input embedding is the fed-back vector of the previous position
(``latent_vector(h)``, gradients flow through it, as in COCONUT), then the
tokens after the slots in one pass, all on one KV cache.  Logits cover every
position and the loss is the usual causal LM loss on ``labels`` (-100 is
ignored; give the latent slots -100).  A sequence without latent slots is the
base model's ordinary ``forward``.  Every row must have its slots in the same
columns (left-pad the part before them, right-pad the part after).

Besides torch and transformers it imports only sibling modules, which
``save_pretrained`` copies next to a checkpoint with it (``trust_remote_code``).
"""

from __future__ import annotations

import torch
from transformers.modeling_outputs import CausalLMOutputWithPast

from .latent_state import prompt_pass


class LatentForwardMixin:
    """``forward`` with latent slots; the class provides ``base_model``, ``latent_vector`` and the LM head."""

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


__all__ = ["LatentForwardMixin"]
