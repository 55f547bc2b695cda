"""Annotation throughput: continuations per second with and without prefix sharing.

A small random GPT-2 (COCONUT layout) on CPU.  *Shared*: ``annotate_question``
(the prefix cache of each latent step is computed once and branched into the M
continuations with ``LatentState.select``).  *Naive*: for every latent step the
N*M continuation rows recompute the prompt and the trajectory's prefix (prompt
pass, then the recorded latents fed back one by one) before continuing -- the
same batching, so the difference is only the prefix sharing.

    python benchmarks/annotation.py [--questions 4 --n 8 --m 16 --layers 4 --hidden 128 --threads 1]
"""

import argparse
import os
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def naive_question(model, tokenizer, kind, prompt_ids, gold, n, m, sampler_kwargs, seed, max_new_tokens, steps):
    from hf_modeling.latent_generation import batch_invariant_attention, sample_keys
    from hf_modeling.latent_sampling import fold
    from lm_eval_latenttts.training.annotate import _Judge, _finish

    setup = model.prepare_rollout(
        torch.tensor([prompt_ids]), latent_sampling=sampler_kwargs["mode"], dropout_p=sampler_kwargs["dropout_p"],
        noise_std=sampler_kwargs["noise_std"], seed=seed, latent_length=steps, max_new_tokens=max_new_tokens,
    )
    ids, mask, sampler, eos, pad = setup.input_ids, setup.attention_mask, setup.sampler, setup.eos_token_id, \
        setup.pad_token_id
    keys = sample_keys(setup.question_keys, n)
    judge = _Judge(tokenizer, kind, gold, eos)
    continuations = 0
    model.eval()
    with torch.no_grad(), sampler.attached(model), batch_invariant_attention():
        traj = model.prefill(ids.expand(n, -1), mask.expand(n, -1), sampler, keys)
        for _ in range(steps):
            model.latent_step(traj, sampler)
        latents = torch.stack(traj.latents, 1)  # (n, steps, hidden)
        model.decode_answer(traj, max_new_tokens, eos, pad)
        continuations += n
        for t in range(steps - 1):
            rows = torch.arange(n).repeat_interleave(m)
            branch_keys = fold(fold(keys[rows], t), torch.arange(m).repeat(n))
            state = model.prefill(ids.expand(n * m, -1), mask.expand(n * m, -1), sampler, branch_keys)  # recomputed
            with sampler.phase("latent"):
                for k in range(t + 1):  # the trajectory's prefix, recomputed
                    model._forward_step(state, latents[rows, k], sampler=sampler)
            judge.correct(_finish(model, state, sampler, steps - t - 1, max_new_tokens, eos, pad, setup.answer_room))
            continuations += n * m
    return continuations


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--questions", type=int, default=4)
    p.add_argument("--n", type=int, default=8)
    p.add_argument("--m", type=int, default=16)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--steps", type=int, default=6, help="latent steps")
    p.add_argument("--max-new-tokens", type=int, default=8)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)

    from tiny_models import make_checkpoint

    from hf_modeling import AutoLatentModel, load_latent_tokenizer
    from lm_eval_latenttts.training.annotate import annotate_question

    folder = make_checkpoint(os.path.join(tempfile.mkdtemp(), "gpt2"), "coconut", n_layer=a.layers, hidden=a.hidden)
    model = AutoLatentModel.from_pretrained(str(folder))
    tok = load_latent_tokenizer(str(folder), model.config)
    sampler_kwargs = {"mode": "dropout", "dropout_p": 0.1, "noise_std": 0.0}
    prompts = [model.encode_prompt(tok, f"Natalia sold clips to {i} of her friends, then half as many. How many?")
               for i in range(a.questions)]
    common = dict(max_new_tokens=a.max_new_tokens)

    results = {}
    for name in ("shared", "naive"):
        # warm-up
        annotate_question(model, tok, "coconut", prompts[0], "1", num_trajectories=2, num_continuations=2,
                          sampler_kwargs=sampler_kwargs, seed=0, latent_length=2, **common)
        start, total = time.perf_counter(), 0
        for i, ids in enumerate(prompts):
            if name == "shared":
                _, c = annotate_question(model, tok, "coconut", ids, "1", num_trajectories=a.n, num_continuations=a.m,
                                         sampler_kwargs=sampler_kwargs, seed=i, latent_length=a.steps, **common)
            else:
                c = naive_question(model, tok, "coconut", ids, "1", a.n, a.m, sampler_kwargs, i,
                                   a.max_new_tokens, a.steps)
            total += c
        seconds = time.perf_counter() - start
        results[name] = (total, seconds)
        print(f"{name:>6}: {total} continuations in {seconds:.2f} s = {total / seconds:.1f} continuations/s "
              f"({seconds / a.questions:.2f} s/question)")
    speedup = (results["shared"][0] / results["shared"][1]) / (results["naive"][0] / results["naive"][1])
    print(f"GPT-2 {a.layers} layers x {a.hidden}, prompt {len(prompts[0])} tokens, N={a.n}, M={a.m}, "
          f"{a.steps} latent steps, {a.max_new_tokens} answer tokens, {a.threads} thread(s): "
          f"prefix sharing is {speedup:.2f}x faster")


if __name__ == "__main__":
    main()
