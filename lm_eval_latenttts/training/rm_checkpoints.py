"""A LatentRM training run and its checkpoints: the run record, resuming, pruning.

A run record ``OUT/checkpoints/run_config.json`` (run id + every setting the
weights depend on, and the annotation's identity) ties the checkpoints to one
run: each checkpoint carries the run id, ``resume`` refuses changed settings
and another run's checkpoints, pruning deletes only this run's older
checkpoints, and a fresh start into a used folder needs ``overwrite``.

A checkpoint ``step-N`` holds ``trainer_state.json`` (run id, step, epoch,
micro-batch, history) and ``training_state.pt`` (weights, optimizer and
schedule as tensors and plain data, read back with ``weights_only=True``).
No random state is kept: the loop draws nothing from torch's generators
(dropout is keyed, batches come from (seed, epoch)).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import uuid
from dataclasses import fields
from pathlib import Path

from lm_eval_latenttts.training.annotation_store import CONFIG_FILE
from lm_eval_latenttts.training.run_record import (
    changed_settings,
    load_resume_state,
    read_json_record,
    require_output_folder,
    restore_state,
    write_json_atomic,
)

CHECKPOINTS_DIR = "checkpoints"
RUN_FILE = "run_config.json"  # the run record, in OUT/checkpoints/
STATE_FILE = "trainer_state.json"  # in each checkpoint
TRAINING_STATE_FILE = "training_state.pt"  # in each checkpoint: tensors and plain data only
SUMMARY_FILE = "training_summary.json"  # in OUT, next to the final RM: marks a folder that train-rm wrote


def annotation_settings(annotations):
    """The annotation run's recorded settings (``annotation_config.json``), ``{}`` when the folder has none."""
    path = Path(annotations) / CONFIG_FILE
    if not path.is_file():
        return {}
    try:
        settings = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path} is damaged ({type(err).__name__}: {err}); it records the annotation run's settings: "
                         "restore it, or annotate again into a new folder.") from None
    if not isinstance(settings, dict):
        raise ValueError(f"{path} is not a JSON object; restore it, or annotate again into a new folder.")
    return settings


# Not recorded: where the run writes or publishes, how fast it runs, and when it checkpoints (resume continues
# exactly from any checkpoint, so --save-every changes neither the weights nor the history); ``extra`` is
# never read by training.
_UNRECORDED = {"output_dir", "resume", "overwrite", "push_to_hub", "hub_private", "threads", "progress", "extra",
               "save_every", "base_model", "license", "allow_incomplete_annotations"}


def _local_path(path):
    return os.path.abspath(path) if path and os.path.exists(path) else path


def run_settings(cfg, init: str, ann_config: dict, question_ids: list, processes: int = 1) -> dict:
    """Everything the trained weights (and the summary's history) depend on: a resumed run must match it.

    ``processes`` is recorded too: ``batch_size`` is per process, so another process count is another
    global batch (and a checkpoint's micro-batch counter would point elsewhere).
    """
    rec = {f.name: getattr(cfg, f.name) for f in fields(cfg) if f.name not in _UNRECORDED}
    rec["num_processes"] = int(processes)
    rec["init"] = _local_path(str(init))
    rec["annotations"] = os.path.abspath(cfg.annotations)
    rec["eval_annotations"] = _local_path(cfg.eval_annotations)
    rec["annotation_config"] = ann_config
    rec["eval_annotation_config"] = annotation_settings(cfg.eval_annotations) if cfg.eval_annotations else None
    ids = sorted(int(i) for i in question_ids)
    rec["annotation_questions"] = {"count": len(ids),
                                   "sha256": hashlib.sha256(json.dumps(ids).encode()).hexdigest()}
    return json.loads(json.dumps(rec, default=str))  # as it reads back from the record


def _step_dirs(ckpt_root):
    """``step-N`` checkpoint folders, lowest N first."""
    found = []
    for p in Path(ckpt_root).glob("step-*"):
        m = re.fullmatch(r"step-(\d+)", p.name)
        if m and p.is_dir():
            found.append((int(m.group(1)), p))
    return [p for _, p in sorted(found)]


def _checkpoint_run_id(path):
    """The run id a checkpoint records (None: it has no ``trainer_state.json``, as an older format's); a damaged one
    is an error naming the file (it passed for a checkpoint of another run)."""
    state = Path(path) / STATE_FILE
    if not state.is_file():
        return None
    return read_json_record(state, f"the state of checkpoint {Path(path).name}", _damaged_remedy(path)).get("run_id")


def _damaged_remedy(path) -> str:
    return (f"Delete {path} to resume from the checkpoint before it, or pass --overwrite (without --resume) to start "
            "the run again.")


def checkpoint_progress(path) -> dict:
    """``trainer_state.json`` of checkpoint ``path`` (step, epoch, micro-batch, history), checked."""
    state = read_json_record(Path(path) / STATE_FILE, f"the state of checkpoint {Path(path).name}",
                             _damaged_remedy(path))
    missing = [key for key in ("step", "epoch", "batch", "history") if key not in state]
    if missing:
        raise ValueError(f"{Path(path) / STATE_FILE} lacks {', '.join(missing)}. {_damaged_remedy(path)}")
    return state


def run_checkpoints(ckpt_root, run_id):
    """(this run's checkpoints, lowest step first; checkpoints of any other run)."""
    own, foreign = [], []
    for path in _step_dirs(ckpt_root):
        (own if _checkpoint_run_id(path) == run_id else foreign).append(path)
    return own, foreign


def check_output_dir(cfg) -> Path:
    """Refuse an output folder that is a file, holds another model, or holds an earlier RM without its run.

    Checked before anything is written: the RM's weights, config and card would replace another model's and
    leave its other files (generation settings, training info, eval results) describing the wrong model.
    """
    out = require_output_folder(cfg.output_dir, "--output-dir", SUMMARY_FILE, "train-rm")
    if (out / SUMMARY_FILE).is_file() and not (out / CHECKPOINTS_DIR / RUN_FILE).is_file() and not cfg.overwrite:
        raise ValueError(f"--output-dir {out} holds a LatentRM trained earlier ({SUMMARY_FILE}) without the run "
                         "record of its checkpoints, so it cannot be resumed. Choose a new --output-dir, or pass "
                         "--overwrite to replace it.")
    return out


def open_run(cfg, ckpt_root: Path, settings: dict, accelerator) -> tuple[str, Path | None]:
    """Check OUT/checkpoints against this run; returns (run id, checkpoint to resume from or None).

    A run resumes only from its own checkpoints and with its own settings; a fresh start never mixes with
    an earlier run's checkpoints (they would be resumed from, or would outlive this run's own).
    """
    ckpt_root = Path(ckpt_root)
    record_path = ckpt_root / RUN_FILE
    record = read_json_record(record_path, "the run record of its checkpoints", "Pass --overwrite (without "
                              "--resume) to start the run again, or choose a new --output-dir.") \
        if record_path.is_file() else None
    if record is not None and not isinstance(record.get("run_id"), str):
        raise ValueError(f"{record_path} records no run id. Pass --overwrite (without --resume) to start the run "
                         "again, or choose a new --output-dir.")
    steps = _step_dirs(ckpt_root)
    start_again = ("choose a new --output-dir, or pass --overwrite (without --resume) to delete those checkpoints "
                   "and start again.")
    latest = None
    if cfg.resume and record is not None:
        changed = changed_settings(record.get("settings", {}), settings)
        if changed:
            raise ValueError(
                f"{ckpt_root} holds a training run with different settings ({changed}). Resume with the same "
                f"arguments, or {start_again}"
            )
        own, foreign = run_checkpoints(ckpt_root, record["run_id"])
        if foreign:
            raise ValueError(
                f"{ckpt_root} holds checkpoints that the run recorded in {RUN_FILE} (run id {record['run_id']}) "
                f"did not write: {', '.join(p.name for p in foreign)}. Move them away, or {start_again}"
            )
        latest = own[-1] if own else None
    elif cfg.resume and steps:
        raise ValueError(
            f"{ckpt_root} holds checkpoints without a {RUN_FILE} run record (written by an older version), so "
            f"they cannot be matched to these settings. Use the older version to resume them, or {start_again}"
        )
    elif not cfg.resume and not cfg.overwrite and (record is not None or steps):
        raise ValueError(
            f"{ckpt_root} holds the checkpoints of an earlier training run. Pass --resume to continue that run, "
            "choose a new --output-dir, or pass --overwrite to delete those checkpoints and start again."
        )
    accelerator.wait_for_everyone()  # every process has checked before the main one changes anything
    if accelerator.is_main_process and (record is None or not cfg.resume):  # a new run, in an emptied folder
        shutil.rmtree(ckpt_root, ignore_errors=True)
        ckpt_root.mkdir(parents=True)
        write_json_atomic(record_path, {"run_id": uuid.uuid4().hex, "settings": settings})
    accelerator.wait_for_everyone()
    return json.loads(record_path.read_text())["run_id"], latest


def save_training_state(folder: Path, model, optimizer, scheduler, best: dict | None = None) -> None:
    """Weights, optimizer and schedule of a run into ``folder`` (one ``torch.save`` of tensors and plain data);
    ``best``: the weights of the run's best evaluation so far (``--keep-best``)."""
    import torch

    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), **({"best": best} if best is not None else {})},
               Path(folder) / TRAINING_STATE_FILE)


def load_training_state(folder: Path, model, optimizer, scheduler) -> dict:
    """Restore what :func:`save_training_state` wrote; a checkpoint of another format is refused, never unpickled.
    Returns ``{"best": weights or None}``."""
    path = Path(folder) / TRAINING_STATE_FILE
    remedy = "Pass --overwrite (without --resume) to start the run again, or choose a new --output-dir."
    if not path.is_file():
        raise ValueError(f"Checkpoint {folder} has no {TRAINING_STATE_FILE} (written by an older version, or "
                         f"damaged), so it cannot be resumed. {remedy}")
    state = load_resume_state(path, remedy)
    if not isinstance(state, dict) or not {"model", "optimizer", "scheduler"} <= set(state):
        raise ValueError(f"{path} is not a train-rm training state (it needs model, optimizer and scheduler). "
                         f"{remedy}")
    restore_state(path, remedy, lambda: (model.load_state_dict(state["model"]),
                                         optimizer.load_state_dict(state["optimizer"]),
                                         scheduler.load_state_dict(state["scheduler"])))
    return {"best": state.get("best")}


__all__ = ["CHECKPOINTS_DIR", "RUN_FILE", "STATE_FILE", "SUMMARY_FILE", "TRAINING_STATE_FILE", "annotation_settings",
           "check_output_dir", "checkpoint_progress", "load_training_state", "open_run", "run_checkpoints", "run_settings",
           "save_training_state"]
