"""A split whose step facts never appear in training: does a model compute a step it has never seen done?

A *step fact* is one arithmetic step ``x op c = r`` (``x`` 0..99, one of the
task's 26 (operation, operand) pairs), wherever it occurs: as a question's first
step (``x`` is the start value) or its second (``x`` is the first
intermediate).  On the shipped splits every step fact of a test question occurs
in training (each appears in hundreds of training questions), so a test
accuracy there cannot tell computing from recalling.

:func:`heldout_facts` draws a fixed share of the 2,600 facts; :func:`heldout_split`
removes from the training split every question that uses one of them at
either step, and builds three test sets of questions no model trained on that
split has seen:

* ``seen``: the shipped test questions whose two facts are both seen in
  training (the control, same questions as the report elsewhere, minus those
  few that use a held-out fact);
* ``unseen_step1``: questions whose first step is a held-out fact and whose
  second is seen;
* ``unseen_step2``: questions whose second step is a held-out fact and whose
  first is seen.

Every operand, operation word and value still occurs in training; only the
fact (that value with that operation and operand) does not.
"""

from __future__ import annotations

import random
from typing import Dict, List, Sequence, Set, Tuple

from lm_eval_latenttts.data import arith

Fact = Tuple[int, str, int]  # (x, op symbol, operand)

FRACTION = 0.04  # share of the 2,600 step facts held out (104 facts; ~8% of the training questions use one)
SEED = 0
TEST_SIZE = 500


def all_facts() -> List[Fact]:
    """Every step fact of the task: x 0..99 with each (operation, operand), in a fixed order."""
    return [(x, sym, c) for x in range(arith.MOD) for _, sym, operands in arith.OPS for c in operands]


def heldout_facts(fraction: float = FRACTION, seed: int = SEED) -> Set[Fact]:
    """A fixed random ``fraction`` of :func:`all_facts` (deterministic in ``seed``)."""
    facts = all_facts()
    rng = random.Random(f"heldout-facts-{seed}")
    return set(rng.sample(facts, round(fraction * len(facts))))


def facts_of(example: Dict) -> List[Fact]:
    """The example's two step facts, in order."""
    from evidence_lib.readout import parse_steps

    return [(x, op, c) for x, op, c, _ in parse_steps(example)]


def heldout_split(facts: Set[Fact] | None = None, test_size: int = TEST_SIZE, seed: int = SEED) -> Dict[str, List[Dict]]:
    """``train`` (the shipped training split without any question that uses a held-out fact) and the test sets
    ``seen``, ``unseen_step1``, ``unseen_step2`` (see the module); ``facts``: the held-out facts (default
    :func:`heldout_facts`).  The unseen sets are drawn (``test_size`` each, deterministic in ``seed``) from every
    question of the task that uses a held-out fact at that step only; none of them is in ``train``."""
    facts = heldout_facts() if facts is None else facts
    splits = arith.make_splits(seed=0)

    def uses(ex, step=None):
        f = facts_of(ex)
        return any(x in facts for x in f) if step is None else f[step] in facts

    train = [ex for ex in splits["train"] if not uses(ex)]
    seen = [ex for ex in splits["test"] if not uses(ex)]
    held = [ex for ex in arith.all_examples() if uses(ex)]
    rng = random.Random(f"heldout-test-{seed}")
    step1 = [ex for ex in held if uses(ex, 0) and not uses(ex, 1)]
    step2 = [ex for ex in held if uses(ex, 1) and not uses(ex, 0)]
    return {"train": train, "seen": seen,
            "unseen_step1": rng.sample(step1, min(test_size, len(step1))),
            "unseen_step2": rng.sample(step2, min(test_size, len(step2)))}


def check_split(split: Dict[str, Sequence[Dict]], facts: Set[Fact]) -> Dict[str, int]:
    """Verify what the split promises (raises AssertionError otherwise); returns the set sizes.

    No held-out fact in any training question; no test question in training; the unseen sets use exactly one
    held-out fact at the named step; the seen set uses none."""
    train_q = {ex["question"] for ex in split["train"]}
    for ex in split["train"]:
        assert not any(f in facts for f in facts_of(ex)), ex
    for name in ("seen", "unseen_step1", "unseen_step2"):
        for ex in split[name]:
            assert ex["question"] not in train_q, (name, ex)
            f = facts_of(ex)
            want = {"seen": (False, False), "unseen_step1": (True, False), "unseen_step2": (False, True)}[name]
            assert (f[0] in facts, f[1] in facts) == want, (name, ex)
    return {k: len(v) for k, v in split.items()}
