"""The latent_* task YAMLs share one template (``include:``), which lm-eval does not index as a task."""

import fnmatch
import re
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

REPO = Path(__file__).resolve().parents[1]
TASKS = REPO / "tasks"
TEMPLATE = "_default_template_yaml"
TASK_NAMES = ["latent_arith", "latent_gsm8k", "latent_gsm_hard", "latent_multiarith"]
METRICS = ["acc", "single_acc", "majority", "best_of_n", "weighted", "greedy", "coverage",
           *(f"pass@{2 ** i}" for i in range(9)), "rollouts", "latent_forwards",
           "extra_positions"]


def test_the_settings_are_written_once_in_the_template():
    holders = sorted(p.name for p in TASKS.iterdir() if p.is_file() and re.search(r"^metric_list:", p.read_text(), re.M))
    assert holders == [TEMPLATE]
    for name in TASK_NAMES:
        assert "include: _default_template_yaml" in (TASKS / f"{name}.yaml").read_text()


def test_lm_evals_index_holds_the_tasks_with_the_templates_settings_and_not_the_template():
    from lm_eval.tasks import TaskManager

    index = TaskManager(include_defaults=False, include_path=str(TASKS)).task_index
    ours = sorted(n for n, e in index.items() if e.yaml_path is not None and Path(e.yaml_path).parent == TASKS)
    assert ours == sorted([*TASK_NAMES, "latent_math"])  # the group, the four tasks; no entry for the template
    for name in TASK_NAMES:
        cfg = index[name].cfg
        assert cfg["task"] == name and cfg["custom_dataset"].endswith(f"load_{name.removeprefix('latent_')}")
        assert [m["metric"] for m in cfg["metric_list"]] == METRICS
        assert [m["higher_is_better"] for m in cfg["metric_list"]] == [True] * 16 + [False] * 3
        assert cfg["generation_kwargs"] == {"latent_tts_payload": True, "until": [], "do_sample": False}
        assert (cfg["output_type"], cfg["repeats"], cfg["num_fewshot"], cfg["test_split"]) == (
            "generate_until", 1, 0, "test")


def test_a_wheel_installs_every_file_of_tasks():
    """A non-editable install has the template too: package-data matches every data file of tasks/."""
    patterns = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"][
        "lm_eval_latenttts.tasks"]
    data = [p.name for p in TASKS.iterdir() if p.is_file() and p.suffix != ".py"]
    assert TEMPLATE in data
    assert [n for n in data if not any(fnmatch.fnmatch(n, pat) for pat in patterns)] == []
