"""The backbone recipe's tokenizer and model: a small word/char tokenizer and a tiny COCONUT-layout GPT-2, exported
in the released layout (``train_backbone`` trains it)."""

from __future__ import annotations

import json
import os
import string
from typing import Dict, List, Optional

import torch

START_LATENT = "<|start-latent|>"
LATENT = "<|latent|>"
END_LATENT = "<|end-latent|>"
EOS = "<|endoftext|>"
UNK = "<|unk|>"

WORDS = ["Start", "at", "plus", "minus", "times", "then", "Answer", "mod",
         "What", "is", "the", "result", "answer", "and", "of", "by"]
PRE_TOKENIZE_PATTERN = r"<<|>>|###|[A-Za-z]+|\d|\s|[^\sA-Za-z\d]"


# --------------------------------------------------------------------------- tokenizer
def build_tokenizer():
    """Small word/char-level tokenizer (``PreTrainedTokenizerFast``), built offline.

    Digits, punctuation, ``" "`` and ``"\\n"`` are single tokens; the few words of
    the task are word tokens; anything else maps to ``<|unk|>``. Decoding
    concatenates tokens (so ``"### 65"`` round-trips).
    """
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    pieces: List[str] = [EOS, UNK]
    pieces += list(string.digits) + [" ", "\n"] + list(string.punctuation)
    pieces += ["<<", ">>", "###"] + WORDS
    vocab = {}
    for p in pieces:
        if p not in vocab:
            vocab[p] = len(vocab)
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(PRE_TOKENIZE_PATTERN), behavior="isolated")
    tok.decoder = decoders.Fuse()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                            for t in (EOS, UNK, START_LATENT, LATENT, END_LATENT)])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=EOS, eos_token=EOS, pad_token=EOS, unk_token=UNK,
        clean_up_tokenization_spaces=False, padding_side="left", model_max_length=128)
    return fast


def latent_ids(tok) -> Dict[str, int]:
    return {
        "latent_id": tok.convert_tokens_to_ids(LATENT),
        "latent_start_id": tok.convert_tokens_to_ids(START_LATENT),
        "latent_end_id": tok.convert_tokens_to_ids(END_LATENT),
        "target_id": tok.convert_tokens_to_ids(">>"),
    }


# --------------------------------------------------------------------------- model
# test-time settings recommended with the exported model (valid split; adaptive: benchmarks/adaptive.py,
# docs/adaptive.md)
RECOMMENDED_GENERATION = {"latent_sampling": "dropout", "dropout_p": 0.2, "num_return_sequences": 16,
                          "max_new_tokens": 8, "seed": 0}


def build_model(tok, n_layer: int, n_embd: int, n_head: int, resid_pdrop: float, seed: int, latent_length: int):
    """A fresh ``COCONUTGPT2`` (GPT-2 with a tied head) sized for the task, with the tokenizer's latent ids."""
    from hf_modeling import COCONUTGPT2, CoconutConfig

    eos = tok.convert_tokens_to_ids(EOS)
    cfg = CoconutConfig(
        vocab_size=len(tok), n_positions=128, n_embd=n_embd, n_layer=n_layer, n_head=n_head,
        resid_pdrop=resid_pdrop, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=eos, eos_token_id=eos,
        pad_token_id=eos, tie_word_embeddings=True, latent_length=latent_length, **latent_ids(tok))
    torch.manual_seed(seed)
    return COCONUTGPT2(cfg)


def export(model, tok, out_dir: str, latent_length: int, extra: Optional[Dict] = None,
           info_file: str = "training_info.json") -> None:
    """Write the model in the released COCONUT layout into ``out_dir``.

    That is a plain ``gpt2`` config.json naming ``COCONUTGPT2`` in
    ``architectures`` with the latent fields, GPT-2 weight names, the
    tokenizer, and the recommended test-time settings in generation_config.json.
    """
    from transformers import GPT2Config, GPT2LMHeadModel

    from hf_modeling import LatentGenerationConfig

    os.makedirs(out_dir, exist_ok=True)
    fields = {k: v for k, v in model.config.to_dict().items() if k in GPT2Config().to_dict()}
    plain = GPT2LMHeadModel(GPT2Config(**{k: v for k, v in fields.items() if k not in ("model_type", "architectures")}))
    plain.load_state_dict(model.state_dict())
    plain.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    path = os.path.join(out_dir, "config.json")
    with open(path) as f:
        cfg = json.load(f)
    eos = tok.convert_tokens_to_ids(EOS)
    cfg["architectures"] = ["COCONUTGPT2"]
    cfg.update(latent_ids(tok))
    cfg.update({"eos_token_id": eos, "pad_token_id": eos, "bos_token_id": eos, "latent_length": latent_length})
    _write_json(path, cfg)
    LatentGenerationConfig(bos_token_id=eos, eos_token_id=eos, pad_token_id=eos,
                           **RECOMMENDED_GENERATION).save_pretrained(out_dir)
    if extra is not None:
        _write_json(os.path.join(out_dir, info_file), extra)


def _write_json(path: str, obj) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)
