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


def naive_question(model, tokenizer, prompt_ids, gold, config, m):
    """``annotate_question``'s work with every continuation recomputing its prefix; returns continuations run."""
    from hf_modeling.latent_sampling import fold
    from hf_modeling.latent_state import batch_invariant_attention, sample_keys
    from lm_eval_latenttts.scaling.rollouts import decode_answers
    from lm_eval_latenttts.training.annotate import _finish

    n = config.num_return_sequences
    setup = model.prepare_rollout(torch.tensor([list(prompt_ids)]), None, config)
    ids, mask, sampler, steps = setup.input_ids, setup.attention_mask, setup.sampler, setup.steps
    keys = sample_keys(setup.question_keys, n)

    def judge(answer_ids):
        return [model.is_correct(t, gold) for t in decode_answers(tokenizer, answer_ids, setup.eos_token_id)]

    continuations = 0
    model.eval()
    with torch.no_grad(), sampler.attached(model), batch_invariant_attention():
        traj = model.prefill(ids.expand(n, -1), mask.expand(n, -1), sampler, keys)
        for _ in range(steps):
            model.latent_step(traj, sampler)
        latents = torch.stack(traj.latents, 1)  # (n, steps, hidden)
        judge(model.decode_answer(traj, setup.max_new_tokens, setup.eos_token_id, setup.pad_token_id,
                                  setup.answer_room))
        continuations += n
        for t in range(steps - 1):
            rows = torch.arange(n).repeat_interleave(m)
            branch_keys = fold(fold(keys[rows], t), torch.arange(m).repeat(n))
            state = model.prefill(ids.expand(n * m, -1), mask.expand(n * m, -1), sampler, branch_keys)  # recomputed
            with sampler.phase("latent"):
                for k in range(t + 1):  # the trajectory's prefix, recomputed
                    model._forward_step(state, latents[rows, k], sampler=sampler)
            judge(_finish(model, state, sampler, steps - t - 1, setup))
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
    prompts = [model.encode_prompt(tok, f"Natalia sold clips to {i} of her friends, then half as many. How many?")
               for i in range(a.questions)]

    def config(seed, n, steps):
        return model.latent_generation_config(latent_sampling="dropout", dropout_p=0.1, seed=seed,
                                              num_return_sequences=n, latent_length=steps,
                                              max_new_tokens=a.max_new_tokens)

    results = {}
    for name in ("shared", "naive"):
        annotate_question(model, tok, prompts[0], "1", config(0, 2, 2), 2)  # warm-up
        start, total = time.perf_counter(), 0
        for i, ids in enumerate(prompts):
            if name == "shared":
                _, c = annotate_question(model, tok, ids, "1", config(i, a.n, a.steps), a.m)
            else:
                c = naive_question(model, tok, ids, "1", config(i, a.n, a.steps), a.m)
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
