"""Answer the referee: the expensive half of the evidence (rollouts, probes, re-decodes), stored per question.

This script draws everything the report measures and stores it as per-question arrays;
``benchmarks/evidence_recompute.py`` computes every number of ``docs/evidence.md`` from them (under a
minute) and writes the report, ``evidence.json`` and the plots.  For the shipped model (``arith-coconut``),
its LatentRM (``arith-rm``) and the shipped arithmetic task's 500 test questions::

    python benchmarks/evidence.py --part latent       # sections 1, 2, causal, headroom -> evidence_data.npz
    python benchmarks/evidence.py --part cot          # section 5: chain of thought -> evidence_cot.npz
                                                      #   (trains runs/arith-cot first when it is absent)
    python benchmarks/evidence.py --part rm --rm DIR  # the RM sections again with another LatentRM: the same
                                                      #   rollouts (checked), new RM scores -> evidence_data.npz
    python benchmarks/evidence.py                     # latent + cot
    python benchmarks/evidence.py --quick             # a smoke run (40 questions) into runs/evidence-quick
    python benchmarks/evidence_recompute.py           # the report from the stored arrays

What each part stores (``benchmarks/results/``, compressed ``.npz``, integers/booleans/floats only):

* ``latent``: probes trained on greedy latents of the 59,840 training questions and their reads of the
  held-out (valid) greedy latents; per test question the greedy rollout and, for each of nine sampling
  settings (N=16, seed 0), every sample's answer, correctness, answer length, six probe read-outs and RM
  step scores; dropout p=0.2 at N=64 for 3 seeds (headroom and the latent equal-compute curve) with RM
  trajectory scores; a probe trained on dropout latents; and the causal re-decodes and implants
  (``evidence_lib.causal``) at greedy, dropout p=0.2 and 0.3 and noise sigma=1.
* ``cot``: the chain-of-thought model's temperature grid on the valid split, its greedy and sampled
  answers (N=64, 3 seeds) and answer lengths on the test split, and truncated chains (0 or 1 step written
  before the answer is forced), with the checkpoint's SHA-256.
* ``rm``: replaces the RM scores (and the RM's SHA-256) of ``latent`` after checking that the rollouts are
  the stored ones.

The held-out-facts models are ``benchmarks/evidence_heldout.py``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from hf_modeling import AutoLatentModel, load_latent_tokenizer  # noqa: E402
from lm_eval_latenttts.data import arith  # noqa: E402

import evidence_lib as ev  # noqa: E402  (benchmarks/evidence_lib: the evidence's library)
from evidence_lib.causal import Donors, causal_rollouts  # noqa: E402
from evidence_lib.store import answer_codes, exact_float32  # noqa: E402
from evidence_cot import NS, collect_cot, ensure_cot_model, file_sha256  # noqa: E402  (sibling scripts)
from evidence_readout import decode_all, dropout_probe_arrays, greedy_latents, train_readout  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
CHECKPOINTS = REPO / "lm_eval_latenttts" / "checkpoints"
DATA, COT_DATA = "evidence_data.npz", "evidence_cot.npz"
# (method, strength, dropout scope): dropout over prompt and latents ("all", the paper's), dropout on the latent
# steps only ("latent": the prompt pass is deterministic, so an answer change comes from the latents), noise
# (latents only by construction)
SETTINGS = [("dropout", 0.1, "all"), ("dropout", 0.2, "all"), ("dropout", 0.3, "all"),
            ("dropout", 0.1, "latent"), ("dropout", 0.2, "latent"), ("dropout", 0.3, "latent"),
            ("noise", 0.5, "all"), ("noise", 1.0, "all"), ("noise", 2.0, "all")]
RM_SETTING = ("dropout", 0.2, "all")  # the LatentRM's training setting: headroom and the equal-compute curve
CAUSAL_SETTINGS = [None, ("dropout", 0.2, "all"), ("dropout", 0.3, "all"), ("noise", 1.0, "all")]
N_SECTION1 = 16

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


def setting_name(method, strength=None, scope="all"):
    """The report's key of a sampling setting (``None``: greedy)."""
    if method is None:
        return "greedy"
    if method == "noise":
        return f"noise_std={strength}"
    return f"dropout_p={strength}" + ("" if scope == "all" else f",scope={scope}")


def np_(x, dtype):
    return np.asarray(x.numpy() if isinstance(x, torch.Tensor) else x, dtype=dtype)


def roll_arrays(prefix, roll, reads=None, rm=True):
    """A rollout record as arrays under ``prefix``: answer codes, correctness, answer lengths, RM scores."""
    out = {f"{prefix}/answer": answer_codes(roll["answers"]), f"{prefix}/correct": np_(roll["correct"], bool),
           f"{prefix}/generated": np_(roll["generated"], np.int16)}
    if rm and roll.get("step_scores") is not None:
        out[f"{prefix}/step_scores"] = exact_float32(roll["step_scores"])
        out[f"{prefix}/scores"] = exact_float32(roll["scores"])
    for name, v in (reads or {}).items():
        out[f"{prefix}/read/{name}"] = np_(v, np.int8)
    return out


def save(path: Path, arrays: dict, meta: dict) -> None:
    arrays = dict(arrays)
    arrays["meta_json"] = np.array(json.dumps(meta, sort_keys=True))
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, path)
    log(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB, {len(arrays)} arrays)")


def load(path: Path) -> tuple[dict, dict]:
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    return arrays, json.loads(str(arrays.pop("meta_json")))


def base_meta(args, t_start, load_start):
    return {"command": "python benchmarks/evidence.py " + " ".join(args.argv),
            "wall_seconds": round(time.time() - t_start, 1),
            "load_average_1_5_15_min_at_start": [round(x, 2) for x in load_start],
            "load_average_1_5_15_min_at_end": [round(x, 2) for x in os.getloadavg()], "cpus": os.cpu_count(),
            "threads": args.threads, "quick": args.quick, "torch": torch.__version__,
            "python": platform.python_version(), "bootstrap": args.bootstrap}


def rm_info(rm_path: Path) -> dict:
    return {"rm": shown(rm_path), "rm_sha256": file_sha256(rm_path / "model.safetensors")}


def shown(path: Path) -> str:
    path = Path(path).resolve()
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def questions(args):
    splits = arith.make_splits(seed=0)
    test, valid = arith.load_split("test"), arith.load_split("valid")
    assert test == splits["test"] and valid == splits["valid"], "shipped splits differ from make_splits(seed=0)"
    train = splits["train"][:args.probe_train] if args.probe_train else splits["train"]
    return (test[:args.limit] if args.limit else test), (valid[:args.valid_limit] if args.valid_limit else valid), train


def sampled_rollouts(model, tok, rm, test, args):
    """Dropout p=0.2 N=64 for every seed (headroom, equal compute) and each setting's N=16 seed 0; sample j
    depends only on (seed, question, j), so seed 0's first 16 of the N=64 are the p=0.2 setting's."""
    t0 = time.time()
    lat = {s: ev.latent_rollouts(model, tok, rm, test, max(NS), ev.sampling_kwargs(*RM_SETTING), s, args.batch_rows)
           for s in range(args.seeds)}
    log(f"{setting_name(*RM_SETTING)}: N={max(NS)} rollouts, {args.seeds} seeds ({time.time() - t0:.0f} s)")
    rolls = {}
    for setting in SETTINGS:
        t0 = time.time()
        rolls[setting] = ev.first_n(lat[0], N_SECTION1) if setting == RM_SETTING else ev.latent_rollouts(
            model, tok, rm, test, N_SECTION1, ev.sampling_kwargs(*setting), 0, args.batch_rows)
        log(f"{setting_name(*setting)}: N={N_SECTION1} rollouts ({time.time() - t0:.0f} s)")
    return lat, rolls


def part_latent(args, model, tok, rm, rm_path, out_dir, t_start, load_start):
    test, valid, train = questions(args)
    log(f"{len(test)} test, {len(valid)} valid, {len(train)} probe-train questions; {args.threads} threads")
    arrays = {}
    probes, readout, valid_arrays, z_train = train_readout(model, tok, train, valid, args)
    arrays.update({k: np_(v, np.float32 if "top_probability" in k else np.int8) for k, v in valid_arrays.items()})
    z_greedy, greedy = greedy_latents(model, tok, test)
    greedy_dec = decode_all(probes, z_greedy[:, None])
    arrays.update(roll_arrays("greedy", greedy, greedy_dec, rm=False))
    arrays["greedy/prompt_length"] = np.array(greedy["prompt_lengths"], dtype=np.int16)
    log(f"latent greedy accuracy {float(greedy['correct'].float().mean()):.3f}")

    lat, rolls = sampled_rollouts(model, tok, rm, test, args)
    for s, r in lat.items():
        arrays.update(roll_arrays(f"headroom/seed{s}", r))
        arrays[f"headroom/seed{s}/prompt_length"] = np.array(r["prompt_lengths"], dtype=np.int16)
    for setting, r in rolls.items():
        arrays.update(roll_arrays(f"settings/{setting_name(*setting)}", r, decode_all(probes, r["latents"])))
    n_dp = min(len(train), args.sampled_probe_train)
    dp_arrays, dp_info = dropout_probe_arrays(model, tok, train[:n_dp], valid, rolls[RM_SETTING], probes, args)
    arrays.update({(k if k.startswith("valid/") else f"settings/{setting_name(*RM_SETTING)}/{k}"): np_(v, np.int8)
                   for k, v in dp_arrays.items()})
    log(f"dropout-trained probe ({dp_info['seconds']:.0f} s)")

    # causal: donors are the training questions' greedy latent 2, read by the ones-digit probe
    ones_probe = probes["step2_x1_ones"]
    donors = Donors(train, z_train[:, 1], ones_probe[0].decode(z_train[:, 1], ones_probe[1])[0])
    for setting in CAUSAL_SETTINGS:
        t0 = time.time()
        samp = None if setting is None else ev.sampling_kwargs(*setting)
        res = causal_rollouts(model, tok, test, N_SECTION1, samp, 0, donors, ones_probe[:2], greedy=setting is None,
                              batch_rows=args.batch_rows)
        name = setting_name(*(setting or (None,)))
        if setting is not None:  # the causal rollouts draw the very samples of section 1
            stored = arrays[f"settings/{name}/answer"]
            if not np.array_equal(res["full"], stored):
                raise AssertionError(f"{name}: the causal rollouts' samples differ from the stored ones")
        arrays.update({f"causal/{name}/{k}": v for k, v in res.items() if k != "full"})
        log(f"causal {name} ({time.time() - t0:.0f} s)")
    arrays["donor/question_index"] = np.array([ALL_INDEX()[e["question"]] for e in train], dtype=np.int32)

    meta = base_meta(args, t_start, load_start)
    meta.update({"model": shown(CHECKPOINTS / "arith-coconut"),
                 "model_sha256": file_sha256(CHECKPOINTS / "arith-coconut" / "model.safetensors"),
                 **rm_info(rm_path), "rm_rerun": None,
                 "readout": readout, "dropout_probe": dp_info, "settings": [setting_name(*s) for s in SETTINGS],
                 "rm_setting": setting_name(*RM_SETTING), "n": N_SECTION1, "seeds": args.seeds, "ns": NS,
                 "questions": len(test), "valid_questions": len(valid), "probe_train_questions": len(train),
                 "latent_length": model.config.latent_length,
                 "causal_settings": [setting_name(*(s or (None,))) for s in CAUSAL_SETTINGS],
                 "shape": model_shape(model)})
    save(out_dir / DATA, arrays, meta)


def model_shape(model):
    n_params = sum(x.numel() for x in model.parameters())
    n_emb = model.transformer.wte.weight.numel() + model.transformer.wpe.weight.numel()
    return {"parameters": n_params, "n_params_nonembedding": n_params - n_emb, "n_layer": model.config.n_layer,
            "d_model": model.config.n_embd, "vocab": model.config.vocab_size}


_ALL = {}


def ALL_INDEX():
    """Question text -> index in ``arith.all_examples()`` (how the stored arrays name training questions)."""
    if not _ALL:
        _ALL.update({e["question"]: i for i, e in enumerate(arith.all_examples())})
    return _ALL


def part_rm(args, model, tok, rm, rm_path, out_dir, t_start, load_start):
    """The RM sections against ``rm``: the stored rollouts are drawn again (and checked), only their RM scores
    are replaced."""
    arrays, meta = load(out_dir / DATA)
    test, _, _ = questions(args)
    if len(test) != meta["questions"]:
        raise SystemExit(f"{out_dir / DATA} holds {meta['questions']} questions; run --part rm with the same --limit")
    lat, rolls = sampled_rollouts(model, tok, rm, test, args)
    new = {}
    for s, r in lat.items():
        new.update(roll_arrays(f"headroom/seed{s}", r))
    for setting, r in rolls.items():
        new.update(roll_arrays(f"settings/{setting_name(*setting)}", r))
    for k, v in new.items():
        if k.endswith("scores"):
            arrays[k] = v
        elif not np.array_equal(arrays[k], v):
            raise AssertionError(f"{k}: the rollouts differ from the stored ones; rerun --part latent")
    previous = {k: meta[k] for k in ("rm", "rm_sha256")}
    meta.update(rm_info(rm_path))
    meta["rm_rerun"] = {"previous": previous, "command": "python benchmarks/evidence.py " + " ".join(args.argv),
                        "wall_seconds": round(time.time() - t_start, 1)}
    save(out_dir / DATA, arrays, meta)


def part_cot(args, model, tok, out_dir, t_start, load_start):
    test, valid, _ = questions(args)
    cot_path, trained_here, cot_info = ensure_cot_model(args, REPO)
    t0 = time.time()
    arrays, info = collect_cot(args, cot_path, model, test, valid)
    meta = base_meta(args, t_start, load_start)
    meta.update(info)
    meta.update({"cot_model": shown(cot_path), "cot_trained_by_this_run": trained_here, "questions": len(test), "valid_questions": len(valid),
                 "seeds": args.seeds, "ns": NS, "sampling_seconds": round(time.time() - t0, 1),
                 "cot_training": {"stage_steps": cot_info.get("stage_steps"),
                                  "train_seconds": cot_info.get("train_seconds"),
                                  "batch_size": cot_info.get("args", {}).get("batch_size"),
                                  "history": cot_info.get("history")}})
    save(out_dir / COT_DATA, arrays, meta)


def main(argv=None):
    """Parse the command line and run the parts asked for; then recompute the report."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--part", choices=["all", "latent", "cot", "rm"], default="all",
                   help="what to draw (default: latent and cot); rm: new RM scores for the stored rollouts")
    p.add_argument("--rm", default=None, help="LatentRM folder (default: the shipped arith-rm)")
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
    p.add_argument("--seeds", type=int, default=3, help="seeds of the headroom and equal-compute comparison")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples (recorded for the recompute)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--batch-rows", type=int, default=1024, help="rollout rows per forward")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 40 test/valid questions, 3000 probe questions, 5 probe epochs, 1 seed, "
                        "100 CoT training steps if it has to train; the numbers are not results")
    p.add_argument("--out", default=None, help="output folder (default benchmarks/results; --quick: runs/evidence-quick)")
    p.add_argument("--no-recompute", action="store_true", help="only draw; do not run evidence_recompute.py")
    args = p.parse_args(argv)
    args.argv = list(argv if argv is not None else sys.argv[1:])
    log_to_stdout()
    if args.quick:
        args.limit, args.valid_limit = args.limit or 40, args.valid_limit or 40
        args.probe_train, args.probe_epochs, args.seeds = args.probe_train or 3000, 5, 1
        args.sampled_probe_train = min(args.sampled_probe_train, 2000)
        args.bootstrap = min(args.bootstrap, 200)
        args.cot_max_steps = args.cot_max_steps or 100
    args.cot_model = args.cot_model or str(REPO / "runs" / ("arith-cot-quick" if args.quick else "arith-cot"))
    out_dir = Path(args.out or REPO / ("runs/evidence-quick" if args.quick else "benchmarks/results"))
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)
    t_start, load_start = time.time(), os.getloadavg()

    model_path = CHECKPOINTS / "arith-coconut"
    rm_path = Path(args.rm) if args.rm else CHECKPOINTS / "arith-rm"
    model = AutoLatentModel.from_pretrained(str(model_path)).eval()
    tok = load_latent_tokenizer(str(model_path), model.config)
    if args.part in ("all", "latent", "rm"):
        rm = AutoLatentModel.from_pretrained(str(rm_path)).eval()
        if args.part == "rm":
            part_rm(args, model, tok, rm, rm_path, out_dir, t_start, load_start)
        else:
            part_latent(args, model, tok, rm, rm_path, out_dir, t_start, load_start)
    if args.part in ("all", "cot"):
        part_cot(args, model, tok, out_dir, time.time(), os.getloadavg())
    log(f"done ({(time.time() - t_start) / 60:.1f} min)")
    if not args.no_recompute:
        import evidence_recompute

        evidence_recompute.main(["--data", str(out_dir)] + (["--doc", str(out_dir / "evidence.md")] if args.quick else []))


if __name__ == "__main__":
    main()
