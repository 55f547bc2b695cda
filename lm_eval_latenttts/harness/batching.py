"""How ``latent_tts`` batches questions: lm-eval's ``Collator``, out-of-memory back-off, failing documents.

Questions are grouped by their settings and by their prompt length, so a
batch has no padding: padding shifts the attention's reductions and changes a
question's numbers in the last bits, and results must not depend on batching.
With ``batch_size=auto`` a batch that runs out of memory is halved (and the
batch size kept for what follows); a single question whose N rollouts do not
fit draws them in 2, 4, ... calls (``sample_offset``: the same samples).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

import torch

logger = logging.getLogger("lm_eval.latent_tts")


class DocError(Exception):
    """A problem with one document: it is answered as failed (logged), the run goes on."""


@dataclass
class Job:
    """One ``generate_until`` request: its position, bare question, prompt token ids and settings."""

    index: int
    question: str
    prompt: list[int]
    config: object  # LatentGenerationConfig
    payload: bool


def is_out_of_memory(err: BaseException) -> bool:
    if isinstance(err, torch.OutOfMemoryError):
        return True
    return isinstance(err, RuntimeError) and "out of memory" in str(err).lower()


class BatchRunner:
    """Runs jobs in batches of ``batch_size`` questions (an int, or ``"auto"`` up to ``max_batch_size``)."""

    def __init__(self, batch_size, max_batch_size: int, device) -> None:
        self.auto = batch_size == "auto"
        self.current = max_batch_size if self.auto else batch_size
        self.device = torch.device(device)
        self.batch_sizes: dict = {}

    def run(self, jobs: list[Job], check: Callable, candidates: Callable, respond: Callable, failed: Callable,
            disable_tqdm: bool = False) -> list[str]:
        """Responses to ``jobs`` in their order.

        ``check(job)`` raises ``DocError`` for a document that cannot run;
        ``candidates(prompts, config, offset, count)`` draws a batch's
        candidates; ``respond(job, candidates)`` and ``failed(job, reason)``
        make the responses.
        """
        from lm_eval.models.utils import Collator
        from tqdm import tqdm

        results: list[str | None] = [None] * len(jobs)
        ready = []
        for job in jobs:
            try:
                check(job)
                ready.append(job)
            except DocError as err:
                results[job.index] = failed(job, str(err))
        collator = Collator(ready, sort_fn=lambda job: (-len(job.prompt), job.index), group_by="gen_kwargs",
                            group_fn=lambda job: {"settings": job.config.to_json_string(use_diff=False),
                                                  "payload": job.payload, "length": len(job.prompt)})
        bar = tqdm(total=len(jobs), initial=len(jobs) - len(ready), disable=disable_tqdm, desc="latent_tts rollouts")
        for chunk in collator.get_batched(n=0, batch_fn=lambda *_: max(1, int(self.current))):
            for job, response in zip(chunk, self._chunk(chunk, candidates, respond, failed)):
                results[job.index] = response
            if self.auto:
                self.batch_sizes = {0: int(self.current)}
            bar.update(len(chunk))
        bar.close()
        return results

    def _chunk(self, chunk: list[Job], candidates, respond, failed) -> list[str]:
        """Responses of one batch: halves it on out-of-memory; a failing batch is retried one by one."""
        config = chunk[0].config
        try:
            found = candidates([job.prompt for job in chunk], config, 0, None)
            return [respond(job, c) for job, c in zip(chunk, found)]
        except Exception as err:  # noqa: BLE001 - out-of-memory and per-document failures are handled below
            if is_out_of_memory(err):
                self._free()
                if len(chunk) == 1:
                    return [self._in_pieces(chunk[0], candidates, respond, err)]
                half = (len(chunk) + 1) // 2
                self.current = half
                logger.warning("latent_tts: out of memory with %d questions per batch; retrying with %d.",
                               len(chunk), half)
                return self._chunk(chunk[:half], candidates, respond, failed) + \
                    self._chunk(chunk[half:], candidates, respond, failed)
            if _is_setting_error(err):
                raise
            if len(chunk) > 1:
                return [response for job in chunk for response in self._chunk([job], candidates, respond, failed)]
            return [failed(chunk[0], f"{type(err).__name__}: {err}")]

    def _in_pieces(self, job: Job, candidates, respond, err: BaseException) -> str:
        """One question's N rollouts do not fit: draw samples 0..k-1, k..2k-1, ... in 2, 4, 8, ... calls."""
        n, split = job.config.num_return_sequences, 2
        while job.config.samples and job.config.aggregate != "beam" and split <= n:
            logger.warning("latent_tts: out of memory with n=%d rollouts in one call; drawing them in %d calls.",
                           n, split)
            sizes = [n // split + (1 if i < n % split else 0) for i in range(split)]
            try:
                found, offset = None, 0
                for size in sizes:
                    part = candidates([job.prompt], job.config, offset, size)[0]
                    found = part if found is None else (found.extend(part) or found)
                    offset += size
                return respond(job, found)
            except Exception as again:  # noqa: BLE001
                if not is_out_of_memory(again):
                    raise
                self._free()
                split *= 2
        raise RuntimeError(
            f"latent_tts: out of memory with a single question and n={n} rollouts; lower n, use a smaller dtype "
            "(dtype=bfloat16) or a larger device."
        ) from err

    def _free(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


def _is_setting_error(err: BaseException) -> bool:
    from lm_eval_latenttts.harness.arguments import LatentTTSArgumentError

    return isinstance(err, (LatentTTSArgumentError, NotImplementedError))


__all__ = ["BatchRunner", "DocError", "Job", "is_out_of_memory"]
