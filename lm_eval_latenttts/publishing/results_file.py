"""Reading an lm-eval ``latent_tts`` results file for ``export-results``: find it, load it, refuse what is not a
complete run of the model in the folder, and name the Hub benchmark of each task (``eval_results`` writes)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from lm_eval_latenttts.publishing.identity import weights_sha256
from lm_eval_latenttts.publishing.model_info import DATA_ENV_PREFIX

TASK_PREFIX = "latent_"


class ExportError(ValueError):
    """The results cannot be exported as asked (another model, a partial run, an unknown benchmark...)."""


@dataclass(frozen=True)
class Benchmark:
    """A Hub benchmark dataset and the task id its ``eval.yaml`` gives the scores' task."""

    dataset_id: str
    task_id: str
    split: str | None = None


def _default_benchmarks() -> dict[str, Benchmark]:
    """The Hub datasets the ``latent_*`` tasks read when no local file is given (``data.HUB_SOURCES``)."""
    from lm_eval_latenttts.data import HUB_SOURCES

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


__all__ = ["Benchmark", "ExportError", "TASK_PREFIX", "check_results", "failed_documents", "find_results_file",
           "load_results", "parse_benchmarks", "task_benchmark"]
