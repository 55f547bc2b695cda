"""Synthetic multi-step arithmetic task (mod 100), in the GSM8K JSON layout.

Every question starts from a two-digit number and applies two operations with
one-digit operands, all arithmetic modulo 100::

    {"question": "Start at 47, plus 8, then times 3. Answer mod 100?",
     "steps": ["<<47+8=55>>", "<<55*3=65>>"],
     "answer": "65"}

* operations: ``plus`` (+, operand 1..9), ``minus`` (-, operand 1..9),
  ``times`` (*, operand 2..9); intermediate and final values are reduced mod
  100, so the answer space is 0..99 (100 values).
* 90 * 26 * 26 = 60,840 distinct questions. :func:`make_splits` shuffles the
  whole question space with a seed and cuts disjoint test / valid / train
  splits, so no test question is ever seen in training.
* every question has the same token length (two-digit start, one-digit
  operands, one-word operations), which keeps batched latent training simple.

The shipped splits (``seed=0``) live in ``lm_eval_latenttts/data/``
(``arith_test.json``, ``arith_valid.json``); regenerate them with
``python -m lm_eval_latenttts.data.arith --out lm_eval_latenttts/data``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
from typing import Dict, List, Optional, Tuple

MOD = 100
# (word, symbol, operand range)
OPS: List[Tuple[str, str, range]] = [
    ("plus", "+", range(1, 10)),
    ("minus", "-", range(1, 10)),
    ("times", "*", range(2, 10)),
]
START_RANGE = range(10, 100)
QUESTION_TEMPLATE = "Start at {x0}, {w1} {b}, then {w2} {c}. Answer mod 100?"

DATA_DIR = os.path.dirname(os.path.abspath(__file__))  # the shipped splits sit next to this file


def apply_op(sym: str, x: int, y: int) -> int:
    """``x sym y`` mod 100, for the operation symbols of :data:`OPS` (``+``, ``-``, ``*``)."""
    if sym == "+":
        return (x + y) % MOD
    if sym == "-":
        return (x - y) % MOD
    if sym == "*":
        return (x * y) % MOD
    raise ValueError(sym)


def make_example(x0: int, op1: int, b: int, op2: int, c: int) -> Dict:
    """Build one example from a start value, two op indices and operands."""
    w1, s1, _ = OPS[op1]
    w2, s2, _ = OPS[op2]
    x1 = apply_op(s1, x0, b)
    x2 = apply_op(s2, x1, c)
    return {
        "question": QUESTION_TEMPLATE.format(x0=x0, w1=w1, b=b, w2=w2, c=c),
        "steps": [f"<<{x0}{s1}{b}={x1}>>", f"<<{x1}{s2}{c}={x2}>>"],
        "answer": str(x2),
    }


def all_examples() -> List[Dict]:
    """Every question of the task, in a fixed canonical order."""
    out = []
    for x0 in START_RANGE:
        for i1, (_, _, r1) in enumerate(OPS):
            for b in r1:
                for i2, (_, _, r2) in enumerate(OPS):
                    for c in r2:
                        out.append(make_example(x0, i1, b, i2, c))
    return out


def make_splits(seed: int = 0, n_train: Optional[int] = None, n_valid: int = 500,
                n_test: int = 500) -> Dict[str, List[Dict]]:
    """Disjoint train / valid / test splits, deterministic in ``seed``.

    ``n_train=None`` puts every remaining question into train.
    """
    exs = all_examples()
    total = len(exs)
    if n_test + n_valid > total:
        raise ValueError("n_test + n_valid exceeds the question space")
    rng = random.Random(seed)
    rng.shuffle(exs)
    test = exs[:n_test]
    valid = exs[n_test:n_test + n_valid]
    rest = exs[n_test + n_valid:]
    if n_train is not None:
        if n_train > len(rest):
            raise ValueError(f"n_train={n_train} exceeds the {len(rest)} remaining questions")
        rest = rest[:n_train]
    return {"train": rest, "valid": valid, "test": test}


def write_splits(out_dir: str, seed: int = 0, n_train: Optional[int] = None,
                 n_valid: int = 500, n_test: int = 500,
                 splits: Tuple[str, ...] = ("train", "valid", "test")) -> Dict[str, str]:
    """Write ``arith_{split}.json`` files (GSM8K layout) and return their paths."""
    os.makedirs(out_dir, exist_ok=True)
    data = make_splits(seed=seed, n_train=n_train, n_valid=n_valid, n_test=n_test)
    paths = {}
    for name in splits:
        path = os.path.join(out_dir, f"arith_{name}.json")
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(data[name], f, indent=1)
            f.write("\n")
        os.replace(tmp, path)
        paths[name] = path
    return paths


def load_split(name: str) -> List[Dict]:
    """Load a shipped split (``"test"`` or ``"valid"``) from the package data."""
    with open(os.path.join(DATA_DIR, f"arith_{name}.json")) as f:
        return json.load(f)


def check_example(ex: Dict) -> bool:
    """Re-derive the steps and answer of an example from its question."""
    q = ex["question"]
    import re
    m = re.fullmatch(r"Start at (\d+), (\w+) (\d), then (\w+) (\d)\. Answer mod 100\?", q)
    if not m:
        return False
    words = [w for w, _, _ in OPS]
    ref = make_example(int(m.group(1)), words.index(m.group(2)), int(m.group(3)),
                       words.index(m.group(4)), int(m.group(5)))
    return ref == ex


def main(argv=None):
    p = argparse.ArgumentParser(description="Write the synthetic arithmetic splits (GSM8K JSON layout).")
    p.add_argument("--out", default=DATA_DIR, help="output folder (default: the package data folder)")
    p.add_argument("--seed", type=int, default=0, help="shuffle seed (default 0 = shipped splits)")
    p.add_argument("--n-valid", type=int, default=500, help="valid questions (default 500)")
    p.add_argument("--n-test", type=int, default=500, help="test questions (default 500)")
    p.add_argument("--n-train", type=int, default=None, help="train questions (default: all remaining)")
    p.add_argument("--splits", default="valid,test",
                   help="comma-separated splits to write (default valid,test; add train for the big one)")
    a = p.parse_args(argv)
    paths = write_splits(a.out, seed=a.seed, n_train=a.n_train, n_valid=a.n_valid,
                         n_test=a.n_test, splits=tuple(s for s in a.splits.split(",") if s))
    for k, v in paths.items():
        print(k, v)


if __name__ == "__main__":
    main()
