"""Is our LatentRM trainer faithful?  Train the released reference trainer (ModalityDance/LatentTTS,
``src/train.py``) on *our* annotation folder and compare it with ours (issue 23, item 1).

The reference code runs in a virtualenv of its own and is never copied into this repository::

    # 0. the reference source (a checkout or `git archive` of github.com/ModalityDance/LatentTTS) and its venv
    python -m venv runs/ref-venv && runs/ref-venv/bin/pip install torch==2.13.0 && \\
        runs/ref-venv/bin/pip install transformers==4.52.4 trl==0.19.0 accelerate==1.7.0 datasets safetensors \\
        fire rich numpy peft==0.15.2
    # 1. our annotation folder -> the reference's safetensors layout (train = our trainer's training questions,
    #    heldout = its held-out 10%, the same split as `train-rm --eval-fraction 0.1 --seed 0`)
    python benchmarks/rm_faithfulness.py export --annotations runs/ann/mc_n8_m16_5k --out runs/ref/data
    # 2. run the reference trainer on it (its recipe training_args/train_coconut.yaml, CPU deviations below)
    python benchmarks/rm_faithfulness.py train --reference runs/ref/LatentTTS --python runs/ref-venv/bin/python \\
        --data runs/ref/data --init lm_eval_latenttts/checkpoints/arith-coconut --out runs/ref/rm
    # 3. its best checkpoint loads as our COCONUTGPT2ForTokenClassification (the released RM layout); score it:
    python benchmarks/selection.py score --rollouts runs/sel/valid.pt --rm runs/ref/rm/best --name ref

Reference recipe (``training_args/train_coconut.yaml``) and what differs here: loss "ce" (the step-wise
contrastive loss), lr 1e-4, cosine, warm-up 10%, 30 epochs, 2048 trajectories (256 questions of 8) per
batch, dropout disabled (``disable_dropout``), evaluation of held-out recall@1 and the best checkpoint kept
(early stopping patience 24).  On CPU: ``adamw_torch`` instead of ``paged_adamw_8bit`` (bitsandbytes needs
CUDA), fp32 instead of bf16, one evaluation per epoch instead of four (our data has 6 batches an epoch),
``report_to none`` (no wandb).  One bug fixed in the copy (``fix_reference``): its evaluation collator labels
only the last row of a batch (an ``if`` block outside its loop), which makes the evaluation fail.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def export(annotations, out, eval_fraction=0.1, seed=0):
    """Write ``out/train`` and ``out/heldout``: ``{qid}.input_ids`` (N, L) prompt + latent slots,
    ``{qid}.estimations`` (N, T), ``{qid}.latent_embeds`` (N, T, H), ``{qid}.corrects`` (N,)."""
    from safetensors.torch import save_file

    from hf_modeling.auto import latent_config
    from lm_eval_latenttts.training.annotation_store import load_annotations
    from lm_eval_latenttts.training.rm_checkpoints import annotation_settings
    from lm_eval_latenttts.training.rm_data import split_questions

    ds = load_annotations(annotations)
    model = annotation_settings(annotations)["model"]
    config, _ = latent_config(model)
    latent_id = config.latent_id
    train_ids, held_ids = split_questions(ds["question_id"], eval_fraction, seed)
    parts = {"train": set(train_ids), "heldout": set(held_ids)}
    files = {name: {} for name in parts}
    for row in ds:
        name = "train" if row["question_id"] in parts["train"] else "heldout"
        n = len(row["correct"])
        steps = {len(v) for v in row["step_values"]}
        if len(steps) != 1:
            raise SystemExit("the reference trainer needs every trajectory of a question to have the same number "
                             "of latent steps (a fixed-length backbone)")
        t = steps.pop()
        ids = torch.tensor(row["prompt_ids"] + [latent_id] * t, dtype=torch.long)[None].repeat(n, 1)
        q = str(row["question_id"])
        files[name].update({
            f"{q}.input_ids": ids,
            f"{q}.estimations": torch.tensor(row["step_values"], dtype=torch.float32),
            f"{q}.latent_embeds": torch.tensor(row["latents"], dtype=torch.float32),
            f"{q}.corrects": torch.tensor(row["correct"], dtype=torch.bool),
        })
    for name, tensors in files.items():
        folder = Path(out) / name
        folder.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(folder / "0_on0.safetensors"))
        print(f"{folder}: {len(tensors) // 4} questions")
    (Path(out) / "export.json").write_text(json.dumps({"annotations": str(annotations), "eval_fraction": eval_fraction,
                                                       "seed": seed, "train": len(train_ids),
                                                       "heldout": len(held_ids)}, indent=2))


def reference_init(init, out) -> Path:
    """A copy of the backbone folder that transformers 4.52 reads: its tokenizer_config names the tokenizer
    class transformers 5 writes (``TokenizersBackend``), which 4.52 does not know; 4.52's is
    ``PreTrainedTokenizerFast`` (the same tokenizer.json)."""
    import shutil

    dest = Path(out) / "init"
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy(Path(init) / name, dest / name)
    tok = json.loads((dest / "tokenizer_config.json").read_text())
    tok["tokenizer_class"] = "PreTrainedTokenizerFast"
    (dest / "tokenizer_config.json").write_text(json.dumps(tok, indent=2))
    return dest


BROKEN_EVAL_LABELS = """            num_latent_steps = latent_indices.long().sum()

        if "corrects" in features[i]:
            corrects = features[i]["corrects"]
            # find the largest (last) non -100 index
            last_non_100_idx = (estimations != -100).nonzero()[-1]
            estimations[last_non_100_idx] = corrects.float()

            labels[i, latent_indices] = estimations[:num_latent_steps]
"""


def fix_reference(reference) -> None:
    """The one fix the reference copy gets: in ``DataCollatorForLatentRM.torch_call`` (evaluation batches) the
    ``if "corrects"`` block sits outside the loop over rows, so only the last row of a batch is labelled and
    the evaluation's ``label[label != -100][-1]`` fails on the others; indent it into the loop."""
    path = Path(reference) / "src" / "dataset.py"
    text = path.read_text()
    if BROKEN_EVAL_LABELS in text:
        fixed = BROKEN_EVAL_LABELS.replace("\n        if", "\n            if").replace("\n            ", "\n                ")
        fixed = fixed.replace("\n                num_latent_steps", "\n            num_latent_steps")
        fixed = fixed.replace("\n                if", "\n            if")
        path.write_text(text.replace(BROKEN_EVAL_LABELS, fixed))


def train(reference, python, data, init, out, epochs=30, lr=1e-4, batch_trajectories=2048, eval_frequency=1,
          seed=42, extra=None):
    """Run the reference ``src.train.main`` on the exported data, in its own interpreter."""
    fix_reference(reference)
    init = reference_init(init, out)
    args = {
        "output_dir": str(Path(out).resolve()), "run_name": "faithfulness", "loss_type": "ce",
        "model_id": str(Path(init).resolve()), "generator_model_id": str(Path(init).resolve()),
        "model_type": "coconut", "model_family": "gpt2", "latent_hidden_size": 0,
        "train_dataset": str((Path(data) / "train").resolve()),
        "valid_dataset": {"heldout": str((Path(data) / "heldout").resolve())},
        "metric_for_best_model": "heldout_recall_at_1", "seed": seed,
        "per_device_train_batch_size": batch_trajectories, "per_device_eval_batch_size": batch_trajectories,
        "gradient_accumulation_steps": 1, "optim": "adamw_torch", "lr_scheduler_type": "cosine",
        "warmup_ratio": 0.1, "max_grad_norm": 1.0, "num_train_epochs": epochs, "early_stopping_patience": 24,
        "eval_frequency": eval_frequency, "learning_rate": lr, "bf16": False, "use_cpu": True,
        "save_only_model": True, "save_total_limit": 2, "logging_steps": 5, "report_to": "none",
        "dataloader_num_workers": 0, "dataloader_prefetch_factor": None, "gradient_checkpointing": False,
        **(extra or {}),
    }
    config = Path(out) / "train_args.json"
    config.write_text(json.dumps(args, indent=2))
    code = f"import sys; sys.argv=['train']; from src.train import main; main({str(config.resolve())!r})"
    env = dict(os.environ, WANDB_DISABLED="true", OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    subprocess.run([str(Path(python).absolute()), "-c", code], cwd=reference, env=env, check=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("export")
    p.add_argument("--annotations", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--eval-fraction", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p = sub.add_parser("train")
    p.add_argument("--reference", required=True, help="folder holding the reference's src/")
    p.add_argument("--python", required=True, help="the reference virtualenv's python")
    p.add_argument("--data", required=True)
    p.add_argument("--init", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--epochs", type=float, default=30)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--eval-frequency", type=int, default=1)
    p.add_argument("--batch-trajectories", type=int, default=2048,
                   help="trajectories per batch (the reference recipe's 2048 = 256 questions of 8)")
    args = parser.parse_args(argv)
    if args.cmd == "export":
        export(args.annotations, args.out, args.eval_fraction, args.seed)
    else:
        train(args.reference, args.python, args.data, args.init, args.out, args.epochs, args.lr,
              batch_trajectories=args.batch_trajectories, eval_frequency=args.eval_frequency)


if __name__ == "__main__":
    main()
