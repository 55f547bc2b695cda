"""Held-out step facts: both models retrained without the questions that use 104 held-out step facts.

The split is :func:`evidence_lib.heldout.heldout_split` (4% of the 2,600 facts ``x op c``; every training
question that uses one at either step is dropped: 55,097 of 59,840 remain).  Both models are trained by the
backbone recipe with its own settings on that training set only:

    python benchmarks/evidence_heldout.py train --kind latent --out runs/heldout-latent   # the shipped recipe
    python benchmarks/evidence_heldout.py train --kind cot --out runs/heldout-cot         # --stage-steps 3600,0,0
    python benchmarks/evidence_heldout.py evaluate                                        # -> benchmarks/results/evidence_heldout.npz

``evaluate`` reads both folders and writes, per test set (``seen``, ``unseen_step1``, ``unseen_step2``) and
question, each model's greedy answer and its majority@16 answers (latent: MC dropout p=0.2; CoT: temperature
0.4, the report's) for 3 seeds; ``benchmarks/evidence_recompute.py`` turns them into the report's table.
Training resumes (``--resume``) when interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

import evidence_lib as ev  # noqa: E402
from evidence_lib import heldout  # noqa: E402
from evidence_lib.store import answer_codes  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
STAGES = {"latent": "800,600,2200", "cot": "3600,0,0"}
SETS = ("seen", "unseen_step1", "unseen_step2")
OUT = REPO / "benchmarks" / "results" / "evidence_heldout.npz"
COT_TEMPERATURE = 0.4  # the report's: evidence_recompute.choose_temperature picks it on the valid split for runs/arith-cot
N, SEEDS = 16, 3


def train(kind: str, out: str, threads: int, max_steps: int | None = None) -> None:
    """The backbone recipe on the held-out training set (its run record names the held-out facts)."""
    from lm_eval_latenttts.training.recipes import train_backbone as recipe

    argv = ["--out", out, "--stage-steps", STAGES[kind], "--no-progress", "--resume", "--threads", str(threads)]
    if max_steps:
        argv += ["--max-steps", str(max_steps)]
    args = recipe.parse_args(argv)
    # recorded with the run's settings: a resume of another split is refused by the recipe
    args.heldout_facts = f"fraction={heldout.FRACTION},seed={heldout.SEED}"
    torch.set_num_threads(threads)
    stage_steps = recipe.curriculum(args)
    recipe.require_output_folder(out, "--out", recipe.INFO_FILE, "this recipe")
    facts = heldout.heldout_facts()
    split = heldout.heldout_split(facts)
    heldout.check_split(split, facts)
    run = recipe.Run(args, stage_steps)
    run.train_set = split["train"]
    run.info["heldout"] = {"facts": sorted([list(f) for f in facts]), "train_questions": len(split["train"])}
    os.makedirs(out, exist_ok=True)
    run.start()
    t0 = time.time()
    if not run.train():
        print(f"stopped at step {run.step}; rerun to resume", file=sys.stderr)
        return
    print(json.dumps({"done": run.step, "train_seconds": run.info["train_seconds"], "wall": time.time() - t0,
                      "last": run.history[-1] if run.history else None}))


def evaluate(latent_dir: str, cot_dir: str, out: Path, threads: int, limit: int = 0) -> None:
    """Greedy and majority@16 answers of both held-out models on the three test sets -> ``out`` (.npz)."""
    from transformers import AutoTokenizer, GPT2LMHeadModel

    from hf_modeling import AutoLatentModel, load_latent_tokenizer
    from evidence_cot import file_sha256

    torch.set_num_threads(threads)
    facts = heldout.heldout_facts()
    split = heldout.heldout_split(facts)
    heldout.check_split(split, facts)
    lat = AutoLatentModel.from_pretrained(latent_dir).eval()
    lat_tok = load_latent_tokenizer(latent_dir, lat.config)
    cot = GPT2LMHeadModel.from_pretrained(cot_dir).eval()
    cot_tok = AutoTokenizer.from_pretrained(cot_dir)
    index = {ex["question"]: i for i, ex in enumerate(__import__("lm_eval_latenttts.data.arith", fromlist=["x"]).all_examples())}
    arrays, table = {}, {}
    for name in SETS:
        exs = split[name][:limit] if limit else split[name]
        t0 = time.time()
        arrays[f"{name}/question_index"] = np.array([index[e["question"]] for e in exs], dtype=np.int32)
        gold = [e["answer"] for e in exs]
        lat_g = ev.latent_rollouts(lat, lat_tok, None, exs, 1, ev.sampling_kwargs(None), 0)
        cot_g = ev.cot_sample(cot, cot_tok, exs, 1, 0.0, 0)
        arrays[f"{name}/latent_greedy"] = answer_codes(lat_g["answers"])[:, 0]
        arrays[f"{name}/cot_greedy"] = answer_codes(cot_g["answers"])[:, 0]
        lat_s = [ev.latent_rollouts(lat, lat_tok, None, exs, N, ev.sampling_kwargs("dropout", 0.2), s)
                 for s in range(SEEDS)]
        cot_s = [ev.cot_sample(cot, cot_tok, exs, N, COT_TEMPERATURE, s) for s in range(SEEDS)]
        arrays[f"{name}/latent_samples"] = np.stack([answer_codes(r["answers"]) for r in lat_s])
        arrays[f"{name}/cot_samples"] = np.stack([answer_codes(r["answers"]) for r in cot_s])
        arrays[f"{name}/gold"] = np.array([int(g) for g in gold], dtype=np.int16)
        table[name] = {"latent_greedy": float(lat_g["correct"].float().mean()),
                       "cot_greedy": float(cot_g["correct"].float().mean()), "seconds": round(time.time() - t0)}
        print(name, table[name], flush=True)
    meta = {"latent_model": Path(latent_dir).name, "cot_model": Path(cot_dir).name,
            "latent_sha256": file_sha256(Path(latent_dir) / "model.safetensors"),
            "cot_sha256": file_sha256(Path(cot_dir) / "model.safetensors"),
            "latent_training": _training(latent_dir), "cot_training": _training(cot_dir),
            "heldout_facts": sorted([list(f) for f in facts]), "fraction": heldout.FRACTION, "seed": heldout.SEED,
            "train_questions": len(split["train"]), "n": N, "seeds": SEEDS, "cot_temperature": COT_TEMPERATURE,
            "latent_sampling": "dropout p=0.2 (prompt and latents)", "limit": limit}
    arrays["meta_json"] = np.array(json.dumps(meta))
    np.savez_compressed(out, **arrays)
    print(f"wrote {out}")


def _training(folder: str) -> dict:
    info = json.loads((Path(folder) / "training_info.json").read_text())
    return {"stage_steps": info.get("stage_steps"), "train_seconds": info.get("train_seconds"),
            "complete": info.get("complete"), "last": (info.get("history") or [None])[-1]}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train one model on the held-out training set")
    t.add_argument("--kind", choices=sorted(STAGES), required=True)
    t.add_argument("--out", required=True)
    t.add_argument("--threads", type=int, default=1)
    t.add_argument("--max-steps", type=int, default=None, help="(smoke runs) cap the training steps")
    e = sub.add_parser("evaluate", help="answers of both trained models on the three test sets")
    e.add_argument("--latent", default=str(REPO / "runs" / "heldout-latent"))
    e.add_argument("--cot", default=str(REPO / "runs" / "heldout-cot"))
    e.add_argument("--out", default=str(OUT))
    e.add_argument("--threads", type=int, default=1)
    e.add_argument("--limit", type=int, default=0, help="(smoke runs) questions per test set")
    a = p.parse_args(argv)
    if a.cmd == "train":
        train(a.kind, a.out, a.threads, a.max_steps)
    else:
        evaluate(a.latent, a.cot, Path(a.out), a.threads, a.limit)


if __name__ == "__main__":
    main()
