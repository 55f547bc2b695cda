"""The headroom table of the evidence: what sampling covers and what selection recovers of it.

Per N, on the latent model's MC-dropout rollouts (p=0.2, the LatentRM's
setting), several seeds: greedy, single-sample accuracy, majority vote,
RM-weighted vote, best-of-N by the RM and coverage (pass@N), each the scaling
report's definition (``scaling.metrics_at``, computed on answer codes by
``evidence_lib.selection``); the gap selection leaves (coverage minus the best
selector), every selector minus greedy (paired) and the share of the headroom
above greedy (and above a single sample) that the best selector recovers, with
95% bootstrap intervals over questions (per-question values averaged over
seeds).  The forward positions per question are given in both prompt
accountings: a prompt pass per sample (what ``dropout_scope="all"`` runs) and
one shared prompt pass (what latent-only sampling would run).
"""

from __future__ import annotations

import numpy as np

import evidence_lib as ev
from evidence_lib.selection import selector_correct
from evidence_lib.store import answer_code, answer_codes

SELECTORS = ("majority", "weighted", "best_of_n")
ROWS = ("single", *SELECTORS, "coverage")


def headroom(rolls, examples, greedy_correct, latent_steps, ns, resamples=1000):
    """``rolls``: one :func:`evidence_lib.latent_rollouts` output per seed (N >= max(ns), with RM scores);
    ``greedy_correct`` (Q,) bool.  Returns the table as the JSON keeps it."""
    greedy = [float(x) for x in greedy_correct]
    gold = np.array([answer_code(e["answer"]) for e in examples])
    out = {"greedy": {"mean": sum(greedy) / len(greedy), "ci95": ev.bootstrap_ci(greedy, resamples)},
           "seeds": len(rolls), "questions": len(examples), "by_n": {}}
    for n in ns:
        per_seed = [selector_correct(_codes(r["answers"]), gold, np.asarray(r["scores"], dtype=np.float64), n)
                    for r in rolls]
        row = {}
        per_q = {m: np.mean([s[m] for s in per_seed], axis=0).tolist() for m in ROWS}
        for m in ROWS:
            row[m] = {"mean": sum(per_q[m]) / len(per_q[m]), "ci95": ev.bootstrap_ci(per_q[m], resamples),
                      "seed_means": [float(s[m].mean()) for s in per_seed]}
        best = max(SELECTORS, key=lambda m: row[m]["mean"])
        gap = [c - b for c, b in zip(per_q["coverage"], per_q[best])]
        row["best_selector"] = best
        row["gap"] = {"mean": sum(gap) / len(gap), "ci95": ev.bootstrap_ci(gap, resamples),
                      "what": f"coverage - {best} (the best selector at this N), per question, paired"}
        for a, b in (("weighted", "majority"), ("best_of_n", "majority")):
            d = [x - y for x, y in zip(per_q[a], per_q[b])]
            row[f"{a}_minus_{b}"] = {"mean": sum(d) / len(d), "ci95": ev.bootstrap_ci(d, resamples)}
        row["minus_greedy"] = {}
        for m in ROWS:
            d = [x - g for x, g in zip(per_q[m], greedy)]
            row["minus_greedy"][m] = {"mean": sum(d) / len(d), "ci95": ev.bootstrap_ci(d, resamples)}
        # the share of the headroom the best selector recovers: (best - base) / (coverage - base), summed over
        # questions, with base = greedy or a single sample; interval: the questions resampled (ratio of sums)
        for base_name, base in (("greedy", greedy), ("single", per_q["single"])):
            pairs = [(b - x, c - x) for b, c, x in zip(per_q[best], per_q["coverage"], base)]
            den = sum(c for _, c in pairs)
            row[f"recovered_above_{base_name}"] = {  # defined where there is headroom (coverage above the base)
                "share": sum(h for h, _ in pairs) / den if den > 0 else float("nan"),
                "ci95": ev.ratio_ci(pairs, resamples) if den > 0 else [float("nan")] * 2,
                "what": f"({best} - {base_name}) / (coverage - {base_name})"}
        pos = {shared: [ev.latent_positions(r["prompt_lengths"][q], latent_steps, r["generated"][q, :n].tolist(),
                                            shared_prompt=shared)
                        for r in rolls for q in range(len(examples))] for shared in (False, True)}
        row["positions_per_question"] = sum(pos[False]) / len(pos[False])
        row["positions_per_question_shared_prompt"] = sum(pos[True]) / len(pos[True])
        out["by_n"][n] = row
    return out


def _codes(answers):
    return answers if isinstance(answers, np.ndarray) else answer_codes(answers)
