"""Where annotations live: shards on disk, written atomically, resumable, loaded and validated.

Layout of an annotation folder ``OUT``: ``annotation_config.json`` (the run's
settings, checked on resume) and shards ``OUT/shard-r{rank}-{k}/``
(``datasets.Dataset.save_to_disk`` plus a ``manifest.json`` listing every
question id the shard covers, the dropped ones included).  A shard is written
under a temporary name and renamed when complete, so a killed run never leaves
a half shard; a restart skips the question ids of the complete shards.
``load_annotations(OUT)`` concatenates the shards (sorted by question id) and
validates them.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path

CONFIG_FILE = "annotation_config.json"
MANIFEST_FILE = "manifest.json"
SHARD_PREFIX = "shard-"
TMP_PREFIX = ".tmp-"
FORMAT_VERSION = 2  # 2: rollouts keyed per question and sample (batch-independent)

# columns of the annotated dataset (one row per kept question)
COLUMNS = (
    "question_id",  # int: index of the question in the data file
    "question",  # str
    "gold",  # str: gold answer
    "prompt_ids",  # [L] int: the backbone prompt (ends with the start marker)
    "latents",  # [N][steps_n][hidden] float32: fed-back vectors of each trajectory
    "step_values",  # [N][steps_n] float32 in [0, 1]: Monte Carlo value of each latent step
    "num_steps",  # [N] int: latent steps each trajectory took
    "correct",  # [N] bool: final correctness of each trajectory
    "answers",  # [N] str|None: extracted answers
    "answer_texts",  # [N] str: decoded answer texts
    "num_continuations",  # int: M
)


class AnnotationDataError(ValueError):
    """The annotation folder / dataset is missing, empty or malformed."""


def features():
    from datasets import Features, Sequence, Value

    return Features(
        {
            "question_id": Value("int64"),
            "question": Value("string"),
            "gold": Value("string"),
            "prompt_ids": Sequence(Value("int64")),
            "latents": Sequence(Sequence(Sequence(Value("float32")))),
            "step_values": Sequence(Sequence(Value("float32"))),
            "num_steps": Sequence(Value("int64")),
            "correct": Sequence(Value("bool")),
            "answers": Sequence(Value("string")),
            "answer_texts": Sequence(Value("string")),
            "num_continuations": Value("int64"),
        }
    )


# ----------------------------------------------------------------------------------- data
def record_to_row(question, prompt_ids, record, num_continuations):
    n = record["correct"].shape[0]
    latents, values, num_steps = [], [], record["num_steps"].tolist()
    for i in range(n):
        k = num_steps[i]
        latents.append(record["latents"][i, :k].tolist())
        values.append(record["step_values"][i, :k].tolist())
    return {
        "question_id": int(question["question_id"]),
        "question": question["question"],
        "gold": question["gold"],
        "prompt_ids": list(map(int, prompt_ids)),
        "latents": latents,
        "step_values": values,
        "num_steps": num_steps,
        "correct": record["correct"].tolist(),
        "answers": record["answers"],
        "answer_texts": record["answer_texts"],
        "num_continuations": int(num_continuations),
    }



# ------------------------------------------------------------------------ shards / resume
def _shard_dirs(out_dir):
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        return []
    return sorted(p for p in out_dir.iterdir() if p.is_dir() and p.name.startswith(SHARD_PREFIX))


def _read_manifest(shard):
    path = Path(shard) / MANIFEST_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise AnnotationDataError(f"Shard {shard} has no readable {MANIFEST_FILE} ({err}).") from err


def done_question_ids(out_dir):
    """Question ids (kept or dropped) recorded by the complete shards in ``out_dir``."""
    done = set()
    for shard in _shard_dirs(out_dir):
        manifest = _read_manifest(shard)
        ids = manifest["kept"] + manifest["dropped"]
        overlap = done.intersection(ids)
        if overlap:
            raise AnnotationDataError(f"Shard {shard} repeats question ids {sorted(overlap)[:10]}.")
        done.update(ids)
    return done


def write_shard(out_dir, rank, rows, kept, dropped):
    from datasets import Dataset

    out_dir = Path(out_dir)
    existing = [p.name for p in _shard_dirs(out_dir) if p.name.startswith(f"{SHARD_PREFIX}r{rank:03d}-")]
    index = 1 + max((int(name.rsplit("-", 1)[1]) for name in existing), default=-1)
    final = out_dir / f"{SHARD_PREFIX}r{rank:03d}-{index:05d}"
    tmp = out_dir / f"{TMP_PREFIX}r{rank:03d}-{index:05d}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    if rows:
        with _quiet_datasets():
            Dataset.from_list(rows, features=features()).save_to_disk(str(tmp))
    else:  # every question of the shard was dropped: only the manifest (datasets cannot reload 0 rows)
        tmp.mkdir(parents=True)
    manifest = {"kept": sorted(kept), "dropped": sorted(dropped), "rank": rank, "rows": len(rows)}
    (tmp / MANIFEST_FILE).write_text(json.dumps(manifest))
    os.replace(tmp, final)
    return final


@contextlib.contextmanager
def _quiet_datasets():
    import datasets.utils as ds_tqdm

    was_disabled = ds_tqdm.are_progress_bars_disabled()
    ds_tqdm.disable_progress_bars()
    try:
        yield
    finally:
        if not was_disabled:
            ds_tqdm.enable_progress_bars()


def clean_tmp(out_dir, rank):
    for p in Path(out_dir).glob(f"{TMP_PREFIX}r{rank:03d}-*"):
        shutil.rmtree(p, ignore_errors=True)


# -------------------------------------------------------------------------------- loading
def load_annotations(path, validate=True):
    """The full annotated dataset of an annotation folder (all shards, sorted by question id).

    Raises ``AnnotationDataError`` when the folder has no shards, the shards hold no questions,
    columns are missing, or shapes / values are inconsistent.
    """
    from datasets import concatenate_datasets, load_from_disk

    path = Path(path)
    if not path.exists():
        raise AnnotationDataError(f"Annotation folder {path} does not exist.")
    shards = _shard_dirs(path)
    if not shards:
        if (path / "dataset_info.json").is_file() or (path / "state.json").is_file():
            shards = [path]  # a single saved dataset
        else:
            raise AnnotationDataError(
                f"{path} holds no annotation shards ({SHARD_PREFIX}*); run `python -m lm_eval_latenttts annotate` "
                "first, or check the path."
            )
    parts = []
    for shard in shards:
        if shard != path and _read_manifest(shard).get("rows", None) == 0:
            continue
        try:
            ds = load_from_disk(str(shard))
        except Exception as err:
            raise AnnotationDataError(f"Could not read annotation shard {shard}: {err}") from err
        if len(ds):
            parts.append(ds)
    if not parts:
        raise AnnotationDataError(
            f"{path}: the annotation holds no questions (every question was dropped because its trajectories "
            "were all right or all wrong?). Use more trajectories, another sampling strength, or --keep-all."
        )
    ds = concatenate_datasets(parts) if len(parts) > 1 else parts[0]
    order = sorted(range(len(ds)), key=ds["question_id"].__getitem__)
    if order != list(range(len(ds))):
        ds = ds.select(order)
    if validate:
        validate_annotations(ds, source=str(path))
    return ds


def validate_annotations(ds, source="dataset"):
    missing = [c for c in ("question_id", "prompt_ids", "latents", "step_values", "correct") if c not in ds.column_names]
    if missing:
        raise AnnotationDataError(f"{source}: missing columns {missing}; not an annotation dataset.")
    if len(ds) == 0:
        raise AnnotationDataError(f"{source}: the annotation dataset is empty.")
    ids = ds["question_id"]
    if len(set(ids)) != len(ids):
        raise AnnotationDataError(f"{source}: duplicated question ids.")
    light = ["question_id", "prompt_ids", "step_values", "correct"]
    light += ["num_steps"] if "num_steps" in ds.column_names else []
    for row in ds.select_columns(light):
        qid = row["question_id"]
        n = len(row["correct"])
        if n == 0 or len(row["step_values"]) != n:
            raise AnnotationDataError(
                f"{source}: question {qid} has {len(row['step_values'])} value rows and {n} correctness flags; "
                "they must agree and be > 0."
            )
        if not row["prompt_ids"]:
            raise AnnotationDataError(f"{source}: question {qid} has an empty prompt.")
        if "num_steps" in row and list(row["num_steps"]) != [len(v) for v in row["step_values"]]:
            raise AnnotationDataError(f"{source}: question {qid}: num_steps does not match the step values.")
        for val in row["step_values"]:
            if any(not (0.0 <= v <= 1.0) for v in val):
                raise AnnotationDataError(f"{source}: question {qid} has step values outside [0, 1].")
    # latent vectors are big: check the shapes of a sample here (training re-checks every batch)
    hidden = None
    sample = ds.select(range(min(len(ds), 20))).select_columns(["question_id", "latents", "step_values"])
    for row in sample:
        qid = row["question_id"]
        if len(row["latents"]) != len(row["step_values"]):
            raise AnnotationDataError(f"{source}: question {qid}: latent trajectories and value rows differ in number.")
        for lat, val in zip(row["latents"], row["step_values"]):
            if len(lat) != len(val):
                raise AnnotationDataError(f"{source}: question {qid}: {len(lat)} latents but {len(val)} step values.")
            for vec in lat:
                hidden = len(vec) if hidden is None else hidden
                if len(vec) != hidden or hidden == 0:
                    raise AnnotationDataError(f"{source}: question {qid}: latent vectors of different widths.")
    return ds


__all__ = [
    "AnnotationDataError",
    "CONFIG_FILE",
    "COLUMNS",
    "done_question_ids",
    "features",
    "load_annotations",
    "record_to_row",
    "validate_annotations",
]
