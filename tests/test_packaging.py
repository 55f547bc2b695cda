"""A wheel (non-editable install) holds every package: pyproject.toml lists each folder with an __init__.py."""

from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

REPO = Path(__file__).resolve().parents[1]


def test_every_package_folder_is_listed_in_pyproject():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    listed = set(project["tool"]["setuptools"]["packages"])
    package_dir = project["tool"]["setuptools"]["package-dir"]
    found = set()
    for root in ("hf_modeling", "lm_eval_latenttts"):
        for init in (REPO / root).rglob("__init__.py"):
            found.add(".".join(init.parent.relative_to(REPO).parts))
    assert (REPO / package_dir["lm_eval_latenttts.tasks"] / "__init__.py").exists()
    found.add("lm_eval_latenttts.tasks")  # tasks/ installs under the package (package-dir)
    assert found - listed == set(), "add these packages to [tool.setuptools] packages in pyproject.toml"
    assert listed - found == set(), "these listed packages have no folder with an __init__.py"


def test_the_test_extra_installs_what_the_suite_imports():
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["test"]
    names = {e.split(">")[0].split("=")[0].split("<")[0].strip() for e in extras}
    assert {"pytest", "matplotlib"} <= names  # matplotlib: tests/test_evidence.py redraws the plots


def test_research_code_is_not_in_the_installed_package():
    """The evidence report's library lives under benchmarks/ (imported by the benchmark scripts and tests only):
    no package folder ships it, and nothing in the installed packages imports it."""
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    assert not any("evidence" in name for name in listed)
    assert not (REPO / "lm_eval_latenttts" / "evidence").exists()
    for root in ("hf_modeling", "lm_eval_latenttts"):
        for source in (REPO / root).rglob("*.py"):
            text = source.read_text()
            assert "evidence_lib" not in text and "def bootstrap" not in text, source
