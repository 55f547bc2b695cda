"""Command line of lm-eval-latenttts: ``python -m lm_eval_latenttts <subcommand> ...`` / ``latent-tts <subcommand>``.

Subcommands are registered in ``SUBCOMMANDS`` with :func:`register_subcommand`
(name, help, a function adding the options to an ``argparse`` parser, and a
function running the parsed arguments).  Heavy modules (torch, transformers,
datasets) are imported only inside the run functions, so ``--help`` is fast.
To add a subcommand, write its two functions and one ``register_subcommand``
call below.
"""

from __future__ import annotations

import argparse
import json
import sys

from lm_eval_latenttts.keys import GENERATION_KEYS

SUBCOMMANDS = {}


def register_subcommand(name, help, configure, run):
    """Add ``name``: ``configure(parser)`` adds its options, ``run(args)`` executes it (returns an exit code or None)."""
    SUBCOMMANDS[name] = (help, configure, run)


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    pass


# ---------------------------------------------------------------------------------- annotate
def _configure_annotate(p):
    p.add_argument("--model", required=True, help="latent backbone checkpoint (local folder or Hub id)")
    p.add_argument("--data", required=True,
                   help="training questions: JSON list or JSONL of {question, answer[, steps]} (GSM8K layout)")
    p.add_argument("--output-dir", required=True,
                   help="annotation folder (shards + annotation_config.json); rerun the same command to resume")
    p.add_argument("-N", "--num-trajectories", type=int, default=None,
                   help="stochastic trajectories per question (default 8)")
    p.add_argument("-M", "--num-continuations", type=int, default=16,
                   help="Monte Carlo continuations from each latent step's prefix (--labels monte_carlo)")
    p.add_argument("--labels", choices=("monte_carlo", "decoded", "outcome"), default="monte_carlo",
                   help="step labels: Monte Carlo values (M continuations per step), exact labels read back "
                        "from each latent prefix against the rows' gold 'steps', or the outcome (every step labelled "
                        "with the trajectory's final correctness); the last two run no continuations")
    p.add_argument("--latents-per-step", type=int, default=1,
                   help="--labels decoded: latents per gold reasoning step in the backbone's curriculum")
    p.add_argument("--sampling", choices=("dropout", "noise"), default=None,
                   help="source of randomness: Monte Carlo dropout or Gaussian noise on the fed-back latents "
                        "(default: the checkpoint's recommended one, else dropout)")
    p.add_argument("--dropout-p", type=float, default=None,
                   help="dropout probability (default: the checkpoint's, else the backbone's typical value)")
    p.add_argument("--noise-std", type=float, default=None,
                   help="noise sigma (default: the checkpoint's, else the backbone's typical value)")
    p.add_argument("--seed", type=int, default=None,
                   help="base seed (default: the checkpoint's, else 0); question i is seeded from (seed, i)")
    p.add_argument("--max-new-tokens", type=int, default=None,
                   help="answer tokens decoded after the latents (default: the checkpoint's, else 32)")
    p.add_argument("--latent-length", type=int, default=None,
                   help="latent steps (fixed backbones) or the cap (dynamic); default: the model config's")
    p.add_argument("--limit", type=int, default=None, help="annotate only the first LIMIT questions of the file")
    p.add_argument("--keep-all", action="store_true",
                   help="keep questions whose N trajectories are all right or all wrong (dropped by default)")
    p.add_argument("--skip-bad-rows", action="store_true",
                   help="skip (and count in a warning) rows of --data without a question or a numeric gold answer; "
                        "by default such a row is an error")
    p.add_argument("--max-batch-rows", type=int, default=1024, help="continuation rows per forward pass")
    p.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default="float32", help="model dtype")
    p.add_argument("--shard-size", type=int, default=50, help="questions per written shard")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


# annotate option -> LatentGenerationConfig field, through the one table of setting names (keys.KEYS) (only the options
# given override the checkpoint's settings); N is --num-trajectories here
ANNOTATE_GENERATION = {
    "num_trajectories": GENERATION_KEYS["n"],
    **{key: GENERATION_KEYS[key] for key in ("sampling", "dropout_p", "noise_std", "seed", "max_new_tokens",
                                             "latent_length")},
}


def _run_annotate(args):
    from lm_eval_latenttts.training.annotate import AnnotateConfig, annotate

    generation = {field: getattr(args, option) for option, field in ANNOTATE_GENERATION.items()
                  if getattr(args, option) is not None}
    config = AnnotateConfig(
        model=args.model, data=args.data, output_dir=args.output_dir, generation=generation,
        num_continuations=args.num_continuations, labels=args.labels, latents_per_step=args.latents_per_step,
        limit=args.limit, keep_all=args.keep_all,
        skip_bad_rows=args.skip_bad_rows, max_batch_rows=args.max_batch_rows, dtype=args.dtype,
        shard_size=args.shard_size, threads=args.threads, progress=not args.no_progress,
    )
    stats = annotate(config)
    print(json.dumps(stats, indent=2))


# ---------------------------------------------------------------------------------- train-rm
def _configure_train_rm(p):
    p.add_argument("--annotations", required=True, help="annotation folder written by `annotate`")
    p.add_argument("--output-dir", required=True,
                   help="where the trained RM (save_pretrained + README.md model card) and checkpoints go")
    p.add_argument("--init", default=None,
                   help="backbone checkpoint (fresh classifier head) or existing LatentRM; "
                        "default: the backbone recorded in the annotation")
    p.add_argument("--loss", choices=("contrastive", "bce"), default="contrastive",
                   help="step-wise contrastive loss over the N trajectories (SPEC) or BCE on step values")
    p.add_argument("--epochs", type=float, default=3.0, help="passes over the training questions")
    p.add_argument("--max-steps", type=int, default=None, help="optimizer steps, >= 1 (overrides --epochs)")
    p.add_argument("--batch-size", type=int, default=4,
                   help="questions (each with its N trajectories) per process and micro-batch; an optimizer step "
                        "sees processes x batch size x grad accum questions (the global batch)")
    p.add_argument("--grad-accum", type=int, default=1, help="gradient accumulation micro-batches")
    p.add_argument("--lr", type=float, default=1e-4, help="peak learning rate (AdamW, cosine schedule)")
    p.add_argument("--warmup-ratio", type=float, default=0.1, help="fraction of steps of linear warm-up")
    p.add_argument("--weight-decay", type=float, default=0.0, help="AdamW weight decay")
    p.add_argument("--max-grad-norm", type=float, default=1.0, help="gradient clipping norm (0: off)")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32", help="training precision")
    p.add_argument("--rm-input", choices=("latents", "latents+answer"), default="latents",
                   help="what the RM reads after the prompt: the latent steps (SPEC), or also the end marker and "
                        "the decoded answer, scored as one more (outcome) step labelled with final correctness")
    p.add_argument("--rm-layers", type=int, default=None,
                   help="transformer blocks of the RM (default: the init's); fewer keep the init's first blocks, "
                        "more add new, freshly initialised ones (the hidden size stays the latents')")
    p.add_argument("--reinit", action="store_true",
                   help="re-initialise every weight of the RM (the backbone's architecture without its training)")
    p.add_argument("--no-dropout", dest="dropout", action="store_false",
                   help="train without dropout (the reference trainer's disable_dropout); by default the RM's "
                        "dropout sites are active, keyed per question and trajectory")
    p.add_argument("--lora-r", type=int, default=0, help="LoRA rank via peft (0: full fine-tuning); merged on save")
    p.add_argument("--lora-alpha", type=int, default=16, help="LoRA alpha")
    p.add_argument("--lora-dropout", type=float, default=0.05, help="LoRA dropout")
    _configure_train_rm_run(p)


def _configure_train_rm_run(p):
    """train-rm's held-out evaluation, early stopping, checkpoints, publishing and process options."""
    p.add_argument("--eval-fraction", type=float, default=0.1,
                   help="fraction of annotated questions held out for recall@1 evaluation")
    p.add_argument("--eval-annotations", default=None,
                   help="a separate annotation folder for evaluation (then nothing is held out)")
    p.add_argument("--allow-incomplete-annotations", action="store_true",
                   help="train on an annotation run that did not annotate every question of its data file "
                        "(interrupted or still running); refused by default")
    p.add_argument("--eval-every", type=int, default=0, help="evaluate every K optimizer steps (0: each epoch)")
    p.add_argument("--keep-best", action="store_true",
                   help="save the weights of the evaluation (after step 0) with the lowest held-out loss, not the "
                        "last step's (early stopping; the summary's selected_step)")
    p.add_argument("--patience", type=int, default=0,
                   help="end training after this many evaluations in a row without a lower held-out loss (0: never)")
    p.add_argument("--save-every", type=int, default=0, help="checkpoint every K optimizer steps (0: each epoch)")
    p.add_argument("--seed", type=int, default=0, help="seed of the head init, shuffling and the eval split")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in OUTPUT_DIR from its latest checkpoint (needs the same arguments)")
    p.add_argument("--overwrite", action="store_true",
                   help="delete the checkpoints of an earlier run in OUTPUT_DIR and start again")
    p.add_argument("--push-to-hub", metavar="REPO", default=None, help="upload the saved RM folder to this Hub repo")
    p.add_argument("--hub-private", action="store_true", help="create the Hub repo as private")
    p.add_argument("--base-model", default=None,
                   help="model card base_model: Hub id of the checkpoint the RM starts from (default: --init or the "
                        "annotation's backbone when that is a Hub id or a Hub cache folder)")
    p.add_argument("--license", default=None, help="model card license (e.g. mit, apache-2.0)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _run_train_rm(args):
    from dataclasses import fields

    from lm_eval_latenttts.training.rm_training import TrainConfig, train_rm

    # every option named like a TrainConfig field (so a new field needs only its add_argument)
    options = {f.name: getattr(args, f.name) for f in fields(TrainConfig) if hasattr(args, f.name)}
    config = TrainConfig(**options, progress=not args.no_progress)
    summary = train_rm(config)
    from accelerate import PartialState

    if PartialState().is_main_process:  # one report, not one per process
        brief = {k: v for k, v in summary.items() if k not in ("history", "annotation_config", "config")}
        print(json.dumps(brief, indent=2, default=str))


# ------------------------------------------------------------------------------- publishing
def _configure_push(p):
    p.add_argument("folder", help="a saved checkpoint folder (backbone or LatentRM: config.json, weights, README.md)")
    p.add_argument("repo_id", help="Hub repo to create (if needed) and upload to, e.g. you/latent-coconut")
    p.add_argument("--private", action="store_true", help="create the repo as private")


def _run_push(args):
    from lm_eval_latenttts.publishing.hub import push_to_hub

    print(push_to_hub(args.folder, args.repo_id, private=args.private))


def _configure_export(p):
    p.add_argument("results", help="an lm-eval results_*.json, or the --output_path folder of `lm_eval --model "
                                   "latent_tts` (its newest results file for this model)")
    p.add_argument("--model-dir", required=True,
                   help="the evaluated backbone's folder: .eval_results/ and the README.md model-index go here")
    p.add_argument("--benchmark", action="append", default=[], metavar="TASK=DATASET[:TASK_ID]",
                   help="the Hub benchmark dataset (and its eval.yaml task id) a task's scores belong to; needed "
                        "for a task read from a local file or without a known Hub benchmark (repeatable)")
    p.add_argument("--repo-id", default=None,
                   help="the model's Hub repo (card model_name; default source url https://huggingface.co/REPO)")
    p.add_argument("--source-url", default=None, help="where the evaluation logs are (e.g. the details dataset)")
    p.add_argument("--source-name", default=None, help="display name of that source")
    p.add_argument("--allow-failed-documents", action="store_true",
                   help="export tasks with documents that could not run (e.g. too long for the context window; "
                        "scored wrong), the count in the notes; refused by default")


def _run_export(args):
    from lm_eval_latenttts.publishing.eval_results import export_results, parse_benchmarks

    written = export_results(args.results, args.model_dir, benchmarks=parse_benchmarks(args.benchmark),
                             repo_id=args.repo_id, source_url=args.source_url, source_name=args.source_name,
                             allow_failed_documents=args.allow_failed_documents)
    print(json.dumps([str(p) for p in written], indent=2))


register_subcommand("annotate", "step-wise Monte Carlo annotation of latent trajectories (LatentRM labels)",
                    _configure_annotate, _run_annotate)
register_subcommand("train-rm", "train a LatentRM on an annotation folder", _configure_train_rm, _run_train_rm)
register_subcommand("push-to-hub", "upload a saved backbone or LatentRM folder to the Hugging Face Hub",
                    _configure_push, _run_push)
register_subcommand("export-results", "write an lm-eval latent_tts result into a model folder for the Hub "
                    "(.eval_results/*.yaml and the card's model-index)", _configure_export, _run_export)


# ------------------------------------------------------------------------------------ entry
def build_parser(prog="latent-tts"):
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0], formatter_class=_Formatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (help_text, configure, _) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text, formatter_class=_Formatter)
        configure(p)
    return parser


def _execute(run, args):
    try:
        code = run(args)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return int(code or 0)


def main(argv=None, prog="latent-tts"):
    args = build_parser(prog).parse_args(argv)
    return _execute(SUBCOMMANDS[args.command][2], args)


def _single(name):
    def entry(argv=None):
        help_text, configure, run = SUBCOMMANDS[name]
        parser = argparse.ArgumentParser(prog=f"latent-tts-{name}", description=help_text, formatter_class=_Formatter)
        configure(parser)
        return _execute(run, parser.parse_args(argv))

    return entry


annotate_main = _single("annotate")
train_rm_main = _single("train-rm")

if __name__ == "__main__":
    sys.exit(main())
