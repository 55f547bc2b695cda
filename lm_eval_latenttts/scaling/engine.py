"""The test-time-scaling engine: a batch of questions, each with its plan, in, their typed results out.

``Engine.run(jobs)`` owns the whole path of a batch, in one place:

1. **Named failures, before any compute** (``failures``): a question that
   cannot run for a known reason (``DocError``: an empty question, a prompt too
   long for the context window) is answered as failed, scored wrong and logged;
   the harness counts them.  Any other error in a draw stops the run: it is a
   bug or a setting, never a document's wrong answer.  A setting that no
   question can satisfy is refused when it is planned (``plan``).
2. **Grouping**: questions are grouped by plan (equal settings share one),
   padded prompt width (``rollouts.padded_length``: a function of the prompt's
   own length, so a row gets the padding it gets alone: results do not depend
   on batching) and first sample index; groups in order of first appearance,
   longest prompts first within a group (lm-eval's ``Collator`` order).
3. **Rounds**: a group is drawn by ``adaptive.draw_in_rounds`` under its plan's
   schedule: one search per question, one round of N samples, or adaptive
   rounds of k where only the undecided questions go on; then the greedy decode
   of every question when the plan has one, and the strategy's own work per
   candidate when it has some (``Strategy.candidate_work``: the read-backs of
   the consistency vote), in calls of ``batch_size`` questions.
4. **Calls and out-of-memory back-off**: a call is sized by a budget of
   ``batch_size * N`` rows (``batch_size`` questions at N rollouts,
   ``batch_size * N / k`` at k, ``batch_size * N`` greedy decodes, with beam
   search ``batch_size`` questions).  With ``batch_size="auto"`` on CUDA each
   group's calls are sized by the memory model (``scaling.memory``, the
   ``sizer``); a call that runs out of memory (CUDA's or the CPU allocator's
   error) is halved and the smaller budget kept for what follows (and the
   memory model's later sizes scaled down); a single question whose samples do not
   fit draws them in 2, 4, ... calls (``sample_offset``: the same samples).
5. **The typed result** of every question (``result.QuestionResult``): its
   strategy's choice, every rule's row, what it cost.

What the draws are (``rollouts.sample``, or the strategy's own ``search``) is
the plan's mode, decided once (``plan.make_plan``).  The research scripts pass a
``rollouts.Recorder`` to ``run`` to keep latents, answer tokens and step scores.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, NamedTuple

import torch

from lm_eval_latenttts.scaling.adaptive import draw_in_rounds
from lm_eval_latenttts.scaling.plan import GREEDY, Plan, make_plan
from lm_eval_latenttts.scaling.result import QuestionResult
from lm_eval_latenttts.scaling.rollouts import QuestionDraw, Recorder, Trace, padded_length, sample
from lm_eval_latenttts.scaling.strategies import DrawMode, Work

logger = logging.getLogger("lm_eval.latent_tts")

# what torch's CPU allocator says when an allocation fails (c10/core/impl/alloc_cpu.cpp): "can't allocate memory"
# (POSIX) or "not enough memory" (Windows); CUDA's error is a torch.OutOfMemoryError
CPU_ALLOCATOR_ERRORS = ("DefaultCPUAllocator: can't allocate memory", "DefaultCPUAllocator: not enough memory")


class DocError(Exception):
    """A named, expected failure of one question, found before any compute (``Engine.check``): it is answered as
    failed (logged, counted by the harness) and the run goes on.  Nothing else is scored as failed."""


class SettingRefused(ValueError):
    """A setting that no question can satisfy (``Engine.plan``): refused before any compute."""


@dataclass(eq=False)
class Job:
    """One question: its ``index`` (its position in ``run``'s jobs and results), prompt token ids, ``plan`` and
    ``sample_offset``, the index of its first sample (lm-eval's repeat r of a request draws its own);
    ``question``: its text, checked for emptiness and shown in the log (None: not checked)."""

    index: int
    prompt: list[int]
    plan: Plan
    sample_offset: int = 0
    question: str | None = None


class Drawn(NamedTuple):
    """What the engine drew for one question: its ``draw``, its greedy decode's (or None), its RM ``step_scores``
    (only for a strategy that needs them, else None) and its strategy's ``work`` (``candidate_work``, else None)."""

    draw: QuestionDraw
    greedy: QuestionDraw | None
    step_scores: list | None
    work: Work | None


def is_out_of_memory(err: BaseException) -> bool:
    """Whether ``err`` says that memory ran out: CUDA's, the CPU allocator's (a ``RuntimeError``) or Python's."""
    if isinstance(err, (torch.OutOfMemoryError, MemoryError)):
        return True
    text = str(err)
    return isinstance(err, RuntimeError) and ("out of memory" in text.lower()
                                              or any(words in text for words in CPU_ALLOCATOR_ERRORS))


class Engine:
    """Draws and answers questions with a backbone (and an optional LatentRM) in calls of ``batch_size``
    questions at N rollouts (an int, or ``"auto"`` up to ``max_batch_size``, halving on out-of-memory)."""

    def __init__(self, model, tokenizer, rm=None, batch_size=1, max_batch_size: int | None = None,
                 sizer=None) -> None:
        self.model, self.tokenizer, self.rm = model, tokenizer, rm
        self.auto = batch_size == "auto"
        self.current = (max_batch_size or 1) if self.auto else batch_size
        self.batch_sizes: dict = {}
        # with ``auto``: sizer(plan, width, most) -> the questions per call that fit the device's memory
        # (``scaling.memory``), scaled down by what out-of-memory halving taught (``fit_scale``)
        self.sizer, self.most, self.fit_scale, self.predicted = sizer, max_batch_size, 1.0, None

    # ------------------------------------------------------------------ before any compute
    def plan(self, config, payload: bool = True) -> Plan:
        """The plan of a resolved ``config`` (``plan.make_plan``), or ``SettingRefused`` when no question can run
        under it (``check_window``)."""
        plan = make_plan(config, self.rm is not None, payload)
        check_window(self.model, self.tokenizer, config)
        plan.strategy.check_backbone(self.model, config)
        return plan

    def check(self, job: Job) -> None:
        """The named failures of a question: an empty question, a prompt too long for the context window."""
        from hf_modeling.latent_generation import PromptTooLongError

        if job.question is not None and not job.question.strip():
            raise DocError("the question is empty")
        try:
            self.model.context_room(torch.tensor([len(job.prompt)]), self.model.latent_steps_of(job.plan.config))
        except PromptTooLongError as err:
            raise DocError(str(err)) from None

    def failures(self, jobs: list[Job]) -> dict[int, str]:
        """``{job index: reason}`` of the jobs that cannot run (``check``), found before any compute."""
        found = {}
        for job in jobs:
            try:
                self.check(job)
            except DocError as err:
                found[job.index] = str(err)
        return found

    # ------------------------------------------------------------------ the batch
    def run(self, jobs: list[Job], failed: dict[int, str] | None = None, recorder: Recorder | None = None,
            progress: bool = False) -> list[QuestionResult]:
        """The typed result of every job, in job order; ``failed`` (``failures``, found here when not given) are
        answered as failed without running.  ``recorder`` keeps every question's ``Trace`` (research)."""
        failed = self.failures(jobs) if failed is None else failed
        results: list = [None] * len(jobs)
        for job in jobs:
            if job.index in failed:
                logger.warning("latent_tts: %s; the document is scored as wrong. Question: %.80r",
                               failed[job.index], job.question)
                results[job.index] = QuestionResult.failed(job.plan, failed[job.index])
        ready = [job for job in jobs if job.index not in failed]
        for job, drawn in zip(ready, self.draws(ready, recorder, progress, done=len(failed))):
            results[job.index] = QuestionResult.answered(job.plan, *drawn)
        return results

    def draws(self, jobs: list[Job], recorder: Recorder | None = None, progress: bool = False,
              done: int = 0) -> list[Drawn]:
        """Per job (in job order): what was drawn for it (``Drawn``)."""
        from tqdm import tqdm

        found: dict[int, tuple] = {}
        bar = tqdm(total=len(jobs) + done, initial=done, disable=not progress, desc="latent_tts rollouts")
        for group in groups(jobs):
            for job, drawn in zip(group, self._group(group, recorder)):
                found[id(job)] = drawn
            if self.auto:
                self.batch_sizes = {0: int(self.current)}
            bar.update(len(group))
        bar.close()
        return [found[id(job)] for job in jobs]

    def _group(self, jobs: list[Job], recorder: Recorder | None) -> list[Drawn]:
        """What was drawn for each question of a group (one plan, width and first sample)."""
        plan = jobs[0].plan
        n = plan.config.num_return_sequences
        if self.auto and self.sizer is not None:
            self.predicted = self.sizer(plan, padded_length(len(jobs[0].prompt)), self.most)
            self.current = max(1, min(self.most, int(self.predicted * self.fit_scale)))

        def budget() -> int:
            return max(1, int(self.current)) * n

        works = plan.strategy.candidate_work is not None
        own = Recorder(latents=works) if plan.strategy.needs_step_scores or works else None
        draw = self._drawer(jobs, self._candidates(plan, [recorder, own]), plan.schedule.splittable)
        found = draw_in_rounds(len(jobs), plan.schedule, plan.config, draw, budget)
        greedy = [None] * len(jobs)
        if plan.greedy is not None:
            draw = self._drawer(jobs, self._greedy(plan), GREEDY.splittable)
            greedy = draw_in_rounds(len(jobs), GREEDY, plan.greedy, draw, budget)
        steps = [own[job.index].step_scores if plan.strategy.needs_step_scores else None for job in jobs]
        work = self._work(jobs, plan, own) if works else [None] * len(jobs)
        return [Drawn(*drawn) for drawn in zip(found, greedy, steps, work)]

    def _work(self, jobs: list[Job], plan: Plan, own: Recorder) -> list[Work]:
        """The strategy's ``candidate_work`` of a group's questions, in calls of ``batch_size`` questions."""
        one = plan.mode is DrawMode.ONE  # sampling off: one rollout stands for all N, so is its work

        def fn(chunk: list[Job], offset: int, count: int) -> list[Work]:
            found = plan.strategy.candidate_work(self.model, self.tokenizer, [job.prompt for job in chunk],
                                                 [own[job.index].latents[:1 if one else None] for job in chunk],
                                                 plan.config)
            return [Work(work.values * count, work.positions) for work in found] if one else found

        found, start, n = [], 0, plan.config.num_return_sequences
        while start < len(jobs):
            chunk = jobs[start:start + max(1, int(self.current))]
            found += self._draw(chunk, 0, n, fn, False)
            start += len(chunk)
        return found

    def _candidates(self, plan: Plan, recorders: list) -> Callable:
        """``fn(chunk, offset, count)``: the candidates of one call under ``plan`` (its mode's draw)."""
        recorders = [r for r in recorders if r is not None]
        latents = any(r.latents for r in recorders)

        def fn(chunk: list[Job], offset: int, count: int) -> list[QuestionDraw]:
            record = _fan_out(chunk, recorders) if recorders else None
            prompts = [job.prompt for job in chunk]
            if plan.mode is DrawMode.SEARCH:
                return plan.strategy.search(self.model, self.tokenizer, prompts, plan.config, self.rm, record=record)
            return sample(self.model, self.tokenizer, prompts, plan.config, self.rm, sample_offset=offset,
                          count=count, record=record, record_latents=latents)
        return fn

    def _greedy(self, plan: Plan) -> Callable:
        def fn(chunk: list[Job], offset: int, count: int) -> list[QuestionDraw]:  # one deterministic rollout
            return sample(self.model, self.tokenizer, [job.prompt for job in chunk], plan.greedy, None)
        return fn

    def _drawer(self, jobs: list[Job], fn: Callable, splittable: bool) -> Callable:
        """``draw(indices, offset, count)`` for ``draw_in_rounds``: one call of ``fn``, or smaller ones on
        out-of-memory (``splittable``: a question's samples may be split over calls).  A group shares its first
        sample index."""

        def draw(indices: list[int], offset: int, count: int) -> list:
            return self._draw([jobs[i] for i in indices], jobs[0].sample_offset + offset, count, fn, splittable)
        return draw

    def _draw(self, chunk: list[Job], offset: int, count: int, fn: Callable, splittable: bool) -> list:
        """The draws of one call, per question.  Out of memory halves the call (and the budget of later calls);
        any other error stops the run."""
        try:
            return fn(chunk, offset, count)
        except Exception as err:  # noqa: BLE001 - only out-of-memory is handled; everything else is raised again
            if not is_out_of_memory(err):
                raise
            self._free()
            if len(chunk) == 1:
                return [self._in_pieces(chunk[0], offset, count, fn, splittable, err)]
            half = (len(chunk) + 1) // 2
            # the budget counts questions at the plan's N rollouts, also for the greedy decodes (drawn at N=1):
            # half of this call's rows, in those units
            n = chunk[0].plan.config.num_return_sequences
            self.current = max(1, min(int(self.current), half * count // n))
            if self.predicted:  # the memory model overestimated this device: scale its later sizes
                self.fit_scale = min(self.fit_scale, self.current / self.predicted)
            logger.warning("latent_tts: out of memory with %d questions x %d rollouts per call; retrying "
                           "with %d questions.", len(chunk), count, half)
            return self._draw(chunk[:half], offset, count, fn, splittable) + \
                self._draw(chunk[half:], offset, count, fn, splittable)

    def _in_pieces(self, job: Job, offset: int, count: int, fn: Callable, splittable: bool, err: BaseException):
        """One question's ``count`` samples do not fit one call: draw them in 2, 4, 8, ... calls."""
        split = 2
        while splittable and split <= count:
            logger.warning("latent_tts: out of memory with %d rollouts in one call; drawing them in %d calls.",
                           count, split)
            sizes = [count // split + (1 if i < count % split else 0) for i in range(split)]
            try:
                found, start = None, offset
                for size in sizes:
                    part = fn([job], start, size)[0]
                    found = part if found is None else (found.extend(part) or found)
                    start += size
                return found
            except Exception as again:  # noqa: BLE001
                if not is_out_of_memory(again):
                    raise
                self._free()
                split *= 2
        raise RuntimeError(
            f"latent_tts: out of memory with a single question and {count} rollouts; lower n, use a smaller dtype "
            "(dtype=bfloat16) or a larger device."
        ) from err

    def _free(self) -> None:
        if self.model.device.type == "cuda":
            torch.cuda.empty_cache()


def check_window(model, tokenizer, config) -> None:
    """Refuse (``SettingRefused``) a setting under which no question can run: its latent steps, the end marker
    and one answer token do not fit the context window even after the shortest prompt (a one-token question)."""
    from hf_modeling.latent_generation import PromptTooLongError

    limit, steps = model.max_context_length(), model.latent_steps_of(config)
    shortest = len(model.encode_prompt(tokenizer, "0"))
    try:
        model.context_room(torch.tensor([shortest]), steps)
    except PromptTooLongError:
        raise SettingRefused(
            f"{steps} latent steps (latent_length), the end marker and one answer token do not fit in the model's "
            f"context window of {limit} positions even after the shortest prompt ({shortest} tokens), so no "
            f"question could run. Use latent_length <= {limit - shortest - 2}.") from None


def groups(jobs: list[Job]) -> list[list[Job]]:
    """Jobs grouped by (plan, padded prompt width, first sample index), in order of first appearance; within a
    group the longest prompts first, then job order (what lm-eval's ``Collator`` gives the harness)."""
    found: dict[tuple, list[Job]] = {}
    for job in jobs:
        found.setdefault((id(job.plan), padded_length(len(job.prompt)), job.sample_offset), []).append(job)
    return [sorted(group, key=lambda job: (-len(job.prompt), job.index)) for group in found.values()]


def _fan_out(chunk: list[Job], recorders: list[Recorder]) -> Callable:
    """A draw's ``record(q, trace)`` for the questions of ``chunk``: each recorder gets its own copy."""
    def record(q: int, trace: Trace) -> None:
        for recorder in recorders:
            recorder.add(chunk[q].index, Trace(trace.latents if recorder.latents else None,
                                               list(trace.answer_tokens),
                                               None if trace.step_scores is None else list(trace.step_scores)))
    return record


__all__ = ["CPU_ALLOCATOR_ERRORS", "DocError", "Drawn", "Engine", "Job", "SettingRefused", "check_window", "groups",
           "is_out_of_memory"]
