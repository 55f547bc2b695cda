"""``export-results``: an lm-eval ``latent_tts`` results file -> the model folder's Hub evaluation results.

Writes, into the evaluated backbone's folder:

* ``.eval_results/<task>_<metric>_<settings>.yaml``: one file per task and
  metric variant, in the Hub's eval-results format (a YAML list of entries
  ``dataset: {id, task_id}``, ``value``, ``date``, ``source: {url, name}``,
  ``notes``; https://huggingface.co/docs/hub/eval-results, serialised by
  ``huggingface_hub.eval_result_entries_to_yaml``).  ``notes`` names the
  test-time-scaling settings (sampling, N, aggregation, LatentRM, seed), what
  the metric is, since a majority@16 score is not a greedy score, and what the
  run cost per question (the ``rollouts`` and ``latent_forwards`` rows, which
  are costs and get no entry of their own);
* the same results in the ``model-index`` of its ``README.md`` card (metric
  ``config`` = the settings, ``args`` = every setting), replacing older
  entries of the same task, metric and settings.

File names and ``model-index`` configs carry a slug of everything that
changes a score: the settings, the LatentRM (its weights' sha256) and the
weights' dtype when it is not the checkpoint's own, so runs that differ only
there do not overwrite each other.

Refused: results of another model than the folder's (compared by the sha256
of the weights that the run recorded, see ``publishing.model_info``), results
not produced by ``latent_tts``, runs with ``--limit`` / ``--samples`` (fewer
documents than the task has), ``--predict_only`` runs (no scores), tasks with
documents that could not run and were scored wrong (the run's
``failed_documents``, e.g. prompts too long for the context window) unless
``--allow-failed-documents`` (then the notes give the count), a card whose
``model-index`` cannot be read (before anything is written), and tasks whose
questions came from a local file unless ``--benchmark TASK=DATASET`` says which
Hub benchmark they are.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from lm_eval_latenttts.harness.arguments import GENERATION_KEYS
from lm_eval_latenttts.publishing.identity import weights_sha256
from lm_eval_latenttts.publishing.model_info import DATA_ENV_PREFIX, SETTING_KEYS

RESULTS_DIR = ".eval_results"
TASK_PREFIX = "latent_"
METRIC_MEANING = {
    "acc": "accuracy of the aggregated answer ({aggregate})",
    "single_acc": "mean accuracy of a single rollout",
    "majority": "majority vote over the N answers",
    "best_of_n": "answer of the rollout with the highest LatentRM score (best-of-N)",
    "weighted": "LatentRM-weighted vote over the N answers",
    "coverage": "any of the N answers right (pass@N)",
    "greedy": "accuracy of the deterministic decode (sampling off, one rollout), run beside the sampled ones",
}
# cost rows of a result, not scores: they go into every score's notes instead of entries of their own
COST_METRICS = {"rollouts": "rollouts", "latent_forwards": "latent forward steps"}


class ExportError(ValueError):
    """The results cannot be exported as asked (another model, a partial run, an unknown benchmark...)."""


@dataclass(frozen=True)
class Benchmark:
    """A Hub benchmark dataset and the task id its ``eval.yaml`` gives the scores' task."""

    dataset_id: str
    task_id: str
    split: str | None = None


def _default_benchmarks() -> dict[str, Benchmark]:
    """The Hub datasets the ``latent_*`` tasks read when no local file is given (``tasks/utils.py``)."""
    from lm_eval_latenttts.tasks.utils import HUB_SOURCES

    return {f"{TASK_PREFIX}{name}": Benchmark(repo, repo.split("/")[-1], split)
            for name, (repo, _config, split) in HUB_SOURCES.items()}


def parse_benchmarks(items: list[str]) -> dict[str, Benchmark]:
    """``["TASK=DATASET[:TASK_ID]", ...]`` (``--benchmark``) -> {task: Benchmark}; the dataset must be a Hub
    dataset id as the Hub validates it and the task id one name (they are written into the results files)."""
    from lm_eval_latenttts.publishing.identity import check_repo_id, check_task_id

    found = {}
    for item in items:
        task, _, target = item.partition("=")
        dataset, _, task_id = target.partition(":")
        task, dataset, task_id = task.strip(), dataset.strip(), task_id.strip()
        if not task or "/" not in dataset:
            raise ExportError(f"--benchmark {item!r}: expected TASK=DATASET[:TASK_ID] with a Hub dataset id "
                              "such as openai/gsm8k, e.g. --benchmark latent_gsm8k=openai/gsm8k:gsm8k.")
        if task in found:
            raise ExportError(f"--benchmark names task {task!r} twice; give each task one benchmark.")
        try:
            check_repo_id(dataset, f"--benchmark {item!r}: the dataset", namespace=True)
            check_task_id(task_id or dataset.split("/")[-1], f"--benchmark {item!r}")
        except ValueError as err:
            raise ExportError(str(err)) from None
        found[task] = Benchmark(dataset, task_id or dataset.split("/")[-1])
    return found


# ------------------------------------------------------------------------------------ reading
def find_results_file(path) -> Path:
    """``path`` itself, or the newest ``results_*.json`` under an ``--output_path`` folder (one model only)."""
    path = Path(path)
    if path.is_file():
        return path
    if not path.is_dir():
        raise ExportError(f"{path} is neither an lm-eval results file nor an --output_path folder.")
    found = sorted(path.rglob("results_*.json"))
    if not found:
        raise ExportError(f"{path} holds no lm-eval results_*.json file; run lm_eval with --output_path {path}.")
    models = sorted({p.parent for p in found})
    if len(models) > 1:
        raise ExportError(f"{path} holds results of several models ({', '.join(m.name for m in models)}); "
                          "pass the results file itself.")
    return max(found, key=lambda p: p.name)  # the names carry the ISO date


def load_results(path) -> tuple[dict, Path]:
    file = find_results_file(path)
    try:
        results = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise ExportError(f"{file} is not a readable lm-eval results file ({err}).") from err
    if not isinstance(results, dict) or "results" not in results or "config" not in results:
        raise ExportError(f"{file} is not an lm-eval results file (no 'results' / 'config').")
    return results, file


def failed_documents(results: dict, info: dict, file: Path, tasks: list[str], allow: bool) -> dict[str, str]:
    """Per task, a sentence for the notes on its documents that could not run (scored wrong), "" for none;
    an error for a task with any unless ``allow``, or for results that do not record the count."""
    recorded = info.get("failed_documents")
    found = {}
    for task in tasks:
        count = recorded.get(task) if isinstance(recorded, dict) else None
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ExportError(f"{file} does not record how many documents of task {task} could not run (an older "
                              "lm-eval-latenttts?); rerun the evaluation with this version.")
        total = ((results.get("n-samples") or {}).get(task) or {}).get("effective")
        of = f" of {total}" if total is not None else ""
        if count and not allow:
            raise ExportError(f"{file}: {count}{of} documents of task {task} could not run (e.g. a prompt too long "
                              "for the model's context window) and were scored wrong, so its scores are not the "
                              "benchmark's. Rerun with settings under which every document runs (a lower "
                              "latent_length, a model with a longer context window), or pass "
                              "--allow-failed-documents to export them with the count in the notes.")
        found[task] = (f" {count}{of} documents could not run (too long for the context window) and are scored "
                       "wrong.") if count else ""
    return found


def check_results(results: dict, file: Path, model_dir: Path) -> dict:
    """Refuse results that are not a complete ``latent_tts`` run of the model in ``model_dir``; its info block."""
    config = results["config"]
    info = config.get("latent_tts")
    if config.get("model") != "latent_tts" or not isinstance(info, dict):
        raise ExportError(f"{file} was not produced by `lm_eval --model latent_tts` (model={config.get('model')!r}).")
    if config.get("limit") is not None:
        raise ExportError(f"{file} comes from a run with --limit {config['limit']}: a score on part of a task is "
                          "not the task's score. Rerun without --limit.")
    placeholder = sorted(task for task, scores in results["results"].items()
                         if any(key.partition(",")[0] == "bypass" for key in scores))
    if placeholder:
        raise ExportError(f"{file} comes from a --predict_only run: task {placeholder[0]} holds lm-eval's placeholder "
                          "metric 'bypass' (999), not scores. Rerun without --predict_only to export scores.")
    for task, counts in (results.get("n-samples") or {}).items():
        if counts.get("effective") != counts.get("original"):
            raise ExportError(f"{file}: task {task} scored {counts.get('effective')} of its {counts.get('original')} "
                              "documents (--limit or --samples). Rerun on the whole task.")
    if any(settings.get("seed", 0) is None
           for settings in [info, *(info.get("tasks") or {}).values()] if isinstance(settings, dict)):
        raise ExportError(f"{file} comes from a seed=none run of an older lm-eval-latenttts, which drew a new seed "
                          "for every batch: its scores cannot be reproduced. Rerun with this version (it draws one "
                          "seed for the run and records it) or with model_args seed=<int>.")
    recorded = info.get("weights_sha256")
    if not recorded:
        raise ExportError(f"{file} does not record the evaluated weights' sha256 (an older lm-eval-latenttts?); "
                          "rerun the evaluation with this version.")
    try:
        mine = weights_sha256(model_dir)
    except FileNotFoundError as err:
        raise ExportError(str(err)) from None
    if mine != recorded:
        raise ExportError(f"{file} evaluated {info.get('pretrained')!r} (weights sha256 {recorded[:12]}...), but "
                          f"{model_dir} holds other weights ({mine[:12]}...): export results into the folder of "
                          "the model that was evaluated.")
    if info.get("rm") and not info.get("rm_weights_sha256"):
        raise ExportError(f"{file} does not record the weights sha256 of its LatentRM {info['rm']!r} (no safetensors "
                          "weights?), so its scores cannot be told from another LatentRM's; save the RM with "
                          "safetensors weights and rerun the evaluation.")
    return info


def task_benchmark(results: dict, info: dict, task: str, given: dict[str, Benchmark]) -> Benchmark:
    """The Hub benchmark of ``task``'s scores: ``--benchmark``, else the Hub dataset the task read."""
    if task in given:
        return given[task]
    metadata = (results.get("configs") or {}).get(task, {}).get("metadata") or {}
    name = task[len(TASK_PREFIX):] if task.startswith(TASK_PREFIX) else task
    local = metadata.get(f"{TASK_PREFIX}{name}_data") or (info.get("data_files") or {}).get(
        f"{DATA_ENV_PREFIX}{name.upper()}")
    default = _default_benchmarks().get(task)
    if default is not None and not local:
        return default
    source = f"the local file {local}" if local else "data that is not a known Hub benchmark"
    raise ExportError(f"Task {task} read {source}, so its scores belong to no Hub benchmark by default. Name the "
                      f"benchmark dataset they are for: --benchmark {task}=<org/dataset>[:<task id>].")


# ------------------------------------------------------------------------------------ settings
# settings that change scores but have no place in the short slug, with their slug tags; appended only when a
# run's value differs from the default, so that runs of the checkpoint's own settings keep the short slug
# ``dtype`` (of the weights, e.g. bfloat16) is the run's, not a generation setting: its default is the checkpoint's
SLUG_EXTRAS = {"dropout_scope": "scope", "latent_length": "L", "max_new_tokens": "tok", "adaptive_votes": "votes",
               "dtype": ""}
DEFAULT_DTYPE = "float32"  # what a checkpoint without a recorded dtype loads as


def slug_defaults(model_dir=None) -> dict:
    """The values of ``SLUG_EXTRAS`` a run gets when model_args do not set them: the checkpoint's
    ``generation_config.json`` and ``config.json`` dtype (in ``model_dir``), else the library's defaults
    (``LatentGenerationConfig``, float32)."""
    from hf_modeling.generation_config import ADAPTIVE_DEFAULTS, INHERITED_DEFAULTS, LATENT_DEFAULTS

    library = {**LATENT_DEFAULTS, **ADAPTIVE_DEFAULTS, **INHERITED_DEFAULTS, "dtype": DEFAULT_DTYPE}
    field = {key: GENERATION_KEYS.get(key, key) for key in SLUG_EXTRAS}  # model_args name -> config field
    defaults = {key: library[field[key]] for key in SLUG_EXTRAS}
    folder = Path(model_dir) if model_dir is not None else None
    saved = _json(folder / "generation_config.json") if folder is not None else {}
    defaults.update({key: saved[field[key]] for key in defaults if field[key] in saved})
    config = _json(folder / "config.json") if folder is not None else {}
    dtype = config.get("dtype") or config.get("torch_dtype")
    if isinstance(dtype, str):
        defaults["dtype"] = dtype_name(dtype)
    return defaults


def _json(path: Path) -> dict:
    """The JSON object in ``path`` ({} when there is no such file); a damaged one is an error (read as {}, it gave
    the library's defaults, and the slug named settings the run did not use)."""
    if not path.is_file():
        return {}
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise ExportError(f"{path} is damaged ({type(err).__name__}: {err}); the export reads the checkpoint's own "
                          "settings from it. Restore it from the checkpoint.") from None
    if not isinstance(found, dict):
        raise ExportError(f"{path} is not a JSON object; restore it from the checkpoint.")
    return found


def dtype_name(dtype) -> str | None:
    """``'torch.bfloat16'`` / ``'bfloat16'`` -> ``'bfloat16'`` (results record torch's spelling, configs the short one)."""
    return None if dtype is None else str(dtype).removeprefix("torch.")


def settings_slug(settings: dict, rm_sha256: str | None, defaults: dict | None = None) -> str:
    """A short, file-name-safe name of the settings, e.g. ``dropout0.2-n16-weighted-rm1a2b3c4d`` or ``greedy``.

    ``rm_sha256``: the LatentRM's weights sha256 (None: no RM); its first 8 hex digits follow ``rm``, so
    runs with different LatentRMs get different slugs.  Settings of ``SLUG_EXTRAS`` that differ from
    ``defaults`` (see ``slug_defaults``) are appended, e.g. ``-scopelatent``, ``-tok16`` or ``-bfloat16``:
    runs that differ in any setting that changes scores get different slugs.
    """
    sampling, n = settings.get("sampling") or "none", settings.get("n") or 1
    if settings.get("aggregate") == "beam":
        parts = [f"beam{settings.get('beams')}x{settings.get('candidates')}"]
        parts += [sampling if sampling == "none" else _strength(settings)]
    elif sampling == "none" and n == 1:
        parts = ["greedy"]
    else:
        parts = [_strength(settings), f"n{n}", str(settings.get("aggregate"))]
    if settings.get("adaptive_rule"):
        parts += [f"adaptive-{settings['adaptive_rule']}{settings.get('adaptive_threshold')}"
                  f"-k{settings.get('adaptive_round')}"]
    parts += [f"rm{rm_sha256[:8]}"] if rm_sha256 else []
    seed = settings.get("seed", 0)  # every seed but the default 0 is named; a seed=none run's is its drawn seed
    parts += [f"seed{'none' if seed is None else seed}"] if seed != 0 else []
    defaults = slug_defaults() if defaults is None else defaults
    for key, tag in SLUG_EXTRAS.items():
        value = settings.get(key)
        if value is not None and value != defaults[key]:
            parts.append(f"{tag}{value}")
    return re.sub(r"[^A-Za-z0-9.+-]", "_", "-".join(parts))


def _strength(settings: dict) -> str:
    sampling = settings.get("sampling") or "none"
    value = {"dropout": settings.get("dropout_p"), "noise": settings.get("noise_std")}.get(sampling)
    return sampling if value is None else f"{sampling}{value}"


def notes(settings: dict, metric: str, rm: str | None, costs: dict[str, float] | None = None,
          dtype: str | None = None, drawn: bool = False) -> str:
    """Human-readable test-time-scaling settings, what ``metric`` measures and what the run cost per question;
    ``drawn``: the seed was drawn at random for the run (``seed=none``)."""
    aggregate = settings.get("aggregate")
    meaning = METRIC_MEANING.get(metric, metric).format(aggregate=aggregate)
    if metric.startswith("pass@"):
        meaning = f"{metric}: chance that one of {metric[5:]} of the N rollouts is right (unbiased estimator)"
    sampling = settings.get("sampling") or "none"
    strength = {"dropout": f" p={settings.get('dropout_p')}", "noise": f" sigma={settings.get('noise_std')}"}
    how = f"RM-guided beam search {settings.get('beams')}x{settings.get('candidates')}" if aggregate == "beam" \
        else aggregate
    budget = f"N={settings.get('n')}"
    if settings.get("adaptive_rule"):
        budget = (f"at most N={settings.get('n')} drawn adaptively (rule {settings['adaptive_rule']}, rounds of "
                  f"{settings.get('adaptive_round')}, threshold {settings.get('adaptive_threshold')}, "
                  f"{settings.get('adaptive_votes')} votes)")
    spent = ", ".join(f"{costs[k]:g} {label}" for k, label in COST_METRICS.items() if k in (costs or {}))
    spent = f" Cost per question (mean, the greedy decode included): {spent}." if spent else ""
    weights = f", weights {dtype}" if dtype else ""
    return (f"lm-eval-latenttts test-time scaling, zero-shot: {meaning}. Latent sampling {sampling}"
            f"{strength.get(sampling, '')}, {budget}, aggregation {how}, LatentRM "
            f"{rm or 'none'}, seed {settings.get('seed')}{' (drawn at random for the run)' if drawn else ''}"
            f"{weights}.{spent}")


def relevant(settings: dict) -> dict:
    """The settings that shaped the scores: no strength of a sampler that did not run, no unset values."""
    sampling = settings.get("sampling") or "none"
    unused = {"dropout_p", "dropout_scope"} if sampling != "dropout" else set()
    unused |= {"noise_std"} if sampling != "noise" else set()
    return {k: v for k, v in settings.items() if v is not None and k not in unused}


def rm_label(info: dict) -> str | None:
    """The LatentRM as a reader of the card can find it: its Hub id, else its folder name and weights hash."""
    from lm_eval_latenttts.publishing.identity import hub_repo_id

    rm = info.get("rm")
    if rm is None:
        return None
    return hub_repo_id(rm) or f"{Path(str(rm)).name} (weights sha256 {str(info.get('rm_weights_sha256'))[:12]})"


def _metrics(task_results: dict):
    """(metric, filter, value) of a task's numeric scores (no stderr)."""
    for key, value in sorted(task_results.items()):
        metric, _, filt = key.partition(",")
        if filt and "_stderr" not in metric and isinstance(value, (int, float)) and not isinstance(value, bool):
            yield metric, filt, float(value)


def _date(results: dict, file: Path) -> str:
    """When the run started (lm-eval's ``date``, a Unix time) in the eval-results format; an error without one
    (a missing date was written as 1970-01-01)."""
    stamp = results.get("date")
    if isinstance(stamp, str):
        try:
            stamp = float(stamp)
        except ValueError:
            stamp = None
    if isinstance(stamp, bool) or not isinstance(stamp, (int, float)) or stamp <= 0:
        raise ExportError(f"{file} does not record when the evaluation ran (its 'date' is {results.get('date')!r}); "
                          "it is not a complete lm-eval results file.")
    return datetime.fromtimestamp(float(stamp), tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# ------------------------------------------------------------------------------------ writing
def export_results(results_path, model_dir, *, benchmarks: dict[str, Benchmark] | None = None,
                   repo_id: str | None = None, source_url: str | None = None,
                   source_name: str | None = None, allow_failed_documents: bool = False) -> list[Path]:
    """Write ``.eval_results/*.yaml`` and the card's ``model-index`` for every task of the results file.

    Everything is checked before anything is written; returns the files written (the card last).
    ``allow_failed_documents``: export tasks with documents that could not run, the count in the notes.
    """
    import yaml
    from huggingface_hub import EvalResult, EvalResultEntry, eval_result_entries_to_yaml

    from hf_modeling.hub import card_metadata, render_card
    from lm_eval_latenttts.publishing.model_card import read_card, update_model_index

    from lm_eval_latenttts.publishing.identity import check_repo_id

    model_dir = Path(model_dir)
    if repo_id is not None:
        try:
            check_repo_id(repo_id, "--repo-id")
        except ValueError as err:
            raise ExportError(str(err)) from None
    results, file = load_results(results_path)
    info = check_results(results, file, model_dir)
    groups = set(results.get("group_subtasks") or {})
    tasks = [t for t in sorted(results["results"]) if t not in groups]
    unknown = sorted(set(benchmarks or {}) - set(tasks))
    if unknown:
        raise ExportError(f"--benchmark names {', '.join(unknown)}, which {file} has no scores of (its tasks: "
                          f"{', '.join(tasks)}).")
    failed = failed_documents(results, info, file, tasks, allow_failed_documents)
    chosen = {task: task_benchmark(results, info, task, benchmarks or {}) for task in tasks}
    url = source_url or (f"https://huggingface.co/{repo_id}" if repo_id else None)
    name = source_name or ("lm-eval-harness results (lm-eval-latenttts)" if url else None)
    date = _date(results, file)
    rm = rm_label(info)
    rm_sha256 = info.get("rm_weights_sha256") if info.get("rm") else None
    dtype = dtype_name(info.get("dtype"))
    defaults = slug_defaults(model_dir)  # the checkpoint's own settings: what a run without model_args used
    files, index = {}, []
    for task in tasks:
        settings = relevant((info.get("tasks") or {}).get(task) or {k: info.get(k) for k in SETTING_KEYS})
        slug, bench = settings_slug({**settings, "dtype": dtype}, rm_sha256, defaults), chosen[task]
        scores = list(_metrics(results["results"][task]))
        costs = {metric: value for metric, filt, value in scores if metric in COST_METRICS and filt == "none"}
        for metric, filt, value in scores:
            if metric in COST_METRICS:
                continue
            variant = metric if filt == "none" else f"{metric}-{filt}"
            text = notes(settings, metric, rm, costs, dtype, drawn=bool(info.get("seed_drawn"))) + failed[task]
            entry = EvalResultEntry(dataset_id=bench.dataset_id, task_id=bench.task_id, value=value, date=date,
                                    source_url=url, source_name=name, notes=text)
            stem = re.sub(r"[^A-Za-z0-9.+-]", "_", f"{task}_{variant.replace('@', '-at-')}_{slug}")
            files[stem] = yaml.safe_dump(eval_result_entries_to_yaml([entry]), sort_keys=False)
            index.append(EvalResult(
                task_type="text-generation", task_name=task, dataset_type=bench.dataset_id,
                dataset_name=bench.dataset_id, dataset_split=bench.split, metric_type=variant, metric_value=value,
                metric_name=f"{variant} ({slug})", metric_config=slug, source_name=name, source_url=url,
                metric_args={**settings, "rm": rm, "rm_weights_sha256": rm_sha256, "dtype": dtype, "notes": text}))
    if not files:
        raise ExportError(f"{file} holds no task scores to export.")
    card = render_card(card_metadata(pipeline_tag="text-generation", tags=[str(info.get("backbone"))]),
                       f"# {repo_id or model_dir.name}\n\nA {info.get('backbone_class')} latent reasoning model.")
    try:  # an unreadable card stops the export before anything is written
        card = read_card(model_dir, new_card=card)
    except ValueError as err:
        raise ExportError(str(err)) from None
    out = model_dir / RESULTS_DIR
    out.mkdir(exist_ok=True)
    written = []
    for stem, text in files.items():
        tmp = out / f".tmp-{stem}.yaml"
        tmp.write_text(text, encoding="utf-8")
        written.append(tmp.replace(out / f"{stem}.yaml"))
    written.append(update_model_index(model_dir, index, repo_id or model_dir.name, card=card))
    return written


__all__ = ["Benchmark", "ExportError", "dtype_name", "export_results", "find_results_file", "load_results", "notes",
           "parse_benchmarks", "settings_slug", "slug_defaults"]
