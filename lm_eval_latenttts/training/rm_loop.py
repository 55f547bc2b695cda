"""The LatentRM training loop, data parallel over ``accelerate launch`` processes.

Global batch: ``--batch-size`` is questions per process per micro-batch, so an
optimizer step sees ``processes x batch_size x grad_accum`` questions.  Every
process walks the same global micro-batches (``rm_data.global_batches``) and
trains on its share; the model is wrapped in DDP by ``accelerator.prepare``,
so gradients are all-reduced (averaged) at the last micro-batch of a step.

Each process back-propagates the *summed* loss of its questions; at the end of
the step the gradients are multiplied by ``processes / units``, where
``units`` (questions, or entries for BCE) is summed over all processes and
micro-batches of the step: the update is the gradient of the mean loss over
the step's questions, however they were split.  With the keyed dropout of
``rm_dropout`` a question's masks do not depend on its process either, so K
processes at equal global batch train the same RM as one, up to floating-point
rounding.  A process whose share of a (short, last) micro-batch is empty runs
a zero-weight copy of a question so that every process takes part in each
all-reduce.

Early stopping (``keep_best``, ``patience``): the evaluation with the lowest held-out loss after at least one
step is the run's best (:func:`best_evaluation`, from the history, so a resumed run agrees); with ``keep_best``
its weights are kept (in memory and in every checkpoint) and are what the run installs; ``patience`` ends the run
after that many evaluations without a lower loss.

Evaluation (recall@1) scores each held-out question on exactly one process
(positions r, r + K, ...) and sums the counts over processes.  Only the main
process writes a checkpoint (the run's state is the same on every process);
every process reads it back on resume.  A checkpoint holds tensors and plain
data only (``rm_checkpoints.save_training_state``), read with
``weights_only=True``: nothing in a resume folder is unpickled.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch

from hf_modeling.latent_state import eval_mode
from lm_eval_latenttts.training.rm_checkpoints import (
    STATE_FILE,
    checkpoint_progress,
    load_training_state,
    run_checkpoints,
    save_training_state,
)
from lm_eval_latenttts.training.rm_data import epoch_order, global_batches, rank_share
from lm_eval_latenttts.training.rm_dropout import KeyedTrainingDropout, question_keys, row_keys
from lm_eval_latenttts.training.rm_objective import compute_loss, evaluate, loss_units, step_scores


def best_evaluation(history: list) -> dict | None:
    """The record of the evaluation with the lowest held-out loss after at least one optimizer step (the earliest
    on ties), or None when there is none."""
    evals = [h for h in history if h.get("step", 0) >= 1 and "eval_loss" in h]
    return min(evals, key=lambda h: h["eval_loss"]) if evals else None


def evaluations_since_best(history: list) -> int:
    """Evaluations after the best one (see :func:`best_evaluation`)."""
    best = best_evaluation(history)
    if best is None:
        return 0
    return sum(1 for h in history if h.get("step", 0) > best["step"] and "eval_loss" in h)


@dataclass
class Progress:
    """Where a run is: optimizer steps done, epoch, next micro-batch of the epoch, and the history."""

    step: int = 0
    epoch: int = 0
    batch: int = 0
    history: list = field(default_factory=list)
    total: int = 0  # the run's planned optimizer steps (early stopping may end it before)


class RMTrainingLoop:
    """One run's loop: steps, evaluation and checkpoints (see the module docstring)."""

    def __init__(self, accelerator, model, optimizer, scheduler, params, cfg, train_set, eval_set, collator,
                 total_steps: int, ckpt_root: Path, run_id: str) -> None:
        self.acc, self.model, self.optimizer, self.scheduler = accelerator, model, optimizer, scheduler
        self.params, self.cfg, self.collator = params, cfg, collator
        self.train_set, self.eval_set = train_set, eval_set
        self.total, self.ckpt_root, self.run_id = total_steps, Path(ckpt_root), run_id
        self.rank, self.world = accelerator.process_index, accelerator.num_processes
        self.dropout = KeyedTrainingDropout(accelerator.unwrap_model(model)) if cfg.dropout else None
        self.progress = Progress(total=total_steps)
        self.best_state = None  # keep_best: the weights of the best evaluation so far (CPU tensors)

    # ------------------------------------------------------------------------------ pieces
    def _collate(self, dataset, indices):
        batch = self.collator([dataset[i] for i in indices])
        return {k: v.to(self.acc.device) for k, v in batch.items()}

    def _reduce(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum over processes (float64 on the device; back on the CPU)."""
        if self.world == 1:
            return tensor
        return self.acc.reduce(tensor.to(self.acc.device), reduction="sum").cpu()

    def evaluate(self) -> dict:
        if self.eval_set is None or not len(self.eval_set):
            return {}
        mine = rank_share(list(range(len(self.eval_set))), self.rank, self.world)
        size = self.cfg.batch_size
        batches = (self._collate(self.eval_set, mine[i : i + size]) for i in range(0, len(mine), size))
        return evaluate(self.acc.unwrap_model(self.model), batches, self.cfg.loss, reduce=self._reduce)

    def _micro_batch(self, epoch: int, questions: list[int], sync: bool) -> tuple[float, int]:
        """Forward and backward of this process's share of a global micro-batch: (loss sum, units)."""
        share, weight = rank_share(questions, self.rank, self.world), 1.0
        if not share:  # keep the all-reduce in step: a zero-weight copy of a question
            share, weight = questions[:1], 0.0
        batch = self._collate(self.train_set, share)
        trajectories = batch["values"].shape[1]
        keys = row_keys(question_keys(self.cfg.seed, epoch, batch["question_id"]), trajectories)
        no_sync = contextlib.nullcontext() if sync else self.acc.no_sync(self.model)
        with no_sync:
            dropout = self.dropout.applied(self.model, keys, batch["position_ids"]) if self.dropout is not None \
                else eval_mode(self.model)  # TrainConfig.dropout=False: no dropout at all
            with dropout, self.acc.autocast():
                scores = step_scores(self.model, batch)
            loss = compute_loss(self.cfg.loss, scores.float(), batch["values"], batch["mask"], reduction="sum")
            self.acc.backward(loss * weight)
        return float(loss.detach()) * weight, loss_units(self.cfg.loss, batch["mask"]) if weight else 0

    def _update(self, loss_sum: float, units: int) -> float:
        """Scale the all-reduced gradients to the step's mean, clip, step; returns the step's mean loss."""
        total_loss, total_units = self._reduce(torch.tensor([loss_sum, units], dtype=torch.float64)).tolist()
        scale = self.world / max(total_units, 1.0)
        for p in self.params:
            if p.grad is not None:
                p.grad.mul_(scale)
        if self.cfg.max_grad_norm:
            self.acc.clip_grad_norm_(self.params, self.cfg.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad()
        return total_loss / max(total_units, 1.0)

    # ------------------------------------------------------------------------------ checkpoints
    def resume(self, latest: Path) -> None:
        """Continue from checkpoint ``latest``: weights, optimizer and schedule (tensors and plain data only)."""
        state = checkpoint_progress(latest)
        extra = load_training_state(latest, self.acc.unwrap_model(self.model), self.optimizer, self.scheduler)
        self.progress = Progress(state["step"], state["epoch"], state["batch"], state["history"], self.total)
        if self.cfg.keep_best and best_evaluation(self.progress.history) is not None:
            if extra.get("best") is None:
                raise ValueError(f"Checkpoint {latest} holds no best weights although its run keeps them (damaged). "
                                 "Delete it to resume from the one before, or pass --overwrite to start again.")
            self.best_state = extra["best"]

    def _note_evaluation(self) -> None:
        """After an evaluation appended to the history: keep the weights when it is the best so far."""
        if self.cfg.keep_best and best_evaluation(self.progress.history) is self.progress.history[-1]:
            model = self.acc.unwrap_model(self.model)
            self.best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}

    def restore_best(self) -> None:
        """Load the best evaluation's weights into the model (``keep_best``; else nothing changes)."""
        if self.cfg.keep_best and self.best_state is not None:
            self.acc.unwrap_model(self.model).load_state_dict(self.best_state)

    def _out_of_patience(self) -> bool:
        return bool(self.cfg.patience) and evaluations_since_best(self.progress.history) >= self.cfg.patience

    def save_checkpoint(self) -> None:
        """``step-N`` written by the main process under a temporary name, renamed when complete."""
        p = self.progress
        path, tmp = self.ckpt_root / f"step-{p.step}", self.ckpt_root / f".tmp-step-{p.step}"
        if self.acc.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            save_training_state(tmp, self.acc.unwrap_model(self.model), self.optimizer, self.scheduler,
                                best=self.best_state if self.cfg.keep_best else None)
            (tmp / STATE_FILE).write_text(json.dumps({"run_id": self.run_id, "step": p.step, "epoch": p.epoch,
                                                      "batch": p.batch, "history": p.history}))
            shutil.rmtree(path, ignore_errors=True)
            os.replace(tmp, path)
            for old in run_checkpoints(self.ckpt_root, self.run_id)[0][:-2]:  # never another run's
                shutil.rmtree(old, ignore_errors=True)
        self.acc.wait_for_everyone()

    # ------------------------------------------------------------------------------ the loop
    def run(self, on_step=None) -> Progress:
        """Train until ``total_steps``; ``on_step(record)`` after each optimizer step (e.g. a progress bar)."""
        cfg, p = self.cfg, self.progress
        if p.step == 0 and not p.history:
            before = self.evaluate()
            if before:
                p.history.append({"step": 0, **before})
        self.model.train()
        accum = cfg.grad_accum
        while p.step < self.total and not self._out_of_patience():
            batches = global_batches(epoch_order(len(self.train_set), cfg.seed, p.epoch), cfg.batch_size, self.world)
            loss_sum, units = 0.0, 0
            for b in range(p.batch, len(batches)):
                end_of_epoch = b == len(batches) - 1
                last_of_step = (b + 1) % accum == 0 or end_of_epoch
                part, count = self._micro_batch(p.epoch, batches[b], sync=last_of_step)
                loss_sum, units = loss_sum + part, units + count
                if not last_of_step:
                    continue
                loss = self._update(loss_sum, units)
                loss_sum, units = 0.0, 0
                p.step += 1
                p.epoch, p.batch = (p.epoch + 1, 0) if end_of_epoch else (p.epoch, b + 1)
                record = {"step": p.step, "loss": loss, "lr": self.scheduler.get_last_lr()[0]}
                if (cfg.eval_every and p.step % cfg.eval_every == 0) or (not cfg.eval_every and end_of_epoch) \
                        or p.step == self.total:
                    record.update(self.evaluate())
                p.history.append(record)
                if "eval_loss" in record:
                    self._note_evaluation()
                stop = self._out_of_patience()
                if on_step is not None:
                    on_step(record)
                if (cfg.save_every and p.step % cfg.save_every == 0) or (not cfg.save_every and end_of_epoch) \
                        or p.step == self.total or stop:
                    self.save_checkpoint()
                if p.step >= self.total or stop:
                    break
            else:
                continue
            break
        return p


__all__ = ["Progress", "RMTrainingLoop", "best_evaluation", "evaluations_since_best"]
