"""Step-wise Monte Carlo annotation: the training labels of the LatentRM.

For every training question the backbone draws N stochastic latent
trajectories.  For every latent step t of every trajectory, M stochastic
continuations are run from that trajectory's prefix (prompt + latents 0..t):
the remaining latent steps with the same sampler, then the greedy answer.  The
*step value* ``values[n, t]`` is the fraction of the M continuations whose
answer equals the gold answer (SPEC: LatentRM training labels).

The prefix is computed once: the N trajectories advance one latent step at a
time, and after step t their state (KV cache, mask, positions) is branched
into N*M rows with ``LatentState.select`` -- the trajectories' own state stays
valid and goes on to step t+1.  After the last latent step nothing random is
left (answer decoding is greedy with dropout off), so the last step's value is
the trajectory's own final correctness and no continuations are run for it.

Note on Monte Carlo dropout: the forward pass that consumes latent t also
produces the hidden state from which latent t+1 is derived, under the same
dropout draw.  A continuation from the prefix of step t therefore shares
latent t+1 with its trajectory (for COCONUT, where the latent is the hidden
state as is) and differs from the forward pass of latent t+1 on.  With
Gaussian noise, latent t+1 is re-drawn per continuation.

Output: ``OUT/annotation_config.json`` (the arguments, checked on resume) and
shards ``OUT/shard-r{rank}-{k}/`` (``datasets.Dataset.save_to_disk`` + a
``manifest.json`` listing every question id the shard covers, including the
dropped ones).  A shard is written under a temporary name and renamed when
complete, so a killed run never leaves a half shard; a restart with the same
arguments skips the question ids recorded in the complete shards.  Ranks
(``accelerate launch``) take the questions ``i`` with ``i % world == rank``
that are not yet done, so a restart may even use a different world size.

``load_annotations(OUT)`` concatenates the shards (sorted by question id) and
validates them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from lm_eval_latenttts.questions import read_questions

logger = logging.getLogger(__name__)

CONFIG_FILE = "annotation_config.json"
MANIFEST_FILE = "manifest.json"
SHARD_PREFIX = "shard-"
TMP_PREFIX = ".tmp-"
FORMAT_VERSION = 1

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
SKIP_OPTION = "--skip-bad-rows (AnnotateConfig(skip_bad_rows=True))"


def load_questions(path, limit=None, skip_bad_rows=False):
    """``{question_id, question, gold}`` per question of a file read by :mod:`lm_eval_latenttts.questions`.

    ``question_id`` is the row's index in the file (stable when bad rows are
    skipped); ``limit`` keeps the first ``limit`` questions.  Bad rows raise
    :class:`~lm_eval_latenttts.questions.QuestionFileError` unless ``skip_bad_rows``.
    """
    questions = read_questions(path, skip_bad_rows=skip_bad_rows, skip_option=SKIP_OPTION)
    out = [{"question_id": q.index, "question": q.question, "gold": q.answer} for q in questions]
    return out if limit is None else out[: int(limit)]


def backbone_kind(model):
    from lm_eval_latenttts.aggregation import _backbone_kind

    return _backbone_kind(model)


def question_seed(seed, question_id):
    """Generator seed of one question: a function of (seed, question id) only, so sharding does not matter."""
    digest = hashlib.sha256(f"latent-tts-annotate:{int(seed)}:{int(question_id)}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


# ------------------------------------------------------------------------------- settings
@dataclass
class AnnotateConfig:
    """Arguments of an annotation run (all but the last group are recorded and checked on resume)."""

    model: str
    data: str
    output_dir: str
    num_trajectories: int = 8  # N
    num_continuations: int = 16  # M
    sampling: str = "dropout"  # "dropout" or "noise"
    dropout_p: float = 0.1
    noise_std: float = 0.0
    seed: int = 0
    max_new_tokens: int = 32
    latent_length: int | None = None  # default: the model config's
    limit: int | None = None  # first `limit` questions of the file
    keep_all: bool = False  # keep questions whose N trajectories are all right / all wrong
    skip_bad_rows: bool = False  # drop (and count) rows without a question or a numeric gold answer
    max_batch_rows: int = 1024  # continuation rows per forward pass
    dtype: str = "float32"
    # not recorded (do not change the result)
    shard_size: int = 50
    threads: int | None = None
    progress: bool = True

    _UNRECORDED = ("output_dir", "shard_size", "threads", "progress")

    def validate(self):
        if not isinstance(self.num_trajectories, int) or self.num_trajectories < 1:
            raise ValueError(f"num_trajectories (N) must be >= 1; got {self.num_trajectories}.")
        if self.num_trajectories < 2 and not self.keep_all:
            raise ValueError(
                "num_trajectories (N) must be >= 2: questions whose N trajectories are all right or all wrong "
                "are dropped, so N=1 keeps nothing (and the contrastive loss needs N >= 2)."
            )
        if not isinstance(self.num_continuations, int) or self.num_continuations < 1:
            raise ValueError(f"num_continuations (M) must be >= 1; got {self.num_continuations}.")
        if self.sampling not in ("dropout", "noise"):
            raise ValueError(f"sampling must be 'dropout' or 'noise'; got {self.sampling!r}.")
        if self.sampling == "dropout" and not (0 < self.dropout_p < 1):
            raise ValueError(f"sampling='dropout' needs 0 < dropout_p < 1; got {self.dropout_p}.")
        if self.sampling == "noise" and not (self.noise_std > 0 and math.isfinite(self.noise_std)):
            raise ValueError(f"sampling='noise' needs noise_std > 0; got {self.noise_std}.")
        if self.shard_size < 1 or self.max_batch_rows < 1:
            raise ValueError("shard_size and max_batch_rows must be >= 1.")
        if self.dtype not in ("float32", "bfloat16", "float16"):
            raise ValueError(f"dtype must be float32, bfloat16 or float16; got {self.dtype!r}.")

    def sampler_kwargs(self):
        if self.sampling == "dropout":
            return {"mode": "dropout", "dropout_p": self.dropout_p, "noise_std": 0.0}
        return {"mode": "noise", "dropout_p": 0.0, "noise_std": self.noise_std}

    def recorded(self):
        rec = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in self._UNRECORDED}
        rec["model"] = os.path.abspath(self.model) if os.path.exists(self.model) else self.model
        rec["data"] = os.path.abspath(self.data)
        rec["data_sha256"] = _file_sha256(self.data)
        rec["format_version"] = FORMAT_VERSION
        if self.sampling == "dropout":
            rec.pop("noise_std")
        else:
            rec.pop("dropout_p")
        return rec


def _file_sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ------------------------------------------------------------------------------ the core
def _eos_list(eos):
    if eos is None:
        return []
    return [eos] if isinstance(eos, int) else list(eos)


def answer_texts(tokenizer, answer_ids, eos_token_id):
    """Decode answer ids, cut at the first EOS."""
    eos = set(_eos_list(eos_token_id))
    texts = []
    for row in answer_ids.tolist():
        cut = next((i for i, tok in enumerate(row) if tok in eos), len(row))
        texts.append(tokenizer.decode(row[:cut], skip_special_tokens=True))
    return texts


class _Judge:
    def __init__(self, tokenizer, kind, gold, eos_token_id):
        from lm_eval_latenttts.aggregation import answers_equal, extract_answer

        self.tokenizer, self.kind, self.gold, self.eos = tokenizer, kind, gold, eos_token_id
        self._extract, self._equal = extract_answer, answers_equal

    def answers(self, answer_ids):
        texts = answer_texts(self.tokenizer, answer_ids, self.eos)
        return texts, [self._extract(t, self.kind) for t in texts]

    def correct(self, answer_ids):
        _, answers = self.answers(answer_ids)
        return [self._equal(a, self.gold) for a in answers]


def _finish(model, state, sampler, steps_left, max_new_tokens, eos, pad, room):
    """Run the remaining latent steps and the greedy answer on ``state`` (modified in place)."""
    for _ in range(steps_left):
        if model.dynamic_latent_length and bool(state.stopped.all()):
            break
        model.latent_step(state, sampler)
    return model.decode_answer(state, max_new_tokens, eos, pad, room)


import torch  # noqa: E402  (kept below the pure-Python helpers on purpose: they are cheap to import)

from hf_modeling.latent_generation import batch_invariant_attention, sample_keys  # noqa: E402
from hf_modeling.latent_sampling import fold  # noqa: E402


@torch.no_grad()
def annotate_question(model, tokenizer, kind, prompt_ids, gold, *, num_trajectories, num_continuations,
                      sampler_kwargs, seed, max_new_tokens=32, latent_length=None, max_batch_rows=1024):
    """Annotate one question. Returns (record, continuations_run).

    ``record`` has ``latents`` (N, steps, hidden) tensor, ``step_values`` (N, steps) with NaN on the
    steps a dynamic row skipped, ``num_steps`` (N,), ``correct`` (N,) bool, ``answers``, ``answer_texts``.
    """
    n, m = num_trajectories, num_continuations
    setup = model.prepare_rollout(
        torch.tensor([list(prompt_ids)], dtype=torch.long), latent_sampling=sampler_kwargs["mode"],
        dropout_p=sampler_kwargs["dropout_p"], noise_std=sampler_kwargs["noise_std"], dropout_scope="all",
        seed=int(seed), latent_length=latent_length, max_latent_length=latent_length, max_new_tokens=max_new_tokens,
    )
    ids, mask, sampler = setup.input_ids, setup.attention_mask, setup.sampler
    steps, max_new_tokens, eos, pad = setup.steps, setup.max_new_tokens, setup.eos_token_id, setup.pad_token_id
    room = setup.answer_room  # (1,): broadcast over the rows of this one question
    # trajectory j is keyed by (question key, j); continuation c from step t of trajectory j by (j's key, t, c)
    trajectory_keys = sample_keys(setup.question_keys, n)
    continuation_index = torch.arange(m, device=ids.device)
    judge = _Judge(tokenizer, kind, gold, eos)
    values = []  # per step: (N,) float, NaN where inactive / filled later
    continuations = 0
    was_training = model.training
    model.eval()
    try:
        with sampler.attached(model), batch_invariant_attention():
            if sampler.prompt_is_deterministic:
                state = model.prefill(ids, mask, sampler, setup.question_keys).repeat_interleave(n)
                state.row_keys = trajectory_keys
            else:
                state = model.prefill(ids.expand(n, -1), mask.expand(n, -1), sampler, trajectory_keys)
            for t in range(steps):
                if model.dynamic_latent_length and bool(state.stopped.all()):
                    break
                model.latent_step(state, sampler)
                step_value = torch.full((n,), float("nan"))
                rows = state.latent_active[-1].nonzero().flatten()
                left = steps - t - 1
                if left > 0 and rows.numel():
                    index = rows.repeat_interleave(m)
                    hits = []
                    keys = fold(fold(state.row_keys[index], t), continuation_index.repeat(rows.numel()))
                    for chunk, chunk_keys in zip(index.split(max_batch_rows), keys.split(max_batch_rows)):
                        branch = state.select(chunk)
                        branch.row_keys = chunk_keys
                        hits += judge.correct(_finish(model, branch, sampler, left, max_new_tokens, eos, pad, room))
                    continuations += index.numel()
                    step_value[rows.cpu()] = torch.tensor(hits, dtype=torch.float32).view(-1, m).mean(1)
                values.append(step_value)
            # the trajectories themselves: nothing random is left, so this is also the last step's value
            answer_ids = model.decode_answer(state, max_new_tokens, eos, pad, room)
            continuations += n
    finally:
        model.train(was_training)
    texts, answers = judge.answers(answer_ids)
    from lm_eval_latenttts.aggregation import answers_equal

    correct = torch.tensor([answers_equal(a, gold) for a in answers], dtype=torch.bool)
    taken = len(values)
    if taken:
        active = torch.stack(state.latent_active, 1).cpu()  # (N, taken)
        num_steps = active.sum(1)
        step_values = torch.stack(values, 1)
        # the last step each row took has value = its final correctness
        last = (num_steps - 1).clamp(min=0)
        fill = torch.isnan(step_values.gather(1, last[:, None]))[:, 0] & (num_steps > 0)
        step_values[fill, last[fill]] = correct[fill].float()
        latents = torch.stack(state.latents, 1).float().cpu()
    else:
        num_steps = torch.zeros(n, dtype=torch.long)
        step_values = torch.zeros(n, 0)
        latents = torch.zeros(n, 0, state.hidden.shape[-1])
    record = {
        "latents": latents,
        "step_values": step_values,
        "num_steps": num_steps,
        "correct": correct,
        "answers": answers,
        "answer_texts": texts,
    }
    return record, continuations


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


def _check_or_write_config(out_dir, recorded, is_main, wait):
    path = Path(out_dir) / CONFIG_FILE
    if path.is_file():
        previous = json.loads(path.read_text())
        changed = sorted(k for k in set(previous) | set(recorded) if previous.get(k) != recorded.get(k))
        if changed:
            detail = "; ".join(f"{k}: was {previous.get(k)!r}, now {recorded.get(k)!r}" for k in changed)
            raise ValueError(
                f"{out_dir} holds an annotation run with different arguments ({detail}). Resume with the same "
                "arguments, or choose a new --output-dir."
            )
    elif is_main:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{TMP_PREFIX}{CONFIG_FILE}.{os.getpid()}")
        tmp.write_text(json.dumps(recorded, indent=2, sort_keys=True))
        os.replace(tmp, path)
    wait()


def _write_shard(out_dir, rank, rows, kept, dropped):
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


def _clean_tmp(out_dir, rank):
    for p in Path(out_dir).glob(f"{TMP_PREFIX}r{rank:03d}-*"):
        shutil.rmtree(p, ignore_errors=True)


def _dist_state():
    try:
        from accelerate import PartialState
        from accelerate.utils import parse_flag_from_env

        # PartialState, unlike Accelerator, does not read ACCELERATE_USE_CPU itself: without cpu=True two CPU
        # processes of `accelerate launch --multi_gpu` each see a world of one and annotate every question
        state = PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))
        return state.process_index, state.num_processes, state.device, state.wait_for_everyone
    except Exception:  # pragma: no cover - accelerate unusable: single process
        return 0, 1, torch.device("cpu"), lambda: None


def annotate(config, *, model=None, tokenizer=None, on_question_done=None):
    """Annotate ``config.data`` into ``config.output_dir`` (resumable). Returns a summary dict.

    ``model`` / ``tokenizer`` may be passed already loaded; ``on_question_done(question_id)`` is
    called after each question (tests use it to simulate an interruption).
    """
    from tqdm.auto import tqdm

    config.validate()
    rank, world, device, wait = _dist_state()
    if config.threads:
        torch.set_num_threads(int(config.threads))
    out_dir = Path(config.output_dir)
    questions = load_questions(config.data, config.limit, skip_bad_rows=config.skip_bad_rows)
    _check_or_write_config(out_dir, config.recorded(), rank == 0, wait)
    _clean_tmp(out_dir, rank)
    done = done_question_ids(out_dir)
    # ownership by question id (not by position among the questions left), so ranks that read the done set at
    # slightly different times still partition the questions exactly
    mine = [q for q in questions if q["question_id"] % world == rank and q["question_id"] not in done]

    if model is None:
        from hf_modeling import AutoLatentModel, load_latent_tokenizer

        model = AutoLatentModel.from_pretrained(config.model, dtype=getattr(torch, config.dtype))
        tokenizer = load_latent_tokenizer(config.model, model.config)
        model.to(device)
    elif tokenizer is None:
        raise ValueError("annotate(model=...) also needs the tokenizer.")
    kind = backbone_kind(model)

    stats = {"rank": rank, "world": world, "questions": len(mine), "already_done": len(done),
             "kept": 0, "dropped": 0, "continuations": 0, "shards": 0}
    rows, kept, dropped = [], [], []

    def flush():
        nonlocal rows, kept, dropped
        if kept or dropped:
            _write_shard(out_dir, rank, rows, kept, dropped)
            stats["shards"] += 1
        rows, kept, dropped = [], [], []

    start = time.perf_counter()
    bar = tqdm(total=len(mine), desc=f"annotate[rank {rank}]", unit="q", disable=not config.progress,
               position=rank, dynamic_ncols=True)
    try:
        for q in mine:
            prompt_ids = model.encode_prompt(tokenizer, q["question"])
            record, cont = annotate_question(
                model, tokenizer, kind, prompt_ids, q["gold"],
                num_trajectories=config.num_trajectories, num_continuations=config.num_continuations,
                sampler_kwargs=config.sampler_kwargs(), seed=question_seed(config.seed, q["question_id"]),
                max_new_tokens=config.max_new_tokens, latent_length=config.latent_length,
                max_batch_rows=config.max_batch_rows,
            )
            stats["continuations"] += cont
            n_right = int(record["correct"].sum())
            if config.keep_all or 0 < n_right < config.num_trajectories:
                rows.append(record_to_row(q, prompt_ids, record, config.num_continuations))
                kept.append(q["question_id"])
                stats["kept"] += 1
            else:
                dropped.append(q["question_id"])
                stats["dropped"] += 1
            if len(kept) + len(dropped) >= config.shard_size:
                flush()
            bar.update(1)
            elapsed = max(time.perf_counter() - start, 1e-9)
            bar.set_postfix(cont_per_s=f"{stats['continuations'] / elapsed:.1f}", kept=stats["kept"],
                            dropped=stats["dropped"])
            if on_question_done is not None:
                on_question_done(q["question_id"])
        flush()
    finally:
        bar.close()
    stats["seconds"] = time.perf_counter() - start
    stats["continuations_per_s"] = stats["continuations"] / max(stats["seconds"], 1e-9)
    wait()
    return stats


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
    "AnnotateConfig",
    "AnnotationDataError",
    "annotate",
    "annotate_question",
    "load_annotations",
    "load_questions",
    "validate_annotations",
    "done_question_ids",
    "question_seed",
]
