"""From prompts to candidates: one call's latent rollouts of a batch of questions, their answers and LatentRM scores.

``sample`` draws keyed samples (sample j of a question is a function of
(seed, question, j), see ``hf_modeling.latent_sampling``) and ``beam`` runs
RM-guided beam search; both return, per question, a ``QuestionDraw``: its
``Candidate`` list (decoded text, extracted answer, RM trajectory score, latent
steps) and what it cost.  The engine (``scaling.engine``) calls them for every
call it plans, so lm-eval and the benchmarks see the same rollouts and answers.

What only the research scripts read (the latent vectors, the answer tokens
generated, the RM's per-step scores) stays out of the candidates: pass
``record`` (a ``Recorder``'s callback, through ``Engine.run``) to get them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from hf_modeling.generation_config import LatentGenerationConfig


@dataclass
class Candidate:
    """One candidate: its extracted ``answer`` (None: none could be extracted), RM trajectory ``score`` (None
    without a LatentRM), decoded ``text`` and the ``latent_steps`` it took.  As drawn, the answer is the
    backbone's extraction and the score unrounded; in a ``QuestionResult`` they are canonical and rounded."""

    answer: str | None
    score: float | None = None
    text: str | None = None
    latent_steps: int | None = None


@dataclass
class QuestionDraw:
    """What one question drew: its ``candidates`` in sample order, ``drawn`` rollouts (1 with sampling off, where
    one stands for all N; B*C for beam search) and ``latent_forwards`` latent forward steps (rows x steps, the
    unit beam search is compared in); ``searched``: the candidate a search chose; ``stopped``: why no more were
    drawn (``scaling.adaptive``)."""

    candidates: list[Candidate] = field(default_factory=list)
    drawn: int = 0
    latent_forwards: int = 0
    searched: int | None = None
    stopped: str | None = None

    @property
    def answers(self) -> list:
        return [c.answer for c in self.candidates]

    @property
    def scores(self) -> list | None:
        """The RM trajectory scores, or None without a LatentRM."""
        if not self.candidates or self.candidates[0].score is None:
            return None
        return [c.score for c in self.candidates]

    @property
    def texts(self) -> list:
        return [c.text for c in self.candidates]

    def extend(self, other: QuestionDraw) -> None:
        """Append the candidates of a later call (samples ``offset..``) of the same question."""
        self.candidates += other.candidates
        self.drawn += other.drawn
        self.latent_forwards += other.latent_forwards

    def first(self, k: int) -> QuestionDraw:
        """The first ``k`` samples: what N = k draws (sample j does not depend on N)."""
        kept = self.candidates[:k]
        return QuestionDraw(kept, len(kept), sum(c.latent_steps for c in kept), self.searched)


@dataclass
class Trace:
    """What the research scripts measure of a question's rollouts (``Recorder``), in sample order: ``latents``
    (samples, steps, hidden; float32, CPU), ``answer_tokens`` (tokens each generated, up to and including its
    first EOS) and ``step_scores`` (the RM's per latent step; None without a LatentRM)."""

    latents: torch.Tensor | None
    answer_tokens: list[int]
    step_scores: list | None

    def extend(self, other: Trace) -> None:
        if self.latents is not None:
            self.latents = torch.cat([self.latents, other.latents])
        self.answer_tokens += other.answer_tokens
        if self.step_scores is not None:
            self.step_scores += other.step_scores


class Recorder:
    """An opt-in record of every question's ``Trace``, keyed by the question's index (``Engine.run``'s jobs).

    ``latents=False`` keeps the answer tokens and step scores only (no copy of the latent vectors)."""

    def __init__(self, latents: bool = True) -> None:
        self.latents = latents
        self.traces: dict[int, Trace] = {}

    def add(self, question: int, trace: Trace) -> None:
        if question in self.traces:
            self.traces[question].extend(trace)
        else:
            self.traces[question] = trace

    def __getitem__(self, question: int) -> Trace:
        return self.traces[question]


Record = Callable[[int, Trace], None]  # (question's position in the call, its trace of the call)

EXACT_UP_TO = 64  # prompts up to this many tokens are not padded (they are cheap; the shipped task's are 30)


def padded_length(length: int) -> int:
    """The width a prompt of ``length`` tokens is left-padded to: a function of its own length only.

    Padding changes a row's numbers in the last bits (the attention's
    reductions run over the padded keys), so a row must get the same padding
    whatever it is batched with: its width is its length rounded up to a
    bucket, never to a neighbour's length.  Prompts of one bucket share a call
    (the engine groups by this width).  Up to ``EXACT_UP_TO`` tokens
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


def _draws(model, texts, scores, steps, per_question: int) -> list[QuestionDraw]:
    """Per question, the draw of ``per_question`` consecutive rows."""
    out = []
    for start in range(0, len(texts), per_question):
        rows = range(start, start + per_question)
        out.append(QuestionDraw([Candidate(model.extract_answer(texts[i]), None if scores is None else scores[i],
                                           texts[i], steps[i]) for i in rows],
                                drawn=per_question, latent_forwards=sum(steps[i] for i in rows)))
    return out


def _record(record: Record, recorder_latents: bool, latents, lengths, step_scores, per_question: int,
            copies: int = 1) -> None:
    """Each question's trace of the call (``copies``: sampling off, one rollout stands for that many)."""
    for q, start in enumerate(range(0, len(lengths), per_question)):
        rows = slice(start, start + per_question)
        kept = latents[rows].float().cpu() if recorder_latents else None
        record(q, Trace(None if kept is None else kept.repeat(copies, *([1] * (kept.dim() - 1))),
                        lengths[rows] * copies, None if step_scores is None else step_scores[rows] * copies))


def _check_seed(config) -> None:
    """Refuse ``seed=None`` here: it draws a seed per call (``generate``'s semantics), so a question's samples would
    depend on the batch it is drawn in; the caller fixes the seed first (the harness draws one per run)."""
    if config.seed is None:
        raise ValueError("scaling.rollouts draws questions a batch at a time, and seed=None would draw a new seed "
                         "for every batch: pass an int seed (the lm-eval harness draws one per run for seed=none).")


def _resolved(model, tokenizer, config):
    """``config`` as is when ``model.latent_generation_config`` resolved it with the tokenizer's EOS and pad ids,
    else resolved here."""
    if config.resolved_for(model.latent_kind) and config.eos_token_id == tokenizer.eos_token_id \
            and config.pad_token_id == tokenizer.pad_token_id:
        return config
    return model.latent_generation_config(config, eos_token_id=tokenizer.eos_token_id,
                                          pad_token_id=tokenizer.pad_token_id)


@torch.no_grad()
def sample(model, tokenizer, prompts: list[list[int]], config: LatentGenerationConfig, rm=None,
           sample_offset: int = 0, count: int | None = None, record: Record | None = None,
           record_latents: bool = True) -> list[QuestionDraw]:
    """Samples ``sample_offset .. sample_offset + count - 1`` of each prompt (``count``: default N) in one
    batched rollout (``model.rollout``, with ``config`` resolved once, see ``_resolved``).

    With sampling off one rollout is drawn and stands for all ``count`` (they
    would be identical).  With ``rm`` every candidate gets its trajectory score.
    ``record(q, trace)`` receives each question's ``Trace`` (opt-in: research).
    """
    _check_seed(config)
    count = config.num_return_sequences if count is None else count
    draws = count if config.samples else 1
    config = _resolved(model, tokenizer, config)
    ids, mask = left_pad(prompts, tokenizer.pad_token_id, model.device)
    out = model.rollout(ids, mask, config, draws, sample_offset=sample_offset)
    scores = rated = None
    if rm is not None:
        rated = rm.score_rollouts(out, reduction=config.reduction)
        scores = rated.trajectory_scores.float().cpu().tolist()
    found = _draws(model, decode_answers(tokenizer, out.answer_ids), scores, out.latent_lengths.cpu().tolist(), draws)
    if draws != count:
        for draw in found:  # deterministic: the N rollouts are the same rollout
            draw.candidates = draw.candidates * count
    if record is not None:
        step_scores = None if rated is None else rated.step_scores.float().cpu().tolist()
        _record(record, record_latents, out.latents, answer_lengths(tokenizer, out.answer_ids), step_scores, draws,
                copies=count // draws)
    return found


@torch.no_grad()
def beam(model, tokenizer, prompts: list[list[int]], config: LatentGenerationConfig, rm,
         record: Record | None = None, record_latents: bool = True) -> list[QuestionDraw]:
    """RM-guided beam search: the B final beams are the candidates, ``searched`` the beam it picked.

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
        scores = out.beam_scores[q].float().cpu().tolist()
        found.append(QuestionDraw([Candidate(model.extract_answer(t), s, t, k) for t, s, k in zip(texts, scores, steps)],
                                  drawn=config.latent_beams * config.latent_candidates,
                                  latent_forwards=int(out.latent_forwards[q]), searched=int(out.chosen[q])))
        if record is not None:
            record(q, Trace(out.beam_latents[q].float().cpu() if record_latents else None,
                            answer_lengths(tokenizer, out.beam_answer_ids[q]),
                            out.beam_step_scores[q].float().cpu().tolist()))
    return found


__all__ = ["Candidate", "EXACT_UP_TO", "QuestionDraw", "Recorder", "Trace", "beam", "decode_answers", "left_pad",
           "padded_length", "sample"]
