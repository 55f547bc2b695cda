"""LatentRM scoring time as a fraction of rollout time (best-of-N at N=16).

GPT-2-small-sized random COCONUT backbone (12 layers, hidden 768, vocab 50260)
and a LatentRM of the same size; 2 prompts of 96 tokens, N=16 rollouts each,
6 latent steps, 8 answer tokens (EOS disabled so every row decodes 8 tokens).
Rollout = ``backbone.generate``; scoring = ``rm.score_rollouts`` (prompt pass
once per question, then all 6 latents of the 32 rows in one forward).

Usage: python benchmarks/rm_scoring.py [--repeats 1] [--threads T]
"""

import argparse
import statistics
import time

import torch

from hf_modeling import COCONUTGPT2, CoconutConfig
from hf_modeling.configuration_latent_rm import LatentRMGPT2Config
from hf_modeling.modeling_latent_rm import COCONUTGPT2ForTokenClassification

VOCAB = 50260
IDS = dict(latent_start_id=50257, latent_id=50258, latent_end_id=50259)


def build(seed=0, layers=12, hidden=768):
    torch.manual_seed(seed)
    common = dict(vocab_size=VOCAB, n_positions=1024, n_embd=hidden, n_layer=layers, n_head=max(1, hidden // 64),
                  bos_token_id=50256, eos_token_id=50256, pad_token_id=50256, **IDS)
    backbone = COCONUTGPT2(CoconutConfig(**common, latent_length=6)).eval()
    rm = COCONUTGPT2ForTokenClassification(LatentRMGPT2Config(**common)).eval()
    return backbone, rm


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--layers", type=int, default=12, help="model depth (smoke runs: 2)")
    parser.add_argument("--hidden", type=int, default=768, help="model width (smoke runs: 64)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    backbone, rm = build(layers=args.layers, hidden=args.hidden)
    g = torch.Generator().manual_seed(1)
    prompts = torch.randint(0, 50000, (2, 96), generator=g)
    prompts[:, -1] = IDS["latent_start_id"]
    mask = torch.ones_like(prompts)
    settings = {
        "dropout p=0.1 (paper: prompt + latents, prompt run N times)": dict(latent_sampling="dropout", dropout_p=0.1),
        "noise sigma=0.5 (prompt pass shared by the N samples)": dict(latent_sampling="noise", noise_std=0.5),
    }
    print(f"backbone/RM: {args.layers} layers, hidden {args.hidden}; 2 prompts x 96 tokens, N={args.n}, 6 latents, 8 answer tokens; "
          f"torch threads {torch.get_num_threads()}")
    with torch.no_grad():
        for name, kw in settings.items():
            rollout_t, score_t = [], []
            for r in range(args.repeats + 1):  # first round is warm-up
                t0 = time.perf_counter()
                out = backbone.generate(prompts, mask, num_return_sequences=args.n, seed=r, max_new_tokens=8,
                                        eos_token_id=[-1], pad_token_id=50256, return_dict_in_generate=True, **kw)
                t1 = time.perf_counter()
                scores = rm.score_rollouts(out)
                t2 = time.perf_counter()
                assert out.answer_ids.shape == (2 * args.n, 8) and scores.step_scores.shape == (2 * args.n, 6)
                if r:
                    rollout_t.append(t1 - t0)
                    score_t.append(t2 - t1)
            ro, sc = statistics.median(rollout_t), statistics.median(score_t)
            print(f"{name}: rollout {ro:.3f} s, RM scoring {sc:.3f} s -> scoring/rollout = {100 * sc / ro:.1f}% "
                  f"(target <= 25%)")


if __name__ == "__main__":
    main()
