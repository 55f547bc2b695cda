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
import math
import time
from pathlib import Path

import torch

from hf_modeling import AutoLatentModel, load_latent_tokenizer
from lm_eval_latenttts.aggregation import answers_equal, best_of_n, extract_answer, majority_vote, weighted_vote
from lm_eval_latenttts.questions import read_questions
from lm_eval_latenttts.search import rm_beam_search

METRICS = ("coverage", "single", "majority", "best_of_n", "weighted", "beam")


def load_questions(path, limit):
    """The first ``limit`` (0: all) ``{question, answer}`` docs; bad rows stop the report instead of scoring zero."""
    rows = [q.as_doc() for q in read_questions(path)]
    return rows[:limit] if limit else rows


def prompt_for(question, backbone_kind):
    return question + ("\n<|start-latent|>" if backbone_kind == "coconut" else "<|start-latent|>")


def bootstrap_ci(values, resamples=1000, seed=0):
    """95% percentile interval of the mean of per-question values."""
    t = torch.tensor(values, dtype=torch.float64)
    if len(t) == 0:
        return [float("nan"), float("nan")]
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, len(t), (resamples, len(t)), generator=g)
    means = t[idx].mean(-1).sort().values
    return [float(means[int(0.025 * resamples)]), float(means[int(0.975 * resamples) - 1])]


def pairwise_cosine_distance(latents):
    """latents (N, steps, hidden) -> (steps,) mean cosine distance over the N*(N-1)/2 pairs."""
    n = latents.shape[0]
    if n < 2:
        return torch.zeros(latents.shape[1])
    z = torch.nn.functional.normalize(latents.float(), dim=-1).transpose(0, 1)  # steps, N, hidden
    sim = z @ z.transpose(1, 2)
    off = ~torch.eye(n, dtype=torch.bool)
    return (1 - sim[:, off]).mean(-1)


@torch.no_grad()
def rollouts(model, rm, tok, questions, kind, n_max, sampling, seed, batch_questions, max_new_tokens):
    """Per question: answers (n_max), correctness, RM trajectory scores, diversity per step for each N."""
    per_question = []
    for start in range(0, len(questions), batch_questions):
        chunk = questions[start : start + batch_questions]
        enc = tok([prompt_for(q["question"], kind) for q in chunk], return_tensors="pt", padding=True)
        out = model.generate(
            **enc, num_return_sequences=n_max, seed=seed * 100003 + start, max_new_tokens=max_new_tokens,
            return_dict_in_generate=True, **sampling,
        )
        scores = rm.score_rollouts(out).trajectory_scores.view(len(chunk), n_max) if rm is not None else None
        texts = tok.batch_decode(out.answer_ids, skip_special_tokens=True)
        for i, q in enumerate(chunk):
            answers = [extract_answer(t, kind) for t in texts[i * n_max : (i + 1) * n_max]]
            per_question.append({
                "answers": answers,
                "correct": [answers_equal(a, q["answer"]) for a in answers],
                "scores": scores[i].tolist() if scores is not None else None,
                "latents": out.latents[i * n_max : (i + 1) * n_max].float(),
                "gold": q["answer"],
            })
    return per_question


@torch.no_grad()
def beam_accuracy(model, rm, tok, questions, kind, n, sampling, seed, batch_questions, max_new_tokens):
    c = min(4, n)
    b = n // c
    correct, passes = [], 0
    for start in range(0, len(questions), batch_questions):
        chunk = questions[start : start + batch_questions]
        enc = tok([prompt_for(q["question"], kind) for q in chunk], return_tensors="pt", padding=True)
        res = rm_beam_search(
            model, rm, enc.input_ids, enc.attention_mask, num_beams=b, num_candidates=c,
            seed=seed * 100003 + start, max_new_tokens=max_new_tokens, **sampling,
        )
        passes += res.latent_forward_passes
        for i, text in enumerate(tok.batch_decode(res.answer_ids, skip_special_tokens=True)):
            correct.append(float(answers_equal(extract_answer(text, kind), chunk[i]["answer"])))
    return correct, passes, b, c


def metrics_at(per_question, n):
    rows = {m: [] for m in METRICS if m != "beam"}
    for q in per_question:
        answers, correct, gold = q["answers"][:n], q["correct"][:n], q["gold"]
        rows["coverage"].append(float(any(correct)))
        rows["single"].append(sum(correct) / n)
        rows["majority"].append(float(answers_equal(majority_vote(answers), gold)))
        if q["scores"] is not None:
            scores = q["scores"][:n]
            rows["best_of_n"].append(float(answers_equal(best_of_n(answers, scores), gold)))
            rows["weighted"].append(float(answers_equal(weighted_vote(answers, scores), gold)))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="backbone folder or Hub id (default: the shipped model)")
    parser.add_argument("--rm", default=None, help="LatentRM folder or Hub id (default: the shipped RM)")
    parser.add_argument("--data", default=None, help="test questions, JSON/JSONL (default: shipped latent_arith test split)")
    parser.add_argument("--limit", type=int, default=300, help="number of test questions (0 = all)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per point (at least 3 for the report)")
    parser.add_argument("--n", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32, 64], help="values of N")
    parser.add_argument("--dropout-p", type=float, default=None, help="dropout p (default: model card value)")
    parser.add_argument("--noise-std", type=float, default=None, help="noise sigma (default: model card value)")
    parser.add_argument("--methods", nargs="+", default=["dropout", "noise"], choices=["dropout", "noise"])
    parser.add_argument("--no-beam", action="store_true", help="skip RM-guided beam search")
    parser.add_argument("--batch-questions", type=int, default=8, help="questions per generate call")
    parser.add_argument("--max-new-tokens", type=int, default=8, help="answer tokens")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--out", default="benchmarks/results", help="output folder for scaling.json and plots")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from lm_eval_latenttts import defaults

    model_path = args.model or defaults.default_model_path()
    rm_path = args.rm or defaults.default_rm_path()
    data_path = args.data or defaults.default_arith_test_path()
    sampling_defaults = defaults.default_sampling(model_path)
    dropout_p = args.dropout_p if args.dropout_p is not None else sampling_defaults["dropout_p"]
    noise_std = args.noise_std if args.noise_std is not None else sampling_defaults["noise_std"]

    model = AutoLatentModel.from_pretrained(model_path).eval()
    tok = load_latent_tokenizer(model_path, model.config)
    rm = AutoLatentModel.from_pretrained(rm_path).eval() if rm_path else None
    kind = "codi" if type(model).__name__ == "CODIGPT2" else "coconut"
    questions = load_questions(data_path, args.limit)
    n_max = max(args.n)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)

    report = {"model": str(model_path), "rm": str(rm_path), "data": str(data_path), "questions": len(questions),
              "seeds": args.seeds, "n": args.n, "methods": {}}
    greedy = rollouts(model, None, tok, questions, kind, 1, {}, 0, args.batch_questions, args.max_new_tokens)
    report["greedy_accuracy"] = sum(q["correct"][0] for q in greedy) / len(greedy)
    print(f"greedy accuracy {report['greedy_accuracy']:.3f} on {len(questions)} questions", flush=True)

    for method in args.methods:
        sampling = ({"latent_sampling": "dropout", "dropout_p": dropout_p} if method == "dropout"
                    else {"latent_sampling": "noise", "noise_std": noise_std})
        per_seed_metrics = []  # seed -> n -> metric -> per-question list
        diversity = []  # seed -> (steps,) at n_max
        beam_passes = {}
        started = time.time()
        for seed in range(args.seeds):
            pq = rollouts(model, rm, tok, questions, kind, n_max, sampling, seed, args.batch_questions, args.max_new_tokens)
            by_n = {n: metrics_at(pq, n) for n in args.n}
            if rm is not None and not args.no_beam:
                for n in args.n:
                    correct, passes, b, c = beam_accuracy(model, rm, tok, questions, kind, n, sampling, seed,
                                                          args.batch_questions, args.max_new_tokens)
                    by_n[n]["beam"] = correct
                    beam_passes[n] = {"beams": b, "candidates": c, "latent_forward_passes": passes,
                                      "best_of_n_latent_forward_passes": n * len(questions) * model.config.latent_length}
            per_seed_metrics.append(by_n)
            diversity.append({n: torch.stack([pairwise_cosine_distance(q["latents"][:n]) for q in pq]).mean(0).tolist()
                              for n in args.n})
            print(f"{method} seed {seed} done ({time.time() - started:.0f} s)", flush=True)

        points = {}
        for n in args.n:
            points[n] = {}
            for metric in METRICS:
                if metric not in per_seed_metrics[0][n] or not per_seed_metrics[0][n][metric]:
                    continue
                # per-question value averaged over seeds, then the interval over questions
                per_q = [sum(s[n][metric][i] for s in per_seed_metrics) / args.seeds
                         for i in range(len(per_seed_metrics[0][n][metric]))]
                seed_means = [sum(s[n][metric]) / len(s[n][metric]) for s in per_seed_metrics]
                points[n][metric] = {"mean": sum(per_q) / len(per_q), "ci95": bootstrap_ci(per_q),
                                     "seed_means": seed_means}
            points[n]["diversity_per_step"] = [sum(d[n][s] for d in diversity) / args.seeds
                                               for s in range(len(diversity[0][n]))]
        report["methods"][method] = {"sampling": sampling, "points": points, "beam_compute": beam_passes,
                                     "seconds": time.time() - started}
        print_table(method, sampling, points, args.n)

    (out_dir / "scaling.json").write_text(json.dumps(report, indent=2))
    plot(report, out_dir)
    print(f"wrote {out_dir / 'scaling.json'} and plots")


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
        ns = [int(n) for n in data["points"]]
        for metric in METRICS:
            if metric not in data["points"][ns[0]] and metric not in data["points"].get(str(ns[0]), {}):
                continue
            pts = [data["points"][n][metric] for n in ns]
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
        ns = list(data["points"])
        div = [sum(data["points"][n]["diversity_per_step"]) / max(len(data["points"][n]["diversity_per_step"]), 1) for n in ns]
        cov = [100 * data["points"][n]["coverage"]["mean"] for n in ns]
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
