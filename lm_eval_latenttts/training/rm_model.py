"""The LatentRM a run trains and the one it writes: loading the initial RM (an RM, or a new head on a backbone),
checking it against the annotation, LoRA, and saving the trained RM with its card (``rm_training`` runs it)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from lm_eval_latenttts.training.rm_checkpoints import SUMMARY_FILE


def load_rm(init, dtype=torch.float32):
    """(rm, tokenizer or None, source kind 'rm' | 'backbone'): an existing RM, or a new head on a backbone."""
    from hf_modeling import AutoLatentModel, load_latent_tokenizer, resolve_checkpoint
    from hf_modeling.auto import has_tokenizer

    rm, source = AutoLatentModel.rm_from_pretrained(init, dtype=dtype)
    # an RM folder without tokenizer files: the annotation's backbone has one; damaged files are an error
    tokenizer = load_latent_tokenizer(init) if has_tokenizer(resolve_checkpoint(init)) else None
    return rm, tokenizer, source


def reinitialise(rm, std: float | None = None) -> None:
    """Fresh weights of the RM's architecture (GPT-2's scheme: N(0, initializer_range) for linear and embedding
    weights, zero biases, unit LayerNorms / RMSNorms): the lever "what does the backbone's training give the RM"."""
    from torch import nn
    from transformers.pytorch_utils import Conv1D

    std = std if std is not None else getattr(rm.config, "initializer_range", 0.02)
    with torch.no_grad():
        for module in rm.modules():
            if isinstance(module, (nn.Linear, Conv1D, nn.Embedding)):
                module.weight.normal_(0.0, std)
                if getattr(module, "bias", None) is not None:
                    module.bias.zero_()
            elif isinstance(module, nn.LayerNorm) or type(module).__name__.endswith("RMSNorm"):
                module.weight.fill_(1.0)
                if getattr(module, "bias", None) is not None:
                    module.bias.zero_()


def _blocks(rm):
    """(the RM's ModuleList of transformer blocks, the config field that counts them)."""
    if hasattr(rm, "transformer"):  # GPT-2
        return rm.transformer.h, "n_layer"
    return rm.model.layers, "num_hidden_layers"  # Llama


def resize_layers(rm, layers: int) -> None:
    """Give the RM ``layers`` transformer blocks (the lever "RM size"; the hidden size is the latents' and stays):
    fewer keep the init's first blocks, more append new blocks initialised as :func:`reinitialise` does."""
    import copy

    blocks, field = _blocks(rm)
    have = len(blocks)
    if layers < have:
        del blocks[layers:]
    for i in range(have, layers):
        block = copy.deepcopy(blocks[-1])
        for module in block.modules():  # the layer index a block's attention keeps for the KV cache
            if hasattr(module, "layer_idx"):
                module.layer_idx = i
        reinitialise(block, getattr(rm.config, "initializer_range", 0.02))
        blocks.append(block)
    setattr(rm.config, field, layers)
    types = getattr(rm.config, "layer_types", None)  # per-layer attention kinds, where the config has them
    if isinstance(types, list) and types:
        rm.config.layer_types = (types + types[-1:] * layers)[:layers]


def check_rm_against_data(rm, hidden_size, backbone_config=None):
    """Clear errors when the annotated latents (or the annotating backbone) do not fit the RM."""
    size = rm.get_input_embeddings().weight.shape[1]
    if hidden_size != size:
        raise ValueError(
            f"The annotation's latent vectors have {hidden_size} dimensions but the LatentRM's hidden size is "
            f"{size}: the RM must be initialised from the backbone that produced the annotation (or an RM of "
            "the same size)."
        )
    if rm.config.latent_id is None:
        raise ValueError("The LatentRM config has no latent_id; initialise it from a latent backbone checkpoint.")
    if backbone_config is not None:
        rm.check_backbone(backbone_config)


def _lora(model, cfg):
    from peft import LoraConfig, get_peft_model

    if model.config.model_type.endswith("gpt2") or hasattr(model, "transformer"):
        targets, head, fan = ["c_attn", "c_proj", "c_fc"], ["classifier"], True
    else:
        targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
        head, fan = ["score"], False
    config = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                        target_modules=targets, modules_to_save=head, fan_in_fan_out=fan)
    return get_peft_model(model, config)


def _unwrap_rm(model):
    """The plain RM (LoRA merged) to save."""
    if hasattr(model, "merge_and_unload"):
        return model.merge_and_unload()
    return model


def rm_config(model):
    """The config of a (possibly DDP- or peft-wrapped) RM."""
    while not hasattr(model, "config") and hasattr(model, "module"):
        model = model.module
    return model.config


def save_rm(rm, tokenizer, out, summary):
    """save_pretrained (safetensors, modeling code, auto_map, model card) + tokenizer + summary."""
    from lm_eval_latenttts.publishing.model_card import rm_model_card

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rm.config.architectures = [type(rm).__name__]
    rm.save_pretrained(str(out), safe_serialization=True, model_card=rm_model_card(summary, rm))
    if tokenizer is not None:
        tokenizer.save_pretrained(str(out))
    (out / SUMMARY_FILE).write_text(json.dumps(summary, indent=2, default=str))
    return out


__all__ = ["check_rm_against_data", "load_rm", "reinitialise", "resize_layers", "rm_config", "save_rm"]
