"""Adaptive sampling in the scaling report: accuracy against the rollouts actually drawn, and the rollout phase's time.

For each seed, draws the test questions' rollouts with the shipped model and
LatentRM (its recommended settings: dropout p=0.2, budget N=16) as the
``latent_tts`` harness draws them (``scaling.engine``, calls of
``--rows-per-call`` rows, i.e. ``batch_size`` = rows / N questions at N):

- ``fixed``: all N per question; the fixed-N curve (majority and RM-weighted
  vote at N = 1, 2, 4, ...) is read off its first N rollouts;
- adaptive sampling for every rule, round size and threshold asked for (the
  confidence rule with plain votes, ``aggregate=majority``, and with
  RM-weighted votes, ``aggregate=weighted``).

Each setting reports accuracy (majority vote and RM-weighted vote of the
drawn rollouts), its difference from the fixed-N run's (paired: per question,
same seed), mean rollouts and latent forward steps per question (the greedy
decode, the same for all, not included), and the wall and CPU time of its
rollout phase (rollouts and RM scores); mean of the seeds, 95% bootstrap
intervals over questions.  The machine may be shared, so the speed-ups that
count come from a last pass that alternates fixed N with the default exact and
confidence settings (medians of ``--timing-repeats`` runs each).  Checked on the way: every adaptive run's rollouts
are the first ones of the fixed run (keyed sampling), and the exact rule's
majority vote is majority@N for every question.

    python benchmarks/adaptive.py --limit 0 --seeds 3 --threads 1 --out benchmarks/results
"""

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from hf_modeling import AutoLatentModel, load_latent_tokenizer
from lm_eval_latenttts.data.questions import read_questions
from lm_eval_latenttts.scaling.aggregation import majority_vote
from lm_eval_latenttts.scaling.engine import Engine, Job
from evidence_lib.bootstrap import bootstrap_ci  # the reports' one bootstrap (benchmarks/evidence_lib)
from lm_eval_latenttts.scaling.metrics import pass_ks, question_metrics
from lm_eval_latenttts.scaling.plan import make_plan
from lm_eval_latenttts.scaling.result import QuestionResult
from scaling import shown_path  # benchmarks/scaling.py: the report's path form

ROWS = ("majority", "weighted", "rollouts", "latent_forwards")


def settings(rounds, thresholds, rm_thresholds, default_round):
    """(name, config overrides) of every adaptive setting measured."""
    out = []
    for k in rounds:
        out.append((f"exact k={k}", dict(adaptive_rule="exact", adaptive_round=k)))
        for th in thresholds:
            out.append((f"confidence k={k} t={th:g}", dict(adaptive_rule="confidence", adaptive_round=k,
                                                             adaptive_threshold=th)))
        if k >= 2:
            out.append((f"esc k={k}", dict(adaptive_rule="esc", adaptive_round=k)))
    for th in rm_thresholds:
        out.append((f"confidence, RM-weighted votes k={default_round} t={th:g}",
                    dict(adaptive_rule="confidence", adaptive_round=default_round, adaptive_threshold=th,
                         adaptive_votes="rm")))
    return out


def draw_all(model, tok, rm, prompts, config, rows_per_call):
    """Every question's draw under ``config``, as the harness draws them (``scaling.engine``, calls of
    ``rows_per_call`` rows); (plan, draws, wall s, CPU s)."""
    engine = Engine(model, tok, rm, batch_size=max(1, rows_per_call // config.num_return_sequences))
    plan = engine.plan(config, payload=False)
    jobs = [Job(i, prompt, plan) for i, prompt in enumerate(prompts)]
    wall, cpu = time.perf_counter(), time.process_time()
    found = [drawn.draw for drawn in engine.draws(jobs)]
    return plan, found, time.perf_counter() - wall, time.process_time() - cpu


def per_question(plan, found, questions):
    """Per row, the per-question values (the rows lm-eval reports, without the greedy decode)."""
    rows = {row: [] for row in ROWS}
    for c, q in zip(found, questions):
        values = question_metrics(q["answer"], QuestionResult.answered(plan, c))
        for row in ROWS:
            rows[row].append(values[row])
    return rows


def paired(rows: dict, reference: dict) -> dict:
    """Per question, the difference in accuracy from the fixed-N run (same seed): ``delta_<row>``."""
    return {f"delta_{row}": [a - b for a, b in zip(rows[row], reference[row])] for row in ("majority", "weighted")}


def summary(per_seed: list[dict]) -> dict:
    """Mean over seeds and a 95% bootstrap interval over questions (per-question values averaged over seeds)."""
    out = {}
    for row in per_seed[0]:
        if not isinstance(per_seed[0][row], list):
            out[row] = {"mean": sum(s[row] for s in per_seed) / len(per_seed), "seeds": [s[row] for s in per_seed]}
            continue
        per_q = [sum(s[row][i] for s in per_seed) / len(per_seed) for i in range(len(per_seed[0][row]))]
        out[row] = {"mean": sum(per_q) / len(per_q), "ci95": bootstrap_ci(per_q),
                    "seeds": [sum(s[row]) / len(s[row]) for s in per_seed]}
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="backbone folder or Hub id (default: the shipped model)")
    parser.add_argument("--rm", default=None, help="LatentRM folder or Hub id (default: the shipped RM)")
    parser.add_argument("--data", default=None, help="test questions (default: the shipped latent_arith test split)")
    parser.add_argument("--limit", type=int, default=0, help="number of test questions (0 = all)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--rounds", type=int, nargs="+", default=[1, 3], help="round sizes k")
    parser.add_argument("--thresholds", type=float, nargs="+", default=[0.8, 0.9, 0.95, 0.99],
                        help="thresholds of the confidence rule")
    parser.add_argument("--rm-thresholds", type=float, nargs="*", default=[0.9, 0.95],
                        help="thresholds of the confidence rule with RM-weighted votes (at the default round size)")
    parser.add_argument("--timing-repeats", type=int, default=3,
                        help="timing pass: fixed N and the default adaptive settings alternated this many times")
    parser.add_argument("--rows-per-call", type=int, default=16,
                        help="rows per generate call (the harness: batch_size x N; default batch_size=1, N=16)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from lm_eval_latenttts.checkpoints import shipped_model, shipped_rm
    from lm_eval_latenttts.data import ARITH_TEST

    model_path, rm_path = args.model or shipped_model(), args.rm or shipped_rm()
    model = AutoLatentModel.from_pretrained(model_path).eval()
    tok = load_latent_tokenizer(model_path, model.config)
    rm = AutoLatentModel.from_pretrained(rm_path).eval()
    questions = [q.as_doc() for q in read_questions(args.data or ARITH_TEST)]
    questions = questions[: args.limit] if args.limit else questions
    prompts = [model.encode_prompt(tok, q["question"]) for q in questions]
    # the checkpoint's recommended settings; the aggregate the plan's default (best-of-N with the RM; every row is
    # computed anyway): the shipped backbone's consistency vote reads samples back and refuses adaptive rounds
    base = model.latent_generation_config(aggregate=None)
    n = base.num_return_sequences
    _, greedy, _, _ = draw_all(model, tok, None, prompts, model.latent_generation_config(
        base, latent_sampling=None, num_return_sequences=1), args.rows_per_call)
    greedy_acc = [float(model.is_correct(c.texts[0], q["answer"])) for c, q in zip(greedy, questions)]
    grid = settings(args.rounds, args.thresholds, args.rm_thresholds, base.adaptive_round)
    runs = {"fixed": [], **{name: [] for name, _ in grid}}
    curve = {k: [] for k in pass_ks(n)}
    for seed in range(args.seeds):
        fixed_config = model.latent_generation_config(base, seed=seed, adaptive=False)
        plan, fixed, wall, cpu = draw_all(model, tok, rm, prompts, fixed_config, args.rows_per_call)
        reference = per_question(plan, fixed, questions)
        runs["fixed"].append({**reference, **paired(reference, reference), "wall_s": wall, "cpu_s": cpu})
        for k in curve:
            at_k = make_plan(model.latent_generation_config(fixed_config, num_return_sequences=k), True, False)
            curve[k].append(per_question(at_k, [c.first(k) for c in fixed], questions))
        print(f"seed {seed} fixed N={n}: {wall:.1f} s", flush=True)
        for name, overrides in grid:
            config = model.latent_generation_config(base, seed=seed, adaptive=True, **overrides)
            plan, found, wall, cpu = draw_all(model, tok, rm, prompts, config, args.rows_per_call)
            for a, f in zip(found, fixed):
                assert a.answers == f.answers[: a.drawn], f"{name}: rollouts differ from the fixed run's first ones"
                if overrides["adaptive_rule"] == "exact":
                    assert majority_vote(a.answers) == majority_vote(f.answers)
            rows = per_question(plan, found, questions)
            runs[name].append({**rows, **paired(rows, reference), "wall_s": wall, "cpu_s": cpu})
            print(f"seed {seed} {name}: {wall:.1f} s", flush=True)

    timing = interleaved_timing(model, tok, rm, prompts, base, args.timing_repeats, args.rows_per_call)
    report = {"model": shown_path(model_path), "rm": shown_path(rm_path), "questions": len(questions), "seeds": args.seeds,
              "budget": n, "rows_per_call": args.rows_per_call, "threads": torch.get_num_threads(),
              "sampling": {"latent_sampling": base.latent_sampling, "dropout_p": base.dropout_p},
              "greedy": {"mean": sum(greedy_acc) / len(greedy_acc), "ci95": bootstrap_ci(greedy_acc)},
              "fixed_curve": {k: summary(v) for k, v in curve.items()},
              "settings": {name: summary(v) for name, v in runs.items()}, "timing": timing}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "adaptive.json").write_text(json.dumps(report, indent=2))
    print(table(report))
    plot(report, out / "adaptive.png")


def interleaved_timing(model, tok, rm, prompts, base, repeats, rows_per_call) -> dict:
    """Wall and CPU seconds of the rollout phase (seed 0): fixed N, and the exact and confidence rules at their
    defaults, run one after the other ``repeats`` times so that they share the machine's load; medians."""
    configs = {"fixed": dict(adaptive=False), "exact": dict(adaptive=True, adaptive_rule="exact"),
               "confidence": dict(adaptive=True, adaptive_rule="confidence")}
    times = {name: {"wall_s": [], "cpu_s": []} for name in configs}
    for _ in range(repeats):
        for name, overrides in configs.items():
            _, _, wall, cpu = draw_all(model, tok, rm, prompts, model.latent_generation_config(base, **overrides),
                                       rows_per_call)
            times[name]["wall_s"].append(wall)
            times[name]["cpu_s"].append(cpu)
            print(f"timing {name}: {wall:.1f} s wall, {cpu:.1f} s CPU", flush=True)
    out = {}
    for name, t in times.items():
        out[name] = {key: {"median": statistics.median(v), "all": v} for key, v in t.items()}
        for key in ("wall_s", "cpu_s"):
            out[name][key]["speedup"] = statistics.median(times["fixed"][key]) / statistics.median(t[key])
    return out


def table(report) -> str:
    """The markdown table of the README: rule x setting x (accuracy, rollouts, time) with intervals."""
    fixed = report["settings"]["fixed"]
    lines = ["| setting | majority % | Δ majority | weighted (RM) % | Δ weighted | rollouts / question | % of N | "
             "latent forwards | wall s | CPU s | CPU speed-up |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, s in report["settings"].items():
        cells = [f"{100 * s[r]['mean']:.2f} [{100 * s[r]['ci95'][0]:.2f}, {100 * s[r]['ci95'][1]:.2f}]"
                 for r in ("majority", "delta_majority", "weighted", "delta_weighted")]
        roll = s["rollouts"]
        lines.append(f"| {name} | {' | '.join(cells)} | {roll['mean']:.2f} [{roll['ci95'][0]:.2f}, "
                     f"{roll['ci95'][1]:.2f}] | {100 * roll['mean'] / report['budget']:.0f} | "
                     f"{s['latent_forwards']['mean']:.1f} | {s['wall_s']['mean']:.1f} | {s['cpu_s']['mean']:.1f} | "
                     f"{fixed['cpu_s']['mean'] / s['cpu_s']['mean']:.2f}x |")
    lines.append("")
    lines.append("| rollout phase, interleaved | wall s (median) | speed-up | CPU s (median) | speed-up |")
    lines.append("| --- | ---: | ---: | ---: | ---: |")
    for name, t in report["timing"].items():
        lines.append(f"| {name} | {t['wall_s']['median']:.1f} | {t['wall_s']['speedup']:.2f}x | "
                     f"{t['cpu_s']['median']:.1f} | {t['cpu_s']['speedup']:.2f}x |")
    lines.append("")
    lines.append("| fixed N | majority % | weighted (RM) % |")
    lines.append("| ---: | ---: | ---: |")
    for k, s in report["fixed_curve"].items():
        lines.append(f"| {k} | " + " | ".join(f"{100 * s[r]['mean']:.1f} [{100 * s[r]['ci95'][0]:.1f}, "
                                               f"{100 * s[r]['ci95'][1]:.1f}]" for r in ("majority", "weighted")) + " |")
    return "\n".join(lines)


def plot(report, path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install 'lm-eval-latenttts[plots]'): no PNG written")
        return
    fig, ax = plt.subplots(figsize=(7, 4.8))
    curve = report["fixed_curve"]
    ks = [int(k) for k in curve]
    for row, style in (("majority", "-"), ("weighted", "--")):
        mean = [100 * curve[k][row]["mean"] for k in curve]
        ax.plot(ks, mean, style, marker="o", color="black", label=f"fixed N, {row}")
        ax.fill_between(ks, [100 * curve[k][row]["ci95"][0] for k in curve],
                        [100 * curve[k][row]["ci95"][1] for k in curve], color="black", alpha=0.07)
    markers = {"exact": "s", "confidence": "o", "esc": "^", "confidence,": "D"}  # "confidence,": RM-weighted votes
    labelled = set()
    for name, s in report["settings"].items():
        if name == "fixed":
            continue
        rule, k = name.split()[0], name.split("k=")[1].split()[0]
        label = f"{rule.rstrip(',')}{' (RM votes)' if rule.endswith(',') else ''} k={k}"
        x, y = s["rollouts"]["mean"], 100 * s["majority"]["mean"]
        ax.plot(x, y, markers[rule], color=f"C{1 + int(k)}", markersize=6, alpha=0.8,
                label=None if label in labelled else label)
        labelled.add(label)
        if "t=" in name:
            ax.annotate(name.split("t=")[1], (x, y), xytext=(3, -9), textcoords="offset points", fontsize=6)
    ax.axhline(100 * report["greedy"]["mean"], color="gray", linestyle=":", label="greedy")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("rollouts per question (mean)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"adaptive sampling (majority vote; labels: threshold) vs fixed N\n{report['questions']} "
                 f"questions, {report['seeds']} seeds, band: 95% interval of fixed N", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
