"""Selection that earns its compute (issue 23): rollouts, LatentRM scores, selectors and their tables.

Research code (not shipped in the package).  Subcommands::

    # 1. rollouts of a split (N=64, 3 seeds, the shipped model's dropout p=0.2), greedy, latent-0 read-backs
    python benchmarks/selection.py rollouts --split valid --out runs/sel/valid.pt
    python benchmarks/selection.py rollouts --split test --out runs/sel/test.pt
    # 2. score a split's stored latents with a LatentRM folder (adds its step scores under a name)
    python benchmarks/selection.py score --rollouts runs/sel/valid.pt --rm lm_eval_latenttts/checkpoints/arith-rm --name shipped
    # 3. the per-question arrays (committed) and the tables from them
    python benchmarks/selection.py export --rollouts runs/sel/test.pt --out benchmarks/results/selection_test.npz
    python benchmarks/selection.py tables --data benchmarks/results/selection_test.npz

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
    test_n = test["answers"].shape[-1]
    ns = [n for n in (1, 2, 4, 8, 16, 32, 64) if n <= test_n]
    report["test"]["scaling"] = an.scaling_table(test, ns, args.scaling_rms or [])
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
    for split in ("valid",) if args.valid_only else ("valid", "test"):
        if "rms" in report[split]:
            _print_rm_rows(split, report[split]["rms"], args.n, args.rm_reference)
    if args.scaling_rms and not args.valid_only:
        print("\n### test: best-of-N vs majority\n")
        for n, row in report["test"]["scaling"].items():
            print(f"N={n}: majority {fmt(row['majority'])}, " + ", ".join(
                f"{k} {fmt(v)}" for k, v in row.items() if k.startswith("best-of-N")))
    print(f"\n({time.time() - started:.0f} s)")


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
    p.add_argument("--rm-rows", nargs="*", default=None, help="RMs of the RM table (as the rms subcommand)")
    p.add_argument("--rm-reference", default="shipped", help="the RM the RM table's AUROC is paired with")
    p.add_argument("--out", default=None, help="also write the report as JSON")
    p.add_argument("--valid-only", action="store_true", help="only the valid split (while choosing)")
    p.set_defaults(fn=cmd_tables)
    args = parser.parse_args(argv)
    args.fn(args)


if __name__ == "__main__":
    main()
