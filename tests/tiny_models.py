"""Tiny random checkpoints in the released layouts, built locally (no Hub).

``make_tokenizer`` is a byte-level tokenizer (any text encodes) with GPT-2's
``<|endoftext|>`` and the three latent tokens added; ``make_checkpoint`` writes
a folder like the released ones: config.json with ``model_type`` gpt2/llama and
``architectures`` COCONUTGPT2 / CODIGPT2 / ColarLlama, safetensors weights
with the base model's key names, and the tokenizer.
"""

import json
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

LATENT_TOKENS = ["<|start-latent|>", "<|latent|>", "<|end-latent|>"]


def make_tokenizer(extra_tokens=LATENT_TOKENS, colar=False):
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(alphabet))}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|endoftext|>", bos_token="<|endoftext|>")
    added = list(extra_tokens) + (["###"] if colar else [])
    tok.add_tokens(added)
    tok.pad_token = tok.eos_token
    return tok


def make_checkpoint(folder, kind="coconut", ids_in_config=True, seed=0, n_layer=2, hidden=32, tokenizer=None,
                    n_positions=256):
    """Write a tiny random checkpoint of ``kind`` (coconut, codi, colar) in the released layout."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tok = tokenizer if tokenizer is not None else make_tokenizer(colar=(kind == "colar"))
    tok.save_pretrained(folder)
    torch.manual_seed(seed)
    vocab = len(tok)
    eos = tok.eos_token_id
    if kind in ("coconut", "codi"):
        config = GPT2Config(
            vocab_size=vocab, n_positions=n_positions, n_embd=hidden, n_layer=n_layer, n_head=2,
            bos_token_id=eos, eos_token_id=eos, pad_token_id=eos,
        )
        model = GPT2LMHeadModel(config)
    else:
        config = LlamaConfig(
            vocab_size=vocab, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=n_layer,
            num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=n_positions,
            bos_token_id=eos, eos_token_id=eos, pad_token_id=eos, tie_word_embeddings=False,
        )
        model = LlamaForCausalLM(config)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    if kind == "codi":
        p = 2 * hidden
        state.update({
            "projector.1.weight": torch.randn(p, hidden) * 0.1, "projector.1.bias": torch.zeros(p),
            "projector.3.weight": torch.randn(hidden, p) * 0.1, "projector.3.bias": torch.zeros(hidden),
            "projector.4.weight": torch.ones(hidden), "projector.4.bias": torch.zeros(hidden),
        })
    if kind == "colar":
        i = 2 * hidden
        state.update({
            # the released ColarLlama names (reference LatentHead: fc = Linear, GELU, Linear, LayerNorm; mean)
            "lt_head.fc.0.weight": torch.randn(i, hidden) * 0.1, "lt_head.fc.0.bias": torch.zeros(i),
            "lt_head.fc.2.weight": torch.randn(i, i) * 0.1, "lt_head.fc.2.bias": torch.zeros(i),
            "lt_head.fc.3.weight": torch.ones(i), "lt_head.fc.3.bias": torch.zeros(i),
            "lt_head.mean.weight": torch.randn(hidden, i) * 0.1, "lt_head.mean.bias": torch.zeros(hidden),
        })
    if kind != "colar":
        state.pop("lm_head.weight", None)  # tied to wte, as GPT-2 checkpoints store it
    from safetensors.torch import save_file

    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    raw = config.to_dict()
    raw["architectures"] = {"coconut": ["COCONUTGPT2"], "codi": ["CODIGPT2"], "colar": ["ColarLlama"]}[kind]
    raw["transformers_version"] = "4.52.4"
    if kind == "codi":
        raw.update(projector=True, projector_hidden_size=2 * hidden, projector_dropout=0.0)
    if kind == "colar":
        raw.update(latent_intermediate_size=2 * hidden, latent_embedding_std=0.5, max_latent_length=8)
    if ids_in_config:
        for field, text in zip(("latent_start_id", "latent_id", "latent_end_id"), LATENT_TOKENS):
            raw[field] = tok.convert_tokens_to_ids(text)
        if kind == "colar":
            raw["end_marker_id"] = tok.convert_tokens_to_ids("###")
    (folder / "config.json").write_text(json.dumps(raw, indent=2))
    return folder

