"""The headroom table of ``benchmarks/evidence.py``: what sampling covers and what selection recovers of it.

Per N, on the latent model's MC-dropout rollouts (p=0.2, the LatentRM's
setting), several seeds: greedy, single-sample accuracy, majority vote,
RM-weighted vote, best-of-N by the RM and coverage (pass@N), each the
scaling report's definition (``scaling.metrics_at``), and the gap selection
leaves (coverage minus the best selector), with 95% bootstrap intervals over
questions (per-question values averaged over seeds).  The forward positions
per question are given in both prompt accountings: a prompt pass per sample
(what ``dropout_scope="all"`` runs) and one shared prompt pass (what
latent-only sampling would run).
"""

from __future__ import annotations

from types import SimpleNamespace

import evidence_lib as ev
from scaling import metrics_at  # sibling script (benchmarks/ is on sys.path)

SELECTORS = ("majority", "weighted", "best_of_n")
ROWS = ("single", *SELECTORS, "coverage")


def headroom(rolls, examples, greedy_correct, latent_steps, ns, resamples=1000):
    """``rolls``: one :func:`evidence_lib.latent_rollouts` output per seed (N >= max(ns), with RM scores);
    ``greedy_correct`` (Q,) bool.  Returns the table as the JSON keeps it."""
    greedy = [float(x) for x in greedy_correct]
    out = {"greedy": {"mean": sum(greedy) / len(greedy), "ci95": ev.bootstrap_ci(greedy, resamples)},
           "seeds": len(rolls), "questions": len(examples), "by_n": {}}
    for n in ns:
        per_seed = []
        for r in rolls:
            found = [SimpleNamespace(answers=a, scores=s) for a, s in zip(r["answers"], r["scores"])]
            per_seed.append(metrics_at(found, examples, n, True))
        row = {}
        per_q = {m: [sum(v) / len(v) for v in zip(*(s[m] for s in per_seed))] for m in ROWS}
        for m in ROWS:
            row[m] = {"mean": sum(per_q[m]) / len(per_q[m]), "ci95": ev.bootstrap_ci(per_q[m], resamples),
                      "seed_means": [sum(s[m]) / len(s[m]) for s in per_seed]}
        best = max(SELECTORS, key=lambda m: row[m]["mean"])
        gap = [c - b for c, b in zip(per_q["coverage"], per_q[best])]
        row["best_selector"] = best
        row["gap"] = {"mean": sum(gap) / len(gap), "ci95": ev.bootstrap_ci(gap, resamples),
                      "what": f"coverage - {best} (the best selector at this N), per question, paired"}
        pos = {shared: [ev.latent_positions(r["prompt_lengths"][q], latent_steps, r["generated"][q, :n].tolist(),
                                            shared_prompt=shared)
                        for r in rolls for q in range(len(examples))] for shared in (False, True)}
        row["positions_per_question"] = sum(pos[False]) / len(pos[False])
        row["positions_per_question_shared_prompt"] = sum(pos[True]) / len(pos[True])
        out["by_n"][n] = row
    return out
