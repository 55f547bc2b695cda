"""The parts of a latent rollout around its steps: the prompts' checks, each row's answer room in the context
window, the call's seed, and the ``LatentGenerateOutput`` assembled from the final state (``latent_generation``
calls them).  Only torch and sibling modules are imported: this file is copied next to saved checkpoints for
``trust_remote_code`` loading.
"""

from __future__ import annotations

import warnings

import torch

from .latent_state import LatentGenerateOutput


def base_seed(seed: int | None, generator: torch.Generator | None) -> int:
    """The call's seed: a draw from ``generator`` when one is given, else ``seed``, else a draw from torch's global
    generator (``seed=None``: one draw per call, as transformers' sampling; see ``generate``)."""
    if generator is None and seed is not None:
        return seed
    device = generator.device if generator is not None else "cpu"
    return int(torch.randint(0, 2**62, (1,), generator=generator, device=device).item())


def as_list(token_ids):
    if token_ids is None:
        return []
    if isinstance(token_ids, int):
        return [token_ids]
    return list(token_ids)


def check_prompts(model, input_ids, attention_mask):
    """Refuse prompts a latent rollout cannot run, naming what is wrong (dtype, shape, padding side, markers)."""
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
        if getattr(model.config, name, None) is None and not (model.dynamic_latent_length and name != "latent_id"):
            raise ValueError(
                f"The model config has no {name}: the latent special tokens are unknown. Load the model with "
                "hf_modeling.AutoLatentModel.from_pretrained(path), which reads them from the checkpoint's "
                "tokenizer, or set config.latent_id / latent_start_id / latent_end_id."
            )
    start = model.start_marker_id()
    if start is None:
        raise ValueError("The model config does not say which token starts the latent phase.")
    bad = (input_ids[:, -1] != start).nonzero().flatten().tolist()
    if bad:
        raise ValueError(
            f"Prompt rows {bad} do not end with the start marker (token id {start}). Build prompts with "
            "model.encode_prompt(tokenizer, question) (the backbone's prompt format, e.g. COCONUT: "
            "question + '\\n<|start-latent|>')."
        )


def answer_room(model, attention_mask, steps, max_new_tokens):
    """Per row, how many answer tokens fit in the context window after its own prompt (None: no limit).

    Each row is limited by its own prompt length, never by a longer
    neighbour in the batch, so batching does not change a row's answer.
    """
    room = model.context_room(attention_mask.long().sum(-1), steps)
    if room is None:
        return None
    limit = model.max_context_length()
    if bool((room < max_new_tokens).any()):
        warnings.warn(
            f"max_new_tokens={max_new_tokens} does not fit in the context window of {limit} positions after "
            f"the longest prompt; such answers are cut at {int(room.min())} tokens.", UserWarning, stacklevel=7,
        )
    return room


def assemble(model, prompt_ids, state, answer, pad_token_id, n, eos_token_id, room=None):
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
        torch.full_like(active, model.config.latent_id, dtype=torch.long),
        torch.full_like(active, pad_token_id, dtype=torch.long),
    )
    end = torch.full((rows, 1), model.end_marker_id(), dtype=torch.long, device=device)
    sequences = torch.cat([prompt_ids, slot_ids, end, answer], dim=1)
    # answer positions: real up to and including the first EOS
    eos = torch.tensor(as_list(eos_token_id), device=device, dtype=torch.long)
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


__all__ = ["answer_room", "as_list", "assemble", "base_seed", "check_prompts"]
