"""How ``latent_tts`` batches questions: lm-eval's ``Collator``, rounds, out-of-memory back-off, failing documents.

Questions are grouped by their settings and by the width their prompt is
left-padded to, ``scaling.rollouts.padded_length``: a function of the prompt's
own length (a bucket), so questions of different lengths share a call while
each row gets the padding it gets alone; padding shifts the attention's
reductions and changes a question's numbers in the last bits, and results must
not depend on batching.  Within a group, longest first (lm-eval's order).
A group is drawn by ``scaling.adaptive.draw_in_rounds``: one round of N
rollouts (fixed N), or rounds of k for adaptive sampling, where only the
undecided questions go on; then, when the task reports it, the greedy decode of
every question of the group.  A call is sized by a budget of ``batch_size * N``
rows: ``batch_size`` questions at N rollouts, ``batch_size * N / k`` at k,
``batch_size * N`` greedy decodes, and with beam search ``batch_size``
questions, each of B*C rows at every latent step.  With ``batch_size=auto`` a
call that runs out of memory (CUDA's or the CPU allocator's error) is halved
(and the smaller budget, still counted in questions at the group's N, kept for
what follows); a single question whose rollouts do not fit draws them in 2, 4,
... calls (``sample_offset``: the same samples).

A document fails, scored wrong and counted, only for a named reason found
before any compute (``failures``: the answerer's ``check`` raises ``DocError``,
e.g. a prompt too long for the context window); any other error in a draw
stops the run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Protocol

import torch

from lm_eval_latenttts.scaling.adaptive import draw_in_rounds
from lm_eval_latenttts.scaling.aggregation import AGGREGATIONS, Aggregation
from lm_eval_latenttts.scaling.rollouts import padded_length

logger = logging.getLogger("lm_eval.latent_tts")


class DocError(Exception):
    """A named, expected failure of one document, found before any compute (the answerer's ``check``): the
    document is answered as failed (logged, counted), the run goes on.  Nothing else is scored as failed."""


@dataclass(eq=False)
class Setting:
    """One distinct setting of a run, resolved once (``LatentTTSModel._setting``) and shared by its jobs.

    ``config``: the resolved ``LatentGenerationConfig`` (passed to every rollout as is); ``aggregation``:
    the ``scaling.aggregation.AGGREGATIONS`` entry it chooses by; ``greedy``: the config of the greedy
    decode beside its rollouts (None: not reported); ``payload``: the request wants the typed result
    (``scaling.result.QuestionResult``), not ``#### <answer>``; ``key``: groups its jobs.
    """

    key: int
    config: object  # LatentGenerationConfig
    aggregation: Aggregation
    payload: bool
    greedy: object = None

    @property
    def splittable(self) -> bool:
        """Whether a question's rollouts may be drawn over several calls (samples, not a search)."""
        return bool(self.config.samples) and not self.aggregation.search


@dataclass
class Job:
    """One ``generate_until`` request: its position, bare question, prompt token ids and resolved setting;
    ``sample_offset`` is the index of its first sample (lm-eval's repeat r of a request draws its own)."""

    index: int
    question: str
    prompt: list[int]
    setting: Setting
    sample_offset: int = 0

    @property
    def config(self):
        return self.setting.config


class Answerer(Protocol):
    """What the runner asks of the model (``LatentTTSModel``'s ``answerer``)."""

    def check(self, job: Job) -> None:
        """Raise ``DocError`` for a document that cannot run (a named reason, e.g. its prompt is too long)."""

    def candidates(self, setting: Setting, prompts: list[list[int]], offset: int, count: int) -> list:
        """Samples ``offset .. offset+count-1`` of a batch of questions (beam search: the beams)."""

    def greedy(self, setting: Setting, prompts: list[list[int]]) -> list:
        """The greedy decodes of a batch of questions (``setting.greedy``; one rollout each, no RM scores)."""

    def respond(self, job: Job, candidates, greedy) -> str:
        """The response to a request."""

    def failed(self, job: Job, reason: str) -> str:
        """The response to a request that could not run (scored wrong)."""


# what torch's CPU allocator says when an allocation fails (c10/core/impl/alloc_cpu.cpp): "can't allocate memory"
# (POSIX) or "not enough memory" (Windows); CUDA's error is a torch.OutOfMemoryError
CPU_ALLOCATOR_ERRORS = ("DefaultCPUAllocator: can't allocate memory", "DefaultCPUAllocator: not enough memory")


def is_out_of_memory(err: BaseException) -> bool:
    """Whether ``err`` says that memory ran out: CUDA's, the CPU allocator's (a ``RuntimeError``) or Python's."""
    if isinstance(err, (torch.OutOfMemoryError, MemoryError)):
        return True
    text = str(err)
    return isinstance(err, RuntimeError) and ("out of memory" in text.lower()
                                              or any(words in text for words in CPU_ALLOCATOR_ERRORS))


def failures(jobs: list[Job], answerer: Answerer) -> dict[int, str]:
    """``{job index: reason}`` of the jobs that cannot run (``Answerer.check``), found before any compute."""
    found = {}
    for job in jobs:
        try:
            answerer.check(job)
        except DocError as err:
            found[job.index] = str(err)
    return found


class BatchRunner:
    """Runs jobs in calls of ``batch_size`` questions at N rollouts (an int, or ``"auto"`` up to ``max_batch_size``)."""

    def __init__(self, batch_size, max_batch_size: int, device, sizer: Callable | None = None) -> None:
        self.auto = batch_size == "auto"
        self.current = max_batch_size if self.auto else batch_size
        self.device = torch.device(device)
        self.batch_sizes: dict = {}
        # with ``auto``: sizer(setting, width, most) -> the questions per call that fit the device's memory
        # (``harness.memory``), scaled down by what out-of-memory halving taught (``fit_scale``)
        self.sizer, self.most, self.fit_scale, self.predicted = sizer, max_batch_size, 1.0, None

    def run(self, jobs: list[Job], answerer: Answerer, failed: dict[int, str] | None = None,
            disable_tqdm: bool = False) -> list[str]:
        """Responses to ``jobs`` in their order; ``failed`` (``failures``: job index -> reason) are answered as
        failed without running."""
        from lm_eval.models.utils import Collator
        from tqdm import tqdm

        failed = failures(jobs, answerer) if failed is None else failed
        results: list[str | None] = [None] * len(jobs)
        ready = []
        for job in jobs:
            if job.index in failed:
                results[job.index] = answerer.failed(job, failed[job.index])
            else:
                ready.append(job)
        collator = Collator(ready, sort_fn=lambda job: (-len(job.prompt), job.index), group_by="gen_kwargs",
                            group_fn=lambda job: {"setting": job.setting.key,
                                                  "width": padded_length(len(job.prompt)),
                                                  "sample_offset": job.sample_offset})
        bar = tqdm(total=len(jobs), initial=len(jobs) - len(ready), disable=disable_tqdm, desc="latent_tts rollouts")
        for group in collator.get_batched(n=0, batch_fn=lambda _, whole: len(whole)):
            for job, response in zip(group, self._group(group, answerer)):
                results[job.index] = response
            if self.auto:
                self.batch_sizes = {0: int(self.current)}
            bar.update(len(group))
        bar.close()
        return results

    def _group(self, jobs: list[Job], answerer: Answerer) -> list[str]:
        """Responses of a group of questions with the same setting and padded prompt width."""
        setting = jobs[0].setting
        n = setting.config.num_return_sequences
        if self.auto and self.sizer is not None:
            self.predicted = self.sizer(setting, padded_length(len(jobs[0].prompt)), self.most)
            self.current = max(1, min(self.most, int(self.predicted * self.fit_scale)))

        def budget() -> int:
            return max(1, int(self.current)) * n

        found = draw_in_rounds(len(jobs), setting.config, setting.aggregation,
                               self._drawer(jobs, answerer.candidates, setting.splittable), budget)
        greedy = [None] * len(jobs)
        if setting.greedy is not None:
            decode = lambda setting, prompts, offset, count: answerer.greedy(setting, prompts)  # noqa: E731
            greedy = draw_in_rounds(len(jobs), setting.greedy, AGGREGATIONS["majority"],
                                    self._drawer(jobs, decode, False), budget)
        return [answerer.respond(job, got, base) for job, got, base in zip(jobs, found, greedy)]

    def _drawer(self, jobs: list[Job], method: Callable, splittable: bool):
        """``draw(indices, offset, count)`` for ``draw_in_rounds``: one call of the answerer's ``method``
        (``candidates`` or ``greedy``), or smaller ones on out-of-memory."""
        setting = jobs[0].setting

        def fn(prompts: list[list[int]], offset: int, count: int) -> list:
            return method(setting, prompts, offset, count)

        def draw(indices: list[int], offset: int, count: int) -> list:  # a group shares its sample_offset
            return self._draw([jobs[i] for i in indices], jobs[0].sample_offset + offset, count, fn, splittable)
        return draw

    def _draw(self, chunk: list[Job], offset: int, count: int, fn: Callable, splittable: bool) -> list:
        """Candidates of one call, per question.

        Out of memory halves the call (and the budget of later calls); any
        other error stops the run: a failure found while drawing is a bug or a
        setting, never a document's wrong answer.
        """
        try:
            return fn([job.prompt for job in chunk], offset, count)
        except Exception as err:  # noqa: BLE001 - only out-of-memory is handled; everything else is raised again
            if not is_out_of_memory(err):
                raise
            self._free()
            if len(chunk) == 1:
                return [self._in_pieces(chunk[0], offset, count, fn, splittable, err)]
            half = (len(chunk) + 1) // 2
            # the budget counts questions at the group's N rollouts (``job.config``), also for the greedy
            # decodes (drawn at N=1): half of this call's rows, in those units
            n = chunk[0].config.num_return_sequences
            self.current = max(1, min(int(self.current), half * count // n))
            if self.predicted:  # the memory model overestimated this device: scale its later sizes
                self.fit_scale = min(self.fit_scale, self.current / self.predicted)
            logger.warning("latent_tts: out of memory with %d questions x %d rollouts per call; retrying "
                           "with %d questions.", len(chunk), count, half)
            return self._draw(chunk[:half], offset, count, fn, splittable) + \
                self._draw(chunk[half:], offset, count, fn, splittable)

    def _in_pieces(self, job: Job, offset: int, count: int, fn: Callable, splittable: bool, err: BaseException):
        """One question's ``count`` rollouts do not fit one call: draw them in 2, 4, 8, ... calls."""
        split = 2
        while splittable and split <= count:
            logger.warning("latent_tts: out of memory with %d rollouts in one call; drawing them in %d calls.",
                           count, split)
            sizes = [count // split + (1 if i < count % split else 0) for i in range(split)]
            try:
                found, start = None, offset
                for size in sizes:
                    part = fn([job.prompt], start, size)[0]
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
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


__all__ = ["Answerer", "BatchRunner", "CPU_ALLOCATOR_ERRORS", "DocError", "Job", "Setting", "failures", "is_out_of_memory"]
