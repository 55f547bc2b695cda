"""Selection that earns its compute (issue 23): rollouts, LatentRM scores, selectors and their tables.

Research code (not shipped in the package).  Subcommands::

    # 1. rollouts of a split (N=64, 3 seeds, the shipped model's dropout p=0.2), greedy, latent-0 read-backs
    python benchmarks/selection.py rollouts --split valid --out runs/sel/valid.pt
    python benchmarks/selection.py rollouts --split test --out runs/sel/test.pt
    # 2. score a split's stored latents with a LatentRM folder (adds its step scores under a name)
    python benchmarks/selection.py score --rollouts runs/sel/valid.pt --rm lm_eval_latenttts/checkpoints/arith-rm --name shipped
    # 3. the per-question arrays (committed) and the tables from them
    python benchmarks/selection.py export --rollouts runs/sel/test.pt --out benchmarks/results/selection_test.npz
    python benchmarks/selection.py tables --scaling-rms shipped dec_answer ours_out --out benchmarks/results/selection.json
    # 4. N up to 64 through the engine as lm_eval runs aggregate=consistency (no latents stored), and the per-N
    #    table from it (docs/scaling.md)
    python benchmarks/selection.py engine --n 64 --out benchmarks/results/selection_test64.npz
    python benchmarks/selection.py tables --scaling-data benchmarks/results/selection_test64.npz --out ...

Every selector sees the same rollouts; sample j of a question is keyed by (seed, question, j), so the first n
samples are the N=n samples.  Intervals: the project's bootstrap (``benchmarks/evidence_lib/bootstrap.py``),
paired over questions.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def _threads(args):
    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)


def cmd_rollouts(args):
    from hf_modeling import AutoLatentModel, load_latent_tokenizer
    from lm_eval_latenttts.checkpoints import shipped_model
    from lm_eval_latenttts.data import arith
    from selection_lib.rollouts import draw_split

    _threads(args)
    path = args.model or shipped_model()
    model = AutoLatentModel.from_pretrained(path).eval()
    tok = load_latent_tokenizer(path, model.config)
    examples = arith.load_split(args.split)
    if args.limit:
        examples = examples[: args.limit]
    started = time.time()
    data = draw_split(model, tok, examples, args.n, list(range(args.seeds)), args.batch_questions,
                      readback_n=args.readback_n)
    data.update({"split": args.split, "model": str(path), "scores": {}})
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    torch.save(data, args.out)
    print(f"wrote {args.out} ({time.time() - started:.0f} s)")


def cmd_engine(args):
    """A split drawn through the engine as ``lm_eval`` draws it with ``aggregate=consistency`` (the read-backs are
    the strategy's own work) and the shipped LatentRM's scores, at N up to ``--n``: the per-question arrays of the
    per-N table (``tables --scaling-data``) without storing latents.  Sample j is keyed by (seed, question, j), so
    its first 16 samples and read-backs are those of ``selection_test.npz``."""
    import numpy as np

    from hf_modeling import AutoLatentModel, load_latent_tokenizer
    from lm_eval_latenttts.checkpoints import shipped_model
    from lm_eval_latenttts.data import arith
    from lm_eval_latenttts.scaling.engine import Engine, Job
    from selection_lib.rollouts import answer_code

    _threads(args)
    path = shipped_model()
    model = AutoLatentModel.from_pretrained(path).eval()
    tok = load_latent_tokenizer(path, model.config)
    rm = AutoLatentModel.from_pretrained(Path(path).parent / "arith-rm").eval()
    examples = arith.load_split(args.split)[: args.limit or None]
    engine = Engine(model, tok, rm, batch_size=args.batch_questions)
    arrays = {k: [] for k in ("answers", "correct", "readback_answer", "scores__shipped")}
    for seed in range(args.seeds):
        started = time.time()
        plan = engine.plan(model.latent_generation_config(num_return_sequences=args.n, seed=seed,
                                                          aggregate="consistency", eos_token_id=tok.eos_token_id,
                                                          pad_token_id=tok.pad_token_id))
        drawn = engine.draws([Job(i, model.encode_prompt(tok, e["question"]), plan) for i, e in enumerate(examples)])
        arrays["answers"].append([[answer_code(a) for a in d.draw.answers] for d in drawn])
        arrays["correct"].append([[model.is_correct(t, e["answer"]) for t in d.draw.texts]
                                  for d, e in zip(drawn, examples)])
        arrays["readback_answer"].append([[answer_code(a) for a in d.work.values] for d in drawn])
        arrays["scores__shipped"].append([[[s] for s in d.draw.scores] for d in drawn])
        greedy = [d.greedy for d in drawn]
        print(f"seed {seed}: {len(examples)} questions x {args.n} in {time.time() - started:.0f} s", flush=True)
    out = {"gold": np.asarray([int(e["answer"]) for e in examples], dtype=np.int16),
           "greedy_answer": np.asarray([answer_code(g.answers[0]) for g in greedy], dtype=np.int16),
           "answers": np.asarray(arrays["answers"], dtype=np.int16), "correct": np.asarray(arrays["correct"]),
           "readback_answer": np.asarray(arrays["readback_answer"], dtype=np.int16),
           "scores__shipped": np.asarray(arrays["scores__shipped"], dtype=np.float32)}
    np.savez_compressed(args.out, **out)
    print(f"wrote {args.out} ({os.path.getsize(args.out) / 1e6:.2f} MB)")


def cmd_extend(args):
    from hf_modeling import AutoLatentModel, load_latent_tokenizer
    from selection_lib.rollouts import extend_split

    _threads(args)
    data = torch.load(args.rollouts, weights_only=True)
    model = AutoLatentModel.from_pretrained(data["model"]).eval()
    tok = load_latent_tokenizer(data["model"], model.config)
    data = extend_split(model, tok, data, args.n)
    tmp = args.rollouts + ".tmp"
    torch.save(data, tmp)
    os.replace(tmp, args.rollouts)
    print(f"extended {args.rollouts} to N={args.n} (RM scores dropped: score again)")


def cmd_score(args):
    from selection_lib.scoring import load_rm, score_stored, score_stored_with_answers

    _threads(args)
    data = torch.load(args.rollouts, weights_only=True)
    rm = load_rm(args.rm)
    started = time.time()
    if getattr(rm.config, "rm_input", "latents") == "latents+answer":
        scores = score_stored_with_answers(rm, data["prompts"], data["latents"], data["answer_tokens"])
    else:
        scores = score_stored(rm, data["prompts"], data["latents"])
    data["scores"][args.name] = scores.half()
    data.setdefault("rm_paths", {})[args.name] = str(args.rm)
    tmp = args.rollouts + ".tmp"
    torch.save(data, tmp)
    os.replace(tmp, args.rollouts)
    print(f"scored {args.rollouts} with {args.rm} as {args.name!r} ({time.time() - started:.0f} s)")


EXPORT = ("answers", "correct", "x1_read", "readback_answer")
EXPORT_Q = ("greedy_answer", "greedy_correct", "greedy_x1_read", "greedy_readback_answer", "x1_true")


def cmd_export(args):
    """The committed per-question arrays of a split (small dtypes, compressed)."""
    import numpy as np

    data = torch.load(args.rollouts, weights_only=True)
    out = {"gold": np.asarray(data["gold"], dtype=np.int16)}
    for key in EXPORT:
        out[key] = data[key].numpy().astype(np.bool_ if key == "correct" else np.int16)
    for key in EXPORT_Q:
        out[key] = data[key].numpy().astype(np.bool_ if key == "greedy_correct" else np.int16)
    for name, scores in data["scores"].items():
        if not args.rm or name in args.rm:
            out[f"scores__{name}"] = scores.float().numpy().astype(np.float16)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **out)
    print(f"wrote {args.out} ({os.path.getsize(args.out) / 1e6:.2f} MB): {', '.join(sorted(out))}")


def cmd_tables(args):
    """Every table of the study from the committed arrays: choices on valid, numbers on test (< 1 min)."""
    from selection_lib import analysis as an
    from selection_lib.tables import fmt, load_npz

    started = time.time()
    valid = load_npz(args.valid)
    test = valid if args.valid_only else load_npz(args.test)
    params = an.fit(valid, args.n)
    report = {"params": params, "n": args.n,
              "valid": {"selectors": an.selector_table(valid, args.n, params),
                        "auroc": an.auroc_table(valid, args.n)},
              "test": {"selectors": an.selector_table(test, args.n, params), "auroc": an.auroc_table(test, args.n)}}
    per_n = load_npz(args.scaling_data) if args.scaling_data else test  # e.g. `engine`'s N=64 arrays
    ns = [n for n in (1, 2, 4, 8, 16, 32, 64) if n <= per_n["answers"].shape[-1]]
    rms = [rm for rm in args.scaling_rms or [] if f"scores__{rm}" in per_n]
    report["test"]["scaling"] = an.scaling_table(per_n, ns, rms, params["consistency_epsilon"])
    if args.scaling_data:
        report["test"]["scaling_data"] = str(args.scaling_data)
    if args.rm_rows:  # the RM table (learning curve, levers): AUROC paired with the reference RM, vs majority
        for split, d in (("valid", valid),) + ((("test", test),) if not args.valid_only else ()):
            report[split]["rms"] = an.rm_rows(d, args.n, args.rm_rows, args.rm_reference)
        report["rm_reference"] = args.rm_reference
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1, default=float))
    for split in ("valid",) if args.valid_only else ("valid", "test"):
        print(f"\n### {split}, N={args.n} (parameters chosen on valid)\n")
        print("| selector | accuracy | minus greedy | minus majority | headroom recovered |")
        print("| --- | --- | --- | --- | --- |")
        for name, row in report[split]["selectors"].items():
            cells = [fmt(row["accuracy"])] + [fmt(row[k]) if k in row else "" for k in
                                              ("minus_greedy", "minus_majority")]
            cells.append(fmt(row["headroom_recovered"], 100, 0) + " %" if "headroom_recovered" in row else "")
            print(f"| {name} | " + " | ".join(cells) + " |")
        print(f"\nwithin-question AUROC ({split}, N={args.n}):")
        for name, row in report[split]["auroc"].items():
            print(f"  {name}: {fmt(row, 1, 3)} ({row['questions']} questions)")
    if not args.valid_only:
        print(headroom_markdown(report["test"]["scaling"]))
    for split in ("valid",) if args.valid_only else ("valid", "test"):
        if "rms" in report[split]:
            _print_rm_rows(split, report[split]["rms"], args.n, args.rm_reference)
    if args.scaling_rms and not args.valid_only:
        print("\n### test: best-of-N vs majority\n")
        for n, row in report["test"]["scaling"].items():
            print(f"N={n}: majority {fmt(row['majority'])}, " + ", ".join(
                f"{k} {fmt(v)}" for k, v in row.items() if k.startswith("best-of-N [")))
    print(f"\n({time.time() - started:.0f} s)")


HEADROOM_ROWS = ("majority", "RM-weighted", "best-of-N (RM)", "consistency")


def headroom_markdown(scaling: dict) -> str:
    """The per-N table of ``analysis.scaling_table``: accuracies, and per selector the headroom it recovers."""
    from selection_lib.tables import fmt

    lines = ["\n### test: per N, headroom recovered = (selector - greedy) / (coverage - greedy)\n",
             "| N | greedy | single | coverage | " + " | ".join(HEADROOM_ROWS) + " | "
             + " | ".join(f"headroom: {name}" for name in HEADROOM_ROWS) + " |",
             "| ---: " * (4 + 2 * len(HEADROOM_ROWS)) + "|"]
    for n, row in scaling.items():
        cells = [str(n), fmt(row["greedy"]), fmt(row["single"]), fmt(row["coverage"])]
        cells += [fmt(row[name]) if name in row else "" for name in HEADROOM_ROWS]
        cells += [("–" if row[name]["headroom_recovered"]["mean"] != row[name]["headroom_recovered"]["mean"]
                   else fmt(row[name]["headroom_recovered"], 100, 0) + " %") if name in row else ""
                  for name in HEADROOM_ROWS]  # NaN: coverage is not above greedy
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("\nconsistency - majority and - greedy (paired): " + "; ".join(
        f"N={n} {fmt(row['consistency']['minus_majority'])}, {fmt(row['consistency']['minus_greedy'])}"
        for n, row in scaling.items() if "consistency" in row))
    return "\n".join(lines)


def cmd_rms(args):
    """The RM rows (learning curve, levers): within-question AUROC and its paired difference with ``--reference``,
    best-of-N and RM-weighted minus majority; valid only (choosing), or valid and test (``--test``)."""
    from selection_lib import analysis as an
    from selection_lib.tables import load_npz

    splits = {"valid": load_npz(args.valid), **({"test": load_npz(args.test)} if args.test else {})}
    report = {split: an.rm_rows(d, args.n, args.rms, args.reference) for split, d in splits.items()}
    if args.out:
        Path(args.out).write_text(json.dumps({"n": args.n, "reference": args.reference, **report}, indent=1,
                                             default=float))
    for split, rows in report.items():
        _print_rm_rows(split, rows, args.n, args.reference)


def _print_rm_rows(split, rows, n, reference):
    from selection_lib.tables import fmt

    print(f"\n### {split}, N={n}: RMs (paired differences over questions; reference {reference})\n")
    print("| RM | AUROC | minus reference | best-of-N minus majority | RM-weighted minus majority |")
    print("| --- | --- | --- | --- | --- |")
    for name, row in rows.items():
        ref = fmt(row["auroc_minus_reference"], 1, 3) if "auroc_minus_reference" in row else ""
        print(f"| {name} | {fmt(row['auroc'], 1, 3)} | {ref} | {fmt(row['best_of_n_minus_majority'])} | "
              f"{fmt(row['weighted_minus_majority'])} |")


def cmd_derive(args):
    """A training annotation folder from another: its first questions only (``--questions``: question ids below
    it, i.e. the first K rows of the data file), and optionally outcome labels (every step labelled with the
    trajectory's final correctness).  One saved dataset + ``annotation_config.json`` (what train-rm reads)."""
    from lm_eval_latenttts.training.annotation_store import CONFIG_FILE, features, load_annotations

    ds = load_annotations(args.annotations)
    if args.questions:
        ds = ds.filter(lambda r: r["question_id"] < args.questions)
    if args.labels == "outcome":
        ds = ds.map(lambda r: {"step_values": [[float(c)] * len(v) for c, v in zip(r["correct"], r["step_values"])]},
                    features=features())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ds.save_to_disk(str(out))
    config = json.loads((Path(args.annotations) / CONFIG_FILE).read_text())
    config.update({"derived_from": str(args.annotations), "derived_questions": args.questions,
                   "derived_labels": args.labels})
    (out / CONFIG_FILE).write_text(json.dumps(config, indent=2))
    print(f"wrote {out}: {len(ds)} questions, labels {args.labels}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("rollouts", help="draw and store a split's rollouts")
    p.add_argument("--split", choices=["valid", "test"], required=True)
    p.add_argument("--model", default=None, help="backbone (default: the shipped arith-coconut)")
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--limit", type=int, default=0)
    p.add_argument("--readback-n", type=int, default=16, help="read back latent 0 of the first R samples")
    p.add_argument("--batch-questions", type=int, default=32)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", required=True)
    p.set_defaults(fn=cmd_rollouts)
    p = sub.add_parser("engine", help="draw a split through the engine with aggregate=consistency and the RM")
    p.add_argument("--split", choices=["valid", "test"], default="test")
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--limit", type=int, default=0)
    p.add_argument("--batch-questions", type=int, default=8)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", required=True)
    p.set_defaults(fn=cmd_engine)
    p = sub.add_parser("extend", help="draw more samples per question (same keys: = drawing N from the start)")
    p.add_argument("--rollouts", required=True)
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--threads", type=int, default=None)
    p.set_defaults(fn=cmd_extend)
    p = sub.add_parser("score", help="add a LatentRM's step scores to stored rollouts")
    p.add_argument("--rollouts", required=True)
    p.add_argument("--rm", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--threads", type=int, default=None)
    p.set_defaults(fn=cmd_score)
    p = sub.add_parser("export", help="write the committed per-question arrays (.npz)")
    p.add_argument("--rollouts", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--rm", nargs="*", default=None, help="only these RMs' scores (default: all)")
    p.set_defaults(fn=cmd_export)
    p = sub.add_parser("derive", help="a training annotation folder from another (first questions; outcome labels)")
    p.add_argument("--annotations", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--questions", type=int, default=0, help="keep question ids below this (0: all)")
    p.add_argument("--labels", choices=["same", "outcome"], default="same")
    p.set_defaults(fn=cmd_derive)
    p = sub.add_parser("rms", help="one row per RM: AUROC (paired with a reference RM), best-of-N / weighted vs majority")
    p.add_argument("--valid", default="benchmarks/results/selection_valid.npz")
    p.add_argument("--test", default=None, help="also the test split (once, at the end)")
    p.add_argument("--rms", nargs="+", required=True)
    p.add_argument("--reference", default="shipped")
    p.add_argument("--n", type=int, default=16)
    p.add_argument("--out", default=None, help="also write the rows as JSON")
    p.set_defaults(fn=cmd_rms)
    p = sub.add_parser("tables", help="recompute every table from the committed arrays")
    p.add_argument("--valid", default="benchmarks/results/selection_valid.npz")
    p.add_argument("--test", default="benchmarks/results/selection_test.npz")
    p.add_argument("--n", type=int, default=16)
    p.add_argument("--scaling-rms", nargs="*", default=None, help="RMs of the best-of-N vs majority rows")
    p.add_argument("--scaling-data", default=None, help="the per-N table's arrays (default: --test), e.g. the "
                   "N=64 arrays of `engine`")
    p.add_argument("--rm-rows", nargs="*", default=None, help="RMs of the RM table (as the rms subcommand)")
    p.add_argument("--rm-reference", default="shipped", help="the RM the RM table's AUROC is paired with")
    p.add_argument("--out", default=None, help="also write the report as JSON")
    p.add_argument("--valid-only", action="store_true", help="only the valid split (while choosing)")
    p.set_defaults(fn=cmd_tables)
    args = parser.parse_args(argv)
    args.fn(args)


if __name__ == "__main__":
    main()
