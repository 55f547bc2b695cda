"""The backbone recipe's curriculum: encoding a stage's batch, its loss, greedy evaluation and the schedule
(``train_backbone`` runs it)."""

from __future__ import annotations

import math
import warnings
from typing import Dict, List, Sequence

import torch

from lm_eval_latenttts.training.recipes.backbone_model import END_LATENT, LATENT, START_LATENT


# --------------------------------------------------------------------------- data
def encode_batch(tok, examples: Sequence[Dict], stage: int, n_latent: int):
    """(input_ids, attention_mask, labels) of a curriculum stage: the prompt (left padded), ``n_latent`` latent
    slots, then ``<|end-latent|>`` + the remaining steps + ``### answer`` + eos (right padded).

    Labels are the tokens after ``<|end-latent|>`` (the causal LM loss predicts
    each from the position before it); prompt, slots and padding are -100.
    """
    eos, end, slot = tok.eos_token_id, tok.convert_tokens_to_ids(END_LATENT), tok.convert_tokens_to_ids(LATENT)
    prefixes = [ex["question"] + "\n" + START_LATENT for ex in examples]
    suffixes = ["".join(s + "\n" for s in ex["steps"][stage:]) + "### " + ex["answer"] for ex in examples]
    pre = tok(prefixes, padding=True, return_tensors="pt", add_special_tokens=False)
    suf_ids = [[end] + tok(s, add_special_tokens=False)["input_ids"] + [eos] for s in suffixes]
    width = max(len(s) for s in suf_ids)
    rows = len(examples)
    suf = torch.full((rows, width), eos, dtype=torch.long)
    suf_mask = torch.zeros((rows, width), dtype=torch.long)
    suf_labels = torch.full((rows, width), -100, dtype=torch.long)
    for i, ids in enumerate(suf_ids):
        suf[i, :len(ids)] = torch.tensor(ids)
        suf_mask[i, :len(ids)] = 1
        suf_labels[i, 1:len(ids)] = torch.tensor(ids[1:])
    slots = torch.full((rows, n_latent), slot, dtype=torch.long)
    input_ids = torch.cat([pre["input_ids"], slots, suf], dim=1)
    attention_mask = torch.cat([pre["attention_mask"], torch.ones_like(slots), suf_mask], dim=1)
    labels = torch.cat([torch.full_like(pre["input_ids"], -100), torch.full_like(slots, -100), suf_labels], dim=1)
    return input_ids, attention_mask, labels


def train_loss(model, tok, examples, stage: int, latents_per_step: int, noise: float):
    """The curriculum loss of a batch: the model's own latent-aware forward (no private latent loop)."""
    input_ids, attention_mask, labels = encode_batch(tok, examples, stage, stage * latents_per_step)
    return model(input_ids=input_ids, attention_mask=attention_mask, labels=labels, latent_noise_std=noise).loss


# --------------------------------------------------------------------------- inference
@torch.no_grad()
def evaluate(model, tok, examples, n_latent: int, max_new_tokens: int = 8, batch_size: int = 512) -> float:
    """Greedy accuracy with ``n_latent`` latent steps (the rest of the chain, if any, decoded as text): the
    rollout the exported checkpoint gets at test time."""
    from lm_eval_latenttts.scaling.rollouts import decode_answers

    was_training = model.training
    correct = 0
    try:
        for b0 in range(0, len(examples), batch_size):
            chunk = examples[b0:b0 + batch_size]
            enc = tok([model.format_prompt(e["question"]) for e in chunk], padding=True, return_tensors="pt",
                      add_special_tokens=False)
            out = model.generate(**enc, latent_sampling=None, num_return_sequences=1, latent_length=n_latent,
                                 max_new_tokens=max_new_tokens, return_dict_in_generate=True)
            texts = decode_answers(tok, out.answer_ids)
            correct += sum(model.is_correct(t, e["answer"]) for t, e in zip(texts, chunk))
    finally:
        model.train(was_training)
    return correct / max(1, len(examples))


# --------------------------------------------------------------------------- schedule
def stage_bounds(stage_steps: List[int]) -> List[int]:
    out, acc = [], 0
    for s in stage_steps:
        acc += s
        out.append(acc)
    return out


def stage_at(step: int, bounds: List[int]) -> int:
    for i, b in enumerate(bounds):
        if step < b:
            return i
    return len(bounds) - 1


def lr_at(step: int, total: int, lr: float, warmup: int, min_ratio: float = 0.1) -> float:
    if step < warmup:
        return lr * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return lr * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


def evaluate_stage(model, tok, examples, stage: int, latents_per_step: int) -> float:
    """Accuracy with ``stage`` latent steps and the remaining steps generated as text."""
    with warnings.catch_warnings():  # stage 0 is the chain of thought in text, on purpose: no latent step
        warnings.filterwarnings("ignore", message="latent_length=0", category=UserWarning)
        return evaluate(model, tok, examples, stage * latents_per_step, max_new_tokens=40)
