"""The evidence report's Markdown tables, printed from ``evidence.json`` (the README and ``evidence.md`` quote them).

    python benchmarks/evidence_tables.py [benchmarks/results/evidence.json]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def pct(x, digits=1):
    """A share as a percentage (``–`` when missing)."""
    return "–" if x is None else f"{100 * x:.{digits}f}"


def ci(c, digits=1):
    return "–" if c is None or c[0] is None else f"[{pct(c[0], digits)}, {pct(c[1], digits)}]"


def latents_table(sem):
    """Section 1: per setting, answers, read-outs, what the read-out sees, follows/keeps/other, verdict."""
    rows = ["| setting | answer right (single sample) | answer ≠ greedy | answer changes the latent-2 read-out sees "
            "| x1 value, latent 1: right / differs | ones digit, latent 1: right / differs "
            "| ones digit, latent 2: right / differs / no number "
            "| changed latent-2 digit: follows [95% CI] / keeps / other (n; chance 10%) | verdict |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    g = sem["greedy"]
    rows.append(f"| greedy | {pct(sem['greedy_accuracy'])} | – | – | {pct(g['step1_x1']['decoded_accuracy'])} / – "
                f"| {pct(g['step1_x1_ones']['decoded_accuracy'])} / – | {pct(g['step2_x1_ones']['decoded_accuracy'])} / – "
                f"/ {pct(g['step2_x1_ones']['unstructured'])} | – | – |")
    for name, r in sem["settings"].items():
        f, v = r["follow_step2_x1_ones"], r["verdict"]
        follow = "– (0)" if not f["changed_trajectories"] else (
            f"{pct(f['follows'])} {ci(f['follows_ci'])} / {pct(f['keeps'])} / {pct(f['other'])} ({f['changed_trajectories']})")
        rows.append(f"| {name} | {pct(r['step2_x1_ones']['final_accuracy'])} | {pct(r['answer_differs_from_greedy'])} "
                    f"| {pct(r['answer_changes_seen_by_step2_x1_ones'])} of {r['answer_changes']} "
                    f"| {pct(r['step1_x1']['decoded_accuracy'])} / {pct(r['step1_x1']['differs_from_greedy'])} "
                    f"| {pct(r['step1_x1_ones']['decoded_accuracy'])} / {pct(r['step1_x1_ones']['differs_from_greedy'])} "
                    f"| {pct(r['step2_x1_ones']['decoded_accuracy'])} / {pct(r['step2_x1_ones']['differs_from_greedy'])} "
                    f"/ {pct(r['step2_x1_ones']['unstructured'])} | {follow} | {v['label']} |")
    return "\n".join(rows)


LABELS = {"step1_x1_ones": "latent 1: x1 ones digit right", "step2_final_answer": "latent 2: answer right",
          "step1_x1": "latent 1: x1 value right", "step2_x1": "latent 2: x1 value right",
          "step2_x2": "latent 2: x2 value right"}


def auc(a, key="mean", c="ci"):
    return "–" if a[key] is None else f"{a[key]:.3f} [{a[c][0]:.3f}, {a[c][1]:.3f}]"


def rm_table(rm, rm_setting="dropout_p=0.2"):
    """Section 2: RM step score and vote share, within and across questions; label reliability."""
    rows = ["| setting | label | read-out right on (label noise?) | q | RM step score, within [95% CI] "
            "| RM step score, across | vote share, within | vote share, across |",
            "| --- | --- | ---: | ---: | --- | --- | --- | --- |"]
    for name, labels in rm["settings"].items():
        keys = list(LABELS) if name == rm_setting else ["step1_x1_ones", "step2_final_answer"]
        for k in keys:
            r = labels[k]
            rel = "– (answer correctness)" if "label_noise" not in r else (
                f"{pct(r['positive_rate'])}%" + (" (label noise)" if r["label_noise"] else ""))
            rows.append(f"| {name if k == keys[0] else ''} | {LABELS[k]} | {rel} | {r['rm_step_score']['questions']} "
                        f"| {auc(r['rm_step_score'])} | {auc(r['rm_step_score_across_questions'], 'auroc')} "
                        f"| {auc(r['vote_share'])} | {auc(r['vote_share_across_questions'], 'auroc')} |")
    return "\n".join(rows)


def headroom_table(h):
    """The headroom table: per N, every selector, coverage and the gap selection leaves."""
    rows = ["| N | greedy | single sample | majority | RM-weighted | best-of-N (RM) | coverage (pass@N) "
            "| gap: coverage − best selector | positions / question: prompt pass per sample / shared |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    g = h["greedy"]
    for n, r in h["by_n"].items():
        cell = lambda m: f"{pct(r[m]['mean'])} {ci(r[m]['ci95'])}"  # noqa: E731
        rows.append(f"| {n} | {pct(g['mean'])} {ci(g['ci95'])} | {cell('single')} | {cell('majority')} "
                    f"| {cell('weighted')} | {cell('best_of_n')} | {cell('coverage')} "
                    f"| {pct(r['gap']['mean'])} {ci(r['gap']['ci95'])} ({r['best_selector']}) "
                    f"| {r['positions_per_question']:,.0f} / {r['positions_per_question_shared_prompt']:,.0f} |")
    return "\n".join(rows)


def main(argv=None):
    path = Path((argv or sys.argv[1:] or ["benchmarks/results/evidence.json"])[0])
    report = json.loads(path.read_text())
    print(latents_table(report["latent_semantics"]), end="\n\n")
    print(rm_table(report["rm_step_auroc"]), end="\n\n")
    print(headroom_table(report["headroom"]))


if __name__ == "__main__":
    main()
