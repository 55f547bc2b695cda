"""The selection study's research code (benchmarks/selection.py, selection_lib): selectors agree with the
package's aggregation rules, and the pipeline runs end to end on a few questions."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from selection_lib import selectors as sel  # noqa: E402

from lm_eval_latenttts.scaling.aggregation import best_of_n_index, majority_vote, weighted_vote  # noqa: E402


def _random(seed=0, q=40, n=9):
    rng = np.random.default_rng(seed)
    answers = rng.integers(-1, 6, size=(2, q, n))  # few values: many ties; -1 is no answer
    scores = rng.normal(size=(2, q, n)).round(1)  # ties in scores too
    return answers, scores


def _as_text(row):
    return [None if a < 0 else str(int(a)) for a in row]


def _code(answer):
    return -1 if answer is None else int(answer)


def test_selectors_match_the_package_rules():
    answers, scores = _random()
    maj, bon, wtd = sel.majority(answers), sel.best_of_n(answers, scores), sel.weighted(answers, scores, 1.0)
    for s in range(answers.shape[0]):
        for i in range(answers.shape[1]):
            texts = _as_text(answers[s, i])
            assert maj[s, i] == _code(majority_vote(texts))
            assert bon[s, i] == answers[s, i, best_of_n_index(scores[s, i].tolist())]
            assert wtd[s, i] == _code(weighted_vote(texts, scores[s, i].tolist()))


def test_consistency_vote_and_greedy_voter():
    answers = np.array([[[3, 3, 3, 5, 5]]])
    readback = np.array([[[4, 4, 3, 5, 5]]])  # two of the 3s disagree with their read-back
    assert sel.consistency_vote(answers, readback, 0.0)[0, 0] == 5
    assert sel.consistency_vote(answers, readback, 1.0)[0, 0] == 3  # epsilon 1: plain majority
    assert sel.consistency_vote(answers, np.full((1, 1, 5), 9), 0.001)[0, 0] == 3  # none consistent: majority
    greedy = np.array([5])
    assert sel.with_greedy(answers, greedy, 0.5)[0, 0] == 3 and sel.with_greedy(answers, greedy, 1.5)[0, 0] == 5
    assert sel.with_greedy(np.array([[[1, 2]]]), np.array([7]), 2.0)[0, 0] == 7  # greedy's answer may win alone
    assert sel.abstain_to_greedy(answers, greedy, 0.7)[0, 0] == 5 and sel.abstain_to_greedy(answers, greedy, 0.6)[0, 0] == 3


def test_pipeline_end_to_end(tmp_path, monkeypatch, capsys):
    """rollouts -> score -> export -> tables on 4 valid questions of the shipped model (a smoke run), each step as
    ``python benchmarks/selection.py <step> ...`` runs it, in this process (``runpy``)."""
    import runpy

    import torch

    script = str(ROOT / "benchmarks" / "selection.py")
    pt, npz = str(tmp_path / "v.pt"), str(tmp_path / "v.npz")
    monkeypatch.chdir(ROOT)
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    threads = torch.get_num_threads()

    def run(*args):
        monkeypatch.setattr(sys, "argv", [script, *args])
        capsys.readouterr()
        try:
            runpy.run_path(script, run_name="__main__")
        finally:
            torch.set_num_threads(threads)
        return capsys.readouterr().out

    run("rollouts", "--split", "valid", "--limit", "4", "--n", "4", "--seeds", "2", "--threads", "1", "--out", pt)
    run("score", "--rollouts", pt, "--rm", str(ROOT / "lm_eval_latenttts" / "checkpoints" / "arith-rm"),
        "--name", "shipped")
    run("export", "--rollouts", pt, "--out", npz)
    data = np.load(npz)
    assert data["answers"].shape == (2, 4, 4) and data["scores__shipped"].shape == (2, 4, 4, 2)
    assert data["readback_answer"].shape == (2, 4, 4)
    out = run("tables", "--valid", npz, "--valid-only", "--n", "4", "--out", str(tmp_path / "t.json"))
    assert "read-back consistency vote" in out
    report = json.loads((tmp_path / "t.json").read_text())
    greedy = report["valid"]["selectors"]["greedy"]["accuracy"]["mean"]
    assert greedy == pytest.approx(float((data["greedy_answer"] == data["gold"]).mean()))


def test_committed_tables_recompute():
    """The committed per-question arrays give the committed report's headline numbers."""
    results = ROOT / "benchmarks" / "results"
    report = json.loads((results / "selection.json").read_text())
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from selection_lib import analysis as an
    from selection_lib.tables import load_npz

    valid, test = load_npz(results / "selection_valid.npz"), load_npz(results / "selection_test.npz")
    params = an.fit(valid, 16)
    assert params["consistency_epsilon"] == report["params"]["consistency_epsilon"]
    a = test["answers"].astype(np.int64)
    choice = sel.consistency_vote(a, test["readback_answer"].astype(np.int64), params["consistency_epsilon"])
    name = f"read-back consistency vote (eps={params['consistency_epsilon']})"
    assert float((choice == test["gold"][None]).mean()) == pytest.approx(
        report["test"]["selectors"][name]["accuracy"]["mean"])
    assert float((sel.majority(a) == test["gold"][None]).mean()) == pytest.approx(
        report["test"]["selectors"]["majority"]["accuracy"]["mean"])
    # the per-N table (docs/scaling.md): the same selector at N=16, its headroom recovered, and at N=4
    at16 = report["test"]["scaling"]["16"]["consistency"]
    assert at16["mean"] == pytest.approx(report["test"]["selectors"][name]["accuracy"]["mean"])
    assert at16["headroom_recovered"]["mean"] == pytest.approx(
        report["test"]["selectors"][name]["headroom_recovered"]["mean"])
    four = sel.consistency_vote(a[..., :4], test["readback_answer"].astype(np.int64)[..., :4],
                                params["consistency_epsilon"])
    assert float((four == test["gold"][None]).mean()) == pytest.approx(report["test"]["scaling"]["4"]["consistency"]["mean"])


def test_rm_rows_by_hand():
    """The RM table's rows (learning curve, levers): AUROC as the AUROC table's, the paired AUROC difference as the
    difference of per-question AUROCs, best-of-N and the RM-weighted vote minus majority on the same questions."""
    from selection_lib import analysis as an
    from selection_lib.tables import per_question_auroc

    rng = np.random.default_rng(3)
    answers = rng.integers(0, 4, size=(2, 30, 8))
    gold = rng.integers(0, 4, size=30)
    d = {"answers": answers, "gold": gold, "correct": answers == gold[None, :, None],
         "readback_answer": answers[..., :0], "scores__a": rng.normal(size=(2, 30, 8, 2)),
         "scores__b": rng.normal(size=(2, 30, 8, 2))}
    rows = an.rm_rows(d, 8, ["a", "b"], "a")
    assert rows["a"]["auroc"]["mean"] == pytest.approx(an.auroc_table(d, 8)["a"]["mean"])
    assert "auroc_minus_reference" not in rows["a"]
    pa, pb = (per_question_auroc(d[f"scores__{k}"].sum(-1), d["correct"]) for k in "ab")
    ok = ~np.isnan(pb)
    assert rows["b"]["auroc_minus_reference"]["mean"] == pytest.approx(float((pb[ok] - pa[ok]).mean()))
    traj = d["scores__b"].sum(-1)
    bon = (sel.best_of_n(answers, traj) == gold).mean(0) - (sel.majority(answers) == gold).mean(0)
    assert rows["b"]["best_of_n_minus_majority"]["mean"] == pytest.approx(float(bon.mean()))
    lo, hi = rows["b"]["best_of_n_minus_majority"]["ci95"]
    assert lo <= bon.mean() <= hi
    wtd = (sel.weighted(answers, traj, 1.0) == gold).mean(0) - (sel.majority(answers) == gold).mean(0)
    assert rows["b"]["weighted_minus_majority"]["mean"] == pytest.approx(float(wtd.mean()))
