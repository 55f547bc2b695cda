"""Section 5 of the evidence: token chain of thought against the latent model at equal compute.

The baseline is a model of the same size trained by the backbone recipe's chain-of-thought stage for the
whole budget (:func:`ensure_cot_model` reuses or trains it).  :func:`collect_cot` draws what the report
needs (the temperature grid on the valid split, greedy and sampled chains on the test split, truncated
chains); :func:`points` turns stored answers into the accuracy-vs-positions curve
(``benchmarks/evidence_recompute.py``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

import evidence_lib as ev  # sibling package (benchmarks/ is on sys.path)
from evidence_lib.selection import selector_correct
from evidence_lib.store import answer_codes

NS = [1, 4, 16, 64]
TEMPERATURES = [0.4, 0.6, 0.8, 1.0, 1.2]
TRUNCATED_STEPS = (0, 1)  # chain steps written before "### " is forced: 0 = answer at once, 1 = after x1

log = logging.getLogger("evidence").info


def majority_correct(codes: np.ndarray, gold: np.ndarray, n: int) -> np.ndarray:
    """Per question, 1.0 if the majority vote of its first ``n`` answers (codes) is right."""
    return selector_correct(codes, gold, None, n)["majority"]


def points(codes_list, gold, positions_fn, flops_fn, resamples, seed=0):
    """Per N: majority accuracy (mean of seeds per question, then over questions) with a bootstrap CI, the
    per-seed accuracies, single-sample accuracy and the mean forward token positions (and GFLOPs) per question.
    ``codes_list[s]``: the answer codes (Q, N) of seed s; ``positions_fn(s, n)`` / ``flops_fn(s, n)``: per
    question of seed s, at the first n samples."""
    res = {}
    for n in NS:
        per_seed = [selector_correct(c, gold, None, n) for c in codes_list]
        per_q = np.mean([p["majority"] for p in per_seed], axis=0).tolist()
        pos = np.concatenate([positions_fn(s, n) for s in range(len(codes_list))])
        flops = np.concatenate([flops_fn(s, n) for s in range(len(codes_list))])
        res[n] = {"majority_accuracy": sum(per_q) / len(per_q),
                  "ci95": ev.bootstrap_ci(per_q, resamples, seed),
                  "seed_accuracies": [float(p["majority"].mean()) for p in per_seed],
                  "single_sample_accuracy": float(np.mean([p["single"].mean() for p in per_seed])),
                  "positions_per_question": float(pos.mean()),
                  "gflops_per_question": float(flops.mean()) / 1e9,
                  "per_question": per_q}
    return res


def file_sha256(path: Path) -> str | None:
    """The SHA-256 of a file (a checkpoint's weights), None when absent."""
    path = Path(path)
    if not path.is_file():
        return None
    return hashlib.sha256(path.read_bytes()).hexdigest()


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


ANSWER_TOKENS = 3  # a truncated chain's answer: at most 3 tokens among the digits and end-of-text (answers are 0..99)


@torch.no_grad()
def cot_truncated(model, tok, examples, keep_steps: int, max_new_tokens: int = 40, batch_rows: int = 512):
    """Greedy chains cut after ``keep_steps`` written steps: the model writes its chain until its
    ``keep_steps``-th newline (0: none), then ``"### "`` is fed and the answer is decoded greedily among the
    digit tokens and end-of-text only (at most :data:`ANSWER_TOKENS`, stopping at end-of-text).

    The answer is constrained because, left free, the model ignores a marker it did not write and writes its
    chain after it (``### 2+5=20>>...### 24``), which costs what a full chain costs.  Rows are decoded together
    with a KV cache, one token per row per step (a forced token, a chain token or an answer token), so every row
    runs the same steps as alone.  Returns per question the answer (its digits; None when there are none or the
    chain ended or ran out of ``max_new_tokens`` before its ``keep_steps``-th newline) and the forward positions
    (the prompt and every fed token: chain, marker and answer tokens but the last generated one)."""
    from transformers import DynamicCache

    eos, newline = tok.eos_token_id, tok.convert_tokens_to_ids("\n")
    forced = tok("### ", add_special_tokens=False)["input_ids"]
    digit_ids = {tok.convert_tokens_to_ids(str(d)): str(d) for d in range(10)}
    allowed = torch.full((model.config.vocab_size,), float("-inf"))
    allowed[list(digit_ids) + [eos]] = 0.0
    answers, positions = [], []
    for b in range(0, len(examples), batch_rows):
        chunk = examples[b:b + batch_rows]
        ids = [tok(e["question"] + ev.COT_SUFFIX, add_special_tokens=False)["input_ids"] for e in chunk]
        if len({len(x) for x in ids}) != 1:  # every arith question has the same token length
            raise ValueError("cot_truncated expects prompts of one token length per batch")
        rows, p = len(chunk), len(ids[0])
        out = model.transformer(input_ids=torch.tensor(ids), cache=DynamicCache(config=model.config), use_cache=True,
                                attention_mask=torch.ones(rows, p, dtype=torch.long),
                                position_ids=torch.arange(p)[None].expand(rows, p))
        cache, hidden = out.cache, out.last_hidden_state[:, -1]
        pending = [list(forced) if keep_steps == 0 else [] for _ in range(rows)]
        answering = [keep_steps == 0] * rows
        lines, chain, digits, fed = [0] * rows, [0] * rows, [[] for _ in range(rows)], [p] * rows
        done = [False] * rows
        for step in range(max_new_tokens + len(forced) + ANSWER_TOKENS):
            logits = model.lm_head(hidden).float()
            free, constrained = logits.argmax(-1).tolist(), (logits + allowed).argmax(-1).tolist()
            nxt = [eos] * rows  # what finished rows feed (ignored: nothing reads it)
            for r in range(rows):
                if done[r]:
                    continue
                if pending[r]:
                    nxt[r] = pending[r].pop(0)
                elif answering[r]:
                    nxt[r] = constrained[r]
                    if nxt[r] == eos:
                        done[r] = True
                    else:
                        digits[r].append(digit_ids[nxt[r]])
                        done[r] = len(digits[r]) == ANSWER_TOKENS
                else:
                    nxt[r], chain[r] = free[r], chain[r] + 1
                    if nxt[r] == newline:
                        lines[r] += 1
                        if lines[r] == keep_steps:
                            pending[r], answering[r] = list(forced), True
                    done[r] = nxt[r] == eos or (chain[r] == max_new_tokens and not answering[r])
                if not done[r]:
                    fed[r] += 1  # every token but the last generated one is fed
            if all(done):
                break
            out = model.transformer(input_ids=torch.tensor(nxt)[:, None], cache=cache, use_cache=True,
                                    attention_mask=torch.ones(rows, p + step + 1, dtype=torch.long),
                                    position_ids=torch.full((rows, 1), p + step))
            cache, hidden = out.cache, out.last_hidden_state[:, -1]
        answers += [str(int("".join(d))) if d else None for d in digits]
        positions += fed
    return answers, positions


def collect_cot(args, cot_path, latent_model, test, valid):
    """The CoT model's answers: temperature grid on valid (N=16, seed 0), valid greedy, test greedy, test
    samples (N=64, ``args.seeds`` seeds) and truncated chains; (arrays, info)."""
    from transformers import AutoTokenizer, GPT2LMHeadModel

    cot = GPT2LMHeadModel.from_pretrained(str(cot_path)).eval()
    cot_tok = AutoTokenizer.from_pretrained(str(cot_path))
    n_params = sum(x.numel() for x in cot.parameters())
    assert n_params == sum(x.numel() for x in latent_model.parameters())
    arrays = {}
    t0 = time.time()
    for i, temp in enumerate(TEMPERATURES):
        r = ev.cot_sample(cot, cot_tok, valid, 16, temp, 0, args.batch_rows)
        arrays[f"cot/valid/T{temp}/answer"] = answer_codes(r["answers"])
    arrays["cot/valid/greedy/answer"] = answer_codes(
        ev.cot_sample(cot, cot_tok, valid, 1, 0.0, 0, args.batch_rows)["answers"])[:, 0]
    log(f"CoT temperature grid on valid ({time.time() - t0:.0f} s)")
    t0 = time.time()
    g = ev.cot_sample(cot, cot_tok, test, 1, 0.0, 0, args.batch_rows)
    arrays["cot/greedy/answer"] = answer_codes(g["answers"])[:, 0]
    arrays["cot/greedy/generated"] = g["generated"][:, 0].numpy().astype(np.int16)
    arrays["cot/prompt_length"] = np.array(g["prompt_lengths"], dtype=np.int16)
    # the temperature is the recompute's choice on the valid grid; draw the test samples at every grid value
    # would cost 5x: draw them at the value the grid picks (the rule is the recompute's, run here on the same data)
    from evidence_recompute import choose_temperature

    temperature, _ = choose_temperature(arrays, valid)
    for s in range(args.seeds):
        r = ev.cot_sample(cot, cot_tok, test, max(NS), temperature, s, args.batch_rows)
        arrays[f"cot/seed{s}/answer"] = answer_codes(r["answers"])
        arrays[f"cot/seed{s}/generated"] = r["generated"].numpy().astype(np.int16)
    log(f"CoT test sampling at T={temperature} ({time.time() - t0:.0f} s)")
    t0 = time.time()
    for k in TRUNCATED_STEPS:
        answers, pos = cot_truncated(cot, cot_tok, test, k, batch_rows=args.batch_rows)
        arrays[f"cot/truncated{k}/answer"] = answer_codes([[a] for a in answers])[:, 0]
        arrays[f"cot/truncated{k}/positions"] = np.array(pos, dtype=np.int16)
    log(f"CoT truncated chains ({time.time() - t0:.0f} s)")
    info = {"cot_model": str(cot_path), "cot_sha256": file_sha256(Path(cot_path) / "model.safetensors"),
            "temperature": temperature, "temperatures": TEMPERATURES, "parameters": n_params,
            "truncated_steps": list(TRUNCATED_STEPS), "truncated_answer": f"greedy among the digits and end-of-text, at most {ANSWER_TOKENS} tokens"}
    return arrays, info
