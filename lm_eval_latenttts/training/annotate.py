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

Settings: a ``LatentGenerationConfig`` (sampling, strength, N =
``num_return_sequences``, seed, ``max_new_tokens``, ``latent_length``) on top
of the backbone's recommended ones; without a recommended sampling mode,
Monte Carlo dropout at the backbone's typical strength.  Ranks (``accelerate
launch``) take the questions ``i`` with ``i % world == rank`` that are not yet
done, so a restart may even use a different world size; question ``i`` is
seeded from (seed, i), so the ranks' shards together equal one process's.
Storage and resume: :mod:`lm_eval_latenttts.training.annotation_store`; one
run writes a folder at a time (its main process holds the folder's lock, which
the OS releases when the run ends or dies).
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from hf_modeling.latent_sampling import key_from_ints
from lm_eval_latenttts.data.questions import read_questions
from lm_eval_latenttts.training import annotation_store as store
from lm_eval_latenttts.training.step_values import _finish, annotate_question  # noqa: F401  (one question's values)
from lm_eval_latenttts.training.run_record import check_or_write, exclusive_run, require_folder

SKIP_OPTION = "--skip-bad-rows (AnnotateConfig(skip_bad_rows=True))"
# step labels: Monte Carlo values, exact read-back labels (exact_labels.py), or the outcome (every step labelled with
# the trajectory's final correctness: no continuations, no read-backs -- the cheapest; for a backbone whose
# continuations share the next latent with their trajectory, as COCONUT with 2 latents, close to the MC values)
LABELS = ("monte_carlo", "decoded", "outcome")
ANNOTATION_TRAJECTORIES = 8  # SPEC, released recipe: N = 8 trajectories per question
DTYPES = ("float32", "bfloat16", "float16")


def load_questions(path, limit: int | None = None, skip_bad_rows: bool = False) -> list[dict]:
    """``{question_id, question, gold[, steps]}`` per question of a file read by
    :mod:`lm_eval_latenttts.data.questions` (``steps``: the row's gold steps, when it has them).

    ``question_id`` is the row's index in the file (stable when bad rows are
    skipped); ``limit`` keeps the first ``limit`` questions.
    """
    questions = read_questions(path, skip_bad_rows=skip_bad_rows, skip_option=SKIP_OPTION)
    out = [{"question_id": q.index, "question": q.question, "gold": q.answer,
            **({"steps": list(q.steps)} if q.steps else {})} for q in questions]
    return out if limit is None else out[: int(limit)]


def question_seed(seed: int, question_id: int) -> int:
    """Seed of one question: a function of (seed, question id) only, so sharding over ranks does not matter."""
    return key_from_ints(seed, question_id) & ((1 << 62) - 1)


@dataclass
class AnnotateConfig:
    """Arguments of an annotation run (all but the last group are recorded and checked on resume).

    ``generation``: overrides of the backbone's recommended ``LatentGenerationConfig`` fields
    (``latent_sampling``, ``dropout_p``, ``noise_std``, ``num_return_sequences`` (N), ``seed``,
    ``max_new_tokens``, ``latent_length``); N defaults to 8.
    """

    model: str
    data: str
    output_dir: str
    generation: dict = field(default_factory=dict)
    num_continuations: int = 16  # M (Monte Carlo labels only)
    labels: str = "monte_carlo"  # "decoded": exact labels read back from each latent prefix; "outcome": final
    # correctness at every step (neither needs continuations)
    latents_per_step: int = 1  # decoded labels: latents per gold reasoning step (the backbone's curriculum)
    limit: int | None = None  # first `limit` questions of the file
    keep_all: bool = False  # keep questions whose N trajectories are all right / all wrong
    skip_bad_rows: bool = False  # drop (and count) rows without a question or a numeric gold answer
    max_batch_rows: int = 1024  # continuation rows per forward pass
    dtype: str = "float32"
    # not recorded (do not change the result)
    shard_size: int = 50
    threads: int | None = None
    progress: bool = True

    def validate(self) -> None:
        for name in ("num_continuations", "max_batch_rows", "shard_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1; got {value!r}.")
        if self.labels not in LABELS:
            raise ValueError(f"labels must be one of {', '.join(LABELS)}; got {self.labels!r}.")
        if isinstance(self.latents_per_step, bool) or not isinstance(self.latents_per_step, int) \
                or self.latents_per_step < 1:
            raise ValueError(f"latents_per_step must be an integer >= 1; got {self.latents_per_step!r}.")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}; got {self.dtype!r}.")
        for name in ("limit", "threads"):  # --limit -1 dropped the last question, --threads 0 meant all threads
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be an integer >= 1 (or left out); got {value!r}.")

    def resolve(self, model):
        """The run's ``LatentGenerationConfig``: the backbone's recommended settings, then ``generation``."""
        overrides = {"num_return_sequences": ANNOTATION_TRAJECTORIES, **self.generation}
        if "latent_sampling" not in overrides:  # a strength names its mode; else the checkpoint's, else dropout
            given = [mode for mode, key in (("dropout", "dropout_p"), ("noise", "noise_std")) if key in overrides]
            recommended = model.latent_generation_config().latent_sampling
            overrides["latent_sampling"] = given[0] if len(given) == 1 else recommended or "dropout"
        config = model.latent_generation_config(None, **overrides)
        if config.seed is None:  # a seed per call would differ on resume and between ranks
            raise ValueError("annotation needs a fixed seed (its questions are seeded from (seed, question id), so "
                             "that a resumed or multi-process run draws the same trajectories); the checkpoint's "
                             "generation_config.json says seed=null: pass --seed <int>.")
        if not config.samples:
            raise ValueError("annotation needs stochastic trajectories: pass --sampling dropout or noise with a "
                             "strength > 0 (--dropout-p / --noise-std).")
        if config.num_return_sequences < 2 and not self.keep_all:
            raise ValueError(
                "num_trajectories (N) must be >= 2: questions whose N trajectories are all right or all wrong "
                "are dropped, so N=1 keeps nothing (and the contrastive loss needs N >= 2)."
            )
        return config

    def recorded(self, generation) -> dict:
        """What the result depends on: checked on resume."""
        settings = {k: v for k, v in generation.latent_settings().items()
                    if k not in ("aggregate", "latent_beams", "latent_candidates", "reduction")}
        return {
            "model": os.path.abspath(self.model) if os.path.exists(self.model) else self.model,
            "data": os.path.abspath(self.data), "data_sha256": _file_sha256(self.data),
            "generation": settings, "num_continuations": self.num_continuations, "limit": self.limit,
            **({"labels": self.labels, "latents_per_step": self.latents_per_step} if self.labels != "monte_carlo"
               else {}),
            "keep_all": self.keep_all, "skip_bad_rows": self.skip_bad_rows, "max_batch_rows": self.max_batch_rows,
            "dtype": self.dtype, "format_version": store.FORMAT_VERSION,
        }


def incomplete(folder, recorded: dict) -> str | None:
    """Why the annotation run in ``folder`` (its ``annotation_config.json``: ``recorded``) is not known to be
    complete, or None when its shards cover every question of its data file (kept or dropped).

    The expected questions are those of the recorded data file (checked by its sha256), ``limit`` and
    ``skip_bad_rows``, as the run read them; a run killed or still running has fewer.
    """
    data, digest = recorded.get("data"), recorded.get("data_sha256")
    if not data or not digest:
        return (f"{Path(folder) / store.CONFIG_FILE} does not record its data file and the file's sha256 (it was "
                "not written by annotate), so whether every question was annotated cannot be told")
    if not Path(data).is_file():
        return f"its data file {data} is gone, so whether every question was annotated cannot be told"
    if _file_sha256(data) != digest:
        return f"its data file {data} changed since (sha256), so whether every question was annotated cannot be told"
    expected = {q["question_id"] for q in load_questions(data, recorded.get("limit"),
                                                         skip_bad_rows=bool(recorded.get("skip_bad_rows")))}
    missing = sorted(expected - store.done_question_ids(folder))
    if missing:
        return (f"{len(expected) - len(missing)} of the {len(expected)} questions of {data} are annotated "
                f"({len(missing)} missing, from question id {missing[0]}): the annotate run was interrupted or is "
                "still running; rerun the same annotate command to finish it")
    return None


def _file_sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _dist_state():
    """(rank, world size, device, barrier): accelerate's; without accelerate installed, one process.  Any other
    error is raised: a process of a multi-process run that went on alone would annotate every question."""
    try:
        from accelerate import PartialState
        from accelerate.utils import parse_flag_from_env
    except ImportError:  # pragma: no cover - accelerate is a dependency
        return 0, 1, torch.device("cpu"), lambda: None
    # PartialState, unlike Accelerator, does not read ACCELERATE_USE_CPU itself: without cpu=True two CPU
    # processes of `accelerate launch --multi_gpu` each see a world of one and annotate every question
    state = PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))
    return state.process_index, state.num_processes, state.device, state.wait_for_everyone


def annotate(config: AnnotateConfig, *, model=None, tokenizer=None, on_question_done=None) -> dict:
    """Annotate ``config.data`` into ``config.output_dir`` (resumable). Returns a summary dict.

    ``model`` / ``tokenizer`` may be passed already loaded; ``on_question_done(question_id)`` is
    called after each question (tests use it to simulate an interruption).  One run writes a folder at a
    time: a second run into it is refused while the first holds its lock (``run_record.exclusive_run``).
    """
    config.validate()
    rank, world, device, wait = _dist_state()
    out_dir = require_folder(config.output_dir, "--output-dir")
    with exclusive_run(out_dir, "annotate run", take=rank == 0):
        if config.threads:
            torch.set_num_threads(int(config.threads))
        questions = load_questions(config.data, config.limit, skip_bad_rows=config.skip_bad_rows)
        if config.labels == "decoded":
            _require_gold_steps(questions, config.data)
        model, tokenizer = _backbone(config, model, tokenizer, device)
        generation = config.resolve(model)
        check_or_write(out_dir / store.CONFIG_FILE, config.recorded(generation), rank == 0, wait,
                       "an annotation run", "Resume with the same arguments, or choose a new --output-dir.")
        store.clean_tmp(out_dir, rank)
        done = store.done_question_ids(out_dir)
        # ownership by question id (not by position among the questions left), so ranks that read the done set
        # at slightly different times still partition the questions exactly
        mine = [q for q in questions if q["question_id"] % world == rank and q["question_id"] not in done]
        stats = {"rank": rank, "world": world, "questions": len(mine), "already_done": len(done),
                 "kept": 0, "dropped": 0, "continuations": 0, "shards": 0}
        shards = _Shards(out_dir, rank, config.shard_size, stats)
        _annotate_questions(config, model, tokenizer, generation, mine, shards, on_question_done)
        wait()
    return stats


def _require_gold_steps(questions: list[dict], data) -> None:
    """Decoded labels compare with each question's gold steps: refuse, before any compute, questions without."""
    from lm_eval_latenttts.training.exact_labels import gold_expressions

    bad = [q["question_id"] for q in questions
           if not q.get("steps") or any(e is None for e in gold_expressions(q["steps"]))]
    if bad:
        raise ValueError(
            f"--labels decoded needs every question's gold reasoning steps ('steps': ['<<47+8=55>>', ...]); "
            f"{len(bad)} question(s) of {data} have none or unreadable ones (first row {bad[0]}). Use --labels "
            "monte_carlo for such data.")


def _backbone(config: AnnotateConfig, model, tokenizer, device):
    """(model, tokenizer): the ones passed, or the backbone ``config.model`` loaded on ``device``."""
    if model is None:
        from hf_modeling import AutoLatentModel, load_latent_tokenizer

        model = AutoLatentModel.from_pretrained(config.model, dtype=getattr(torch, config.dtype))
        tokenizer = load_latent_tokenizer(config.model, model.config)
        model.to(device)
    elif tokenizer is None:
        raise ValueError("annotate(model=...) also needs the tokenizer.")
    return model, tokenizer


class _Shards:
    """This rank's annotated questions, written as a shard every ``size`` questions (kept and dropped alike)."""

    def __init__(self, out_dir: Path, rank: int, size: int, stats: dict) -> None:
        self.out_dir, self.rank, self.size, self.stats = out_dir, rank, size, stats
        self.rows, self.kept, self.dropped = [], [], []

    def add(self, question_id: int, row: dict | None) -> None:
        """Record a question: kept with its ``row``, or dropped (``None``)."""
        if row is None:
            self.dropped.append(question_id)
            self.stats["dropped"] += 1
        else:
            self.rows.append(row)
            self.kept.append(question_id)
            self.stats["kept"] += 1
        if len(self.kept) + len(self.dropped) >= self.size:
            self.flush()

    def flush(self) -> None:
        if self.kept or self.dropped:
            store.write_shard(self.out_dir, self.rank, self.rows, self.kept, self.dropped)
            self.stats["shards"] += 1
        self.rows, self.kept, self.dropped = [], [], []


def _annotate_questions(config: AnnotateConfig, model, tokenizer, generation, mine: list[dict], shards: _Shards,
                        on_question_done) -> None:
    """Annotate this rank's questions into ``shards``; adds the counts and speed to ``shards.stats``."""
    from tqdm.auto import tqdm

    stats, n = shards.stats, generation.num_return_sequences
    start = time.perf_counter()
    bar = tqdm(total=len(mine), desc=f"annotate[rank {shards.rank}]", unit="q", disable=not config.progress,
               position=shards.rank, dynamic_ncols=True)
    try:
        for q in mine:
            prompt_ids = model.encode_prompt(tokenizer, q["question"])
            question_config = model.latent_generation_config(
                generation, seed=question_seed(generation.seed, q["question_id"]))
            record, cont = annotate_question(model, tokenizer, prompt_ids, q["gold"], question_config,
                                             config.num_continuations, config.max_batch_rows, config.labels,
                                             q.get("steps"), config.latents_per_step)
            stats["continuations"] += cont
            n_right = int(record["correct"].sum())
            keep = config.keep_all or 0 < n_right < n
            m = config.num_continuations if config.labels == "monte_carlo" else 0
            shards.add(q["question_id"], store.record_to_row(q, prompt_ids, record, m) if keep else None)
            bar.update(1)
            elapsed = max(time.perf_counter() - start, 1e-9)
            bar.set_postfix(cont_per_s=f"{stats['continuations'] / elapsed:.1f}", kept=stats["kept"],
                            dropped=stats["dropped"])
            if on_question_done is not None:
                on_question_done(q["question_id"])
        shards.flush()
    finally:
        bar.close()
    stats["seconds"] = time.perf_counter() - start
    stats["continuations_per_s"] = stats["continuations"] / max(stats["seconds"], 1e-9)


__all__ = ["AnnotateConfig", "annotate", "annotate_question", "incomplete", "load_questions", "question_seed"]
