"""Smoke tests: the speed benchmarks still run against the current API (tiny models; the numbers are not looked at).

They print the numbers of docs/speed.md and no other test calls them, so an API change would otherwise
break them silently.  Each runs as ``python benchmarks/<script> ...`` would, in this process (``runpy``, the
script's folder on ``sys.path``; ``memory_model.py`` and ``main_job.py`` then start a process per measurement
themselves, ``rollouts.py`` measures in this process with ``--in-process``).
"""

import runpy
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def run(monkeypatch, capsys):
    """``run(script, *args)``: the script's ``__main__`` in this process; its printed output."""
    monkeypatch.syspath_prepend(str(BENCH))
    threads = torch.get_num_threads()

    def execute(script, *args):
        monkeypatch.setattr(sys, "argv", [str(BENCH / script), *map(str, args)])
        capsys.readouterr()
        try:
            runpy.run_path(str(BENCH / script), run_name="__main__")
        finally:
            torch.set_num_threads(threads)
        return capsys.readouterr().out

    return execute


def test_smoke_rollouts_benchmark(run):
    out = run("rollouts.py", "--n", "2", "--repeats", "1", "--layers", "2", "--hidden", "64",
              "--sampling", "dropout", "--threads", "1", "--in-process")
    table = [line.split() for line in out.splitlines() if line.strip()[:1].isdigit() and "s/call" not in line]
    assert [row[0] for row in table] == ["2"] and len(table[0]) == 8


def test_smoke_rm_scoring_benchmark(run):
    out = run("rm_scoring.py", "--n", "2", "--layers", "2", "--hidden", "64", "--threads", "1")
    assert out.count("scoring/rollout = ") == 2


def test_smoke_annotation_benchmark(run):
    out = run("annotation.py", "--questions", "1", "--n", "2", "--m", "2", "--steps", "2", "--layers", "2",
               "--hidden", "64")
    shared, naive = (line for line in out.splitlines() if "continuations in" in line)
    assert shared.split(":")[1].split()[0] == naive.split(":")[1].split()[0]  # the same work, shared or not
    assert "prefix sharing is" in out


def test_smoke_scaling_and_adaptive_reports(tmp_path, run):
    import json

    run("scaling.py", "--limit", "4", "--seeds", "1", "--n", "1", "2", "--out", str(tmp_path / "scaling"))
    report = json.loads((tmp_path / "scaling" / "scaling.json").read_text())
    assert report["questions"] == 4 and report["n"] == [1, 2] and (tmp_path / "scaling" / "scaling.png").is_file()
    run("adaptive.py", "--limit", "4", "--seeds", "1", "--rounds", "3", "--thresholds", "0.9",
         "--timing-repeats", "1", "--out", str(tmp_path / "adaptive"))
    assert json.loads((tmp_path / "adaptive" / "adaptive.json").read_text())["questions"] == 4
    assert (tmp_path / "adaptive" / "adaptive.png").is_file()


def test_smoke_real_prompts_benchmark(tmp_path, run):
    """Smoke test: varied-length questions through the harness policy and the floor; no reference given."""
    import json

    data = tmp_path / "questions.json"
    data.write_text(json.dumps([{"question": "What is " + "one plus " * (i % 7) + f"{i}?"} for i in range(10)]))
    out = run("real_prompts.py", "--data", str(data), "--sizes", "2x64", "--n", "1", "2", "--questions", "10",
               "--batch", "4", "--threads", "1", "--json", str(tmp_path / "out.json"))
    assert "reference: absent" in out and "achieved" in out
    rows = json.loads((tmp_path / "out.json").read_text())["rows"]
    assert [(r["n"], r["questions"]) for r in rows] == [(1, 10), (2, 10)]
    assert all(r["harness"]["calls"] >= 1 and r["padded"]["calls"] == 3 and r["arithmetic"]["seconds"] > 0
               for r in rows)


def test_smoke_memory_model_benchmark(run):
    out = run("memory_model.py", "--questions", "4", "--n", "8")
    rows = [line.split() for line in out.splitlines() if line.strip()[:1].isdigit()]
    assert len(rows) == 1 and rows[0][:2] == ["4", "8"] and float(rows[0][3]) > float(rows[0][4]) > 0


def test_smoke_main_job_benchmark(run):
    out = run("main_job.py", "--repeats", "1", "--limit", "2")
    assert out.count("rollouts ") == 2 and "min " in out
