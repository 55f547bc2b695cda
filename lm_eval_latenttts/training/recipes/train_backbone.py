"""Train the tiny COCONUT-layout latent backbone on the synthetic arithmetic task.

Regenerate the shipped checkpoint (defaults = the shipped recipe)::

    python -m lm_eval_latenttts.training.recipes.train_backbone \
        --out lm_eval_latenttts/checkpoints/arith-coconut

Method (COCONUT curriculum, trained from scratch on CPU):

* a small GPT-2 (``GPT2LMHeadModel``, tied head) and a small local word/char
  tokenizer with the added tokens ``<|start-latent|>``, ``<|latent|>``,
  ``<|end-latent|>`` and ``<|endoftext|>`` (eos = bos = pad);
* stage ``s`` (0..n_steps) replaces the first ``s`` reasoning steps with
  ``s * latents_per_step`` latent slots::

      question "\\n" <|start-latent|> [latent]*k <|end-latent|> step_{s+1} "\\n" ... "### " answer <eos>

  a latent slot's input embedding is the last layer's hidden state (after
  ``ln_f``) at the previous position, computed sequentially with the KV cache
  and back-propagated through (as in COCONUT); the loss is the LM loss on
  everything after ``<|end-latent|>``;
* with probability ``--mix-prob`` a batch of a later stage is drawn from an
  earlier stage instead (keeps the chain-of-thought skills alive);
* residual dropout ``--resid-pdrop`` during training (the same dropout sites
  are used for Monte Carlo dropout at test time) and optional Gaussian noise
  ``--latent-noise`` on every fed-back latent vector.

Checkpoints: every ``--ckpt-every`` steps the full training state is written to
``OUT/train_state.pt`` (temp file + ``os.replace``) and the model is exported in
the released COCONUT layout into ``OUT`` (config.json with
``architectures=["COCONUTGPT2"]`` and the latent fields, model.safetensors,
tokenizer files). ``--resume`` continues from ``OUT/train_state.pt`` (tensors and
plain data, read with ``weights_only=True``) with the settings recorded there (a
changed setting is refused, naming it); the run is deterministic in ``--seed``
(the batch of step ``t`` depends only on seed and t).
``train_state.pt`` is deleted when training completes unless ``--keep-state``.

Shipped run (defaults: 4 layers, width 128, 3600 steps = 800 CoT + 600 one-latent
+ 2200 two-latent, batch 128, 1 thread): 42.6 min on a shared 2-core CPU,
3.2 MB checkpoint; greedy latent accuracy on the 500-question test split 74.0%;
N=16 MC dropout p=0.2: single 69.7%, majority 73.6%, coverage 86.2%
(measure with ``python benchmarks/scaling.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from typing import Dict, List, Optional

import torch

from lm_eval_latenttts.data import arith
from lm_eval_latenttts.training.recipes.backbone_curriculum import (  # noqa: F401  (the recipe's parts, one import)
    encode_batch,
    evaluate,
    evaluate_stage,
    lr_at,
    stage_at,
    stage_bounds,
    train_loss,
)
from lm_eval_latenttts.training.recipes.backbone_model import (  # noqa: F401
    END_LATENT,
    EOS,
    LATENT,
    RECOMMENDED_GENERATION,
    START_LATENT,
    build_model,
    build_tokenizer,
    export,
    latent_ids,
)
from lm_eval_latenttts.training.run_record import (
    changed_settings,
    load_resume_state,
    read_json_record,
    restore_state,
    require_output_folder,
)

INFO_FILE = "training_info.json"  # in --out: the recipe's record of its run (marks a folder it wrote)
STATE_FILE = "train_state.pt"  # in --out while training: tensors and plain data only (read with weights_only=True)


# --------------------------------------------------------------------------- main
def build_parser():
    p = argparse.ArgumentParser(
        prog="python -m lm_eval_latenttts.training.recipes.train_backbone",
        description="Train the tiny COCONUT-layout latent backbone on the synthetic mod-100 "
                    "arithmetic task (defaults = the shipped recipe).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", required=True, help="output folder (released COCONUT layout; also holds "
                   "train_state.pt while training)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/train_state.pt if present")
    p.add_argument("--keep-state", action="store_true", help="keep OUT/train_state.pt after the last step")
    p.add_argument("--seed", type=int, default=0, help="seed of init, batches and dropout")
    p.add_argument("--data-seed", type=int, default=0, help="seed of the train/valid/test split")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (the shipped run used 1)")
    p.add_argument("--n-layer", type=int, default=4, help="transformer layers")
    p.add_argument("--n-embd", type=int, default=128, help="hidden width")
    p.add_argument("--n-head", type=int, default=4, help="attention heads")
    p.add_argument("--resid-pdrop", type=float, default=0.1, help="residual dropout during training")
    p.add_argument("--latent-noise", type=float, default=0.0,
                   help="std of Gaussian noise added to each fed-back latent vector during training")
    p.add_argument("--latents-per-step", type=int, default=1,
                   help="latent slots replacing one reasoning step (latent_length = 2 * this)")
    p.add_argument("--stage-steps", default="800,600,2200",
                   help="optimizer steps of curriculum stages 0 (full CoT), 1, 2 (all latent); "
                        "3600,0,0 trains a token chain-of-thought model only (the equal-step baseline)")
    p.add_argument("--mix-prob", type=float, default=0.3,
                   help="probability that a batch of stage s>0 uses a random earlier stage")
    p.add_argument("--batch-size", type=int, default=128, help="examples per optimizer step")
    p.add_argument("--lr", type=float, default=1e-3, help="peak AdamW learning rate")
    p.add_argument("--warmup", type=int, default=200, help="linear warm-up steps (then cosine to 10%%)")
    p.add_argument("--weight-decay", type=float, default=0.01, help="AdamW weight decay")
    p.add_argument("--grad-clip", type=float, default=1.0, help="gradient norm clip")
    p.add_argument("--max-steps", type=int, default=None,
                   help="stop after this many steps in total (for quick tests; the schedule is "
                        "scaled to it)")
    p.add_argument("--max-minutes", type=float, default=None,
                   help="stop (with a resumable checkpoint) after this many minutes of this run")
    p.add_argument("--ckpt-every", type=int, default=250, help="steps between checkpoints/exports")
    p.add_argument("--eval-every", type=int, default=500, help="steps between valid evaluations")
    p.add_argument("--n-eval", type=int, default=200, help="valid questions per evaluation")
    p.add_argument("--n-train", type=int, default=None, help="limit the train split (default: all)")
    p.add_argument("--small", action="store_true",
                   help="tiny config for tests (2 layers, width 32, batch 8, 6 steps)")
    p.add_argument("--no-progress", action="store_true", help="disable the tqdm progress bar")
    return p


# settings that change neither the weights nor the history: free to differ on --resume
UNRECORDED = ("out", "resume", "keep_state", "threads", "max_minutes", "no_progress", "ckpt_every")


def parse_args(argv=None) -> argparse.Namespace:
    """The command line, with ``--small``'s sizes filled in."""
    args = build_parser().parse_args(argv)
    if args.small:
        args.n_layer, args.n_embd, args.n_head, args.batch_size = 2, 32, 2, 8
        if args.max_steps is None:
            args.max_steps = 6
        args.n_eval = min(args.n_eval, 16)
        args.warmup = min(args.warmup, 2)
    return args


def curriculum(args) -> List[int]:
    """Optimizer steps of each curriculum stage, checked, and scaled to ``--max-steps``."""
    stage_steps = [int(x) for x in args.stage_steps.split(",")]
    if len(stage_steps) != 3:
        raise SystemExit("--stage-steps needs 3 entries (the task has 2 reasoning steps)")
    if any(s < 0 for s in stage_steps) or stage_steps[0] <= 0:
        raise SystemExit("--stage-steps: stage 0 needs > 0 steps and no stage may be negative")
    total = sum(stage_steps)
    if args.max_steps is not None and args.max_steps < total:
        scale = args.max_steps / total
        # a stage of 0 steps (e.g. 3600,0,0: chain-of-thought only) stays skipped
        stage_steps = [max(1, int(round(s * scale))) if s else 0 for s in stage_steps]
        last = max(i for i, s in enumerate(stage_steps) if s)
        stage_steps[last] = max(1, args.max_steps - sum(stage_steps) + stage_steps[last])
    return stage_steps


def recorded_settings(args, stage_steps: List[int]) -> Dict:
    """What the weights and the history depend on: a resume must match it."""
    settings = {k: v for k, v in vars(args).items() if k not in UNRECORDED}
    return {**settings, "stage_steps": list(stage_steps)}


class Run:
    """One training run: the model, its optimizer and where it stands (step, history, time)."""

    def __init__(self, args, stage_steps: List[int]) -> None:
        self.args, self.stage_steps = args, stage_steps
        self.bounds, self.total = stage_bounds(stage_steps), sum(stage_steps)
        self.n_steps = len(stage_steps) - 1
        self.latent_length = self.n_steps * args.latents_per_step
        splits = arith.make_splits(seed=args.data_seed, n_train=args.n_train)
        self.train_set, self.valid_set = splits["train"], splits["valid"][:args.n_eval]
        self.tok = build_tokenizer()
        self.model = build_model(self.tok, args.n_layer, args.n_embd, args.n_head, args.resid_pdrop, args.seed,
                                 self.latent_length)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=args.lr, weight_decay=args.weight_decay,
                                     betas=(0.9, 0.98))
        self.state_path = os.path.join(args.out, STATE_FILE)
        self.settings = recorded_settings(args, stage_steps)
        self.step, self.history, self.elapsed_prev = 0, [], 0.0
        self.loss_ema: Optional[float] = None  # smoothed training loss, as the history records it
        self.t0 = time.time()  # of this process's part of the run (set again once started)
        self.info = {"args": vars(args), "stage_steps": stage_steps, "latent_length": self.latent_length}

    def start(self) -> None:
        """Continue the run in ``--out`` (``--resume``, same settings only) or start a new one."""
        if not os.path.exists(self.state_path):
            self._check_finished_run()
            torch.manual_seed(self.args.seed)
            self.t0 = time.time()
            return
        if not self.args.resume:
            raise SystemExit(f"error: {self.state_path} holds an unfinished training run: pass --resume to "
                             "continue it, or delete it (or choose another --out) to start again.")
        remedy = "Delete it (or choose another --out) to start again."
        try:
            st = load_resume_state(self.state_path, remedy)
        except ValueError as err:
            raise SystemExit(f"error: {err}") from None
        if "settings" not in st:
            raise SystemExit(f"error: {self.state_path} has no record of its settings (written by an older "
                             f"version), so a resume cannot be checked against them. {remedy}")
        changed = changed_settings(st["settings"], self.settings)
        if changed:
            raise SystemExit(f"error: {self.args.out} holds a training run with different settings ({changed}). "
                             f"Resume with the same arguments, or choose another --out.")
        try:
            restore_state(self.state_path, remedy, lambda: (
                self.model.load_state_dict(st["model"]), self.opt.load_state_dict(st["opt"]),
                torch.set_rng_state(st["torch_rng"])))
            self.step, self.history, self.elapsed_prev = st["step"], st["history"], st.get("elapsed", 0.0)
            self.loss_ema = st["loss_ema"]
        except KeyError as err:
            raise SystemExit(f"error: {self.state_path} lacks {err}. {remedy}") from None
        except ValueError as err:
            raise SystemExit(f"error: {err}") from None
        print(f"resumed from step {self.step}", file=sys.stderr)
        self.t0 = time.time()

    def _check_finished_run(self) -> None:
        """A finished run of this recipe in ``--out`` is trained again only with its own settings (the same
        model): one of other settings is another model, which this run would replace."""
        path = os.path.join(self.args.out, INFO_FILE)
        if not os.path.isfile(path):
            return
        try:
            info = read_json_record(path, "the record of a finished run", "Delete it (or choose another --out) to "
                                    "train there again.")
        except ValueError as err:
            raise SystemExit(f"error: {err}") from None
        was = recorded_settings(argparse.Namespace(**info.get("args", {})), info.get("stage_steps", []))
        changed = changed_settings(was, self.settings)
        if changed:
            raise SystemExit(f"error: --out {self.args.out} holds a finished run of this recipe with other settings "
                             f"({changed}), which this run would replace. Choose another --out, or delete it to "
                             "train there again.")

    def save(self, final: bool = False) -> None:
        """Export the model into ``--out``; keep the resumable state (tensors and plain data) unless finished."""
        elapsed = self.elapsed_prev + time.time() - self.t0
        self.info.update({"step": self.step, "history": self.history, "train_seconds": round(elapsed, 1),
                          "complete": final})
        with torch.random.fork_rng():  # building the exported model draws from torch's generator: not the run's
            export(self.model, self.tok, self.args.out, self.latent_length, extra=self.info, info_file=INFO_FILE)
        if not final or self.args.keep_state:
            tmp = self.state_path + ".tmp"
            torch.save({"model": self.model.state_dict(), "opt": self.opt.state_dict(),
                        "torch_rng": torch.get_rng_state(), "step": self.step, "history": self.history,
                        "elapsed": elapsed, "loss_ema": self.loss_ema, "settings": self.settings}, tmp)
            os.replace(tmp, self.state_path)
        elif os.path.exists(self.state_path):
            os.remove(self.state_path)

    def train_step(self) -> float:
        """One optimizer step; its batch and stage depend only on (seed, step)."""
        args, step = self.args, self.step
        rng = random.Random(args.seed * 1_000_003 + step)
        stage = stage_at(step, self.bounds)
        if stage > 0 and rng.random() < args.mix_prob:
            stage = rng.randrange(stage)
        batch = [self.train_set[rng.randrange(len(self.train_set))] for _ in range(args.batch_size)]
        for g in self.opt.param_groups:
            g["lr"] = lr_at(step, self.total, args.lr, args.warmup)
        loss = train_loss(self.model, self.tok, batch, stage, args.latents_per_step, args.latent_noise)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), args.grad_clip)
        self.opt.step()
        self.step += 1
        return loss.item()

    def evaluation(self) -> Dict:
        """The history record of the current step: loss and valid accuracies."""
        cur = stage_at(self.step - 1, self.bounds)
        rec = {"step": self.step, "stage": cur, "loss": round(self.loss_ema, 4),
               "valid_latent_acc": evaluate(self.model, self.tok, self.valid_set, self.latent_length),
               "minutes": round((self.elapsed_prev + time.time() - self.t0) / 60, 2)}
        if cur < self.n_steps:  # accuracy at the current curriculum stage's latent count
            rec["valid_stage_acc"] = evaluate_stage(self.model, self.tok, self.valid_set, cur,
                                                    self.args.latents_per_step)
        return rec

    def train(self) -> bool:
        """Train to the end (True) or until ``--max-minutes`` (False, with a resumable checkpoint)."""
        from tqdm.auto import tqdm

        args = self.args
        self.model.train()
        bar = tqdm(total=self.total, initial=self.step, disable=args.no_progress, dynamic_ncols=True)
        try:
            while self.step < self.total:
                if args.max_minutes is not None and time.time() - self.t0 > args.max_minutes * 60:
                    self.save()
                    return False
                loss = self.train_step()
                self.loss_ema = loss if self.loss_ema is None else 0.98 * self.loss_ema + 0.02 * loss
                bar.update(1)
                bar.set_postfix(stage=stage_at(self.step - 1, self.bounds), loss=f"{self.loss_ema:.3f}")
                if self.step % args.eval_every == 0 or self.step == self.total:
                    self.history.append(self.evaluation())
                    bar.write(json.dumps(self.history[-1]))
                if self.step % args.ckpt_every == 0 and self.step < self.total:
                    self.save()
            self.save(final=True)
            return True
        finally:
            bar.close()


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    stage_steps = curriculum(args)
    try:
        require_output_folder(args.out, "--out", INFO_FILE, "this recipe")
    except ValueError as err:
        raise SystemExit(f"error: {err}") from None
    run = Run(args, stage_steps)
    os.makedirs(args.out, exist_ok=True)
    run.start()
    if not run.train():
        print(f"stopped at step {run.step} (--max-minutes); rerun with --resume", file=sys.stderr)
        return
    print(json.dumps({"done": run.step, "train_seconds": run.info["train_seconds"],
                      "last": run.history[-1] if run.history else None}))


if __name__ == "__main__":
    main()
