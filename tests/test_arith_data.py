"""Synthetic arithmetic generator (lm_eval_latenttts.data.arith)."""

import json
import re

from lm_eval_latenttts.data import arith


def test_splits_deterministic_and_disjoint():
    a = arith.make_splits(seed=0, n_train=2000, n_valid=100, n_test=100)
    b = arith.make_splits(seed=0, n_train=2000, n_valid=100, n_test=100)
    assert a == b
    c = arith.make_splits(seed=1, n_train=2000, n_valid=100, n_test=100)
    assert c["test"] != a["test"]
    assert [len(a[k]) for k in ("train", "valid", "test")] == [2000, 100, 100]
    qs = {k: {e["question"] for e in v} for k, v in a.items()}
    assert len(qs["test"]) == 100 and len(qs["valid"]) == 100
    assert not (qs["test"] & qs["train"]) and not (qs["valid"] & qs["train"])
    assert not (qs["test"] & qs["valid"])


def test_full_question_space_and_layout():
    exs = arith.all_examples()
    assert len(exs) == len({e["question"] for e in exs}) == 90 * 26 * 26
    answers = {e["answer"] for e in exs}
    assert len(answers) >= 50
    assert all(0 <= int(x) < 100 for x in answers)
    for e in exs[::997]:
        assert set(e) == {"question", "steps", "answer"}
        assert isinstance(e["answer"], str) and len(e["steps"]) >= 2
        assert all(re.fullmatch(r"<<\d+[-+*]\d+=\d+>>", s) for s in e["steps"])
        assert e["steps"][-1].endswith("=" + e["answer"] + ">>")
        assert arith.check_example(e)


def test_arithmetic_values():
    e = arith.make_example(47, 0, 8, 2, 3)  # (47 + 8) * 3 mod 100
    assert e == {"question": "Start at 47, plus 8, then times 3. Answer mod 100?",
                 "steps": ["<<47+8=55>>", "<<55*3=65>>"], "answer": "65"}
    e = arith.make_example(12, 1, 9, 1, 7)  # 12 - 9 - 7 = -4 -> 96
    assert e["steps"] == ["<<12-9=3>>", "<<3-7=96>>"] and e["answer"] == "96"


def test_shipped_splits_match_generator(tmp_path):
    ref = arith.make_splits(seed=0)
    for name in ("test", "valid"):
        shipped = arith.load_split(name)
        assert shipped == ref[name]
        assert len(shipped) == 500
    paths = arith.write_splits(str(tmp_path), seed=0, n_train=50, splits=("train", "test"))
    with open(paths["test"]) as f:
        assert json.load(f) == ref["test"]
    with open(paths["train"]) as f:
        assert len(json.load(f)) == 50
