"""Recipe: the shipped LatentRM for the shipped arithmetic model, from scratch, in one command.

    python -m lm_eval_latenttts.training.recipes.train_rm

1. writes ``--train-questions`` questions of the arithmetic task's train split
   (disjoint from the shipped valid/test splits);
2. annotates them with the backbone (step-wise Monte Carlo values: N
   trajectories, M continuations per latent step; ``lm_eval_latenttts.training.annotate``);
3. trains the LatentRM with the step-wise contrastive loss
   (``lm_eval_latenttts.training.rm_training``), initialised from the backbone;
4. installs the final RM (weights, tokenizer, model card) at ``--out``
   (default: the package's ``checkpoints/arith-rm``), replacing the old one
   only once the new one is complete.  The installed RM loads through the
   package's classes, so its modeling code and ``auto_map`` are left out (no
   copy of ``hf_modeling`` to regenerate); the Hub-ready folder that
   ``save_pretrained`` wrote, with them, stays at ``--work-dir``/rm for ``push``.

Every stage resumes: rerun the same command after an interruption.
"""

import argparse
import json
import os
import shutil
import time
from pathlib import Path

from lm_eval_latenttts.checkpoints import DEFAULT_MODEL_DIR, DEFAULT_RM_DIR
from lm_eval_latenttts.training.run_record import LOCK_FILE

# the aggregation recommended with the installed RM (its generation_config.json): the RM-weighted vote, which the
# scaling report measured at or above majority vote at every N (best-of-N was below it)
RECOMMENDED_AGGREGATE = "weighted"


def build_parser():
    p = argparse.ArgumentParser(
        prog="python -m lm_eval_latenttts.training.recipes.train_rm", description=__doc__,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--backbone", default=str(DEFAULT_MODEL_DIR), help="latent backbone to annotate with")
    p.add_argument("--out", default=str(DEFAULT_RM_DIR), help="where the final RM is installed")
    p.add_argument("--work-dir", default="runs/arith-rm", help="annotation shards, training checkpoints, logs")
    p.add_argument("--train-questions", type=int, default=5000, help="training questions to annotate")
    p.add_argument("--num-trajectories", "-N", type=int, default=8, help="trajectories per question")
    p.add_argument("--num-continuations", "-M", type=int, default=16, help="continuations per latent step")
    p.add_argument("--labels", choices=["monte_carlo", "decoded"], default="monte_carlo",
                   help="step labels: Monte Carlo values, or exact labels read back from each latent prefix")
    p.add_argument("--sampling", choices=["dropout", "noise"], default=None,
                   help="how trajectories and continuations are sampled (default: the backbone's recommended)")
    p.add_argument("--dropout-p", type=float, default=None, help="default: the backbone's recommended")
    p.add_argument("--noise-std", type=float, default=None, help="default: the backbone's recommended")
    p.add_argument("--keep-all", action="store_true",
                   help="keep questions whose N trajectories are all right or all wrong (dropped by default)")
    p.add_argument("--loss", choices=["contrastive", "bce"], default="contrastive", help="RM objective")
    p.add_argument("--rm-input", choices=["latents", "latents+answer"], default="latents",
                   help="what the RM reads after the prompt (latents+answer: also the decoded answer)")
    p.add_argument("--no-dropout", dest="dropout", action="store_false", help="train the RM without dropout")
    p.add_argument("--epochs", type=float, default=6.0, help="RM training epochs")
    p.add_argument("--max-steps", type=int, default=None, help="cap on RM optimizer steps (tests use a few)")
    p.add_argument("--batch-size", type=int, default=16, help="questions (each with its N trajectories) per process and micro-batch")
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (cosine, 10%% warm-up)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def install(src, dest):
    """Copy the final RM to ``dest`` atomically, with its recommended aggregation.

    Neither the training checkpoints nor the remote code (``*.py``, ``auto_map``) are copied: see step 4.
    """
    from hf_modeling import LatentGenerationConfig

    dest = Path(dest)
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp, ignore=shutil.ignore_patterns("checkpoints", "*.tmp", LOCK_FILE, "*.py", "__pycache__"))
    config = json.loads((tmp / "config.json").read_text(encoding="utf-8"))
    config.pop("auto_map", None)
    (tmp / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    LatentGenerationConfig(aggregate=RECOMMENDED_AGGREGATE).save_pretrained(str(tmp))
    old = dest.with_name(dest.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if dest.exists():
        os.replace(dest, old)
    os.replace(tmp, dest)
    shutil.rmtree(old, ignore_errors=True)


def check_destinations(args) -> None:
    """Refuse, before any work, a --work-dir or --out that is a file, and an --out holding another model (the
    install would replace it)."""
    from lm_eval_latenttts.training.rm_checkpoints import SUMMARY_FILE
    from lm_eval_latenttts.training.run_record import require_folder, require_output_folder

    try:
        require_folder(args.work_dir, "--work-dir")
        require_output_folder(args.out, "--out", SUMMARY_FILE, "train-rm")
    except ValueError as err:
        raise SystemExit(f"error: {err}") from None


def main(argv=None):
    args = build_parser().parse_args(argv)
    from lm_eval_latenttts.data import arith
    from lm_eval_latenttts.training.annotate import AnnotateConfig, annotate
    from lm_eval_latenttts.training.rm_training import TrainConfig, train_rm

    check_destinations(args)
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    started = time.time()
    train_file = arith.write_splits(str(work), seed=0, n_train=args.train_questions, splits=("train",))["train"]

    ann_dir = work / "annotations"
    given = {"latent_sampling": args.sampling, "dropout_p": args.dropout_p, "noise_std": args.noise_std}
    generation = {"num_return_sequences": args.num_trajectories, "seed": args.seed,
                  **{k: v for k, v in given.items() if v is not None}}
    try:  # their refusals (another run's settings in the work folder, ...) name the CLI's flags: say the recipe's
        ann = annotate(AnnotateConfig(
            model=args.backbone, data=train_file, output_dir=str(ann_dir), generation=generation,
            num_continuations=args.num_continuations, labels=args.labels, keep_all=args.keep_all,
            threads=args.threads,
            progress=not args.no_progress,
        ))
        annotated = time.time()
        summary = train_rm(TrainConfig(
            annotations=str(ann_dir), output_dir=str(work / "rm"), init=args.backbone, epochs=args.epochs,
            loss=args.loss, rm_input=args.rm_input, dropout=args.dropout,
            max_steps=args.max_steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed, resume=True,
            threads=args.threads, progress=not args.no_progress,
            extra={"recipe": "python -m lm_eval_latenttts.training.recipes.train_rm",
                   "train_questions": args.train_questions},
        ))
    except ValueError as err:
        raise SystemExit(f"error: {err}\n(recipe: the folders above are in --work-dir {work}; rerun with its "
                         "earlier arguments to resume, or choose another --work-dir.)") from None
    install(work / "rm", args.out)
    report = {
        "annotation": ann, "annotation_seconds": annotated - started, "training_seconds": time.time() - annotated,
        "eval_before": summary.get("eval_before"), "eval_after": summary.get("eval_after"), "out": str(args.out),
    }
    print(json.dumps(report, indent=2, default=str))
    return report


if __name__ == "__main__":
    main()
