"""From prompts to candidates: N latent rollouts per question, their answers and LatentRM scores.

The lm-eval model and ``benchmarks/scaling.py`` both get a question's
candidates here, so they see the same rollouts (sample j of a question is a
function of (seed, question, j), see ``hf_modeling.latent_sampling``) and the
same answers (the backbone's ``extract_answer``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from hf_modeling.generation_config import LatentGenerationConfig


@dataclass
class Candidates:
    """One question's candidates: decoded answer texts, extracted answers, RM trajectory scores (None
    without an RM), latent steps taken; ``chosen`` is set by beam search, ``latents`` on request.

    What they cost: ``drawn`` rollouts (1 with sampling off, where one stands for all N; B*C for beam
    search) and ``latent_forwards`` latent forward steps (rows x steps, the unit beam search is compared
    in); ``stopped`` says why no more were drawn (``scaling.adaptive``).  With ``keep_latents`` a sample
    also keeps what the evidence report measures: ``answer_tokens`` (tokens generated, up to and including
    the first EOS) and ``step_scores`` (the RM's per latent step)."""

    texts: list[str]
    answers: list[str | None]
    scores: list[float] | None
    latent_steps: list[int]
    drawn: int
    latent_forwards: int
    chosen: int | None = None
    latents: torch.Tensor | None = None
    stopped: str | None = None
    answer_tokens: list[int] | None = None
    step_scores: list[list[float]] | None = None

    def extend(self, other: Candidates) -> None:
        """Append the candidates of a later call (samples ``offset..``) for the same question."""
        self.texts += other.texts
        self.answers += other.answers
        self.latent_steps += other.latent_steps
        self.drawn += other.drawn
        self.latent_forwards += other.latent_forwards
        if self.scores is not None:
            self.scores += other.scores
        if self.latents is not None:
            self.latents = torch.cat([self.latents, other.latents])
        if self.answer_tokens is not None:
            self.answer_tokens += other.answer_tokens
        if self.step_scores is not None:
            self.step_scores += other.step_scores


EXACT_UP_TO = 64  # prompts up to this many tokens are not padded (they are cheap; the shipped task's are 30)


def padded_length(length: int) -> int:
    """The width a prompt of ``length`` tokens is left-padded to: a function of its own length only.

    Padding changes a row's numbers in the last bits (the attention's
    reductions run over the padded keys), so a row must get the same padding
    whatever it is batched with: its width is its length rounded up to a
    bucket, never to a neighbour's length.  Prompts of one bucket share a call
    (``harness.batching`` groups by this width).  Up to ``EXACT_UP_TO`` tokens
    the width is the length; above, a step of 1/8 of the next power of two
    (65..128 -> multiples of 16, ..., 513..1024 -> of 128): at most 1/8 of the
    row is padding on average, and GSM8K's 362 distinct lengths fall into 15 buckets.
    """
    if length <= EXACT_UP_TO:
        return length
    step = 2 ** ((length - 1).bit_length() - 3)
    return -(-length // step) * step


def left_pad(prompts: list[list[int]], pad_token_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask) of token-id prompts, left padded as latent rollouts need, to the canonical
    width of the longest (``padded_length``): prompts of one bucket get the layout they get alone."""
    width = padded_length(max(len(p) for p in prompts))
    ids = torch.full((len(prompts), width), pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        ids[row, width - len(prompt):] = torch.tensor(prompt, dtype=torch.long)
        mask[row, width - len(prompt):] = 1
    return ids.to(device), mask.to(device)


def decode_answers(tokenizer, answer_ids: torch.Tensor, eos_token_id=None) -> list[str]:
    """Answer texts of generated answer ids, each cut at its first EOS."""
    eos = {tokenizer.eos_token_id} if eos_token_id is None else set(
        [eos_token_id] if isinstance(eos_token_id, int) else eos_token_id)
    texts = []
    for row in answer_ids.tolist():
        cut = next((i for i, token in enumerate(row) if token in eos), len(row))
        texts.append(tokenizer.decode(row[:cut], skip_special_tokens=True))
    return texts


def answer_lengths(tokenizer, answer_ids: torch.Tensor) -> list[int]:
    """Tokens each row generated, up to and including its first EOS (all of them if none)."""
    return [next((i + 1 for i, token in enumerate(row) if token == tokenizer.eos_token_id), len(row))
            for row in answer_ids.tolist()]


def _candidates(model, tokenizer, answer_ids, rows_per_question, scores, steps, latents=None,
                step_scores=None) -> list[Candidates]:
    texts = decode_answers(tokenizer, answer_ids)
    lengths = answer_lengths(tokenizer, answer_ids) if latents is not None else None
    out = []
    for start in range(0, len(texts), rows_per_question):
        rows = slice(start, start + rows_per_question)
        out.append(Candidates(
            texts=texts[rows], answers=[model.extract_answer(t) for t in texts[rows]],
            scores=None if scores is None else scores[rows], latent_steps=steps[rows],
            drawn=rows_per_question, latent_forwards=sum(steps[rows]),
            latents=None if latents is None else latents[rows].float().cpu(),
            answer_tokens=None if lengths is None else lengths[rows],
            step_scores=None if step_scores is None else step_scores[rows],
        ))
    return out


def _check_seed(config) -> None:
    """Refuse ``seed=None`` here: it draws a seed per call (``generate``'s semantics), so a question's samples would
    depend on the batch it is drawn in; the caller fixes the seed first (the harness draws one per run)."""
    if config.seed is None:
        raise ValueError("scaling.rollouts draws questions a batch at a time, and seed=None would draw a new seed "
                         "for every batch: pass an int seed (the lm-eval harness draws one per run for seed=none).")


@torch.no_grad()
def sample(model, tokenizer, prompts: list[list[int]], config: LatentGenerationConfig, rm=None,
           sample_offset: int = 0, keep_latents: bool = False, count: int | None = None) -> list[Candidates]:
    """Samples ``sample_offset .. sample_offset + count - 1`` of each prompt (``count``: default N) in one
    batched rollout (``model.rollout``; a ``config`` resolved by ``model.latent_generation_config`` is used as
    is, else resolved here with the tokenizer's EOS and pad ids).

    With sampling off one rollout is drawn and stands for all ``count`` (they
    would be identical).  With ``rm`` every candidate gets its trajectory score.
    """
    _check_seed(config)
    count = config.num_return_sequences if count is None else count
    draws = count if config.samples else 1
    if not (config.resolved_for(model.latent_kind) and config.eos_token_id == tokenizer.eos_token_id
            and config.pad_token_id == tokenizer.pad_token_id):
        config = model.latent_generation_config(config, eos_token_id=tokenizer.eos_token_id,
                                                pad_token_id=tokenizer.pad_token_id)
    ids, mask = left_pad(prompts, tokenizer.pad_token_id, model.device)
    out = model.rollout(ids, mask, config, draws, sample_offset=sample_offset)
    scores = step_scores = None
    if rm is not None:
        rated = rm.score_rollouts(out, reduction=config.reduction)
        scores = rated.trajectory_scores.float().cpu().tolist()
        step_scores = rated.step_scores.float().cpu().tolist() if keep_latents else None
    found = _candidates(model, tokenizer, out.answer_ids, draws, scores, out.latent_lengths.cpu().tolist(),
                        out.latents if keep_latents else None, step_scores)
    if draws != count:
        for c in found:  # deterministic: the N rollouts are the same rollout
            n = count
            c.texts, c.answers, c.latent_steps = c.texts * n, c.answers * n, c.latent_steps * n
            c.scores = None if c.scores is None else c.scores * n
            if keep_latents:
                c.latents = c.latents.repeat(n, *([1] * (c.latents.dim() - 1)))
                c.answer_tokens = c.answer_tokens * n
                c.step_scores = None if c.step_scores is None else c.step_scores * n
    return found


@torch.no_grad()
def beam(model, tokenizer, prompts: list[list[int]], config: LatentGenerationConfig, rm,
         keep_latents: bool = False) -> list[Candidates]:
    """RM-guided beam search: the B final beams are the candidates, ``chosen`` the beam it picked.

    ``drawn`` counts the B*C candidates of a latent step, ``latent_forwards`` the forwards the search ran."""
    from lm_eval_latenttts.scaling.beam import rm_beam_search

    _check_seed(config)
    ids, mask = left_pad(prompts, tokenizer.pad_token_id, model.device)
    tokens = {"eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id}
    same = config.resolved_for(model.latent_kind) and all(getattr(config, k) == v for k, v in tokens.items())
    out = rm_beam_search(model, rm, ids, mask, config, **({} if same else tokens))
    found = []
    for q in range(len(prompts)):
        texts = decode_answers(tokenizer, out.beam_answer_ids[q])
        steps = out.beam_step_mask[q].sum(-1).cpu().tolist()
        found.append(Candidates(
            texts=texts, answers=[model.extract_answer(t) for t in texts],
            scores=out.beam_scores[q].float().cpu().tolist(), latent_steps=steps,
            drawn=config.latent_beams * config.latent_candidates, latent_forwards=int(out.latent_forwards[q]),
            chosen=int(out.chosen[q]), latents=out.beam_latents[q].float().cpu() if keep_latents else None,
        ))
    return found


__all__ = ["Candidates", "EXACT_UP_TO", "beam", "decode_answers", "left_pad", "padded_length", "sample"]
