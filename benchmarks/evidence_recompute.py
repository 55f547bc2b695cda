"""Every number of the evidence report, recomputed from the stored per-question data (under a minute).

    python benchmarks/evidence_recompute.py            # -> docs/evidence.md, benchmarks/results/evidence.json, plots
    python benchmarks/evidence_recompute.py --check    # recompute and compare with the committed report (exit 1 if not equal)

Reads ``benchmarks/results/evidence_data.npz`` (``benchmarks/evidence.py --part latent``, RM scores from
``--part rm``), ``evidence_cot.npz`` (``--part cot``) and ``evidence_heldout.npz``
(``benchmarks/evidence_heldout.py evaluate``); each section is left out when its file is absent.  All
intervals are 95% percentile bootstraps over questions (``evidence_lib.bootstrap``, seed 0).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

from lm_eval_latenttts.data import arith  # noqa: E402

import evidence_lib as ev  # noqa: E402
from evidence_lib.causal import implied_ones  # noqa: E402
from evidence_lib.selection import selector_correct  # noqa: E402
from evidence_lib.store import NONE, answer_code  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
DOC = REPO / "docs" / "evidence.md"
PLOTS = REPO / "docs" / "evidence"  # the report's plots, beside it
NS = [1, 4, 16, 64]  # the equal-compute points
HEADROOM_NS = [1, 2, 4, 8, 16, 32, 64]  # the scaling report's Ns
LITERATURE = {  # arXiv 2510.12167 (COCONUT on GSM8K) as issue 24 quotes it; the paper itself was not read here
    "source": "arXiv 2510.12167", "model": "COCONUT (GPT-2 small, 124M)", "task": "GSM8K test",
    "pass_at_1": 31.1, "pass_at_32": 44.4, "best_reranker": "PRM at N=16", "best_reranker_accuracy": 33.4,
    "recovered_share_quoted": 19.8}


def load_npz(path: Path):
    if not path.is_file():
        return None, None
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    return arrays, json.loads(str(arrays.pop("meta_json")))


def roll_of(arrays, prefix):
    """A stored rollout record in the form the metric functions take (answers as lists of answers)."""
    r = {"answers": arrays[f"{prefix}/answer"].astype(np.int64),  # answer codes: the metrics take them as answers
         "correct": torch.from_numpy(arrays[f"{prefix}/correct"].astype(bool))}
    if f"{prefix}/step_scores" in arrays:
        r["step_scores"] = torch.from_numpy(arrays[f"{prefix}/step_scores"].astype(np.float64))
        r["scores"] = arrays[f"{prefix}/scores"].astype(np.float64).tolist()
    r["generated"] = torch.from_numpy(arrays[f"{prefix}/generated"].astype(np.int64))
    return r


def reads_of(arrays, prefix):
    """{probe: (Q, N) long} of a stored rollout, with the MLP value probe's x1 ones digit added."""
    dec = {k.rsplit("/", 1)[1]: torch.from_numpy(v.astype(np.int64)) for k, v in arrays.items()
           if k.startswith(prefix + "/read/")}
    v = dec["step2_x1"]
    dec["step2_x1_value_ones"] = torch.where(v >= 0, v % 10, v)
    return dec


# --------------------------------------------------------------------------- section 1
def readout_table(arrays, meta, valid):
    """Held-out accuracies of every probe (linear / MLP) and the logit lens, on greedy valid latents."""
    from evidence_readout import PROBES, target_values

    out = {"probes": {}, "logit_lens": {}}
    for name, s, t, kind in PROBES:
        y = target_values(valid, t, kind).numpy()
        row = {}
        for arch in ("linear", "mlp"):
            key = f"valid/read_{arch}/{name}"
            if key in arrays:
                row[arch] = float((arrays[key] == y).mean())
        row["used"] = meta["readout"]["probes"][name]["used"]
        row["threshold"] = meta["readout"]["probes"][name]["threshold"]
        top = torch.from_numpy(arrays[f"valid/top_probability/{name}"])
        # the threshold is a function of the stored held-out top probabilities: recomputed, not copied
        row["threshold_recomputed"] = ev.threshold_from_heldout(top, 0.05, cap=0.5)
        out["probes"][name] = row
    xs = np.array([ev.intermediates(e) for e in valid])
    for s in (1, 2):
        d = arrays[f"valid/lens_digit/step{s}"]
        out["logit_lens"][f"step{s}"] = {"top_token_is_digit": float(arrays[f"valid/lens_is_digit/step{s}"].mean()),
                                         "ones_digit_of_x1": float((d == xs[:, 0] % 10).mean()),
                                         "ones_digit_of_x2": float((d == xs[:, 1] % 10).mean())}
    return out


def section1(arrays, meta, test, resamples):
    from evidence_readout import dropout_probe_metrics, section1_metrics

    greedy = roll_of(arrays, "greedy")
    gdec = reads_of(arrays, "greedy")
    from evidence_readout import target_values

    greedy_metrics = {name: ev.readout_metrics(gdec[name], target_values(test, *_tk(name)), gdec[name][:, 0],
                                               greedy["correct"]) for name in gdec}
    out = {"greedy": greedy_metrics, "greedy_accuracy": float(greedy["correct"].float().mean()), "settings": {},
           "n": meta["n"], "seed": 0, "questions": len(test)}
    rolls = {}
    for name in meta["settings"]:
        r = roll_of(arrays, f"settings/{name}")
        dec = reads_of(arrays, f"settings/{name}")
        rolls[name] = (r, dec)
        out["settings"][name] = section1_metrics(test, r, greedy, gdec, dec, resamples)
    rm_setting = meta["rm_setting"]
    dp = {k.split(f"settings/{rm_setting}/", 1)[-1]: torch.from_numpy(v.astype(np.int64)) for k, v in arrays.items()
          if k.startswith(f"settings/{rm_setting}/dropout_probe/") or k.startswith("valid/dropout_latents/")}
    valid = arith.load_split("valid")[:meta["valid_questions"]]
    out["dropout_trained_probe"] = dropout_probe_metrics(valid, test, greedy, gdec, rolls[rm_setting][0], dp,
                                                         resamples)
    return out, rolls, greedy, gdec


def _tk(name):
    from evidence_readout import PROBES

    if name == "step2_x1_value_ones":
        return 0, "ones"
    return next((t, kind) for n, _, t, kind in PROBES if n == name)


# --------------------------------------------------------------------------- causal
def causal(arrays, meta, test, greedy, resamples):
    """Per causal setting: where the answer changes come from, and the implants' follow rates against nulls."""
    g_codes = arrays["greedy/answer"][:, 0]
    out = {}
    for name in meta["causal_settings"]:
        c = {k.rsplit("/", 1)[1]: v for k, v in arrays.items() if k.startswith(f"causal/{name}/")}
        full = g_codes[:, None].repeat(c["replay"].shape[1], 1) if name == "greedy" else arrays[f"settings/{name}/answer"]
        row = {}
        if name != "greedy":
            changed = (full != g_codes[:, None]) | (full == NONE)
            per_q = {}
            for k in ("replay", "latents_only", "prompt_only"):
                same = c[k] == full
                per_q[k] = [(int((same[q] & changed[q]).sum()), int(changed[q].sum())) for q in range(len(test))]
                moved = (c[k] != g_codes[:, None]) | (c[k] == NONE)
                per_q[k + "_changes_answer"] = [(int((moved[q] & changed[q]).sum()), int(changed[q].sum()))
                                                for q in range(len(test))]
            both = (c["latents_only"] == full) & (c["prompt_only"] == full) & changed
            neither = (c["latents_only"] != full) & (c["prompt_only"] != full) & changed
            per_q["both"] = [(int(both[q].sum()), int(changed[q].sum())) for q in range(len(test))]
            per_q["neither"] = [(int(neither[q].sum()), int(changed[q].sum())) for q in range(len(test))]
            row["answer_changes"] = int(changed.sum())
            row["trajectories"] = int(changed.size)
            row["decomposition"] = {k: _share(v, resamples) for k, v in per_q.items()}
            lat = np.array([a for a, _ in per_q["latents_only"]]) - np.array([a for a, _ in per_q["prompt_only"]])
            row["latents_minus_prompt"] = _share(list(zip(lat.tolist(), [n for _, n in per_q["latents_only"]])),
                                                 resamples)
        row["implants"] = implant_rates(c, test, resamples)
        out[name] = row
    return out


def _share(pairs, resamples):
    tot = sum(n for _, n in pairs)
    return {"share": sum(h for h, _ in pairs) / tot if tot else float("nan"), "ci": ev.ratio_ci(pairs, resamples),
            "n": tot}


def implant_rates(c, test, resamples):
    """Follow rates of the implants: the answer's ones digit is the one the implanted digit implies.

    The null is the same-digit swap (another question's latent 2 with the same second operation, operand and
    carried ones digit: everything of latent 2 changes but the digit), on the same rows: its rate of the
    target's implied digit, and the paired difference implant - null.  (Without any implant the rate is 0 by
    construction: the target is drawn so that it implies another ones digit than the row's own answer's.)"""
    target = c["target"].astype(int)
    carried = c["carried"].astype(int)
    implied = np.full(target.shape, -1)
    carried_implied = np.full(target.shape, -1)
    for q, e in enumerate(test):
        for j in range(target.shape[1]):
            if target[q, j] >= 0:
                implied[q, j] = implied_ones(e, target[q, j])
            if carried[q, j] >= 0:
                carried_implied[q, j] = implied_ones(e, carried[q, j])

    def ones(codes):
        return np.where((codes != NONE) & (codes >= 0), np.abs(codes) % 10, -1)

    base_ones = ones(c["replay"])
    has_null = (target >= 0) & (c["null_donor"] >= 0)
    null_follows = (ones(c["null_swap"]) == implied) & has_null
    rows = {}
    for name in ("swap", "shift"):
        valid = has_null & ((c["donor"] >= 0) if name == "swap" else (carried >= 0))
        o = ones(c[name])
        follows = (o == implied) & valid
        keeps = (o == base_ones) & valid
        nf = null_follows & valid

        def per_q(m):
            return [(int(m[q].sum()), int(valid[q].sum())) for q in range(len(test))]

        rows[name] = {"rows": int(valid.sum()), "follows": _share(per_q(follows), resamples),
                      "keeps": _share(per_q(keeps), resamples), "null_follows": _share(per_q(nf), resamples),
                      "follows_minus_null": _share(per_q(follows.astype(int) - nf.astype(int)), resamples),
                      "probe_reads_target": float((c[f"{name}_read"][valid] == target[valid]).mean())
                      if valid.any() else None}
    o = ones(c["null_swap"])
    rows["null_swap"] = {"rows": int(has_null.sum()),
                         "keeps_implied_digit": _share([(int(((o == carried_implied) & has_null)[q].sum()),
                                                         int(has_null[q].sum())) for q in range(len(test))], resamples),
                         "keeps_answer_ones": _share([(int(((o == base_ones) & has_null)[q].sum()),
                                                       int(has_null[q].sum())) for q in range(len(test))], resamples)}
    return rows


# --------------------------------------------------------------------------- headroom
def headroom(arrays, meta, test, greedy, resamples):
    """Per N: every selector, coverage, the gap, selectors minus greedy (paired), and the share of the headroom
    above greedy and above a single sample that the best selector recovers."""
    from evidence_headroom import headroom as table

    rolls = []
    for s in range(meta["seeds"]):
        r = roll_of(arrays, f"headroom/seed{s}")
        r["prompt_lengths"] = arrays[f"headroom/seed{s}/prompt_length"].tolist()
        rolls.append(r)
    return table(rolls, test, greedy["correct"][:, 0], meta["latent_length"], HEADROOM_NS, resamples)


# --------------------------------------------------------------------------- section 5 (chain of thought)
def choose_temperature(arrays, valid):
    """The CoT temperature: highest majority@16 on the valid grid (seed 0), ties -> higher single-sample
    accuracy, then the lower T.  Returns (T, grid)."""
    from evidence_cot import TEMPERATURES

    gold = gold_codes(valid)
    grid = {}
    for t in TEMPERATURES:
        m = selector_correct(arrays[f"cot/valid/T{t}/answer"].astype(np.int64), gold, None, 16)
        grid[t] = {"majority_at_16": float(m["majority"].mean()), "single_sample": float(m["single"].mean())}
    best = max(TEMPERATURES, key=lambda t: (grid[t]["majority_at_16"], grid[t]["single_sample"], -t))
    return best, grid


def gold_codes(examples):
    return np.array([answer_code(e["answer"]) for e in examples], dtype=np.int64)


def section3(cot_arrays, cot_meta, arrays, meta, test, greedy, resamples):
    from evidence_cot import points

    valid = arith.load_split("valid")[:cot_meta["valid_questions"]]
    temperature, grid = choose_temperature(cot_arrays, valid)
    assert temperature == cot_meta["temperature"], "the stored samples were drawn at another temperature"
    shape, L = meta["shape"], meta["latent_length"]
    gold = gold_codes(test)
    seeds = cot_meta["seeds"]
    cot_codes = [cot_arrays[f"cot/seed{s}/answer"].astype(np.int64) for s in range(seeds)]
    cot_gen = [cot_arrays[f"cot/seed{s}/generated"].astype(np.int64) for s in range(seeds)]
    cplen = cot_arrays["cot/prompt_length"].astype(np.int64)
    lat_codes = [arrays[f"headroom/seed{s}/answer"].astype(np.int64) for s in range(meta["seeds"])]
    lat_gen = [arrays[f"headroom/seed{s}/generated"].astype(np.int64) for s in range(meta["seeds"])]
    lplen = arrays["headroom/seed0/prompt_length"].astype(np.int64)
    cot_pts = points(cot_codes, gold, lambda s, n: ev.cot_cost(cplen, cot_gen[s][:, :n], shape)[0],
                     lambda s, n: ev.cot_cost(cplen, cot_gen[s][:, :n], shape)[1], resamples)
    lat_pts = points(lat_codes, gold, lambda s, n: ev.latent_cost(lplen, L, lat_gen[s][:, :n], False, shape)[0],
                     lambda s, n: ev.latent_cost(lplen, L, lat_gen[s][:, :n], False, shape)[1], resamples)
    for n in NS:
        shared = np.concatenate([ev.latent_cost(lplen, L, lat_gen[s][:, :n], True)[0] for s in range(meta["seeds"])])
        lat_pts[n]["positions_per_question_shared_prompt"] = float(shared.mean())
    lat_shared = {n: dict(v, positions_per_question=v["positions_per_question_shared_prompt"])
                  for n, v in lat_pts.items()}
    cg = cot_arrays["cot/greedy/answer"].astype(np.int64)
    cot_greedy = ((cg == gold) & (cg != NONE)).astype(float).tolist()
    cot_greedy_pos = ev.cot_cost(cplen, cot_arrays["cot/greedy/generated"].astype(np.int64)[:, None])[0]
    lat_greedy_pos = ev.latent_cost(arrays["greedy/prompt_length"], L, arrays["greedy/generated"], True)[0]
    lat_greedy = greedy["correct"][:, 0].double().tolist()
    truncated = {}
    for k in cot_meta["truncated_steps"]:
        a = cot_arrays[f"cot/truncated{k}/answer"].astype(np.int64)
        right = ((a == gold) & (a != NONE)).astype(float).tolist()
        truncated[k] = {"accuracy": sum(right) / len(right), "ci95": ev.bootstrap_ci(right, resamples),
                        "positions_per_question": float(cot_arrays[f"cot/truncated{k}/positions"].mean()),
                        "per_question": right,
                        "minus_latent_greedy": _paired(right, lat_greedy, resamples)}
    best_lat = max(NS, key=lambda n: (lat_pts[n]["majority_accuracy"], -n))
    cheapest_cot = min([cot_pts[n]["positions_per_question"] for n in NS] + [float(cot_greedy_pos.mean())])
    # the latent model's best accuracy is first reached (to the reported decimal) at fewer samples
    first_reach = min(n for n in NS if round(lat_pts[n]["majority_accuracy"], 3)
                      >= round(lat_pts[best_lat]["majority_accuracy"], 3))
    ratios = {"latent_best_n": best_lat, "latent_best_positions": lat_pts[best_lat]["positions_per_question"],
              "latent_first_n_at_best": first_reach,
              "latent_first_positions_at_best": lat_pts[first_reach]["positions_per_question"],
              "cot_cheapest_positions": cheapest_cot,
              "latent_greedy_positions": float(lat_greedy_pos.mean()),
              "latent_n16_positions": lat_pts[16]["positions_per_question"]}
    ratios["best_over_cot"] = ratios["latent_best_positions"] / cheapest_cot
    ratios["first_reach_over_cot"] = ratios["latent_first_positions_at_best"] / cheapest_cot
    ratios["n16_over_cot"] = ratios["latent_n16_positions"] / cheapest_cot
    ratios["latent_greedy_over_cot"] = ratios["latent_greedy_positions"] / cheapest_cot
    # the earlier "43x" divided the latent model's most expensive point (N=64) by the CoT's cheapest
    ratios["latent_n64_positions"] = lat_pts[64]["positions_per_question"]
    ratios["n64_over_cot"] = ratios["latent_n64_positions"] / cheapest_cot
    ratios["latent_n64_minus_n16"] = _paired(lat_pts[64]["per_question"], lat_pts[16]["per_question"], resamples)
    vg = cot_arrays["cot/valid/greedy/answer"].astype(np.int64)
    return {
        "cot_sha256": cot_meta["cot_sha256"], "cot_model": cot_meta["cot_model"], "parameters": cot_meta["parameters"],
        "cot_training": cot_meta["cot_training"], "temperature": {"chosen": temperature, "grid": grid},
        "cot_valid_greedy_accuracy": float(((vg == gold_codes(valid)) & (vg != NONE)).mean()),
        "greedy": {"cot": {"accuracy": sum(cot_greedy) / len(test), "ci95": ev.bootstrap_ci(cot_greedy, resamples),
                           "positions_per_question": float(cot_greedy_pos.mean())},
                   "latent": {"accuracy": sum(lat_greedy) / len(test), "ci95": ev.bootstrap_ci(lat_greedy, resamples),
                              "positions_per_question": float(lat_greedy_pos.mean())}},
        "truncated": truncated, "cot": cot_pts, "latent_dropout_p0.2": lat_pts, "seeds": seeds,
        "questions": len(test),
        "latent_vs_cot_at_latent_points": ev.difference_at_equal_compute(lat_pts, cot_pts, resamples),
        "latent_vs_cot_at_latent_points_shared_prompt": ev.difference_at_equal_compute(lat_shared, cot_pts, resamples),
        "compute_ratios": ratios,
    }


def _paired(a, b, resamples):
    d = [x - y for x, y in zip(a, b)]
    return {"mean": sum(d) / len(d), "ci95": ev.bootstrap_ci(d, resamples)}


# --------------------------------------------------------------------------- held-out facts
def heldout_section(h_arrays, h_meta, resamples):
    out = {"meta": {k: v for k, v in h_meta.items() if k != "heldout_facts"}, "sets": {},
           "facts": len(h_meta["heldout_facts"])}
    for name in ("seen", "unseen_step1", "unseen_step2"):
        gold = h_arrays[f"{name}/gold"].astype(np.int64)
        row = {"questions": len(gold)}
        per_q = {}
        for model in ("latent", "cot"):
            g = h_arrays[f"{name}/{model}_greedy"].astype(np.int64)
            per_q[f"{model}_greedy"] = (g == gold).astype(float).tolist()
            samples = h_arrays[f"{name}/{model}_samples"].astype(np.int64)
            per_q[f"{model}_majority"] = np.mean([selector_correct(samples[s], gold, None, samples.shape[2])["majority"]
                                                  for s in range(samples.shape[0])], axis=0).tolist()
        for k, v in per_q.items():
            row[k] = {"mean": sum(v) / len(v), "ci95": ev.bootstrap_ci(v, resamples)}
        row["cot_minus_latent_greedy"] = _paired(per_q["cot_greedy"], per_q["latent_greedy"], resamples)
        row["per_question"] = per_q
        out["sets"][name] = row
    for model in ("latent", "cot"):  # unseen minus seen: different questions, so an unpaired interval
        for k in ("unseen_step1", "unseen_step2"):
            a, b = out["sets"][k]["per_question"][f"{model}_greedy"], out["sets"]["seen"]["per_question"][f"{model}_greedy"]
            out[f"{model}_{k}_minus_seen"] = _unpaired(a, b, resamples)
    return out


def _unpaired(a, b, resamples):
    ia, ib = ev.bootstrap_indices(len(a), resamples, 1), ev.bootstrap_indices(len(b), resamples, 2)
    ta, tb = torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64)
    d = ta[ia].mean(-1) - tb[ib].mean(-1)
    return {"mean": sum(a) / len(a) - sum(b) / len(b), "ci95": ev.percentile_interval(d)}


# --------------------------------------------------------------------------- literature
def literature(room):
    """Our headroom in the shape 2510.12167 reports it: a selector at N=16 against pass@1 (a single sample) and
    pass@32, and the share of the headroom pass@32 - pass@1 (and pass@16 - pass@1) it recovers."""
    p = LITERATURE
    r16, r32 = room["by_n"][16], room["by_n"][32]
    single, cov16, cov32 = r16["single"]["mean"], r16["coverage"]["mean"], r32["coverage"]["mean"]
    out = {"paper": p, "pass_at_1": single, "pass_at_16": cov16, "pass_at_32": cov32,
           "paper_recovered_of_pass32": (p["best_reranker_accuracy"] - p["pass_at_1"]) / (p["pass_at_32"] - p["pass_at_1"])}
    for sel in ("majority", "weighted", "best_of_n"):
        out[sel] = {"accuracy": r16[sel]["mean"], "of_pass32": (r16[sel]["mean"] - single) / (cov32 - single),
                    "of_pass16": (r16[sel]["mean"] - single) / (cov16 - single)}
    return out


# --------------------------------------------------------------------------- main
def compute(data_dir: Path, resamples: int | None = None):
    arrays, meta = load_npz(data_dir / "evidence_data.npz")
    if arrays is None:
        raise SystemExit(f"no {data_dir / 'evidence_data.npz'}: run python benchmarks/evidence.py --part latent")
    resamples = resamples or meta["bootstrap"]
    test = arith.load_split("test")[:meta["questions"]]
    valid = arith.load_split("valid")[:meta["valid_questions"]]
    assert [int(e["answer"]) for e in test] == [int(g) for g in [e["answer"] for e in test]]
    report = {"meta": meta, "readout": readout_table(arrays, meta, valid)}
    sem, rolls, greedy, gdec = section1(arrays, meta, test, resamples)
    report["latent_semantics"] = sem
    report["causal"] = causal(arrays, meta, test, greedy, resamples)
    from evidence_readout import ACROSS_LABELS, ALL_LABELS, section2_setting

    report["rm"] = {name: section2_setting(test, r, dec, resamples, ALL_LABELS if name == meta["rm_setting"]
                                           else ACROSS_LABELS) for name, (r, dec) in rolls.items()}
    report["headroom"] = headroom(arrays, meta, test, greedy, resamples)
    report["literature"] = literature(report["headroom"])
    cot_arrays, cot_meta = load_npz(data_dir / "evidence_cot.npz")
    report["cot_meta"] = cot_meta
    report["cot"] = section3(cot_arrays, cot_meta, arrays, meta, test, greedy, resamples) if cot_arrays else None
    # the RM the data were scored with, against the shipped checkpoint at this commit
    from evidence_cot import file_sha256

    report["shipped_rm_sha256"] = file_sha256(REPO / meta["rm"] / "model.safetensors")
    h_arrays, h_meta = load_npz(data_dir / "evidence_heldout.npz")
    report["heldout"] = heldout_section(h_arrays, h_meta, resamples) if h_arrays else None
    return report


def strip(obj):
    """The JSON form: no per-question lists, NaN as null."""
    if isinstance(obj, dict):
        return {str(k): strip(v) for k, v in obj.items() if k != "per_question"}
    if isinstance(obj, (list, tuple)):
        return [strip(v) for v in obj]
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, (np.floating, np.integer)):
        return strip(obj.item())
    return obj


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(RESULTS), help="folder of the .npz files (default benchmarks/results)")
    p.add_argument("--doc", default=str(DOC), help="the report to write (default docs/evidence.md)")
    p.add_argument("--json", default=None, help="the JSON summary (default DATA/evidence.json)")
    p.add_argument("--plots", default=None, help="folder of the plots (default docs/evidence/ for the default doc, "
                                                 "else beside the doc)")
    p.add_argument("--no-plots", action="store_true", help="do not draw the plots")
    p.add_argument("--check", action="store_true",
                   help="write nothing: recompute and compare with the committed report and JSON (exit 1 if not equal)")
    a = p.parse_args(argv)
    t0 = time.time()
    from evidence_report import render

    data = Path(a.data)
    report = compute(data)
    doc = Path(a.doc)
    plots = Path(a.plots) if a.plots else (PLOTS if doc.resolve() == DOC.resolve() else doc.parent)
    text = render(report, doc, plots)
    js = json.dumps(strip(report), indent=1) + "\n"
    json_path = Path(a.json) if a.json else data / "evidence.json"
    if a.check:
        same_doc = doc.is_file() and doc.read_text() == text
        same_json = json_path.is_file() and json_path.read_text() == js
        print(f"recomputed in {time.time() - t0:.1f} s: {doc} {'matches' if same_doc else 'DIFFERS'}, "
              f"{json_path} {'matches' if same_json else 'DIFFERS'}")
        if not (same_doc and same_json):
            raise SystemExit(1)
        return
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(text)
    json_path.write_text(js)
    if not a.no_plots:
        from evidence_plots import plot_all

        plots.mkdir(parents=True, exist_ok=True)
        plot_all(json.loads(js), plots)
    print(f"recomputed in {time.time() - t0:.1f} s: wrote {doc}, {json_path}" + ("" if a.no_plots else f", plots in {plots}"))


if __name__ == "__main__":
    main()
