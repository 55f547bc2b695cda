"""``export-results``: an lm-eval ``latent_tts`` results file -> the model folder's Hub evaluation results.

Writes, into the evaluated backbone's folder:

* ``.eval_results/<task>_<metric>_<settings>.yaml``: one file per task and
  metric variant, in the Hub's eval-results format (a YAML list of entries
  ``dataset: {id, task_id}``, ``value``, ``date``, ``source: {url, name}``,
  ``notes``; https://huggingface.co/docs/hub/eval-results, serialised by
  ``huggingface_hub.eval_result_entries_to_yaml``).  ``notes`` names the
  test-time-scaling settings (sampling, N, aggregation, LatentRM, seed), what
  the metric is, since a majority@16 score is not a greedy score, and what the
  run cost per question (the ``rollouts``, ``latent_forwards`` and ``extra_positions`` rows, which
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
from pathlib import Path

from lm_eval_latenttts.keys import GENERATION_KEYS, SCORE_KEYS
from lm_eval_latenttts.publishing.results_file import (  # noqa: F401  (export-results' reading, one import)
    Benchmark,
    ExportError,
    check_results,
    failed_documents,
    find_results_file,
    load_results,
    parse_benchmarks,
    task_benchmark,
)
from lm_eval_latenttts.publishing.results_file import _date, _metrics

RESULTS_DIR = ".eval_results"
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
COST_METRICS = {"rollouts": "rollouts", "latent_forwards": "latent forward steps",
                "extra_positions": "forward positions of the selector's own work (read-backs)"}


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
    if settings.get("beams") is not None:  # recorded only when a search ran (scaling.plan.Plan.settings)
        parts = [f"{settings.get('aggregate')}{settings.get('beams')}x{settings.get('candidates')}"]
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
    how = f"RM-guided beam search {settings.get('beams')}x{settings.get('candidates')}" \
        if settings.get("beams") is not None else aggregate  # beams are recorded only when a search ran
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


# ------------------------------------------------------------------------------------ writing
def export_results(results_path, model_dir, *, benchmarks: dict[str, Benchmark] | None = None,
                   repo_id: str | None = None, source_url: str | None = None,
                   source_name: str | None = None, allow_failed_documents: bool = False) -> list[Path]:
    """Write ``.eval_results/*.yaml`` and the card's ``model-index`` for every task of the results file.

    Everything is checked before anything is written; returns the files written (the card last).
    ``allow_failed_documents``: export tasks with documents that could not run, the count in the notes.
    """
    from hf_modeling.hub import card_metadata, render_card
    from lm_eval_latenttts.publishing.identity import check_repo_id
    from lm_eval_latenttts.publishing.model_card import read_card, update_model_index

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
    source = (url, source_name or ("lm-eval-harness results (lm-eval-latenttts)" if url else None))
    files, index = _entries(results, file, info, tasks, chosen, failed, source, slug_defaults(model_dir))
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


def _entries(results: dict, file: Path, info: dict, tasks: list[str], chosen: dict, failed: dict,
             source: tuple, defaults: dict) -> tuple[dict, list]:
    """({file stem: eval-results YAML}, model-index entries) of every task's scores; ``source``: (url, name);
    ``defaults``: the checkpoint's own settings (``slug_defaults``), what a run without model_args used."""
    import yaml
    from huggingface_hub import EvalResult, EvalResultEntry, eval_result_entries_to_yaml

    url, name = source
    date, rm, dtype = _date(results, file), rm_label(info), dtype_name(info.get("dtype"))
    rm_sha256 = info.get("rm_weights_sha256") if info.get("rm") else None
    files, index = {}, []
    for task in tasks:
        settings = relevant((info.get("tasks") or {}).get(task) or {k: info.get(k) for k in SCORE_KEYS})
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
    return files, index


__all__ = ["Benchmark", "ExportError", "dtype_name", "export_results", "find_results_file", "load_results", "notes",
           "parse_benchmarks", "settings_slug", "slug_defaults"]
