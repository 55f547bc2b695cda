"""The scaling report: how accuracy, coverage and selection scale with N for the shipped model.

For each sampling method (dropout, noise) and each seed, draws ``--n-max``
rollouts per test question once; the metrics at N are computed on the first N
rollouts (so every N sees the same draws):

- coverage@N (any of N right), single-sample accuracy, majority@N,
  LatentRM best-of-N and RM-weighted vote;
- RM-guided beam search with B*C = N (C = min(4, N) candidates per beam),
  which spends the same number of latent forward passes as best-of-N;
- latent diversity: mean pairwise cosine distance between the N trajectories'
  latent vectors, per step.

Each point is the mean over seeds with a 95% bootstrap interval over
questions.  Writes ``scaling.json`` and PNG plots into ``--out``.

    python benchmarks/scaling.py --out benchmarks/results
"""

import argparse
import json
import time
from pathlib import Path

import torch

from hf_modeling import AutoLatentModel, LatentGenerationConfig, load_latent_tokenizer
from lm_eval_latenttts.data.questions import read_questions
from lm_eval_latenttts.scaling.engine import Engine, Job
from evidence_lib.bootstrap import bootstrap_ci  # the reports' one bootstrap (benchmarks/evidence_lib)
from lm_eval_latenttts.scaling.metrics import question_metrics
from lm_eval_latenttts.scaling.plan import make_plan
from lm_eval_latenttts.scaling.result import QuestionResult
from lm_eval_latenttts.scaling.rollouts import Candidate, QuestionDraw, Recorder

METRICS = ("coverage", "single", "majority", "best_of_n", "weighted", "beam")
# the report's names for the rows of scaling.metrics.question_metrics (the rows lm-eval reports)
ROWS = {"coverage": "coverage", "single": "single_acc", "majority": "majority", "best_of_n": "best_of_n",
        "weighted": "weighted"}


def shown_path(path):
    """A path as the report records it: relative to the working directory when inside it (no machine paths)."""
    if path is None:
        return None
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def load_questions(path, limit):
    """The first ``limit`` (0: all) ``{question, answer}`` docs; bad rows stop the report instead of scoring zero."""
    rows = [q.as_doc() for q in read_questions(path)]
    return rows[:limit] if limit else rows


def pairwise_cosine_distance(latents):
    """latents (N, steps, hidden) -> (steps,) mean cosine distance over the N*(N-1)/2 pairs."""
    n = latents.shape[0]
    if n < 2:
        return torch.zeros(latents.shape[1])
    z = torch.nn.functional.normalize(latents.float(), dim=-1).transpose(0, 1)  # steps, N, hidden
    sim = z @ z.transpose(1, 2)
    off = ~torch.eye(n, dtype=torch.bool)
    return (1 - sim[:, off]).mean(-1)


def draw(engine, questions, config, keep_latents=False):
    """Every question's draw under ``config`` (``scaling.engine``, as lm-eval draws them) and, with
    ``keep_latents``, the recorder of their latents (``rollouts.Recorder``, keyed by question index)."""
    plan = engine.plan(config, payload=False)
    jobs = [Job(i, engine.model.encode_prompt(engine.tokenizer, q["question"]), plan) for i, q in enumerate(questions)]
    recorder = Recorder() if keep_latents else None
    return [drawn.draw for drawn in engine.draws(jobs, recorder)], recorder


def metrics_at(draws, questions, n, has_rm):
    """Per metric, the per-question values on the first n samples (sample j is the same for every n), as lm-eval
    reports them for N = n (``QuestionResult`` and ``question_metrics``; ``acc`` is the majority vote).
    ``draws``: per question its ``QuestionDraw``, or anything with its ``answers`` and ``scores``."""
    plan = make_plan(LatentGenerationConfig(num_return_sequences=n, aggregate="majority"), has_rm, payload=False)
    rows = {m: [] for m in ROWS if has_rm or m not in ("best_of_n", "weighted")}
    for found, q in zip(draws, questions):
        scores = found.scores[:n] if has_rm else [None] * n
        first = QuestionDraw([Candidate(a, s, None, 0) for a, s in zip(found.answers[:n], scores)])
        values = question_metrics(q["answer"], QuestionResult.answered(plan, first))
        for metric in rows:
            rows[metric].append(values[ROWS[metric]])
    return rows


def beam_accuracy(engine, questions, config, n):
    """Beam search with B*C = n (C = min(4, n)): per question right or wrong, latent forwards spent and
    the number of distinct latent paths among the B final beams of each question."""
    model, c = engine.model, min(4, n)
    config = model.latent_generation_config(config, latent_beams=n // c, latent_candidates=c, aggregate="beam")
    found, recorder = draw(engine, questions, config, keep_latents=True)
    correct, spent, paths = [], 0, []
    for i, (searched, q) in enumerate(zip(found, questions)):
        correct.append(float(model.is_correct(searched.texts[searched.searched], q["answer"])))
        spent += searched.latent_forwards  # what the search reports it spent
        latents = recorder[i].latents
        paths.append(len(torch.unique(latents.reshape(len(searched.texts), -1), dim=0)))
    steps = model.config.latent_length
    return correct, {"beams": n // c, "candidates": c, "latent_forward_passes": spent,
                     "best_of_n_latent_forward_passes": n * steps * len(questions),
                     "distinct_paths_per_question": sum(paths) / len(paths)}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="backbone folder or Hub id (default: the shipped model)")
    parser.add_argument("--rm", default=None, help="LatentRM folder or Hub id (default: the shipped RM)")
    parser.add_argument("--data", default=None, help="test questions, JSON/JSONL (default: shipped latent_arith test split)")
    parser.add_argument("--limit", type=int, default=300, help="number of test questions (0 = all)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per point (at least 3 for the report)")
    parser.add_argument("--n", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32, 64], help="values of N")
    parser.add_argument("--dropout-p", type=float, default=None,
                        help="dropout p (default: the checkpoint's recommended, else the backbone's typical value)")
    parser.add_argument("--noise-std", type=float, default=None,
                        help="noise sigma (default: the checkpoint's recommended, else the backbone's typical value)")
    parser.add_argument("--methods", nargs="+", default=["dropout", "noise"], choices=["dropout", "noise"])
    parser.add_argument("--no-beam", action="store_true", help="skip RM-guided beam search")
    parser.add_argument("--beam-only", action="store_true",
                        help="rerun only the beam rows and update them in the --out folder's scaling.json, which "
                             "must come from a run with the same model, RM, data, questions, seeds, N and sampling")
    parser.add_argument("--batch-questions", type=int, default=8, help="questions per generate call")
    parser.add_argument("--max-new-tokens", type=int, default=None,
                        help="answer tokens (default: the checkpoint's recommended)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--out", default="benchmarks/results", help="output folder for scaling.json and plots")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from lm_eval_latenttts.checkpoints import shipped_model, shipped_rm
    from lm_eval_latenttts.data import ARITH_TEST

    model_path = args.model or shipped_model()
    rm_path = args.rm or shipped_rm()
    data_path = args.data or ARITH_TEST
    model = AutoLatentModel.from_pretrained(model_path).eval()
    tok = load_latent_tokenizer(model_path, model.config)
    rm = AutoLatentModel.from_pretrained(rm_path).eval() if rm_path else None
    questions = load_questions(data_path, args.limit)
    n_max = max(args.n)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    # the checkpoint's recommended settings (the shipped model: dropout p=0.2, N=16, 8 answer tokens)
    # (the selectors are computed from the draws: no aggregate, so no strategy's own work such as read-backs)
    base = model.latent_generation_config(aggregate=None, **(
        {"max_new_tokens": args.max_new_tokens} if args.max_new_tokens else {}))

    report = {"model": shown_path(model_path), "rm": shown_path(rm_path), "data": shown_path(data_path), "questions": len(questions),
              "seeds": args.seeds, "n": args.n, "methods": {}}
    engine = Engine(model, tok, rm, batch_size=args.batch_questions)  # questions per generate call
    if args.beam_only:
        return update_beam_rows(args, engine, questions, base, n_max, report, out_dir)
    greedy, _ = draw(Engine(model, tok, None, batch_size=args.batch_questions), questions,
                     model.latent_generation_config(base, latent_sampling=None, num_return_sequences=1))
    report["greedy_accuracy"] = sum(model.is_correct(c.texts[0], q["answer"]) for c, q in zip(greedy, questions)) \
        / len(questions)
    print(f"greedy accuracy {report['greedy_accuracy']:.3f} on {len(questions)} questions", flush=True)

    for method in args.methods:
        strength = {"dropout": {"dropout_p": args.dropout_p}, "noise": {"noise_std": args.noise_std}}[method]
        config = model.latent_generation_config(base, latent_sampling=method, num_return_sequences=n_max,
                                                **{k: v for k, v in strength.items() if v is not None})
        sampling = {"latent_sampling": method, "dropout_p": config.dropout_p, "noise_std": config.noise_std}
        per_seed_metrics = []  # seed -> n -> metric -> per-question list
        diversity = []  # seed -> n -> (steps,)
        beam_passes = {}  # n -> per seed
        started = time.time()
        for seed in range(args.seeds):
            seeded = model.latent_generation_config(config, seed=seed)
            found, recorder = draw(engine, questions, seeded, keep_latents=True)
            by_n = {n: metrics_at(found, questions, n, rm is not None) for n in args.n}
            if rm is not None and not args.no_beam:
                for n in args.n:
                    by_n[n]["beam"], spent = beam_accuracy(engine, questions, seeded, n)
                    beam_passes.setdefault(n, []).append(spent)
            per_seed_metrics.append(by_n)
            diversity.append({n: torch.stack([pairwise_cosine_distance(recorder[i].latents[:n])
                                              for i in range(len(found))]).mean(0).tolist() for n in args.n})
            print(f"{method} seed {seed} done ({time.time() - started:.0f} s)", flush=True)

        points = {}
        for n in args.n:
            points[n] = {metric: point([s[n][metric] for s in per_seed_metrics]) for metric in METRICS
                         if per_seed_metrics[0][n].get(metric)}
            points[n]["diversity_per_step"] = [sum(d[n][s] for d in diversity) / args.seeds
                                               for s in range(len(diversity[0][n]))]
        report["methods"][method] = {"sampling": sampling, "points": points,
                                     "beam_compute": {n: seeds_mean(v) for n, v in beam_passes.items()},
                                     "seconds": time.time() - started}
        print_table(method, sampling, points, args.n)

    (out_dir / "scaling.json").write_text(json.dumps(report, indent=2))
    plot(report, out_dir)
    print(f"wrote {out_dir / 'scaling.json'} and plots")


def point(per_seed):
    """A metric's point from its per-seed lists of per-question values: the per-question value averaged
    over seeds, then the mean and its interval over questions."""
    per_q = [sum(values) / len(per_seed) for values in zip(*per_seed)]
    return {"mean": sum(per_q) / len(per_q), "ci95": bootstrap_ci(per_q),
            "seed_means": [sum(values) / len(values) for values in per_seed]}


def seeds_mean(per_seed):
    """One beam_compute entry from the seeds' (the same compute each; distinct paths averaged over seeds)."""
    entry = dict(per_seed[-1])
    entry["distinct_paths_per_question"] = sum(e["distinct_paths_per_question"] for e in per_seed) / len(per_seed)
    return entry


def update_beam_rows(args, engine, questions, base, n_max, report, out_dir):
    """``--beam-only``: recompute the beam rows and put them into the existing report of the same run settings."""
    path, model = out_dir / "scaling.json", engine.model
    if engine.rm is None:
        raise SystemExit("--beam-only needs a LatentRM (--rm).")
    if not path.is_file():
        raise SystemExit(f"--beam-only updates {path}, which does not exist; run the whole report first.")
    previous = json.loads(path.read_text())
    for key in ("model", "rm", "data", "questions", "seeds", "n"):
        if previous.get(key) != report[key]:
            raise SystemExit(f"--beam-only: {path} was made with {key}={previous.get(key)!r}, this run has "
                             f"{report[key]!r}; pass the same options as that run.")
    for method in args.methods:
        strength = {"dropout": {"dropout_p": args.dropout_p}, "noise": {"noise_std": args.noise_std}}[method]
        config = model.latent_generation_config(base, latent_sampling=method, num_return_sequences=n_max,
                                                **{k: v for k, v in strength.items() if v is not None})
        sampling = {"latent_sampling": method, "dropout_p": config.dropout_p, "noise_std": config.noise_std}
        entry = previous["methods"].get(method)
        unset = {k: v or 0.0 for k, v in sampling.items()}  # "no noise" was recorded as 0.0 or as None
        if entry is None or {k: v or 0.0 for k, v in entry["sampling"].items()} != unset:
            raise SystemExit(f"--beam-only: {path} has no {method} rows with {sampling}; pass the same options.")
        started = time.time()
        correct, compute = {n: [] for n in args.n}, {n: [] for n in args.n}
        for seed in range(args.seeds):
            seeded = model.latent_generation_config(config, seed=seed)
            for n in args.n:
                values, spent = beam_accuracy(engine, questions, seeded, n)
                correct[n].append(values)
                compute[n].append(spent)
            print(f"{method} seed {seed} beam done ({time.time() - started:.0f} s)", flush=True)
        # read again and replace only this method's beam rows: another --beam-only run may have written its own
        current = json.loads(path.read_text())
        entry = current["methods"][method]
        for n in args.n:
            entry["points"][str(n)]["beam"] = point(correct[n])
            entry["beam_compute"][str(n)] = seeds_mean(compute[n])
        entry["beam_seconds"] = time.time() - started
        path.write_text(json.dumps(current, indent=2))
        plot(current, out_dir)
        print_table(method, sampling, {n: entry["points"][str(n)] for n in args.n}, args.n)
        print(f"updated the {method} beam rows of {path} and the plots", flush=True)


def print_table(method, sampling, points, ns):
    print(f"\n{method} {sampling}")
    present = [m for m in METRICS if m in points[ns[0]]]
    print("   N " + " ".join(f"{m:>10}" for m in present) + "  diversity")
    for n in ns:
        div = points[n]["diversity_per_step"]
        print(f"{n:4d} " + " ".join(f"{100 * points[n][m]['mean']:10.1f}" for m in present)
              + f"  {sum(div) / max(len(div), 1):.3f}")


def plot(report, out_dir):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install 'lm-eval-latenttts[plots]'): no PNG written")
        return
    methods = report["methods"]
    fig, axes = plt.subplots(1, len(methods), figsize=(6 * len(methods), 4.5), squeeze=False)
    for ax, (method, data) in zip(axes[0], methods.items()):
        points = {int(n): p for n, p in data["points"].items()}  # int keys, or str ones read back from JSON
        ns = list(points)
        for metric in METRICS:
            if metric not in points[ns[0]]:
                continue
            pts = [points[n][metric] for n in ns]
            mean = [100 * p["mean"] for p in pts]
            lo = [100 * p["ci95"][0] for p in pts]
            hi = [100 * p["ci95"][1] for p in pts]
            ax.plot(ns, mean, marker="o", label=metric)
            ax.fill_between(ns, lo, hi, alpha=0.15)
        ax.axhline(100 * report["greedy_accuracy"], color="gray", linestyle=":", label="greedy")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("N (samples per question)")
        ax.set_ylabel("accuracy (%)")
        ax.set_title(f"{method}: {data['sampling']}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_dir / "scaling.png", dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    for method, data in methods.items():
        points = {int(n): p for n, p in data["points"].items()}
        ns = list(points)
        div = [sum(points[n]["diversity_per_step"]) / max(len(points[n]["diversity_per_step"]), 1) for n in ns]
        cov = [100 * points[n]["coverage"]["mean"] for n in ns]
        ax.plot(div, cov, marker="o", label=method)
        for n, x, y in zip(ns, div, cov):
            ax.annotate(str(n), (x, y), fontsize=7)
    ax.set_xlabel("mean pairwise cosine distance of latents")
    ax.set_ylabel("coverage (%)")
    ax.set_title("latent diversity vs coverage (labels: N)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out_dir / "diversity.png", dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
