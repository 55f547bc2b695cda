"""``docs/evidence.md``, written from the recomputed report (``benchmarks/evidence_recompute.py``).

Every number in the document is formatted here from the report dict, and every sentence that depends on a
number (which settings are distinct, whether an interval includes zero) is chosen by it, so a rerun against
another RM or model rewrites the prose with the numbers.
"""

from __future__ import annotations

import math
import os
from pathlib import Path


# Where the runs that the committed data lack stood when this page was last generated (read from their
# training_info.json; a section replaces its line once its .npz is committed).
PENDING = {
    "cot": "the run committed here finished on 2026-12-07: 3,600 steps, 222.3 min, sha256 5acde04402d1…",
    "heldout": "on 2026-12-07 at 18:42 UTC: latent at step 2,000 of 3,600 (checkpoint 18:36), chain of thought at "
               "step 1,750 of 3,600 (checkpoint 18:41), both resumed at the lowest CPU priority on the shared 2-core box",
}


# --------------------------------------------------------------------------- formatting
def pct(x, digits=1):
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.{digits}f}"


def spct(x, digits=1):
    """A signed share in points (no "-0.0")."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    v = 100 * x
    return f"{0.0 if round(v, digits) == 0 else v:+.{digits}f}"


def ci(c, digits=1, signed=False):
    if c is None or c[0] is None or (isinstance(c[0], float) and math.isnan(c[0])):
        return "–"
    f = spct if signed else pct
    return f"[{f(c[0], digits)}, {f(c[1], digits)}]"


def num(x, digits=3):
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def nci(c, digits=3, signed=False):
    if c is None or c[0] is None or (isinstance(c[0], float) and math.isnan(c[0])):
        return "–"
    fmt = f"{{:+.{digits}f}}" if signed else f"{{:.{digits}f}}"
    return f"[{fmt.format(c[0])}, {fmt.format(c[1])}]"


def vci(value, c, digits=3, signed=False):
    """A value with its interval (plain numbers, e.g. AUROC), or one dash when the value is undefined."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    fmt = f"{{:+.{digits}f}}" if signed else f"{{:.{digits}f}}"
    return f"{fmt.format(value)} {nci(c, digits, signed)}"


def sign_of(c, zero=0.0):
    """'above' / 'below' / 'includes' for an interval against ``zero``."""
    if c is None or c[0] is None or (isinstance(c[0], float) and math.isnan(c[0])):
        return "undefined"
    if c[0] > zero:
        return "above"
    if c[1] < zero:
        return "below"
    return "includes"


def share_cell(s, digits=1):
    return f"{pct(s['share'], digits)} {ci(s['ci'], digits)}" if s["n"] else "–"


def mean_ci(x, digits=1, signed=False):
    """A mean with its interval, or one dash when it is undefined."""
    m = x.get("mean", x.get("share"))
    c = x.get("ci95", x.get("ci"))
    if m is None or (isinstance(m, float) and math.isnan(m)):
        return "–"
    return f"{(spct if signed else pct)(m, digits)} {ci(c, digits, signed)}"


def rel(path: Path, doc: Path) -> str:
    return os.path.relpath(Path(path).resolve(), Path(doc).resolve().parent).replace(os.sep, "/")


def sha(s):
    return "–" if not s else s[:12]


def names(items):
    items = list(items)
    if not items:
        return "none"
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


# --------------------------------------------------------------------------- sections
def header(r, doc, plots):
    m, cm = r["meta"], r.get("cot_meta") or {}
    lines = [
        "# The evidence: what the latents say, what the LatentRM sees, and chain of thought at equal compute",
        "",
        "Regenerate this page (every number below, from the committed per-question data, in under a minute):",
        "",
        "```bash",
        "python benchmarks/evidence_recompute.py          # this page, benchmarks/results/evidence.json, docs/evidence/*.png",
        "python benchmarks/evidence_recompute.py --check  # recompute and compare with the committed page (tests/test_evidence.py runs it)",
        "```",
        "",
        "The per-question data it reads (`benchmarks/results/`, compressed `.npz`, no pickle) and what draws them:",
        "",
        "| file | drawn by | wall time (shared 2-core box) |",
        "| --- | --- | ---: |",
        f"| `evidence_data.npz` | `{m['command']}` | {m['wall_seconds'] / 60:.1f} min |",
    ]
    if m.get("rm_rerun"):
        lines.append(f"| `evidence_data.npz` RM scores | `{m['rm_rerun']['command']}` | "
                     f"{m['rm_rerun']['wall_seconds'] / 60:.1f} min |")
    if cm:
        t = (cm.get("cot_training") or {}).get("train_seconds")
        lines.append(f"| `evidence_cot.npz` | `{cm['command']}` | {cm['wall_seconds'] / 60:.1f} min"
                     + (f" (+ {t / 60:.1f} min training the CoT model)" if t and cm.get("cot_trained_by_this_run") else "")
                     + " |")
    h = r.get("heldout")
    if h:
        hm = h["meta"]
        lines.append("| `evidence_heldout.npz` | `python benchmarks/evidence_heldout.py train --kind latent` and `--kind cot`, "
                     f"then `evaluate` | {hm['latent_training']['train_seconds'] / 60:.0f} + "
                     f"{hm['cot_training']['train_seconds'] / 60:.0f} min of training (wall time, summed over resumes) |")
    lines += [
        "",
        f"Models: the shipped latent model `{m['model']}` (weights sha256 `{sha(m['model_sha256'])}…`) and LatentRM "
        f"`{m['rm']}` (**RM weights sha256 `{m['rm_sha256']}`**: every RM number on this page comes from it"
        + (f"; it replaced `{sha(m['rm_rerun']['previous']['rm_sha256'])}…` by `--part rm`" if m.get("rm_rerun") else "")
        + ")" + (f"; the chain-of-thought model `{cm['cot_model']}` (sha256 `{cm['cot_sha256']}`)" if cm else "") + ". "
        f"Test split: the {m['questions']} shipped `latent_arith` test questions; intervals are 95% percentile "
        f"bootstraps over questions ({m['bootstrap']} resamples, seed 0); a *paired* interval resamples the same "
        "questions for both sides of a difference.",
        "",
        "**To rerun the RM sections against another LatentRM** (e.g. a retrained `arith-rm`): "
        "`python benchmarks/evidence.py --part rm --rm PATH` draws the same rollouts again (checked equal to the "
        "stored ones), replaces their RM scores and the RM's sha256 in `evidence_data.npz`, and rewrites this page "
        "(sections 3 and 4, and every sentence that depends on them). "
        + ("The shipped `arith-rm` at this commit has that sha256 (checked by the recompute): issue 23 did not "
           "change the shipped LatentRM (its phase 2 ships a selector, not an RM), so sections 3 and 4 stand."
           if r.get("shipped_rm_sha256") == m["rm_sha256"] else
           "**The shipped `arith-rm` at this commit has another sha256** "
           f"(`{sha(r.get('shipped_rm_sha256'))}…`): sections 3 and 4 describe the RM named above; rerun `--part rm`."),
        "",
    ]
    return lines


def summary(r):
    sem, room, cot = r["latent_semantics"], r["headroom"], r.get("cot")
    c = r["causal"]
    lines = ["## Findings", ""]
    # claim 1: verdicts
    from evidence_readout import VERDICT_PROBES

    parts = []
    for probe, label in VERDICT_PROBES.items():
        groups = {}
        for name, st in sem["settings"].items():
            groups.setdefault(st["verdicts"][probe]["label"], []).append(name)
        cells = []
        for verdict_label in ("distinct", "undetermined", "not distinct", "too few changes", "unreadable"):
            items = groups.get(verdict_label, [])
            if not items:
                continue
            if verdict_label in ("distinct", "undetermined") and len(items) <= 4:
                items = [f"{n} (follows − keeps {spct(sem['settings'][n]['verdicts'][probe]['follows_minus_keeps'])} "
                         f"{ci(sem['settings'][n]['verdicts'][probe]['follows_minus_keeps_ci'], 1, True)})" for n in items]
            cells.append(f"\"{verdict_label}\" at {names(items)}")
        parts.append(f"under the {label.split(' (')[0]}: " + "; ".join(cells))
    n_distinct = sum(st["verdicts"][p]["label"] == "distinct" for st in sem["settings"].values() for p in VERDICT_PROBES)
    disagree = [n for n, st in sem["settings"].items() if not st["probes_agree"]]
    lines.append(
        "1. **Read-outs of sampled latents (correlational):** "
        + ("no setting is \"distinct\" under either probe. " if not n_distinct else "")
        + "Verdicts " + ". Verdicts ".join(parts) + f". The two probes' verdicts differ at {len(disagree)} of the "
        f"{len(sem['settings'])} settings" + contradiction(sem) + " (section 1).")
    # causal
    impl = c["greedy"]["implants"]
    sw = impl["swap"]
    parts = []
    for name in ("dropout_p=0.2", "dropout_p=0.3", "noise_std=1.0"):
        if name in c and "decomposition" in c[name]:
            d = c[name]["decomposition"]
            parts.append(f"{name}: latents alone reproduce {pct(d['latents_only']['share'])}% "
                         f"{ci(d['latents_only']['ci'])}, the prompt pass alone {pct(d['prompt_only']['share'])}% "
                         f"{ci(d['prompt_only']['ci'])}")
    lines.append(
        "2. **Causal (re-decodes and implants):** implanting another question's latent 2 that carries another x1 "
        f"ones digit makes the greedy answer's ones digit follow the implanted digit in {pct(sw['follows']['share'])}% "
        f"{ci(sw['follows']['ci'])} of {sw['rows']:,} implants (null, a same-digit swap: {pct(sw['null_follows']['share'])}% "
        f"{ci(sw['null_follows']['ci'])}). Of the sampled answers that differ from greedy's, re-decoded "
        "without dropout — " + "; ".join(parts) + " (section 2).")
    # RM
    rm02 = r["rm"][r["meta"]["rm_setting"]]
    t = rm02["trajectory_final_answer"]
    diff = t["difficulty"]
    lines.append(
        f"3. **The LatentRM's score tracks the question, the wrong way:** at {r['meta']['rm_setting']} its mean "
        f"trajectory score is {num(diff['hard_mean_score'])} on hard questions (at most half of the 16 samples right) "
        f"and {num(diff['easy_mean_score'])} on easy ones (easy − hard {num(diff['easy_minus_hard'], 3)} "
        f"{nci(diff['easy_minus_hard_ci'], 3)}; Spearman with question accuracy {num(diff['spearman'], 2)} "
        f"{nci(diff['spearman_ci'], 2)}), so pooled across questions it ranks right trajectories below wrong ones "
        f"(AUROC {num(t['rm_trajectory_score_across_questions']['auroc'])} "
        f"{nci(t['rm_trajectory_score_across_questions']['ci'])}); with each question's mean removed it is "
        f"{num(t['rm_trajectory_score_across_questions_centred']['auroc'])} "
        f"{nci(t['rm_trajectory_score_across_questions_centred']['ci'])}. Within questions it ranks answers below "
        f"vote share (RM − vote share {num(t['rm_minus_vote_share']['mean'], 3)} "
        f"{nci(t['rm_minus_vote_share']['ci'], 3, True)}) (section 3).")
    r64, r16 = room["by_n"][64], room["by_n"][16]
    best64 = r64["best_selector"]
    lines.append(
        f"4. **Vote and LatentRM selection recover little of the headroom above greedy:** with dropout p=0.2, N=64 "
        f"covers {pct(r64['coverage']['mean'])}% of the questions; the best of majority, best-of-N and the "
        f"RM-weighted vote ({best64}) reaches "
        f"{pct(r64[best64]['mean'])}%, {spct(r64['minus_greedy'][best64]['mean'])} points "
        f"{ci(r64['minus_greedy'][best64]['ci95'], 1, True)} against greedy's {pct(room['greedy']['mean'])}%: "
        f"{pct(r64['recovered_above_greedy']['share'])}% {ci(r64['recovered_above_greedy']['ci95'])} of the headroom "
        f"above greedy (section 4). The read-back consistency vote, which reads each sample's first latent back "
        f"in tokens and is not among these selectors, recovers about half of it ([scaling.md](scaling.md)).")
    if cot:
        cr = cot["compute_ratios"]
        g = cot["greedy"]
        lines.append(
            f"5. **Token chain of thought** (same size, same recipe and budget) reaches {pct(g['cot']['accuracy'])}% "
            f"greedy at {g['cot']['positions_per_question']:.0f} forward positions per question; the latent model's "
            f"greedy reaches {pct(g['latent']['accuracy'])}% at {g['latent']['positions_per_question']:.0f}. "
            + compute_sentence(cot) + " " + truncated_sentence(cot)[:-1] + " (section 5).")
    h = r.get("heldout")
    if h:
        s = h["sets"]
        lines.append(
            f"6. **Held-out step facts:** retrained without the {h['facts']} held-out facts, the latent model answers "
            f"{pct(s['seen']['latent_greedy']['mean'])}% of seen-fact questions and "
            f"{pct(s['unseen_step2']['latent_greedy']['mean'])}% / {pct(s['unseen_step1']['latent_greedy']['mean'])}% "
            f"of questions whose second / first step is unseen; the chain-of-thought model "
            f"{pct(s['seen']['cot_greedy']['mean'])}%, {pct(s['unseen_step2']['cot_greedy']['mean'])}% and "
            f"{pct(s['unseen_step1']['cot_greedy']['mean'])}% (section 5).")
    return lines + [""]


def contradiction(sem):
    """Whether the probes ever contradict each other (one says distinct, the other not distinct), and where the
    ones-digit probe reaches a verdict at all."""
    from evidence_readout import VERDICT_PROBES

    probes = list(VERDICT_PROBES)
    both = [n for n, st in sem["settings"].items()
            if {st["verdicts"][q]["label"] for q in probes} == {"distinct", "not distinct"}]
    firm = [n for n, st in sem["settings"].items()
            if st["verdicts"][probes[0]]["label"] in ("distinct", "not distinct")]
    text = (f"; they contradict each other (one \"distinct\", the other \"not distinct\") at {names(both)}" if both else
            "; they never contradict each other (no setting is \"distinct\" under one and \"not distinct\" under "
            "the other)")
    one = VERDICT_PROBES[probes[0]].split(" (")[0]
    return text + (f"; the {one} says \"distinct\" or \"not distinct\" only at {names(firm)}" if firm else
                   f": the {one} says neither \"distinct\" nor \"not distinct\" at any setting, and the value "
                   "probe's \"not distinct\" rests on changes the ones-digit probe does not see")


def compute_sentence(cot):
    """The compute ratio stated against the latent model's N=64, N=16 and greedy points."""
    cr, lat, g = cot["compute_ratios"], cot["latent_dropout_p0.2"], cot["greedy"]
    d = cr["latent_n64_minus_n16"]
    return (f"Against the CoT model's cheapest full chain ({cr['cot_cheapest_positions']:.0f} positions), the latent "
            f"model's most expensive point (majority at N=64, {cr['latent_n64_positions']:,.0f} positions) costs "
            f"{cr['n64_over_cot']:.0f}× as much; N=16 ({cr['latent_n16_positions']:,.0f} positions, majority "
            f"{pct(lat[16]['majority_accuracy'])}%; N=64 − N=16 {spct(d['mean'])} points {ci(d['ci95'], 1, True)}, "
            f"paired) {cr['n16_over_cot']:.1f}×; latent greedy ({pct(g['latent']['accuracy'])}%, "
            f"{cr['latent_greedy_positions']:.0f} positions) {cr['latent_greedy_over_cot']:.2f}×, fewer positions "
            "than any full chain.")


def truncated_sentence(cot):
    t = cot["truncated"]
    parts = []
    for k, v in t.items():
        what = "asked for the answer at once (no chain)" if int(k) == 0 else f"cut after {k} written step"
        parts.append(f"{what}: {pct(v['accuracy'])}% {ci(v['ci95'])} at {v['positions_per_question']:.0f} positions "
                     f"({spct(v['minus_latent_greedy']['mean'])} points {ci(v['minus_latent_greedy']['ci95'], 1, True)} "
                     "against latent greedy, paired)")
    return "Truncated, the CoT model " + "; ".join(parts) + "."


def section1(r, plots, doc):
    sem, ro = r["latent_semantics"], r["readout"]
    p, lens = ro["probes"], ro["logit_lens"]
    g = sem["greedy"]
    lines = [
        "## 1. What the latents say",
        "",
        f"**How the latents are read.** Probes trained on greedy latents of the {r['meta']['probe_train_questions']:,} "
        f"training questions, read on greedy latents of the {r['meta']['valid_questions']} valid questions (none seen "
        "in training):",
        "",
        "| read-out | latent 1 | latent 2 |",
        "| --- | ---: | ---: |",
        f"| x1, the value after step 1 (0..99): linear / one-hidden-layer MLP probe | {pct(p['step1_x1']['linear'])} / "
        f"{pct(p['step1_x1']['mlp'])} | {pct(p['step2_x1']['linear'])} / {pct(p['step2_x1']['mlp'])} |",
        f"| x2, the answer (0..99): linear / MLP probe | {pct(p['step1_x2']['linear'])} / {pct(p['step1_x2']['mlp'])} "
        f"| {pct(p['step2_x2']['linear'])} / {pct(p['step2_x2']['mlp'])} |",
        f"| ones digit of x1: 10-way logistic probe | {pct(p['step1_x1_ones']['linear'])} | "
        f"{pct(p['step2_x1_ones']['linear'])} |",
        f"| logit lens: top token is a digit / best digit = ones digit of x1 / = ones digit of x2 | "
        f"{pct(lens['step1']['top_token_is_digit'])} / {pct(lens['step1']['ones_digit_of_x1'])} / "
        f"{pct(lens['step1']['ones_digit_of_x2'])} | {pct(lens['step2']['top_token_is_digit'])} / "
        f"{pct(lens['step2']['ones_digit_of_x1'])} / {pct(lens['step2']['ones_digit_of_x2'])} |",
        "",
        f"Both latents encode x1 well (MLP {pct(p['step1_x1']['mlp'])}% and {pct(p['step2_x1']['mlp'])}%); x2 much less: "
        f"at most {pct(max(p['step2_x2']['mlp'], p['step1_x2']['mlp']))}% (MLP, latent 2) against 1% chance, so latent 2 "
        "carries some of the answer, far less reliably than x1. The read-outs used below: the MLP value probe for x1 "
        f"({pct(g['step1_x1']['decoded_accuracy'])}% right on greedy test latents, latent 1) and the ones-digit probe "
        f"({pct(g['step2_x1_ones']['decoded_accuracy'])}% on latent 2). A latent \"decodes to no number\" when the "
        "probe's top probability is below min(0.5, its 5% quantile on held-out greedy latents): "
        f"{num(p['step1_x1']['threshold'])} for the latent-1 x1 probe, {num(p['step2_x1']['threshold'])} for latent 2's, "
        f"{num(p['step2_x1_ones']['threshold'])} for the ones-digit probes (recomputed from the stored held-out "
        "probabilities: " + ("equal" if all(abs(v['threshold'] - v['threshold_recomputed']) < 1e-12 for v in p.values())
                             else "NOT equal") + ").",
        "",
        "**Sampled latents.** N=16, seed 0. \"Differs\": the read-out differs from the greedy trajectory's. The last "
        "column counts the trajectories whose latent-2 ones digit (ones-digit probe) changed in a way that implies a "
        "different answer: \"follows\" = the answer's ones digit is the second operation applied to the new digit "
        "(the operation fixes the answer's ones digit from x1's ones digit alone), \"keeps\" = it is greedy's answer's "
        "ones digit; exclusive (a change whose implied digit is greedy's is left out).",
        "",
        "| setting | answer right | answer ≠ greedy | answer changes the latent-2 digit sees | x1 value, latent 1: "
        "right / differs | ones digit, latent 1: right / differs | ones digit, latent 2: right / differs / no number "
        "| changed latent-2 digit: follows [95% CI] / keeps / other (n) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        f"| greedy | {pct(sem['greedy_accuracy'])} | – | – | {pct(g['step1_x1']['decoded_accuracy'])} / – "
        f"| {pct(g['step1_x1_ones']['decoded_accuracy'])} / – | {pct(g['step2_x1_ones']['decoded_accuracy'])} / – / "
        f"{pct(g['step2_x1_ones']['unstructured'])} | – |",
    ]
    for name, s in sem["settings"].items():
        f = s["follow_step2_x1_ones"]
        follow = "– (0)" if not f["changed_trajectories"] else (
            f"{pct(f['follows'])} {ci(f['follows_ci'])} / {pct(f['keeps'])} / {pct(f['other'])} ({f['changed_trajectories']})")
        lines.append(
            f"| {name} | {pct(s['step2_x1_ones']['final_accuracy'])} | {pct(s['answer_differs_from_greedy'])} "
            f"| {pct(s['answer_changes_seen_by_step2_x1_ones'])} of {s['answer_changes']:,} "
            f"| {pct(s['step1_x1']['decoded_accuracy'])} / {pct(s['step1_x1']['differs_from_greedy'])} "
            f"| {pct(s['step1_x1_ones']['decoded_accuracy'])} / {pct(s['step1_x1_ones']['differs_from_greedy'])} "
            f"| {pct(s['step2_x1_ones']['decoded_accuracy'])} / {pct(s['step2_x1_ones']['differs_from_greedy'])} / "
            f"{pct(s['step2_x1_ones']['unstructured'])} | {follow} |")
    lines += ["", f"![latent read-out]({rel(plots / 'evidence_latent_readout.png', doc)})", ""]
    lines += verdict_table(sem)
    lines += dropout_probe(sem)
    return lines


def verdict_table(sem):
    from evidence_readout import MIN_CHANGED, VERDICT_PROBES

    lines = [
        "### Verdicts under both probes",
        "",
        "The rule (`verdict()` in `benchmarks/evidence_readout.py`), on latent 2's x1 ones digit as a probe reads it: "
        "**unreadable** when more than 10% of the sampled latents decode to no digit; **too few changes** with fewer "
        f"than {MIN_CHANGED} changed digits; **distinct** only when the follow rate's interval lies above chance (10%) "
        "*and* the paired interval of follows − keeps lies above zero; **not distinct** when the follow rate's "
        "interval is at or below chance or the paired interval of follows − keeps lies below zero; **undetermined** "
        "otherwise (the data cannot tell). The two read-outs: "
        + "; ".join(f"*{v}*" for v in VERDICT_PROBES.values()) + ". A verdict speaks only of the answer changes its "
        "read-out sees (the \"sees\" column).",
        "",
        "| setting | probe | sees (of the answer changes) | changed (n) | follows [95% CI] | keeps [95% CI] "
        "| follows − keeps, paired [95% CI] | verdict |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for name, s in sem["settings"].items():
        for k, (probe, label) in enumerate(VERDICT_PROBES.items()):
            f, v = s["follow_" + probe], s["verdicts"][probe]
            cells = ("– | – | –" if not f["changed_trajectories"] else
                     f"{pct(f['follows'])} {ci(f['follows_ci'])} | {pct(f['keeps'])} {ci(f['keeps_ci'])} | "
                     f"{spct(f['follows_minus_keeps'])} {ci(f['follows_minus_keeps_ci'], 1, True)}")
            mark = "" if s["probes_agree"] else " (probes disagree)"
            lines.append(f"| {name if k == 0 else ''} | {label.split(' (')[0]} | "
                         f"{pct(s['answer_changes_seen_by_' + probe])}% | {f['changed_trajectories']} | {cells} | "
                         f"**{v['label']}**{mark if k == 1 else ''} |")
    dis = [n for n, s in sem["settings"].items() if not s["probes_agree"]]
    un = {n: s["value_probe_changes_unchanged_for_ones_probe"] for n, s in sem["settings"].items()}
    lines += ["",
              ("The probes disagree at " + names(dis) + "." if dis else "The two probes agree at every setting.")
              + " Where they disagree the value probe sees many more changes, and most of them are changes the "
              "ones-digit probe does not see: of the latent-2 digits the value probe reads as changed, the ones-digit "
              "probe reads the greedy digit in " + "; ".join(f"{pct(v)}% ({n})" for n, v in un.items() if v == v)
              + ". The value probe reads the whole x1 of sampled latents poorly (the \"x1 value\" column above), so its "
              "ones digit moves with its reading errors, and the answer keeps greedy's ones digit there; the causal "
              "section's implants settle which read-out the answer follows. Under dropout p ≤ 0.3 and noise σ ≤ 1 the "
              "ones-digit read-out sees only a small share of the answer changes; where the others come from is what "
              "the re-decodes of section 2 measure.", ""]
    return lines


def dropout_probe(sem):
    d = sem["dropout_trained_probe"]
    s = sem["settings"]
    return [
        "### The whole value of x1 under dropout",
        "",
        f"An MLP probe trained on dropout p=0.2 latents of training questions reads x1 from held-out (valid) dropout "
        f"latents {pct(d['step1_x1']['heldout_sampled_accuracy'])}% (latent 1) and "
        f"{pct(d['step2_x1']['heldout_sampled_accuracy'])}% (latent 2) of the time; the greedy-trained probe reads the "
        f"same latents {pct(d['step1_x1']['heldout_sampled_accuracy_of_greedy_trained_probe'])}% and "
        f"{pct(d['step2_x1']['heldout_sampled_accuracy_of_greedy_trained_probe'])}%. Answers stay "
        f"{pct(s['dropout_p=0.2']['step2_x1_ones']['final_accuracy'])}% right at p=0.2, so the value of x1 is not read "
        "back from dropout latents by either probe; that these probes fail does not show that the tens digit is gone "
        "(section 2's implants show that the answer reads latent 2's ones digit).",
        "",
    ]


def causal_section(r):
    c = r["causal"]
    lines = [
        "## 2. Causal: re-decoding and implanting",
        "",
        "On the shipped model, the very samples of section 1 (`evidence_lib/causal.py` draws them with the model's "
        "public step functions and the same keys; checked equal to the stored answers), each re-decoded without "
        "dropout from parts of its own rollout and of the greedy one. Under dropout over the prompt and the latents a "
        "sample's answer can change through its prompt pass (a perturbed KV cache), its two latent vectors, or the "
        "dropout inside the latent slots' own forwards.",
        "",
        "**Where the answer changes come from.** Of the samples whose answer differs from greedy's: the share whose "
        "answer a re-decode reproduces.",
        "",
        "| setting | answer changes (of samples) | replay: own prompt cache + own latents | (a) latents only: clean "
        "prompt cache + own latents | (b) prompt only: own prompt cache + greedy latents | both (a) and (b) | "
        "neither | (a) − (b), paired |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, row in c.items():
        if "decomposition" not in row:
            continue
        d = row["decomposition"]
        lm = row["latents_minus_prompt"]
        lines.append(f"| {name} | {row['answer_changes']:,} of {row['trajectories']:,} | {share_cell(d['replay'])} "
                     f"| {share_cell(d['latents_only'])} | {share_cell(d['prompt_only'])} | {share_cell(d['both'])} "
                     f"| {share_cell(d['neither'])} | {spct(lm['share'])} {ci(lm['ci'], 1, True)} |")
    lines += [
        "",
        "Read it this way: under noise the prompt pass is deterministic, so (b) is greedy's answer and (a) is the "
        "sample itself — the noise rows check the method. Under dropout, a change that (a) reproduces is carried by "
        "the latent vectors; one that (b) reproduces is carried by the prompt cache, whose perturbation the answer "
        "reads directly, not through the latents; \"neither\" needs both together (or the latent slots' own dropout, "
        "which the replay column isolates).",
        "",
        "**Implants.** Into latent 2 (the input of the second latent slot, which the answer reads), on each row's own "
        "prompt cache and latent 1, re-decoded without dropout. *swap*: latent 2 of another question's greedy "
        "trajectory with the same second operation and operand whose x1 ones digit is the target digit (read so by "
        "the ones-digit probe); *shift*: latent 2 plus the difference of the class means (greedy training latents) "
        "of the target digit and of the digit it carries now; *null swap*: another question's latent 2 with the same "
        "second operation, operand and ones digit (everything but the digit changes). The target is drawn per row "
        "among the digits whose implied answer ones digit differs from the row's own answer's. \"follows\": the "
        "answer's ones digit is the one the target implies; the null is the same count under the same-digit swap.",
        "",
        "| rows of | implant | rows | probe reads the target | follows [95% CI] | null: same-digit swap "
        "| implant − null, paired | keeps its answer's ones digit |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, row in c.items():
        im = row["implants"]
        for k, kind in enumerate(("swap", "shift")):
            x = im[kind]
            lines.append(f"| {name if k == 0 else ''} | {kind} | {x['rows']:,} | {pct(x['probe_reads_target'])}% "
                         f"| {share_cell(x['follows'])} | {share_cell(x['null_follows'])} "
                         f"| {spct(x['follows_minus_null']['share'])} {ci(x['follows_minus_null']['ci'], 1, True)} "
                         f"| {share_cell(x['keeps'])} |")
    g = c["greedy"]["implants"]
    ns = {n: row["implants"]["null_swap"]["keeps_implied_digit"] for n, row in c.items()}
    lines += [
        "",
        "Without an implant the follow rate is 0 by construction (the target implies another ones digit than the "
        "row's own answer), so the null is the same-digit swap, which changes everything in latent 2 but the digit "
        "it carries. On clean (greedy) rows the answer's ones digit follows a swapped-in latent 2 in "
        f"{pct(g['swap']['follows']['share'])}% {ci(g['swap']['follows']['ci'])} of the implants and a shifted one in "
        f"{pct(g['shift']['follows']['share'])}% {ci(g['shift']['follows']['ci'])}, against "
        f"{pct(g['swap']['null_follows']['share'])}% {ci(g['swap']['null_follows']['ci'])} under the null: the answer "
        "reads x1's ones digit from latent 2, causally. The same-digit swap keeps the ones digit its latent implies in "
        + "; ".join(f"{pct(v['share'])}% {ci(v['ci'])} ({n})" for n, v in ns.items()) + " of the rows.",
        "",
    ]
    return lines


RM_LABELS = {"step1_x1_ones": "latent 1: x1 ones digit right", "step2_final_answer": "latent 2: answer right",
             "step1_x1": "latent 1: x1 value right", "step2_x1": "latent 2: x1 value right",
             "step2_x2": "latent 2: x2 value right"}


def rm_section(r, plots, doc):
    rm, m = r["rm"], r["meta"]
    lines = [
        "## 3. What the LatentRM sees",
        "",
        f"RM: `{m['rm']}`, weights sha256 `{m['rm_sha256']}`. The label is whether a trajectory's read-out "
        "intermediate is right, or whether its answer is right. A read-out label is only as good as the read-out: "
        "where it is right on under half of the latents (the x1 and x2 values under sampling) the label is mostly the "
        "probe's error, marked \"label noise\". *Within*: per question with both classes among its 16 trajectories, "
        "the AUROC (ties ½), averaged over questions; *RM − vote*: the same questions' AUROC difference, paired. "
        "*Across*: every trajectory of every question pooled; *centred*: the same after subtracting each question's "
        "mean score from its trajectories' scores.",
        "",
        "| setting | label | read-out right on | q | RM step score, within | vote share, within | RM − vote share, "
        "paired | RM, across | RM, across, centred | vote share, across |",
        "| --- | --- | ---: | ---: | --- | --- | --- | --- | --- | --- |",
    ]
    for name, labels in rm.items():
        keys = list(RM_LABELS) if name == m["rm_setting"] else ["step1_x1_ones", "step2_final_answer"]
        for k in keys:
            x = labels[k]
            relia = "– (answer)" if "label_noise" not in x else (
                f"{pct(x['positive_rate'])}%" + (" (label noise)" if x["label_noise"] else ""))
            lines.append(
                f"| {name if k == keys[0] else ''} | {RM_LABELS[k]} | {relia} | {x['rm_step_score']['questions']} "
                f"| {vci(x['rm_step_score']['mean'], x['rm_step_score']['ci'], 3, False)} "
                f"| {vci(x['vote_share']['mean'], x['vote_share']['ci'], 3, False)} "
                f"| {vci(x['rm_minus_vote_share']['mean'], x['rm_minus_vote_share']['ci'], 3, True)} "
                + (f"| {vci(x['rm_step_score_across_questions']['auroc'], x['rm_step_score_across_questions']['ci'])} "
                   f"| {vci(x['rm_step_score_across_questions_centred']['auroc'], x['rm_step_score_across_questions_centred']['ci'])} "
                   f"| {vci(x['vote_share_across_questions']['auroc'], x['vote_share_across_questions']['ci'], 3, False)} |"
                   if "rm_step_score_across_questions" in x else "| – | – | – |"))
    lines += ["", f"![RM AUROC]({rel(plots / 'evidence_rm_auroc.png', doc)})", ""]
    # the trajectory score and difficulty
    lines += ["**The trajectory score (sum of step scores) and question difficulty.** \"Hard\": at most half of the "
              "question's 16 samples right; \"easy\": more than half.", "",
              "| setting | hard / easy questions | mean score, hard | mean score, easy | easy − hard [95% CI] | Spearman "
              "(question mean score, question accuracy) | across AUROC | centred | RM − vote share, within, paired |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, labels in rm.items():
        t = labels["trajectory_final_answer"]
        d = t["difficulty"]
        lines.append(f"| {name} | {d['hard_questions']} / {d['easy_questions']} | {num(d['hard_mean_score'])} "
                     f"| {num(d['easy_mean_score'])} | {vci(d['easy_minus_hard'], d['easy_minus_hard_ci'], 3, True)} "
                     f"| {vci(d['spearman'], d['spearman_ci'], 2, True)} "
                     f"| {num(t['rm_trajectory_score_across_questions']['auroc'])} "
                     f"{nci(t['rm_trajectory_score_across_questions']['ci'])} "
                     f"| {num(t['rm_trajectory_score_across_questions_centred']['auroc'])} "
                     f"{nci(t['rm_trajectory_score_across_questions_centred']['ci'])} "
                     f"| {vci(t['rm_minus_vote_share']['mean'], t['rm_minus_vote_share']['ci'], 3, True)} |")
    s02 = rm[m["rm_setting"]]
    t = s02["trajectory_final_answer"]
    pt = t["pair_types"]
    d = t["difficulty"]
    lines += [
        "",
        f"**Why the across-question AUROC is below 0.5** ({m['rm_setting']}): the pooled pairs are a right trajectory "
        "against a wrong one of any question. Right trajectories come mostly from easy questions and wrong ones from "
        f"hard questions, and the RM scores hard questions {'higher' if d['easy_minus_hard'] < 0 else 'lower'} "
        f"(easy − hard {vci(d['easy_minus_hard'], d['easy_minus_hard_ci'], 3, True)}): its score tracks question "
        "difficulty the wrong way. By pair type:",
        "",
        "| pairs: right trajectory of … vs wrong trajectory of … | share of pooled pairs | AUROC |",
        "| --- | ---: | ---: |",
    ]
    for k, v in pt.items():
        lines.append(f"| {'the same question' if k == 'within' else k.replace('right of ', '').replace(' vs wrong of ', ' question vs ') + ' question'} "
                     f"| {pct(v['share_of_pairs'])}% | {num(v['auroc'])} |")
    lines += ["", "Centred within questions (each question's mean score removed) the pooled AUROC is "
              f"{num(t['rm_trajectory_score_across_questions_centred']['auroc'])} "
              f"{nci(t['rm_trajectory_score_across_questions_centred']['ci'])}: "
              + {"above": "above chance", "below": "still below chance", "includes": "chance (the interval includes 0.5)",
                 "undefined": "undefined"}[sign_of(t["rm_trajectory_score_across_questions_centred"]["ci"], 0.5)]
              + "."]
    o = s02["step1_x1_ones"]["rm_minus_vote_share"]
    lines += ["", f"On the one reliable intermediate label (latent 1's ones digit), RM − vote share within questions is "
              f"{vci(o['mean'], o['ci'], 3, True)} at {m['rm_setting']} ("
              + {"above": "the RM ranks above vote share", "below": "the RM ranks below vote share",
                 "includes": "not different when paired", "undefined": "undefined"}[sign_of(o["ci"])]
              + "); at the other settings: "
              + "; ".join(f"{n} {vci(v['step1_x1_ones']['rm_minus_vote_share']['mean'], v['step1_x1_ones']['rm_minus_vote_share']['ci'], 3, True)}"
                          for n, v in rm.items() if n != m["rm_setting"]
                          and v["step1_x1_ones"]["rm_minus_vote_share"]["questions"]) + ".", ""]
    return lines


MIN_HEADROOM = 0.05  # a recovered share is shown where the headroom it divides by is at least 5 points


def room_ok(row, base, h):
    b = h["greedy"]["mean"] if base == "greedy" else row["single"]["mean"]
    return row["coverage"]["mean"] - b >= MIN_HEADROOM


def headroom_section(r):
    h, m = r["headroom"], r["meta"]
    g = h["greedy"]
    lines = [
        "## 4. Headroom: what sampling covers and what selection recovers",
        "",
        f"MC dropout p=0.2 over prompt and latents (the RM's setting; RM sha256 `{sha(m['rm_sha256'])}…`), "
        f"{m['questions']} test questions, {h['seeds']} seeds, per-question values averaged over seeds. The gap is "
        "coverage minus the best selector at that N (paired); *best − greedy* is paired; *recovered* is the share of "
        "the headroom above greedy, (best − greedy) / (coverage − greedy), summed over questions, and the same above a "
        "single sample (shown where that headroom is at least 5 points: below it the ratio's interval is unbounded). "
        "Positions per question: a prompt pass per sample / one shared prompt pass. \"Best\" is the best of the "
        "selectors here (the vote and the LatentRM); the read-back consistency vote, the shipped default, is "
        "reported with the same headroom column in [scaling.md](scaling.md) (57% of the headroom at N=16 and 64).",
        "",
        "| N | single sample | majority | RM-weighted | best-of-N (RM) | coverage (pass@N) | gap: coverage − best "
        "| best − greedy, paired | recovered above greedy | recovered above a single sample | positions |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for n, row in h["by_n"].items():
        cell = lambda k: f"{pct(row[k]['mean'])} {ci(row[k]['ci95'])}"  # noqa: E731
        b = row["best_selector"]
        lines.append(
            f"| {n} | {cell('single')} | {cell('majority')} | {cell('weighted')} | {cell('best_of_n')} "
            f"| {cell('coverage')} | {pct(row['gap']['mean'])} {ci(row['gap']['ci95'])} ({b}) "
            f"| {spct(row['minus_greedy'][b]['mean'])} {ci(row['minus_greedy'][b]['ci95'], 1, True)} "
            f"| {mean_ci(row['recovered_above_greedy']) if room_ok(row, 'greedy', h) else '–'} "
            f"| {mean_ci(row['recovered_above_single']) if room_ok(row, 'single', h) else '–'} "
            f"| {row['positions_per_question']:,.0f} / {row['positions_per_question_shared_prompt']:,.0f} |")
    lines += ["", "The RM's selectors against majority vote on the same samples (paired, points):", "",
              "| N | " + " | ".join(str(n) for n in h["by_n"]) + " |", "| --- |" + " ---: |" * len(h["by_n"])]
    for key, label in (("weighted_minus_majority", "RM-weighted − majority"),
                       ("best_of_n_minus_majority", "best-of-N (RM) − majority")):
        lines.append(f"| {label} | " + " | ".join(f"{spct(r[key]['mean'], 2)} {ci(r[key]['ci95'], 1, True)}"
                                                 for r in h["by_n"].values()) + " |")
    r64 = h["by_n"][64]
    b64 = r64["best_selector"]
    below = [n for n, row in h["by_n"].items() if sign_of(row["minus_greedy"][row["best_selector"]]["ci95"]) == "below"]
    ns = list(h["by_n"])
    bon = [h["by_n"][n]["best_of_n"]["mean"] for n in ns]
    bon_below = [n for n in ns if sign_of(h["by_n"][n]["best_of_n_minus_majority"]["ci95"]) == "below"]
    wm = [h["by_n"][n]["weighted_minus_majority"]["mean"] for n in ns]
    lines += [
        "",
        f"Greedy: {pct(g['mean'])}% {ci(g['ci95'])}. Sampling covers up to {pct(r64['coverage']['mean'])}% of the "
        f"questions at N=64; the best selector there ({b64}) reaches {pct(r64[b64]['mean'])}%, "
        f"{spct(r64['minus_greedy'][b64]['mean'])} points {ci(r64['minus_greedy'][b64]['ci95'], 1, True)} against "
        f"greedy (paired) and {pct(r64['gap']['mean'])} points below coverage: it recovers "
        f"{pct(r64['recovered_above_greedy']['share'])}% {ci(r64['recovered_above_greedy']['ci95'])} of the headroom "
        "above greedy, most of which is left unused. "
        + (f"At N={names(str(n) for n in below)} the best selector is below greedy (paired interval below zero). "
           if below else "")
        + f"Best-of-N by the RM peaks at {pct(max(bon))}% (N={ns[bon.index(max(bon))]}) and ends at {pct(bon[-1])}% "
        f"at N=64; it is below majority vote (paired interval below zero) at N={names(str(n) for n in bon_below)}; "
        "the RM-weighted vote differs from majority by "
        f"{spct(min(wm), 2)} to {spct(max(wm), 2)} points"
        + (", every paired interval including zero." if all(sign_of(h['by_n'][n]['weighted_minus_majority']['ci95'])
                                                          == 'includes' or n == 1 for n in ns) else "."),
        "",
    ]
    lines += literature_section(r)
    return lines


def literature_section(r):
    lit = r["literature"]
    p = lit["paper"]
    r16 = r["headroom"]["by_n"][16]
    return [
        "### Against the literature where the shapes meet",
        "",
        f"{p['source']} ({p['model']}, {p['task']}, MC dropout), as issue 24 quotes it: pass@1 {p['pass_at_1']}, "
        f"pass@32 {p['pass_at_32']}; its best reranker ({p['best_reranker']}) reaches {p['best_reranker_accuracy']}, "
        f"{p['recovered_share_quoted']}% of the headroom. (The paper's full text could not be read from this box; a "
        "public summary of it (en.papernotes.org, AAAI 2026 notes on arXiv 2510.12167) gives the same shape: Pass@32 "
        "44.43%, about 13 points of headroom, and under 2.3 points gained by PRM or ORM reranking. "
        f"(33.4 − 31.1) / (44.4 − 31.1) is {pct(lit['paper_recovered_of_pass32'])}%, so its 19.8% uses another "
        "denominator, probably pass@16 − pass@1, which the quote does not give.) The same shape here, dropout p=0.2, "
        f"N=16 selectors against pass@1 = a single sample ({pct(lit['pass_at_1'])}%), pass@16 "
        f"({pct(lit['pass_at_16'])}%) and pass@32 ({pct(lit['pass_at_32'])}%):",
        "",
        "| selector at N=16 | accuracy | share of pass@32 − pass@1 | share of pass@16 − pass@1 |",
        "| --- | ---: | ---: | ---: |",
        f"| paper: best reranker ({p['best_reranker']}) | {p['best_reranker_accuracy']} "
        f"| {pct(lit['paper_recovered_of_pass32'])}% | ({p['recovered_share_quoted']}%, quoted) |",
    ] + [f"| ours: {label} | {pct(lit[k]['accuracy'])} | {pct(lit[k]['of_pass32'])}% | {pct(lit[k]['of_pass16'])}% |"
         for k, label in (("best_of_n", "best-of-16 by the LatentRM (the reranker)"), ("weighted", "RM-weighted vote"),
                          ("majority", "majority vote"))] + [
        "",
        f"(Above a single sample with intervals: the headroom table's last-but-one column, e.g. "
        f"{pct(r16['recovered_above_single']['share'])}% {ci(r16['recovered_above_single']['ci95'])} for the best "
        "selector at N=16.) The shape is the same: sampling covers far more than the reranker keeps. The absolute "
        "levels differ because the settings do: here a 0.8M-parameter GPT-2 (4 layers, width 128) trained from "
        "scratch on a two-step mod-100 arithmetic task (100 possible answers, one latent per step, about 70% right "
        "per sample), there GPT-2 small (124M) on GSM8K's multi-step word problems (open-ended numeric answers, six "
        "latents, about 31% right per sample). With 100 answers, wrong samples here often agree with each other and "
        "16 uniform guesses would already cover about 15%; on GSM8K wrong answers rarely agree, which favours majority "
        "vote there less than here only if the right answer is rare too. Our reranker, unlike theirs, is at or below "
        "a single sample's accuracy plus a few points, and below majority vote at every N.",
        "",
    ]


def cot_section(r, plots, doc):
    cot, h = r.get("cot"), r.get("heldout")
    lines = ["## 5. Token chain of thought at equal compute", ""]
    if not cot:
        lines += ["Not measured: `benchmarks/results/evidence_cot.npz` is absent. To draw it: `python benchmarks/evidence.py "
                  "--part cot` (it resumes or trains the chain-of-thought model in `runs/arith-cot` first; "
                  + PENDING["cot"] + ").", ""]
    else:
        tr = cot["cot_training"]
        temp = cot["temperature"]
        lines += [
            "Setup:",
            f"- **Baseline.** A GPT-2 of the same size ({cot['parameters']:,} parameters) trained by the same recipe, data "
            "and batch with its chain-of-thought stage for the whole 3,600-step budget (`python -m "
            "lm_eval_latenttts.training.recipes.train_backbone --out runs/arith-cot --stage-steps 3600,0,0`, "
            f"{tr['train_seconds'] / 60:.1f} min of training on the shared box). Checkpoint sha256 "
            f"`{cot['cot_sha256']}` (not shipped; its per-question answers are in `evidence_cot.npz`).",
            f"- **Temperature** chosen on the valid split (highest majority@16, ties: single-sample accuracy, then the "
            f"lower T): " + ", ".join(f"T={t}: {pct(v['majority_at_16'])} / {pct(v['single_sample'], 2)}"
                                       for t, v in temp["grid"].items())
            + f" (majority@16 / single sample) → T={temp['chosen']}. Greedy on valid: {pct(cot['cot_valid_greedy_accuracy'])}%.",
            "- **Compute**: forward token positions per question. Latent: every sample runs its own prompt pass "
            "(`dropout_scope=\"all\"`), then 2 latent steps, the end marker and its answer tokens. CoT: the prompt once "
            "(its KV cache shared by the samples), then each sample's fed tokens. Approximate GFLOPs beside them.",
            "- **Truncated chains** (points below a full chain's positions): the CoT model greedy, with `### ` fed "
            "after 0 written steps (it must answer at once) or after its first step (it has written x1), then the "
            "answer decoded greedily among the digit tokens and end-of-text (at most 3 tokens). Left free after the "
            "marker, the model ignores it and writes its chain anyway (`### 2+5=20>>` …), which costs what a full "
            "chain costs; constrained, the point costs the positions shown.",
            "",
            f"Majority vote, {cot['seeds']} seed{'s' if cot['seeds'] != 1 else ''}, {cot['questions']} test questions:",
            "",
            "| N | token CoT [95% CI] | CoT positions / GFLOP | latent, dropout p=0.2 [95% CI] | latent positions / GFLOP |",
            "| ---: | ---: | ---: | ---: | ---: |",
        ]
        for k, v in cot["truncated"].items():
            lines.append(f"| CoT greedy, {'no chain' if int(k) == 0 else f'cut after step {k}'} | {pct(v['accuracy'])} "
                         f"{ci(v['ci95'])} | {v['positions_per_question']:.0f} / – | | |")
        g = cot["greedy"]
        lines.append(f"| greedy | {pct(g['cot']['accuracy'])} {ci(g['cot']['ci95'])} | "
                     f"{g['cot']['positions_per_question']:.0f} / – | {pct(g['latent']['accuracy'])} "
                     f"{ci(g['latent']['ci95'])} | {g['latent']['positions_per_question']:.0f} / – |")
        for n in cot["cot"]:
            c_, l_ = cot["cot"][n], cot["latent_dropout_p0.2"][n]
            lines.append(f"| {n} | {pct(c_['majority_accuracy'])} {ci(c_['ci95'])} | "
                         f"{c_['positions_per_question']:,.0f} / {c_['gflops_per_question']:.3f} | "
                         f"{pct(l_['majority_accuracy'])} {ci(l_['ci95'])} | {l_['positions_per_question']:,.0f} / "
                         f"{l_['gflops_per_question']:.3f} |")
        cr = cot["compute_ratios"]
        d = {x["n"]: x for x in cot["latent_vs_cot_at_latent_points"]}
        lines += ["", f"![CoT vs latent]({rel(plots / 'evidence_cot_vs_latent.png', doc)})", ""]
        at = [f"{spct(d[n]['difference'])} points {ci(d[n]['ci95'], 1, True)} at N={n} ({d[n]['positions']:,.0f} positions)"
              for n in d if d[n]["difference"] is not None]
        lines += [
            "At the latent model's own budgets, with the CoT curve interpolated in log positions, latent minus CoT is "
            + ("; ".join(at) if at else "not defined (no CoT point at or below those budgets)") + " (paired). "
            f"The latent model's best majority is {pct(cot['latent_dropout_p0.2'][cr['latent_best_n']]['majority_accuracy'])}% "
            f"(first reached at N={cr['latent_first_n_at_best']}, {cr['latent_first_positions_at_best']:,.0f} positions). "
            + compute_sentence(cot) + " " + truncated_sentence(cot),
            "",
            "What this does not show: the latent positions charge every sample its own prompt pass; latent-only "
            "sampling shares one pass over the 30-token prompt ("
            + ", ".join(f"N={n}: {cot['latent_dropout_p0.2'][n]['positions_per_question_shared_prompt']:,.0f}"
                        for n in cot["latent_dropout_p0.2"])
            + " positions), but it is a different sampler, whose accuracy this table does not show. The CoT model "
            "writes the intermediate it then uses; at this task's ceiling that measures how far the latent model "
            "falls short, not how CoT scales. The truncated chains feed the answer marker where this model never saw "
            "it (it was trained to write it after both steps only), so their accuracy (against 1% for a guess among "
            "the 100 answers) says that this CoT model needs its whole chain, not what a chain-of-thought model "
            "trained to answer early could do below 55 positions.",
            "",
        ]
    if h:
        lines += heldout_section(h)
    else:
        lines += ["### Held-out step facts", "",
                  "Not measured: `benchmarks/results/evidence_heldout.npz` is absent. The split is built "
                  "(`evidence_lib/heldout.py`: 104 of the 2,600 step facts held out, every training question that uses "
                  "one removed) and both models are retrained on what remains, but neither run had finished when this "
                  "page was generated (" + PENDING["heldout"] + "). To finish: `python benchmarks/evidence_heldout.py "
                  "train --kind latent --out runs/heldout-latent` and `python benchmarks/evidence_heldout.py train "
                  "--kind cot --out runs/heldout-cot` (each resumes its run), then `python benchmarks/evidence_heldout.py "
                  "evaluate` and `python benchmarks/evidence_recompute.py`.", ""]
    return lines


def heldout_section(h):
    s, hm = h["sets"], h["meta"]
    lines = [
        "### Held-out step facts",
        "",
        f"A step fact is one arithmetic step `x op c = r` (x 0..99 with one of the 26 operation/operand pairs), at "
        f"either step of a question. {h['facts']} of the 2,600 facts ({pct(hm['fraction'], 0)}%, drawn with seed "
        f"{hm['seed']}, `evidence_lib/heldout.py`) are held out: every training question that uses one at either step is "
        f"removed ({hm['train_questions']:,} of 59,840 remain), and both models are retrained by the same recipes on "
        "what remains (latent: the shipped curriculum; CoT: `3600,0,0`). Test sets: *seen*: the shipped test questions "
        "that use no held-out fact; *unseen step 2* / *unseen step 1*: questions whose second / first step is a "
        "held-out fact and whose other step is seen (500 each, none in training). Every value, operation and operand "
        "still occurs in training; only the fact does not.",
        "",
        "| test set | questions | latent greedy [95% CI] | latent majority@16, p=0.2 | CoT greedy [95% CI] "
        f"| CoT majority@16, T={hm['cot_temperature']} | CoT − latent, greedy, paired |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name in ("seen", "unseen_step2", "unseen_step1"):
        x = s[name]
        cell = lambda k: f"{pct(x[k]['mean'])} {ci(x[k]['ci95'])}"  # noqa: E731
        lines.append(f"| {name.replace('_', ' ')} | {x['questions']} | {cell('latent_greedy')} | {cell('latent_majority')} "
                     f"| {cell('cot_greedy')} | {cell('cot_majority')} | {spct(x['cot_minus_latent_greedy']['mean'])} "
                     f"{ci(x['cot_minus_latent_greedy']['ci95'], 1, True)} |")
    lines += [
        "",
        "Unseen minus seen (different questions, unpaired intervals): latent "
        f"{spct(h['latent_unseen_step2_minus_seen']['mean'])} {ci(h['latent_unseen_step2_minus_seen']['ci95'], 1, True)} "
        f"(step 2), {spct(h['latent_unseen_step1_minus_seen']['mean'])} "
        f"{ci(h['latent_unseen_step1_minus_seen']['ci95'], 1, True)} (step 1); CoT "
        f"{spct(h['cot_unseen_step2_minus_seen']['mean'])} {ci(h['cot_unseen_step2_minus_seen']['ci95'], 1, True)} "
        f"(step 2), {spct(h['cot_unseen_step1_minus_seen']['mean'])} {ci(h['cot_unseen_step1_minus_seen']['ci95'], 1, True)} "
        f"(step 1). Models: latent sha256 `{sha(hm['latent_sha256'])}…` ({hm['latent_training']['train_seconds'] / 60:.0f} "
        f"min), CoT `{sha(hm['cot_sha256'])}…` ({hm['cot_training']['train_seconds'] / 60:.0f} min); neither is shipped. "
        "The held-out latent model has no LatentRM: this split measures the backbones. Each held-out model is "
        "its own retraining (a different training set and run), so compare unseen with seen within a model, not "
        "with the shipped model's numbers above.",
        "",
    ]
    return lines


def render(report, doc: Path, plots: Path) -> str:
    lines = header(report, doc, plots)
    lines += summary(report)
    lines += section1(report, plots, doc)
    lines += causal_section(report)
    lines += rm_section(report, plots, doc)
    lines += headroom_section(report)
    lines += cot_section(report, plots, doc)
    return "\n".join(lines).rstrip() + "\n"
