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
    args = parser.parse_args(argv)
    args.fn(args)


if __name__ == "__main__":
    main()
