"""Seconds per ``generate`` call and peak memory of latent rollouts, against the naive way and the floor.

A GPT-2-small-sized random COCONUT (12 layers, hidden 768; --layers/--hidden), 2 prompts of 96
tokens, 6 latents, 8 answer tokens (EOS disabled so every call decodes 8),
noise sampling (``--sampling dropout``: dropout on the latent steps).  For N in {1, 4, 16, 64}:

- ``latent_tts``: this project's ``generate`` (prompt once, cache shared by N).
- ``naive``: N full copies of the prompt (the prompt pass runs on B*N rows),
  otherwise the same KV-cached loop.
- ``floor``: the bare forward passes alone: prompt once, cache copied to N
  rows, latent and answer steps as plain backbone calls, nothing else.

Each (implementation, N) runs in a fresh subprocess so that peak RSS is its
own.  Usage: ``python benchmarks/rollouts.py [--n 1 4 16 64] [--repeats 3] [--device cpu]``.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import torch

PROMPTS, PROMPT_LEN, LATENTS, ANSWER = 2, 96, 6, 8


def build(device, layers=12, hidden=768):
    import hf_modeling

    torch.manual_seed(0)
    vocab = 50260
    config = hf_modeling.CoconutConfig(
        vocab_size=vocab, n_layer=layers, n_embd=hidden, n_head=max(1, hidden // 64), latent_id=50258, latent_start_id=50257,
        latent_end_id=50259, eos_token_id=50256, pad_token_id=50256, bos_token_id=50256, latent_length=LATENTS,
    )
    model = hf_modeling.COCONUTGPT2(config).to(device).eval()
    ids = torch.randint(0, 50000, (PROMPTS, PROMPT_LEN), device=device)
    ids[:, -1] = config.latent_start_id
    return model, ids, torch.ones_like(ids)


SAMPLING = {"noise": dict(latent_sampling="noise", noise_std=0.5),
            # dropout on the latent steps only, so that the prompt pass can be shared as with noise
            "dropout": dict(latent_sampling="dropout", dropout_p=0.1, dropout_scope="latent")}


def run_latent_tts(model, ids, mask, n, sampling):
    return model.generate(
        ids, mask, num_return_sequences=n, seed=0, max_new_tokens=ANSWER, eos_token_id=[-1], **SAMPLING[sampling],
    )


def run_naive(model, ids, mask, n, sampling):
    """N full copies of the prompt: with dropout on the prompt this is what each sample needs."""
    from hf_modeling import LatentGenerationConfig, LatentSampler
    from hf_modeling.latent_generation import batch_invariant_attention, question_keys, sample_keys

    sampler = LatentSampler(LatentGenerationConfig(**{**SAMPLING[sampling], "dropout_scope": "all"}).for_backbone("coconut"))
    keys = sample_keys(question_keys(ids, mask, 0), n)
    with sampler.attached(model), batch_invariant_attention():
        state = model.prefill(ids.repeat_interleave(n, 0), mask.repeat_interleave(n, 0), sampler, keys)
        for _ in range(LATENTS):
            model.latent_step(state, sampler)
        return model.decode_answer(state, ANSWER, [-1], 50256)


@torch.no_grad()
def run_floor(model, ids, mask, n, sampling):
    from transformers import DynamicCache

    body = model.transformer
    out = body(input_ids=ids, attention_mask=mask, cache=DynamicCache(config=model.config), use_cache=True)
    cache = out.cache
    cache.batch_repeat_interleave(n)
    h = out.last_hidden_state[:, -1:].repeat_interleave(n, 0)
    length = ids.shape[1]
    full_mask = torch.ones(ids.shape[0] * n, length + LATENTS + ANSWER + 1, dtype=mask.dtype, device=ids.device)
    for step in range(LATENTS):
        length += 1
        h = body(inputs_embeds=h, attention_mask=full_mask[:, :length], cache=cache, use_cache=True).last_hidden_state
    token = torch.full((h.shape[0], 1), model.config.latent_end_id, device=ids.device)
    for step in range(ANSWER):
        length += 1
        h = body(input_ids=token, attention_mask=full_mask[:, :length], cache=cache, use_cache=True).last_hidden_state
        token = model.lm_head(h[:, -1:]).argmax(-1)
    return token


IMPLEMENTATIONS = {"latent_tts": run_latent_tts, "naive": run_naive, "floor": run_floor}


def measure(impl, n, repeats, device, sampling, layers=12, hidden=768):
    """Runs inside the child process: time per call (median) and peak RSS above the loaded model."""
    model, ids, mask = build(device, layers, hidden)
    fn = IMPLEMENTATIONS[impl]
    with torch.no_grad():
        fn(model, ids, mask, 1, sampling)  # warm-up
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        if device.startswith("cuda"):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base_cuda = torch.cuda.memory_allocated()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn(model, ids, mask, n, sampling)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
    peak_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024
    if device.startswith("cuda"):
        peak_mb = (torch.cuda.max_memory_allocated() - base_cuda) / 2**20
    return {"impl": impl, "n": n, "seconds": statistics.median(times), "peak_mb": peak_mb}


def _child(args, impl, n):
    """``measure`` in a fresh process (its peak RSS its own)."""
    cmd = [sys.executable, __file__, "--child", impl, str(n), "--repeats", str(args.repeats), "--device", args.device,
           "--sampling", args.sampling, "--layers", str(args.layers), "--hidden", str(args.hidden)]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    res = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, TRANSFORMERS_VERBOSITY="error"))
    if res.returncode != 0:
        sys.exit(res.stderr[-3000:])
    return json.loads(res.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, nargs="+", default=[1, 4, 16, 64], help="samples per question")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per point (median reported)")
    parser.add_argument("--device", default="cpu", help="torch device")
    parser.add_argument("--sampling", choices=sorted(SAMPLING), default="noise",
                        help="noise on the latents, or dropout on the latent steps (the prompt pass shared)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--layers", type=int, default=12, help="model depth (smoke runs: 2)")
    parser.add_argument("--hidden", type=int, default=768, help="model width (smoke runs: 64)")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    parser.add_argument("--in-process", action="store_true",
                        help="measure in this process, no fresh process per point (smoke runs: peak RSS not its own)")
    parser.add_argument("--child", nargs=2, metavar=("IMPL", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:
        print(json.dumps(measure(args.child[0], int(args.child[1]), args.repeats, args.device, args.sampling,
                                 args.layers, args.hidden)))
        return

    rows = []
    for n in args.n:
        for impl in IMPLEMENTATIONS:
            if args.in_process:
                rows.append(measure(impl, n, args.repeats, args.device, args.sampling, args.layers, args.hidden))
            else:
                rows.append(_child(args, impl, n))
            r = rows[-1]
            print(f"N={n:3d} {impl:11s} {r['seconds']:8.3f} s/call  peak +{r['peak_mb']:8.1f} MB", flush=True)
    print()
    print(f"{'N':>4} {'latent_tts s':>13} {'naive s':>9} {'floor s':>9} {'naive/ours':>11} {'ours/floor':>11} {'ours MB':>8} {'naive MB':>9}")
    for n in args.n:
        r = {x["impl"]: x for x in rows if x["n"] == n}
        ours, naive, floor = r["latent_tts"], r["naive"], r["floor"]
        print(
            f"{n:4d} {ours['seconds']:13.3f} {naive['seconds']:9.3f} {floor['seconds']:9.3f} "
            f"{naive['seconds'] / ours['seconds']:11.2f} {ours['seconds'] / floor['seconds']:11.2f} "
            f"{ours['peak_mb']:8.1f} {naive['peak_mb']:9.1f}"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": args.device, "sampling": args.sampling, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
