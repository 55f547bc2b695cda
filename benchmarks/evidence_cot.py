"""Section 3 of ``benchmarks/evidence.py``: token chain of thought against the latent model at equal compute.

The baseline is a model of the same size trained by the backbone recipe's
chain-of-thought stage for the whole budget (:func:`ensure_cot_model` reuses
or trains it); :func:`section3` picks its temperature on the valid split, then
compares majority vote at N = 1..64 (several seeds) with the latent model's MC
dropout, both in forward token positions per question.
"""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
import sys
import time
from pathlib import Path

from hf_modeling.answers import answers_equal
import evidence_lib as ev  # sibling package (benchmarks/ is on sys.path)
from lm_eval_latenttts.scaling.aggregation import majority_vote
from scaling import shown_path  # sibling script (benchmarks/ is on sys.path)

NS = [1, 4, 16, 64]
TEMPERATURES = [0.4, 0.6, 0.8, 1.0, 1.2]

log = logging.getLogger("evidence").info


def majority_correct(roll, examples, n):
    """Per question, 1.0 if the majority vote of its first ``n`` answers is right."""
    return [float(answers_equal(majority_vote(a[:n]), e["answer"])) for a, e in zip(roll["answers"], examples)]


def points(method_rolls, examples, positions_fn, flops_fn, resamples, seed=0):
    """Per N: majority accuracy (mean of seeds per question, then over questions) with a bootstrap CI,
    the per-seed accuracies and the mean forward token positions per question."""
    res = {}
    for n in NS:
        per_seed = [majority_correct(r, examples, n) for r in method_rolls]
        per_q = [sum(v) / len(v) for v in zip(*per_seed)]
        pos = [positions_fn(r, q, n) for r in method_rolls for q in range(len(examples))]
        flops = [flops_fn(r, q, n) for r in method_rolls for q in range(len(examples))]
        res[n] = {"majority_accuracy": sum(per_q) / len(per_q),
                  "ci95": ev.bootstrap_ci(per_q, resamples, seed),
                  "seed_accuracies": [sum(v) / len(v) for v in per_seed],
                  "single_sample_accuracy": float(sum(r["correct"][:, :n].float().mean() for r in method_rolls)
                                                  / len(method_rolls)),
                  "positions_per_question": sum(pos) / len(pos),
                  "gflops_per_question": sum(flops) / len(flops) / 1e9,
                  "per_question": per_q}
    return res


PREDICTIONS = "evidence_cot_predictions.json"  # beside evidence.json


def file_sha256(path: Path) -> str | None:
    """The SHA-256 of a file (the CoT checkpoint's weights), None when absent."""
    if not path.is_file():
        return None
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_cot_predictions(args, cot_path, test, cot_greedy, cot_rolls, temperature):
    """Per test question the CoT model's greedy answer and its sampled answers' majority at each N and seed,
    with the checkpoint's hash: what its accuracy can be checked against (``PREDICTIONS`` in ``args.out``)."""
    rows = []
    for q, e in enumerate(test):
        rows.append({"question": e["question"], "gold": e["answer"], "greedy": cot_greedy["answers"][q][0],
                     "majority": {str(n): [majority_vote(r["answers"][q][:n]) for r in cot_rolls] for n in NS}})
    Path(args.out, PREDICTIONS).write_text(json.dumps({
        "cot_model": shown_path(cot_path), "model_safetensors_sha256": file_sha256(Path(cot_path) / "model.safetensors"),
        "temperature": temperature, "seeds": len(cot_rolls), "questions": rows}, indent=0) + "\n")


def ensure_cot_model(args, repo: Path):
    """(folder, trained by this run, training_info) of the CoT baseline: reused if ``args.cot_model`` holds a
    finished chain-of-thought-only recipe run, else trained there (from ``repo``) by the backbone recipe."""
    path = Path(args.cot_model)
    if (path / "config.json").is_file() and (path / "training_info.json").is_file():
        info = json.loads((path / "training_info.json").read_text())
        if info.get("complete") and info.get("stage_steps", [None])[1:] == [0, 0]:
            return path, False, info
        if info.get("stage_steps", [None])[1:] != [0, 0]:
            raise SystemExit(f"{path} holds a model that is not a chain-of-thought-only recipe run "
                             f"(stage_steps {info.get('stage_steps')}); point --cot-model elsewhere")
    cmd = [sys.executable, "-m", "lm_eval_latenttts.training.recipes.train_backbone", "--out", str(path),
           "--stage-steps", "3600,0,0", "--no-progress", "--resume", "--threads", str(args.threads)]
    if args.cot_max_steps:
        cmd += ["--max-steps", str(args.cot_max_steps)]
    log("training the chain-of-thought baseline: " + " ".join(cmd))
    t0 = time.time()
    subprocess.run(cmd, check=True, cwd=repo)
    log(f"chain-of-thought baseline trained ({time.time() - t0:.0f} s)")
    return path, True, json.loads((path / "training_info.json").read_text())


def section3(args, model, tok, test, valid, greedy, greedy_acc, lat_rolls, cot_path, cot_info, cot_trained_here):
    """Token chain of thought vs the latent model (dropout p=0.2), majority vote at N = 1..64, equal compute."""
    from transformers import AutoTokenizer, GPT2LMHeadModel

    cot = GPT2LMHeadModel.from_pretrained(str(cot_path)).eval()
    cot_tok = AutoTokenizer.from_pretrained(str(cot_path))
    assert sum(x.numel() for x in cot.parameters()) == sum(x.numel() for x in model.parameters())
    t0 = time.time()
    temp_grid, temp_single = {}, {}
    for temp in TEMPERATURES:
        r = ev.cot_sample(cot, cot_tok, valid, 16, temp, 0, args.batch_rows)
        temp_grid[temp] = sum(majority_correct(r, valid, 16)) / len(valid)
        temp_single[temp] = float(r["correct"].float().mean())
    temperature = max(TEMPERATURES, key=lambda t: (temp_grid[t], temp_single[t], -t))
    cot_valid_greedy = float(ev.cot_sample(cot, cot_tok, valid, 1, 0.0, 0, args.batch_rows)["correct"].float().mean())
    log(f"CoT temperature on valid (majority@16, seed 0): {temp_grid}, single {temp_single} -> {temperature} "
        f"({time.time() - t0:.0f} s)")

    t0 = time.time()
    cot_greedy = ev.cot_sample(cot, cot_tok, test, 1, 0.0, 0, args.batch_rows)
    cot_rolls = [ev.cot_sample(cot, cot_tok, test, max(NS), temperature, s, args.batch_rows) for s in range(args.seeds)]
    log(f"CoT test sampling ({time.time() - t0:.0f} s)")
    lat_list = [lat_rolls[s] for s in range(args.seeds)]
    L = model.config.latent_length

    def lat_pos(r, q, n):
        return ev.latent_positions(r["prompt_lengths"][q], L, r["generated"][q, :n].tolist(), shared_prompt=False)

    def lat_pos_shared(r, q, n):  # the same samples if their prompt pass were shared (latent-only sampling's cost)
        return ev.latent_positions(r["prompt_lengths"][q], L, r["generated"][q, :n].tolist(), shared_prompt=True)

    def cot_pos(r, q, n):
        return ev.cot_positions(r["prompt_lengths"][q], r["generated"][q, :n].tolist())

    n_params = sum(x.numel() for x in model.parameters())
    n_emb = model.transformer.wte.weight.numel() + model.transformer.wpe.weight.numel()
    shape = {"n_params_nonembedding": n_params - n_emb, "n_layer": model.config.n_layer,
             "d_model": model.config.n_embd, "vocab": model.config.vocab_size}

    def lat_flops(r, q, n):
        return ev.latent_flops(shape, r["prompt_lengths"][q], L, r["generated"][q, :n].tolist(), shared_prompt=False)

    def cot_fl(r, q, n):
        return ev.cot_flops(shape, r["prompt_lengths"][q], r["generated"][q, :n].tolist())

    cot_pts = points(cot_rolls, test, cot_pos, cot_fl, args.bootstrap)
    lat_pts = points(lat_list, test, lat_pos, lat_flops, args.bootstrap)
    for n in NS:
        shared = [lat_pos_shared(r, q, n) for r in lat_list for q in range(len(test))]
        lat_pts[n]["positions_per_question_shared_prompt"] = sum(shared) / len(shared)
    lat_shared = {n: dict(v, positions_per_question=v["positions_per_question_shared_prompt"])
                  for n, v in lat_pts.items()}
    write_cot_predictions(args, cot_path, test, cot_greedy, cot_rolls, temperature)
    greedy_points = {
        "cot": (sum(cot_pos(cot_greedy, q, 1) for q in range(len(test))) / len(test),
                float(cot_greedy["correct"].float().mean())),
        "latent": (sum(ev.latent_positions(greedy["prompt_lengths"][q], L, greedy["generated"][q, :1].tolist(), True)
                       for q in range(len(test))) / len(test), greedy_acc),
    }
    cot_section = {
        "cot_model": shown_path(cot_path), "cot_trained_by_this_run": cot_trained_here,
        "cot_training": {"stage_steps": cot_info.get("stage_steps"), "train_seconds": cot_info.get("train_seconds"),
                         "batch_size": cot_info.get("args", {}).get("batch_size"),
                         "history": cot_info.get("history")},
        "latent_training_steps": 3600, "parameters": n_params, "parameters_nonembedding": n_params - n_emb,
        "flops_rule": ("approximate forward FLOPs (2 * non-embedding parameters + 2 * n_layer * context * d per "
                       "position, + 2 * d * vocab where the LM head runs); the x-axis is positions"),
        "temperature": {"grid_valid_majority_at_16": temp_grid, "grid_valid_single_sample": temp_single,
                        "chosen": temperature,
                        "rule": ("highest majority@16 accuracy on the valid split (seed 0, N=16); ties -> higher "
                                 "single-sample accuracy, then the lower T")},
        "cot_valid_greedy_accuracy": cot_valid_greedy,
        "greedy": {k: {"positions_per_question": v[0], "accuracy": v[1]} for k, v in greedy_points.items()},
        "cot": cot_pts, "latent_dropout_p0.2": lat_pts, "seeds": args.seeds, "questions": len(test),
        "positions_rule": ("per question, what the forward passes process for that question's rows: latent, "
                           "dropout_scope='all': every sample runs its own prompt pass (prompt + 2 latent steps + "
                           "end marker + generated tokens but the last); CoT: the prompt once (KV cache shared by "
                           "the N samples, sampling only after it) + each sample's generated tokens but the last "
                           "(the generated tokens count up to and including EOS). Batch padding rows and finished rows "
                           "kept in a batch are not counted."),
        "latent_vs_cot_at_latent_points": ev.difference_at_equal_compute(lat_pts, cot_pts, args.bootstrap),
        "cot_vs_latent_at_cot_points": ev.difference_at_equal_compute(cot_pts, lat_pts, args.bootstrap),
        "latent_vs_cot_at_latent_points_shared_prompt": ev.difference_at_equal_compute(lat_shared, cot_pts,
                                                                                       args.bootstrap),
        "cot_checkpoint_sha256": file_sha256(Path(cot_path) / "model.safetensors"),
        "cot_predictions": PREDICTIONS,
        "cot_lowest_positions": min([cot_pts[n]["positions_per_question"] for n in NS]
                                    + [greedy_points["cot"][0]]),
    }
    for n in NS:
        log(f"N={n}: CoT {cot_pts[n]['majority_accuracy']:.3f} @ {cot_pts[n]['positions_per_question']:.0f} pos; "
            f"latent {lat_pts[n]['majority_accuracy']:.3f} @ {lat_pts[n]['positions_per_question']:.0f} pos")
    return cot_section

