"""Training of the LatentRM on step-wise Monte Carlo annotations (see ``annotate.py``).

* The objective (step-wise contrastive loss or BCE) and the held-out recall@1
  are in ``rm_objective``; examples and batches in ``rm_data``.
* An accelerate loop (``rm_loop``): AdamW, lr 1e-4, cosine schedule with 10%
  warm-up, gradient accumulation, bf16/fp32, optional LoRA (peft), checkpoints
  under ``OUT/checkpoints/step-*`` that ``resume=True`` continues from.  Under
  ``accelerate launch --num_processes K`` it is distributed data parallel:
  ``batch_size`` questions per process and micro-batch, a global batch of
  K x batch_size x grad_accum questions per optimizer step, the same RM as one
  process at equal global batch (up to rounding); only the main process writes
  the RM, its card, the summary and the checkpoints.
* A run record ``OUT/checkpoints/run_config.json`` (run id + every setting the
  weights depend on, and the annotation's identity) ties the checkpoints to
  one run: each checkpoint carries the run id, ``resume`` refuses changed
  settings and another run's checkpoints, pruning deletes only this run's
  older checkpoints, and a fresh start into a used folder needs ``overwrite``.
* The final RM is written with ``save_pretrained`` (safetensors + the modeling
  code + ``auto_map``), the tokenizer, ``training_summary.json`` and a model
  card ``README.md``; ``push_to_hub`` uploads that folder.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from lm_eval_latenttts.publishing.hub import push_to_hub
from lm_eval_latenttts.training.annotation_store import load_annotations
from lm_eval_latenttts.training.rm_checkpoints import (
    CHECKPOINTS_DIR,
    annotation_settings,
    check_output_dir,
    open_run,
    run_settings,
)
from lm_eval_latenttts.training.rm_data import RM_INPUTS, QuestionExamples, RMCollator, answer_tokenizer, split_questions
from lm_eval_latenttts.training.rm_loop import RMTrainingLoop, best_evaluation
from lm_eval_latenttts.training.rm_model import (
    _lora,
    _unwrap_rm,
    check_rm_against_data,
    load_rm,
    reinitialise,
    resize_layers,
    rm_config,
    save_rm,
)
from lm_eval_latenttts.training.rm_objective import LOSSES
from lm_eval_latenttts.training.run_record import exclusive_run

logger = logging.getLogger(__name__)


# -------------------------------------------------------------------------------- settings
@dataclass
class TrainConfig:
    annotations: str
    output_dir: str
    init: str | None = None  # backbone or RM checkpoint; default: the annotation's backbone
    loss: str = "contrastive"
    epochs: float = 3.0
    max_steps: int | None = None
    batch_size: int = 4  # questions per process and micro-batch (global batch: processes x this x grad_accum)
    grad_accum: int = 1
    lr: float = 1e-4
    warmup_ratio: float = 0.1
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    precision: str = "fp32"  # fp32 | bf16
    rm_input: str = "latents"  # or "latents+answer": the RM also reads the decoded answer (an outcome step)
    reinit: bool = False  # re-initialise every weight (the backbone's architecture, not its training)
    dropout: bool = True  # keyed dropout at the RM's dropout sites while training (False: off, as the reference)
    lora_r: int = 0
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    eval_fraction: float = 0.1
    eval_annotations: str | None = None
    eval_every: int = 0  # optimizer steps; 0: at the end of each epoch
    keep_best: bool = False  # save the weights of the evaluation with the lowest held-out loss (early stopping)
    patience: int = 0  # stop after this many evaluations in a row without a lower held-out loss (0: never)
    rm_layers: int | None = None  # transformer blocks of the RM (None: the init's; fewer: its first ones; more: new)
    save_every: int = 0  # optimizer steps; 0: at the end of each epoch
    seed: int = 0
    resume: bool = False
    overwrite: bool = False  # delete OUT/checkpoints of an earlier run and start again
    push_to_hub: str | None = None
    hub_private: bool = False
    base_model: str | None = None  # model card: Hub id of the initial checkpoint (default: derived from init)
    license: str | None = None  # model card license
    allow_incomplete_annotations: bool = False  # train on an annotation run that did not annotate every question
    threads: int | None = None
    progress: bool = True
    extra: dict = field(default_factory=dict)  # informational (e.g. the recipe): recorded in the summary as is

    def validate(self) -> None:
        """Refuse settings that would silently train something else (e.g. ``max_steps=0`` read as "unset")."""
        def bad(flag, rule, value):
            return ValueError(f"{flag} must be {rule}; got {value!r}.")

        if self.loss not in LOSSES:
            raise bad("--loss", f"one of {', '.join(LOSSES)}", self.loss)
        if self.rm_input not in RM_INPUTS:
            raise bad("--rm-input", f"one of {', '.join(RM_INPUTS)}", self.rm_input)
        if self.precision not in ("fp32", "bf16"):
            raise bad("--precision", "fp32 or bf16", self.precision)
        if not (math.isfinite(self.epochs) and self.epochs > 0):
            raise bad("--epochs", "> 0", self.epochs)
        if self.max_steps is not None and self.max_steps < 1:
            raise bad("--max-steps", ">= 1 (or left out to train for --epochs)", self.max_steps)
        for flag, value in (("--batch-size", self.batch_size), ("--grad-accum", self.grad_accum)):
            if value < 1:
                raise bad(flag, ">= 1", value)
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise bad("--lr", "> 0", self.lr)
        if not 0 <= self.warmup_ratio < 1:
            raise bad("--warmup-ratio", "in [0, 1)", self.warmup_ratio)
        for flag, value, rule in (("--weight-decay", self.weight_decay, ">= 0"),
                                  ("--max-grad-norm", self.max_grad_norm, ">= 0 (0: no clipping)"),
                                  ("--lora-r", self.lora_r, ">= 0 (0: full fine-tuning)"),
                                  ("--eval-every", self.eval_every, ">= 0 (0: each epoch)"),
                                  ("--save-every", self.save_every, ">= 0 (0: each epoch)")):
            if value < 0:
                raise bad(flag, rule, value)
        if not 0 <= self.lora_dropout < 1:
            raise bad("--lora-dropout", "in [0, 1)", self.lora_dropout)
        if not 0 <= self.eval_fraction < 1:
            raise bad("--eval-fraction", "in [0, 1)", self.eval_fraction)
        if self.threads is not None and self.threads < 1:
            raise bad("--threads", ">= 1", self.threads)
        if self.init is not None and not str(self.init).strip():
            raise bad("--init", "a checkpoint folder or Hub id (or left out for the annotation's backbone)", self.init)
        if self.patience < 0:
            raise bad("--patience", ">= 0 (0: train to the end)", self.patience)
        if self.rm_layers is not None and self.rm_layers < 1:
            raise bad("--rm-layers", ">= 1 (or left out for the init's)", self.rm_layers)
        if (self.keep_best or self.patience) and not (self.eval_fraction > 0 or self.eval_annotations):
            raise ValueError("--keep-best and --patience choose by the held-out loss: hold questions out "
                             "(--eval-fraction > 0) or pass --eval-annotations.")
        if self.resume and self.overwrite:
            raise ValueError("--resume continues the run in --output-dir and --overwrite deletes it; pass only one.")
        from lm_eval_latenttts.publishing.identity import check_repo_id

        if self.push_to_hub is not None:  # refused before training, not after it
            check_repo_id(self.push_to_hub, "--push-to-hub")
        if self.base_model is not None:  # the card's base_model names a Hub model
            check_repo_id(self.base_model, "--base-model")


def train_rm(cfg: TrainConfig) -> dict:
    """Train a LatentRM as configured; returns the summary dict (also written to OUT).

    ``cfg.resume`` continues the run recorded in OUT/checkpoints (same settings only); a fresh start into a
    folder holding an earlier run needs ``cfg.overwrite`` (see ``rm_checkpoints.open_run``), and a folder
    holding another model is refused (``rm_checkpoints.check_output_dir``).
    """
    from accelerate import Accelerator

    cfg.validate()
    out = check_output_dir(cfg)
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    ann_config, ds, n_max, init = _annotation(cfg)
    # no gradient_accumulation_steps (accelerate would divide the loss by it) and no prepared scheduler
    # (accelerate would step it once per process): the loop weights its losses and steps the schedule itself
    accelerator = Accelerator(mixed_precision="bf16" if cfg.precision == "bf16" else "no",
                              cpu=not torch.cuda.is_available())
    # one run at a time: the main process holds OUT's lock until the end, the others wait for it in open_run
    with exclusive_run(out, "train-rm run", take=accelerator.is_main_process):
        return _train(cfg, out, accelerator, ann_config, ds, n_max, init)


def _train(cfg: TrainConfig, out: Path, accelerator, ann_config: dict, ds, n_max: int, init) -> dict:
    """The run itself, in ``out``: checkpoints, the model, the loop, the summary and the final RM."""
    from accelerate.utils import set_seed

    ckpt_root = out / CHECKPOINTS_DIR
    settings = run_settings(cfg, init, ann_config, ds["question_id"], processes=accelerator.num_processes)
    run_id, latest = open_run(cfg, ckpt_root, settings, accelerator)
    set_seed(cfg.seed)
    rm, tokenizer, source = _checked_rm(init, ds, ann_config)
    if cfg.reinit:
        reinitialise(rm)
    if cfg.rm_layers is not None:
        resize_layers(rm, cfg.rm_layers)
    answers = None
    if cfg.rm_input == "latents+answer":
        if tokenizer is None:
            raise ValueError("--rm-input latents+answer tokenizes the decoded answers: the RM's init folder or the "
                             "annotation's backbone needs its tokenizer.")
        answers = answer_tokenizer(tokenizer)
    train_set, eval_set = _datasets(cfg, ds, answers)
    loop = _training_loop(cfg, accelerator, rm, train_set, eval_set, ckpt_root, run_id)
    if cfg.resume and latest is None:
        logger.warning("--resume: no checkpoint under %s; starting from scratch.", ckpt_root)
    elif latest is not None:
        loop.resume(latest)
        logger.info("Resumed from %s (step %d).", latest, loop.progress.step)
    progress, seconds = _run(loop, cfg, accelerator)
    accelerator.wait_for_everyone()
    summary = _summary(cfg, run_id, init, source, ann_config, train_set, eval_set, n_max, accelerator.num_processes,
                       progress, seconds)
    if accelerator.is_main_process:
        loop.restore_best()  # --keep-best: the weights of the lowest held-out loss (else nothing)
        final = _unwrap_rm(accelerator.unwrap_model(loop.model))
        if cfg.rm_input != "latents":  # what the RM reads, for whoever scores with it
            final.config.rm_input = cfg.rm_input
        save_rm(final, tokenizer, out, summary)
        if cfg.push_to_hub:
            summary["hub_url"] = push_to_hub(out, cfg.push_to_hub, private=cfg.hub_private,
                                             commit_message="Upload LatentRM trained with lm-eval-latenttts")
    accelerator.wait_for_everyone()
    return summary


def _annotation(cfg: TrainConfig):
    """(annotation settings, annotated dataset, N, init checkpoint), checked for this loss."""
    ann_config = annotation_settings(cfg.annotations)
    ds = load_annotations(cfg.annotations)
    for folder in filter(None, (cfg.annotations, cfg.eval_annotations)):
        _check_complete(folder, cfg.allow_incomplete_annotations)
    n_max = max(len(c) for c in ds["correct"])
    if cfg.loss == "contrastive" and n_max < 2:
        raise ValueError(
            "The step-wise contrastive loss needs N >= 2 trajectories per question, but the annotation has "
            f"N = {n_max}. Annotate with --num-trajectories >= 2, or use --loss bce."
        )
    init = cfg.init if cfg.init is not None else ann_config.get("model")
    if not init:
        raise ValueError("No --init checkpoint given and the annotation folder does not name its backbone.")
    return ann_config, ds, n_max, init


def _check_complete(folder, allow: bool) -> None:
    """Refuse an annotation run that is not known to be complete (``annotate.incomplete``) unless ``allow``."""
    from lm_eval_latenttts.training.annotate import incomplete

    reason = incomplete(folder, annotation_settings(folder))
    if reason is None:
        return
    if not allow:
        raise ValueError(f"Annotation folder {folder}: {reason}. Pass --allow-incomplete-annotations to train on "
                         "the questions it holds anyway.")
    logger.warning("Annotation folder %s: %s; training on the questions it holds (--allow-incomplete-annotations).",
                   folder, reason)


def _checked_rm(init, ds, ann_config: dict):
    """(rm, tokenizer, source kind): the RM to train, checked against the annotation and its backbone."""
    rm, tokenizer, source = load_rm(init)
    hidden = len(next(lat for lat in ds[0]["latents"] if lat)[0])
    backbone_config = None
    if ann_config.get("model") and os.path.exists(str(ann_config["model"])):
        from hf_modeling.auto import latent_config

        try:
            backbone_config, _ = latent_config(ann_config["model"])
        except (OSError, ValueError) as err:  # the RM is checked against it: an unreadable backbone is no pass
            raise ValueError(f"The annotation's backbone {ann_config['model']} cannot be read to check the LatentRM "
                             f"against it ({type(err).__name__}: {err}); restore it, or annotate again.") from err
        if tokenizer is None:
            from hf_modeling import load_latent_tokenizer

            tokenizer = load_latent_tokenizer(ann_config["model"])
    check_rm_against_data(rm, hidden, backbone_config)
    max_prompt = max(len(p) for p in ds["prompt_ids"])
    if max_prompt and max(max(p) for p in ds["prompt_ids"]) >= rm.config.vocab_size:
        raise ValueError("The annotation's prompt token ids exceed the LatentRM's vocabulary; RM/backbone mismatch.")
    return rm, tokenizer, source


def _datasets(cfg: TrainConfig, ds, answer_ids=None):
    """(training questions, held-out questions or None): every process walks the same global batches."""
    if cfg.eval_annotations:
        eval_ds = load_annotations(cfg.eval_annotations)
        train_idx, eval_idx = list(range(len(ds))), list(range(len(eval_ds)))
    else:
        eval_ds = ds
        ids = ds["question_id"]
        train_ids, held_ids = split_questions(ids, cfg.eval_fraction, cfg.seed)
        pos = {qid: i for i, qid in enumerate(ids)}
        train_idx, eval_idx = [pos[i] for i in train_ids], [pos[i] for i in held_ids]
    if not train_idx:
        raise ValueError(f"{cfg.annotations}: no training questions are left after holding out {len(eval_idx)}.")
    return (QuestionExamples(ds, train_idx, answer_ids),
            QuestionExamples(eval_ds, eval_idx, answer_ids) if eval_idx else None)


def _training_loop(cfg: TrainConfig, accelerator, rm, train_set, eval_set, ckpt_root: Path,
                   run_id: str) -> RMTrainingLoop:
    """LoRA (if asked), AdamW, the cosine schedule over the run's optimizer steps, and the loop over them."""
    from transformers import get_cosine_schedule_with_warmup

    pad = rm.config.pad_token_id
    if pad is None:
        pad = rm.config.eos_token_id if isinstance(rm.config.eos_token_id, int) else 0
    if cfg.lora_r:
        rm = _lora(rm, cfg)
    params = [p for p in rm.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    micro_batches = math.ceil(len(train_set) / (cfg.batch_size * accelerator.num_processes))
    updates_per_epoch = max(1, math.ceil(micro_batches / cfg.grad_accum))
    total = cfg.max_steps if cfg.max_steps is not None else max(1, math.ceil(updates_per_epoch * cfg.epochs))
    scheduler = get_cosine_schedule_with_warmup(optimizer, int(round(cfg.warmup_ratio * total)), total)
    rm, optimizer = accelerator.prepare(rm, optimizer)
    return RMTrainingLoop(accelerator, rm, optimizer, scheduler, params, cfg, train_set, eval_set,
                          RMCollator(rm_config(rm).latent_id, pad,
                                     rm_config(rm).latent_end_id if cfg.rm_input == "latents+answer" else None),
                          total, ckpt_root, run_id)


def _run(loop: RMTrainingLoop, cfg: TrainConfig, accelerator):
    """(progress, seconds): the loop run to its end, with a progress bar on the main process."""
    from tqdm.auto import tqdm

    bar = tqdm(total=loop.total, initial=loop.progress.step, desc="train-rm", unit="step",
               disable=not (cfg.progress and accelerator.is_main_process))

    def on_step(record):
        bar.update(1)
        bar.set_postfix({k: f"{v:.4g}" for k, v in record.items() if k in ("loss", "eval_recall_at_1")})

    t0 = time.perf_counter()
    try:
        progress = loop.run(on_step)
    finally:
        bar.close()
    return progress, time.perf_counter() - t0


def _summary(cfg: TrainConfig, run_id: str, init, source: str, ann_config: dict, train_set, eval_set, n_max: int,
             world: int, progress, seconds: float) -> dict:
    """What ``training_summary.json`` records: the run, its settings, and its losses and metrics."""
    history = progress.history
    final_metrics = next((h for h in reversed(history) if "eval_recall_at_1" in h), {})
    best = best_evaluation(history) if cfg.keep_best else None
    if best is not None:  # the installed weights are that evaluation's
        final_metrics = best
    train_losses = [h["loss"] for h in history if "loss" in h]
    metrics_start = history[0] if history and history[0].get("step") == 0 and "loss" not in history[0] else {}
    return {
        "run_id": run_id,
        "init": str(init),
        "init_kind": source,
        "annotations": os.path.abspath(cfg.annotations),
        "annotation_config": ann_config,
        "train_questions": len(train_set),
        "eval_questions": len(eval_set) if eval_set is not None else 0,
        "trajectories_per_question": n_max,
        "num_processes": world,
        "global_batch": world * cfg.batch_size * cfg.grad_accum,
        "config": {k: v for k, v in asdict(cfg).items() if k != "extra"},
        "extra": cfg.extra,
        "optimizer_steps": progress.step,
        "seconds": seconds,
        "first_loss": train_losses[0] if train_losses else None,
        "last_loss": train_losses[-1] if train_losses else None,
        "eval_before": {k: v for k, v in metrics_start.items() if k.startswith("eval_")},
        "eval_after": {k: v for k, v in final_metrics.items() if k.startswith("eval_")},
        **({"selected_step": best["step"] if best is not None else progress.step} if cfg.keep_best else {}),
        **({"stopped_early": progress.step < progress.total} if cfg.patience else {}),
        "history": history,
    }


__all__ = [
    "TrainConfig",
    "check_rm_against_data",
    "load_rm",
    "resize_layers",
    "push_to_hub",
    "run_settings",
    "save_rm",
    "train_rm",
]
