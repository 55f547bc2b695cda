"""Measure greedy and parallel (N-sample) accuracy of a trained arith backbone.

    python -m lm_eval_latenttts.recipes.eval_backbone \
        --model lm_eval_latenttts/checkpoints/arith-coconut --n 16 \
        --dropout 0.1,0.2,0.3 --noise 0.5,1.0

Self-contained check of the training recipe (hand-written latent loop from
``train_backbone``): greedy latent accuracy, then for every stochastic setting
(Monte Carlo residual dropout ``p`` or Gaussian noise ``sigma`` on the fed-back
latents) it draws N samples per question (each prompt repeated N times in one
batch) and reports single-sample accuracy (mean over samples), majority@N and
coverage@N (any of N right).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter

import torch

from lm_eval_latenttts import arith
from lm_eval_latenttts.recipes.train_backbone import extract_answer, latent_generate


def load(model_dir: str):
    from transformers import AutoTokenizer, GPT2LMHeadModel

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = GPT2LMHeadModel.from_pretrained(model_dir)
    model.eval()
    with open(os.path.join(model_dir, "config.json")) as f:
        latent_length = json.load(f)["latent_length"]
    return model, tok, latent_length


def sample_metrics(model, tok, examples, n_latent, n, dropout_p=0.0, noise_sigma=0.0, seed=0,
                   batch_size=1024):
    torch.manual_seed(seed)
    qs = [e["question"] for e in examples for _ in range(n)]
    preds = [extract_answer(p) for p in latent_generate(
        model, tok, qs, n_latent, dropout_p=dropout_p, noise_sigma=noise_sigma,
        batch_size=batch_size)]
    single = maj = cov = 0.0
    n_distinct = 0
    for i, e in enumerate(examples):
        ps = preds[i * n:(i + 1) * n]
        right = [p == e["answer"] for p in ps]
        single += sum(right) / n
        cov += any(right)
        maj += Counter(ps).most_common(1)[0][0] == e["answer"]
        n_distinct += len(set(ps))
    k = len(examples)
    return {"single": round(single / k, 4), f"majority@{n}": round(maj / k, 4),
            f"coverage@{n}": round(cov / k, 4), "distinct_answers": round(n_distinct / k, 2)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", required=True, help="checkpoint folder (COCONUT layout)")
    p.add_argument("--split", default="test", help="shipped split: test or valid")
    p.add_argument("--limit", type=int, default=None, help="use only the first LIMIT questions")
    p.add_argument("--n", type=int, default=16, help="samples per question")
    p.add_argument("--dropout", default="0.1,0.2,0.3", help="comma list of MC dropout p ('' for none)")
    p.add_argument("--noise", default="0.5,1.0", help="comma list of latent noise sigma ('' for none)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--json", default=None, help="also write the results to this file")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    model, tok, L = load(a.model)
    exs = arith.load_split(a.split)[:a.limit]
    t0 = time.time()
    greedy = [extract_answer(x) for x in latent_generate(model, tok, [e["question"] for e in exs], L)]
    res = {"model": a.model, "split": a.split, "n_questions": len(exs), "latent_length": L,
           "greedy": round(sum(g == e["answer"] for g, e in zip(greedy, exs)) / len(exs), 4),
           "sampling": []}
    print(json.dumps({"greedy": res["greedy"]}), flush=True)
    settings = [("dropout", float(x)) for x in a.dropout.split(",") if x] + \
               [("noise", float(x)) for x in a.noise.split(",") if x]
    for kind, v in settings:
        m = sample_metrics(model, tok, exs, L, a.n, dropout_p=v if kind == "dropout" else 0.0,
                           noise_sigma=v if kind == "noise" else 0.0, seed=a.seed)
        rec = {kind: v, **m}
        res["sampling"].append(rec)
        print(json.dumps(rec), flush=True)
    res["seconds"] = round(time.time() - t0, 1)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=2)
    return res


if __name__ == "__main__":
    main()
