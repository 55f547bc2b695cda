"""The trajectories the evidence measures: N latent rollouts and N token chains of thought per question.

A question's samples depend only on (seed, question, N), not on its batch.
Latent sample j depends on (seed, question, j) alone, so the first n of N
latent samples are the N=n samples; a chain of thought's noise is drawn N rows
at a time per step, so its first n of N are i.i.d. samples like the N=n ones
but not the same draws.  Both return what the compute accounting needs
(generated lengths, prompt lengths).
"""

from __future__ import annotations

import zlib
from typing import Dict, Optional

import torch

from hf_modeling.answers import answers_equal, extract_answer
from evidence_lib.accounting import generated_lengths
from lm_eval_latenttts.scaling.engine import Engine, Job
from lm_eval_latenttts.scaling.rollouts import Recorder

COT_SUFFIX = "\n<|start-latent|><|end-latent|>"  # the backbone recipe's stage-0 (chain of thought) prompt


def sampling_kwargs(method: Optional[str], strength: float = 0.0, scope: str = "all") -> Dict:
    """``generate`` keyword arguments of a latent sampling setting (``None``: greedy).

    Every setting is spelled out, greedy included: a checkpoint's
    ``generation_config`` may default to sampling (the shipped model's does:
    dropout p=0.2) or to another dropout scope.  Dropout covers prompt and
    latents with ``scope="all"`` (the paper's setting: each sample runs its own
    prompt pass) or the latent steps only with ``scope="latent"`` (the samples
    share one deterministic prompt pass, as noise does).
    """
    if method is None:
        return {"latent_sampling": None}
    if method == "dropout":
        return {"latent_sampling": "dropout", "dropout_p": strength, "dropout_scope": scope}
    return {"latent_sampling": "noise", "noise_std": strength}


@torch.no_grad()
def latent_rollouts(model, tok, rm, examples, n, sampling, seed, batch_rows=1024, max_new_tokens=8) -> Dict:
    """N rollouts per question -> answers, correctness, latents, generated lengths, prompt lengths, RM step and
    trajectory scores (``scores``: per question, the N RM trajectory scores the scaling report aggregates).

    The rollouts are the ones lm-eval and the scaling report draw (``lm_eval_latenttts.scaling.engine``, with the
    model's own prompt and answer formats; a ``Recorder`` keeps the latents, answer tokens and step scores); this
    only lays them out as (Q, N, ...) tensors.
    """
    config = model.latent_generation_config(num_return_sequences=n, seed=seed, max_new_tokens=max_new_tokens,
                                            aggregate=None, **sampling)  # draws only: no strategy's own work
    engine = Engine(model, tok, rm, batch_size=max(1, batch_rows // n))
    plan = engine.plan(config, payload=False)
    prompts = [model.encode_prompt(tok, e["question"]) for e in examples]
    recorder = Recorder()
    draws = engine.draws([Job(i, p, plan) for i, p in enumerate(prompts)], recorder)
    answers, correct, latents, gen, plen, steps_scores, scores = [], [], [], [], [], [], []
    for i, (e, p, (c, _, _, _)) in enumerate(zip(examples, prompts, draws)):
        trace = recorder[i]
        answers.append(c.answers)
        correct.append([answers_equal(x, e["answer"]) for x in c.answers])
        plen.append(len(p))
        latents.append(trace.latents)
        gen.append(trace.answer_tokens)
        if trace.step_scores is not None:
            steps_scores.append(trace.step_scores)
            scores.append(c.scores)
    return {
        "answers": answers,
        "correct": torch.tensor(correct, dtype=torch.bool),
        "latents": torch.stack(latents),
        "generated": torch.tensor(gen),
        "prompt_lengths": plen,
        "step_scores": torch.tensor(steps_scores) if steps_scores else None,
        "scores": scores if rm is not None else None,
    }


def first_n(roll: Dict, n: int) -> Dict:
    """The first ``n`` samples of each question of :func:`latent_rollouts`' output (= its N=n output)."""
    return {
        "answers": [a[:n] for a in roll["answers"]],
        "correct": roll["correct"][:, :n],
        "latents": roll["latents"][:, :n],
        "generated": roll["generated"][:, :n],
        "prompt_lengths": roll["prompt_lengths"],
        "step_scores": None if roll["step_scores"] is None else roll["step_scores"][:, :n],
        "scores": None if roll.get("scores") is None else [s[:n] for s in roll["scores"]],
    }


def cot_noise_seed(seed: int, question: str) -> int:
    """The seed of a question's chain-of-thought Gumbel noise: a function of the run's seed and the question
    *text* (the CoT sampler has no question ids).  Not ``training.annotate.question_seed``, which seeds a
    question's latent rollouts from its *id* in an annotation file."""
    return (zlib.crc32(question.encode()) * 1_000_003 + seed) % (2**63 - 1)


@torch.no_grad()
def cot_sample(model, tok, examples, n, temperature, seed, batch_rows=1024, max_new_tokens=40) -> Dict:
    """N chains of thought per question with temperature sampling (temperature 0: greedy).

    The prompt is run once per question and its KV cache repeated for the N
    samples.  A question's N samples are a function of (seed, question, N)
    only: their Gumbel noise comes from a generator seeded by the question and
    the seed, drawn (N, vocab) per step.
    """
    from transformers import DynamicCache

    eos = tok.eos_token_id
    bq = max(1, batch_rows // n)
    answers, correct, gen, plen = [], [], [], []
    for b in range(0, len(examples), bq):
        chunk = examples[b:b + bq]
        ids = [tok(e["question"] + COT_SUFFIX, add_special_tokens=False)["input_ids"] for e in chunk]
        if len({len(x) for x in ids}) != 1:  # every arith question has the same token length
            raise ValueError("cot_sample expects prompts of one token length per batch")
        prompt = torch.tensor(ids)
        p = prompt.shape[1]
        out = model.transformer(input_ids=prompt, cache=DynamicCache(config=model.config), use_cache=True,
                                attention_mask=torch.ones_like(prompt), position_ids=torch.arange(p)[None].expand(len(chunk), p))
        cache = out.cache
        cache.batch_repeat_interleave(n)
        hidden = out.last_hidden_state[:, -1].repeat_interleave(n, 0)
        gens = [torch.Generator().manual_seed(cot_noise_seed(seed, e["question"])) for e in chunk]
        rows = len(chunk) * n
        done = torch.zeros(rows, dtype=torch.bool)
        toks = []
        for step in range(max_new_tokens):
            logits = model.lm_head(hidden).float()
            if temperature > 0:
                u = torch.cat([torch.rand(n, logits.shape[-1], generator=g, dtype=torch.float64) for g in gens])
                gumbel = -torch.log(-torch.log(u.clamp(1e-300, 1 - 1e-16)))
                nxt = (logits.double() / temperature + gumbel).argmax(-1)
            else:
                nxt = logits.argmax(-1)
            nxt = torch.where(done, torch.full_like(nxt, eos), nxt)
            toks.append(nxt)
            done = done | (nxt == eos)
            if bool(done.all()) or step == max_new_tokens - 1:
                break
            out = model.transformer(input_ids=nxt[:, None], cache=cache, use_cache=True,
                                    attention_mask=torch.ones(rows, p + step + 1, dtype=torch.long),
                                    position_ids=torch.full((rows, 1), p + step))
            cache, hidden = out.cache, out.last_hidden_state[:, -1]
        seqs = torch.stack(toks, 1)
        lens = generated_lengths(seqs, eos).view(len(chunk), n)
        texts = tok.batch_decode(seqs, skip_special_tokens=True)
        for i, e in enumerate(chunk):
            a = [extract_answer(t, "coconut") for t in texts[i * n:(i + 1) * n]]
            answers.append(a)
            correct.append([answers_equal(x, e["answer"]) for x in a])
            plen.append(p)
        gen.append(lens)
    return {"answers": answers, "correct": torch.tensor(correct, dtype=torch.bool), "generated": torch.cat(gen),
            "prompt_lengths": plen}
