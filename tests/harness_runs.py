"""In-process lm-eval runs without lm-eval's task index.

``lm_eval`` (the CLI) and ``TaskManager()`` index lm-eval's ~10k task YAMLs, about 14 s a process on a quiet
2-core machine.  A task YAML loaded with lm-eval's own loader (``load_yaml_config``: ``include:``,
``!function``) becomes the same ``ConfigurableTask`` the index would build, and ``simple_evaluate`` runs
prepared tasks with an empty ``TaskManager``: the same evaluation, requests, filters, metrics and logged
samples, with no index.  The real CLI runs that remain test what needs them: the plugin hook, several
processes under accelerate and the main job's table.
"""

from __future__ import annotations

from pathlib import Path

TASKS = Path(__file__).resolve().parents[1] / "tasks"


def load_task(yaml_path, **changes):
    """The ``ConfigurableTask`` of a task YAML (``tasks/<name>.yaml`` for a name), with ``changes`` to its config,
    built as lm-eval's task factory builds it (``_load_full_config``, ``_build_task``).

    Its data is read now: set the data's environment variables (``LATENT_TTS_DATA_*``) first."""
    from lm_eval.api.task import ConfigurableTask
    from lm_eval.tasks._yaml_loader import load_yaml

    import lm_eval_latenttts.harness.model  # noqa: F401  (contexts carry their parts before any task builds them)

    path = Path(yaml_path) if str(yaml_path).endswith(".yaml") else TASKS / f"{yaml_path}.yaml"
    config = {**load_yaml(path, resolve_func=True), **changes}
    metadata = config.get("metadata", {})
    config["metadata"] = {**(metadata if isinstance(metadata, dict) else {"_metadata": metadata}),
                          "config_source": str(path)}
    for key in ("tag", "group", "task_list"):
        config.pop(key, None)
    return ConfigurableTask(config=config)


def evaluate(model, tasks, **kwargs) -> dict:
    """``lm_eval.simple_evaluate`` of prepared tasks (names of ``tasks/`` or ``ConfigurableTask``s), no task index;
    ``model`` is an LM or a registered name (with ``model_args``), ``kwargs`` are simple_evaluate's."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    prepared = [load_task(t) if isinstance(t, (str, Path)) else t for t in tasks]
    return lm_eval.simple_evaluate(model=model, tasks=prepared, task_manager=TaskManager(include_defaults=False),
                                   **kwargs)


def evaluate_into(out, model, tasks, **kwargs) -> Path:
    """As the CLI with ``--output_path out``: evaluate, write the results file (and the samples when
    ``log_samples``) with lm-eval's ``EvaluationTracker``; returns the results file."""
    from lm_eval.loggers import EvaluationTracker

    tracker = EvaluationTracker(output_path=str(out))
    results = evaluate(model, tasks, evaluation_tracker=tracker, **kwargs)
    samples = results.pop("samples", None)
    tracker.save_results_aggregated(results=results, samples=samples)
    if samples:
        for task in results["configs"]:
            tracker.save_results_samples(task_name=task, samples=samples[task])
    (found,) = Path(out).rglob("results_*.json")
    return found


def samples_of(results: dict, task: str) -> list[dict]:
    """A task's logged samples (``log_samples=True``) as ``--log_samples`` writes them (``arguments`` as
    ``{"gen_args_i": {"arg_j": ...}}``, the target as text), in document order."""
    found = []
    for sample in results["samples"][task]:
        arguments = {f"gen_args_{i}": {f"arg_{j}": arg for j, arg in enumerate(args)}
                     for i, args in enumerate(sample["arguments"])}
        found.append({**sample, "arguments": arguments, "target": str(sample["target"])})
    return sorted(found, key=lambda s: (s["doc_id"], s.get("filter", "")))


__all__ = ["TASKS", "evaluate", "evaluate_into", "load_task", "samples_of"]
