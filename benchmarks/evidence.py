"""Answer the referee: what the latents say, what the LatentRM sees, and token chain of thought at equal compute.

One command, for the shipped model (``arith-coconut``), its LatentRM (``arith-rm``)
and the shipped arithmetic task::

    python benchmarks/evidence.py      # reuses runs/arith-cot if it holds the finished CoT recipe run, else trains it
    python benchmarks/evidence.py --cot-model DIR         # reuse (or train into) another folder
    python benchmarks/evidence.py --quick                 # ~1-3 min smoke run (40 questions); not a result
    python benchmarks/evidence.py --plots-only            # redraw the PNGs from benchmarks/results/evidence.json
    python benchmarks/evidence.py --skip-cot              # sections 1, 2 and headroom; keeps the earlier section 3

Training the CoT baseline (``python -m lm_eval_latenttts.training.recipes.train_backbone --out runs/arith-cot
--stage-steps 3600,0,0``) took 65 min wall / 35 min CPU on a shared 2-core box; the rest takes about 13 min.

1. **What the latents say** (``latent_semantics``): probes per latent step
   trained on greedy latents of all training-split questions to predict the
   true intermediate (x1 after step 1, x2 after step 2; x1 from step 2 and x2
   from step 1 as controls): 100-way linear and one-hidden-layer MLP probes
   (the better on held-out greedy latents of the valid split is used) and a
   10-way linear probe of x1's ones digit; the logit lens beside them.  A
   latent "decodes to no number" when the probe's top probability is below
   min(0.5, its 5% quantile on held-out greedy latents).  Per sampling setting
   (dropout p 0.1/0.2/0.3 over prompt and latents, the same on the latent
   steps only, noise sigma 0.5/1/2), N=16, seed 0, on the 500 test questions:
   accuracy of the decoded intermediate, how often it differs from the greedy
   trajectory's, P(answer right | decoded right / wrong), the no-number
   fraction, the share of answer changes the read-out sees, whether the
   answer follows a changed intermediate, keeps greedy's answer or neither
   (exclusive; the follow rate with a 95% interval against chance), and a
   verdict ("distinct", "not distinct", "too few changes" or "unreadable",
   rule in ``verdict``).  A probe trained on dropout latents checks whether
   the whole x1 survives dropout.
2. **What the LatentRM sees** (``rm_step_auroc``): within- and
   across-question AUROC of the RM's step score for "the decoded
   intermediate is right" (read-out labels right on under half of the
   latents are flagged as label noise) and "the answer is right", beside
   vote share.  **Headroom** (``headroom``): per N = 1..64 (3 seeds, dropout
   p=0.2), greedy, single sample, majority, RM-weighted, best-of-N and
   coverage, and the gap coverage minus the best selector, with intervals.
3. **Token CoT at equal compute** (``cot_baseline``): a token chain-of-thought
   model of the same size trained with the backbone recipe's CoT stage for the
   whole 3,600-step budget (``--stage-steps 3600,0,0``), temperature sampling
   and majority vote at N = 1, 4, 16, 64 (3 seeds; temperature picked on the
   valid split) against the latent model with dropout p=0.2; x-axis = forward
   token positions per question; 95% bootstrap intervals over questions.

The sections live beside this file: ``evidence_readout.py`` (1 and 2),
``evidence_headroom.py``, ``evidence_cot.py`` (3), ``evidence_plots.py`` (the PNGs, from the JSON) and
``evidence_tables.py`` (the report's Markdown tables, from the JSON);
their pure pieces and samplers are in ``benchmarks/evidence_lib/`` (research code, not shipped in the package).

Writes ``evidence.json`` and ``evidence_*.png`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from hf_modeling import AutoLatentModel, load_latent_tokenizer  # noqa: E402
from lm_eval_latenttts.data import arith  # noqa: E402

import evidence_lib as ev  # noqa: E402  (benchmarks/evidence_lib: the evidence's library)
from evidence_cot import NS, ensure_cot_model, section3  # noqa: E402  (sibling scripts: benchmarks/ is on sys.path)
from evidence_headroom import headroom  # noqa: E402
from evidence_plots import plot_all  # noqa: E402
from evidence_readout import (decode_all, greedy_latents, sampled_probe_check, section1_setting,  # noqa: E402
                              section2_setting, target_values, train_readout)

REPO = Path(__file__).resolve().parent.parent
CHECKPOINTS = REPO / "lm_eval_latenttts" / "checkpoints"
# (method, strength, dropout scope): dropout over prompt and latents ("all", the paper's), dropout on the latent
# steps only ("latent": the prompt pass is deterministic, so an answer change comes from the latents), noise
# (latents only by construction)
SETTINGS = [("dropout", 0.1, "all"), ("dropout", 0.2, "all"), ("dropout", 0.3, "all"),
            ("dropout", 0.1, "latent"), ("dropout", 0.2, "latent"), ("dropout", 0.3, "latent"),
            ("noise", 0.5, "all"), ("noise", 1.0, "all"), ("noise", 2.0, "all")]
RM_SETTING = ("dropout", 0.2, "all")  # the LatentRM's training setting: headroom and the equal-compute curve

log = logging.getLogger("evidence").info


def log_to_stdout():
    """Print the ``evidence`` log lines (this script's and its sections') to stdout with a time stamp."""
    logger = logging.getLogger("evidence")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("[%(asctime)s] %(message)s", "%H:%M:%S"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


def setting_name(method, strength, scope="all"):
    """The report's key of a sampling setting."""
    if method == "noise":
        return f"noise_std={strength}"
    return f"dropout_p={strength}" + ("" if scope == "all" else f",scope={scope}")


def strip(obj):
    """Drop per-question lists from the JSON (they are large)."""
    if isinstance(obj, dict):
        return {str(k): strip(v) for k, v in obj.items() if k != "per_question"}
    if isinstance(obj, list):
        return [strip(v) for v in obj]
    if isinstance(obj, float) and math.isnan(obj):
        return None
    return obj


def previous_cot(out_dir):
    """With --skip-cot: the equal-compute section of the report already in ``out_dir`` (if any), kept and marked
    as not rerun, with the command and wall time of the run that measured it; else "skipped"."""
    path = Path(out_dir) / "evidence.json"
    old = json.loads(path.read_text()) if path.is_file() else {}
    section = old.get("cot_baseline")
    if not isinstance(section, dict):
        return "skipped (--skip-cot)"
    section = dict(section)
    section["not_rerun"] = section.get("not_rerun") or {
        "why": "--skip-cot: this section is the earlier run's, kept as it was (its latent curve used the bootstrap "
               "of that run)", "command": old.get("meta", {}).get("command"),
        "wall_seconds": old.get("meta", {}).get("wall_seconds")}
    return section


def main(argv=None):
    """Parse the command line, run sections 1 to 3, write ``evidence.json`` and draw the plots from it."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cot-model", default=None,
                   help="chain-of-thought baseline folder (default runs/arith-cot; --quick: runs/arith-cot-quick): "
                        "reused if it holds a finished 3600,0,0 recipe run, else trained there by the backbone recipe")
    p.add_argument("--cot-max-steps", type=int, default=None, help="(quick runs) cap the CoT training steps")
    p.add_argument("--limit", type=int, default=0, help="test questions (0 = all 500)")
    p.add_argument("--valid-limit", type=int, default=0, help="valid questions for temperature and probe (0 = all 500)")
    p.add_argument("--probe-train", type=int, default=0, help="training-split questions for the probes (0 = all)")
    p.add_argument("--sampled-probe-train", type=int, default=20000,
                   help="training questions for the probe trained on dropout p=0.2 latents")
    p.add_argument("--probe-epochs", type=int, default=60, help="MLP probe training epochs")
    p.add_argument("--seeds", type=int, default=3, help="seeds of the equal-compute comparison")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--batch-rows", type=int, default=1024, help="rollout rows per forward")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 40 test/valid questions, 3000 probe questions, 5 probe epochs, 1 seed, "
                        "100 CoT training steps if it has to train; the numbers are not results")
    p.add_argument("--skip-cot", action="store_true",
                   help="sections 1, 2 and headroom only (no CoT baseline); an earlier section 3 in OUT is kept, "
                        "marked not_rerun")
    p.add_argument("--out", default=None, help="output folder (default benchmarks/results; --quick: runs/evidence-quick)")
    p.add_argument("--plots-only", action="store_true", help="redraw the plots from OUT/evidence.json and stop")
    args = p.parse_args(argv)
    if args.plots_only:
        out = Path(args.out or REPO / "benchmarks" / "results")
        plot_all(json.loads((out / "evidence.json").read_text()), out)
        return
    log_to_stdout()
    if args.quick:
        args.limit, args.valid_limit = args.limit or 40, args.valid_limit or 40
        args.probe_train, args.probe_epochs, args.seeds = args.probe_train or 3000, 5, 1
        args.bootstrap = min(args.bootstrap, 200)
        args.cot_max_steps = args.cot_max_steps or 100
    args.cot_model = args.cot_model or str(REPO / "runs" / ("arith-cot-quick" if args.quick else "arith-cot"))
    args.out = args.out or str(REPO / ("runs/evidence-quick" if args.quick else "benchmarks/results"))
    torch.set_num_threads(args.threads)
    t_start = time.time()
    load_start = os.getloadavg()
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)

    cot_path, cot_trained_here, cot_info = (None, False, None) if args.skip_cot else ensure_cot_model(args, REPO)
    t_after_cot = time.time()

    model_path, rm_path = CHECKPOINTS / "arith-coconut", CHECKPOINTS / "arith-rm"
    model = AutoLatentModel.from_pretrained(str(model_path)).eval()
    tok = load_latent_tokenizer(str(model_path), model.config)
    rm = AutoLatentModel.from_pretrained(str(rm_path)).eval()
    splits = arith.make_splits(seed=0)
    test, valid = arith.load_split("test"), arith.load_split("valid")
    assert test == splits["test"] and valid == splits["valid"], "shipped splits differ from make_splits(seed=0)"
    train = splits["train"][:args.probe_train] if args.probe_train else splits["train"]
    test = test[:args.limit] if args.limit else test
    valid = valid[:args.valid_limit] if args.valid_limit else valid
    log(f"{len(test)} test, {len(valid)} valid, {len(train)} probe-train questions; {args.threads} threads")

    # ---- 1. what the latents say
    probes, readout = train_readout(model, tok, train, valid, args)
    _, greedy = greedy_latents(model, tok, test)
    greedy_dec = decode_all(probes, greedy["latents"])
    greedy_metrics = {name: ev.readout_metrics(greedy_dec[name], target_values(test, t, kind), greedy_dec[name][:, 0],
                                               greedy["correct"]) for name, (_, _, s, t, kind) in probes.items()}
    for name in probes:
        readout["probes"][name]["test_greedy_accuracy"] = greedy_metrics[name]["decoded_accuracy"]
        readout["probes"][name]["test_greedy_unstructured"] = greedy_metrics[name]["unstructured"]
    greedy_acc = float(greedy["correct"].float().mean())
    log(f"latent greedy accuracy {greedy_acc:.3f}")

    sem = {"readout": readout, "greedy": greedy_metrics, "greedy_accuracy": greedy_acc, "settings": {},
           "n": 16, "seed": 0, "questions": len(test)}
    rm_auc = {}
    # the RM setting's N=64 rollouts, every seed, with RM scores: the headroom table and the equal-compute curve;
    # sample j depends only on (seed, question, j), so seed 0's first 16 are exactly section 1's N=16 rollouts
    t0 = time.time()
    lat_rolls = {s: ev.latent_rollouts(model, tok, rm, test, max(NS), ev.sampling_kwargs(*RM_SETTING), s,
                                       args.batch_rows) for s in range(args.seeds)}
    log(f"{setting_name(*RM_SETTING)}: N={max(NS)} rollouts, {args.seeds} seeds ({time.time() - t0:.0f} s)")
    for method, strength, scope in SETTINGS:
        name = setting_name(method, strength, scope)
        t0 = time.time()
        if (method, strength, scope) == RM_SETTING:
            roll = ev.first_n(lat_rolls[0], 16)
        else:
            roll = ev.latent_rollouts(model, tok, rm, test, 16, ev.sampling_kwargs(method, strength, scope), 0,
                                      args.batch_rows)
        res, dec = section1_setting(test, roll, greedy, probes, greedy_dec, args.bootstrap)
        sem["settings"][name] = res
        rm_auc[name] = section2_setting(test, roll, dec, args.bootstrap)
        if (method, strength, scope) == RM_SETTING:
            roll_p02 = roll
        log(f"{name}: x1 decoded {res['step1_x1']['decoded_accuracy']:.3f} (ones {res['step1_x1_ones']['decoded_accuracy']:.3f}), "
            f"differs {res['step1_x1']['differs_from_greedy']:.3f} (ones {res['step1_x1_ones']['differs_from_greedy']:.3f}), "
            f"unstructured {res['step1_x1']['unstructured']:.3f}; {res['verdict']['why']} -> {res['verdict']['label']}; RM AUROC step1 "
            f"{rm_auc[name]['step1_x1_ones']['rm_step_score']['mean']:.3f} vote {rm_auc[name]['step1_x1_ones']['vote_share']['mean']:.3f} "
            f"({time.time() - t0:.0f} s)")
    room = headroom([lat_rolls[s] for s in range(args.seeds)], test, greedy["correct"][:, 0],
                    model.config.latent_length, NS, args.bootstrap)
    log("headroom: " + "; ".join(f"N={n}: coverage {r['coverage']['mean']:.3f}, best selector {r['best_selector']} "
                                 f"{r[r['best_selector']]['mean']:.3f}, gap {r['gap']['mean']:.3f}"
                                 for n, r in room["by_n"].items()))

    n_sampled_probe = min(len(train), args.sampled_probe_train)
    sem["dropout_trained_probe"] = sampled_probe_check(model, tok, train[:n_sampled_probe], valid, test, roll_p02,
                                                       greedy, probes, greedy_dec, args)
    cot_section = None
    if not args.skip_cot:
        cot_section = section3(args, model, tok, test, valid, greedy, greedy_acc, lat_rolls, cot_path, cot_info,
                               cot_trained_here)

    wall = time.time() - t_start
    report = {
        "meta": {
            "command": "python benchmarks/evidence.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "wall_seconds": round(wall, 1),
            "wall_seconds_without_cot_training": round(time.time() - t_after_cot, 1),
            "cot_training_included": cot_trained_here,
            "load_average_1_5_15_min_at_start": [round(x, 2) for x in load_start],
            "load_average_1_5_15_min_at_end": [round(x, 2) for x in os.getloadavg()], "cpus": os.cpu_count(),
            "threads": args.threads, "quick": args.quick, "torch": torch.__version__,
            "python": platform.python_version(), "model": str(model_path.relative_to(REPO)),
            "rm": str(rm_path.relative_to(REPO)),
        },
        "latent_semantics": sem,
        "rm_step_auroc": {
            "averaging": ("per question with both classes among its N=16 trajectories: AUROC (ties 1/2), then the "
                          "mean over those questions ('mean', 95% bootstrap 'ci' over them); 'pooled': every "
                          "within-question (right, wrong) pair pooled; 'questions': how many qualify"),
            "labels": {"step1_x1": "step-1 probe read-out == true x1",
                       "step1_x1_ones": "step-1 ones-digit read-out == ones digit of the true x1",
                       "step2_x2": "step-2 probe read-out == true x2 (the answer)",
                       "step2_x1": "step-2 probe read-out == true x1",
                       "step2_final_answer": "final answer right (x2 as the model itself reads it out)"},
            "settings": rm_auc,
        },
        "headroom": room,
        "cot_baseline": cot_section if cot_section is not None else previous_cot(out_dir),
    }
    path = out_dir / "evidence.json"
    path.write_text(json.dumps(strip(report), indent=1, sort_keys=False) + "\n")
    plot_all(json.loads(path.read_text()), out_dir)
    log(f"wrote {path} ({wall / 60:.1f} min in all, {(time.time() - t_after_cot) / 60:.1f} min without CoT training)")


if __name__ == "__main__":
    main()
