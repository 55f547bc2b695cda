"""The rollouts every selector is compared on: N latent samples per question and seed, the greedy decode, and
what each latent prefix reads back as.

``draw_split`` draws, for each seed, N rollouts per question with the checkpoint's recommended sampling (the
shipped model: MC dropout p=0.2 over prompt and latents) through ``lm_eval_latenttts.scaling.engine`` -- the
rollouts ``lm_eval`` and the scaling report draw; a ``Recorder`` keeps the latents -- and keeps per trajectory its
answer, correctness,
latent vectors and answer tokens; the greedy decode once per question; and, per trajectory, what latent 0
reads back as (``training.exact_labels.read_back``: the explicit step the backbone writes after it), so that
every trajectory's first step can be labelled right or wrong exactly.

Saved as one ``torch.save`` file of tensors and plain lists (read back with ``weights_only=True``); the latents
make it large (about 100 MB per split at N=64, 3 seeds), so it lives under ``runs/`` and only the per-question
arrays derived from it are committed (``benchmarks/results/selection_*.npz``).
"""

from __future__ import annotations

import time

import torch

from hf_modeling.answers import normalize_number
from lm_eval_latenttts.scaling.engine import Engine, Job
from lm_eval_latenttts.scaling.rollouts import Recorder
from lm_eval_latenttts.training.exact_labels import read_back, step_expression

NO_ANSWER = -1  # an answer that is no number (never equal to another)
OTHER = -2  # a number that is not an integer in [0, 2**31)


def answer_code(answer) -> int:
    """An extracted answer as an int code: the integer itself, or ``NO_ANSWER`` / ``OTHER``."""
    value = normalize_number(answer) if answer is not None else None
    if value is None:
        return NO_ANSWER
    if isinstance(value, int) and 0 <= value < 2**31:
        return value
    return OTHER


def left_operand(text) -> int:
    """The first number of the first explicit step in ``text`` (``"<<55*3=65>>"`` -> 55), else ``NO_ANSWER``."""
    expr = step_expression(text)
    if not expr:
        return NO_ANSWER
    digits = ""
    for ch in expr:
        if ch.isdigit():
            digits += ch
        elif digits:
            break
    return int(digits) if digits else NO_ANSWER


def _pad_tokens(rows: list[list[int]], width: int) -> torch.Tensor:
    out = torch.full((len(rows), width), -1, dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, : min(len(r), width)] = torch.tensor(r[:width], dtype=torch.long)
    return out


def _answer_tokens(tok, texts, width):
    eos = tok.eos_token_id
    return _pad_tokens([tok(t, add_special_tokens=False)["input_ids"] + [eos] for t in texts], width)


def _draw(model, tok, prompts, config, batch_questions, offset: int = 0):
    """Per prompt its draw under ``config`` (samples ``offset .. offset + N - 1``) and its recorded latents."""
    engine = Engine(model, tok, None, batch_size=batch_questions)
    plan = engine.plan(config, payload=False)
    recorder = Recorder()
    found = engine.draws([Job(i, p, plan, sample_offset=offset) for i, p in enumerate(prompts)], recorder)
    return [drawn.draw for drawn in found], [recorder[i].latents for i in range(len(prompts))]


@torch.no_grad()
def draw_split(model, tok, examples, n: int, seeds: list[int], batch_questions: int = 8, answer_width: int = 8,
               log=print, readback_n: int | None = None) -> dict:
    """Every array the selection study needs for ``examples`` (see the module docstring)."""
    prompts = [model.encode_prompt(tok, e["question"]) for e in examples]
    q = len(examples)
    out = {"n": n, "seeds": list(seeds), "questions": [e["question"] for e in examples],
           "gold": [int(e["answer"]) for e in examples], "prompts": prompts,
           "steps": [list(e.get("steps", [])) for e in examples]}
    greedy_cfg = model.latent_generation_config(latent_sampling=None, num_return_sequences=1, aggregate=None)
    greedy, greedy_latents = _draw(model, tok, prompts, greedy_cfg, batch_questions)
    out["greedy_answer"] = torch.tensor([answer_code(c.answers[0]) for c in greedy])
    out["greedy_correct"] = torch.tensor([model.is_correct(c.texts[0], e["answer"]) for c, e in zip(greedy, examples)])
    out["greedy_latents"] = torch.stack([lat[0] for lat in greedy_latents])
    out["greedy_answer_tokens"] = torch.stack([_answer_tokens(tok, c.texts[:1], answer_width)[0] for c in greedy])
    answers, correct, latents, tokens = [], [], [], []
    for seed in seeds:
        config = model.latent_generation_config(num_return_sequences=n, seed=seed, aggregate=None)  # draws only
        started = time.time()
        found, found_latents = _draw(model, tok, prompts, config, batch_questions)
        answers.append(torch.tensor([[answer_code(a) for a in c.answers] for c in found]))
        correct.append(torch.tensor([[model.is_correct(t, e["answer"]) for t in c.texts]
                                     for c, e in zip(found, examples)]))
        latents.append(torch.stack(found_latents))
        tokens.append(torch.stack([_answer_tokens(tok, c.texts, answer_width) for c in found]))
        log(f"seed {seed}: {q} questions x {n} rollouts in {time.time() - started:.0f} s "
            f"({config.latent_sampling}, p={config.dropout_p}, sigma={config.noise_std})")
    out["sampling"] = {"latent_sampling": config.latent_sampling, "dropout_p": config.dropout_p,
                       "noise_std": config.noise_std, "dropout_scope": config.dropout_scope}
    out["answers"] = torch.stack(answers)  # (S, Q, N)
    out["correct"] = torch.stack(correct)  # (S, Q, N)
    out["latents"] = torch.stack(latents)  # (S, Q, N, T, H)
    out["answer_tokens"] = torch.stack(tokens)  # (S, Q, N, A), -1 padded
    # what latent 0 of every trajectory (and of the greedy one) reads back as
    started = time.time()
    r = min(n, readback_n or n)  # the first r samples of each question are read back
    x1 = torch.full((len(seeds), q, r), NO_ANSWER, dtype=torch.long)
    x1_greedy = torch.full((q,), NO_ANSWER, dtype=torch.long)
    final, final_greedy = x1.clone(), x1_greedy.clone()
    for i in range(q):
        prefixes = torch.cat([out["latents"][:, i, :r, :1].reshape(-1, 1, out["latents"].shape[-1]),
                              out["greedy_latents"][i, None, :1]])
        texts = read_back(model, tok, prompts[i], prefixes)
        read = [left_operand(t) for t in texts]
        ends = [answer_code(model.extract_answer(t)) for t in texts]
        x1[:, i] = torch.tensor(read[:-1]).view(len(seeds), r)
        x1_greedy[i] = read[-1]
        final[:, i] = torch.tensor(ends[:-1]).view(len(seeds), r)
        final_greedy[i] = ends[-1]
    out["x1_read"], out["greedy_x1_read"] = x1, x1_greedy
    # the answer the backbone writes when it verbalises the rest in tokens from latent 0 on
    out["readback_answer"], out["greedy_readback_answer"] = final, final_greedy
    out["x1_true"] = torch.tensor([left_operand(s[1]) if len(s) > 1 else NO_ANSWER for s in out["steps"]])
    log(f"read back latent 0 of {len(seeds) * q * r + q} trajectories in {time.time() - started:.0f} s")
    return out


@torch.no_grad()
def extend_split(model, tok, data: dict, n_new: int, batch_questions: int = 32, answer_width: int = 8, log=print):
    """Draw samples ``n .. n_new - 1`` of every question and seed of ``data`` (from ``draw_split``) and append
    them: sample j is keyed by (seed, question, j), so the result equals drawing ``n_new`` from the start.
    RM scores of the old samples are dropped (score again)."""
    from lm_eval_latenttts.data import arith  # noqa: F401

    n, q = data["n"], len(data["prompts"])
    examples = [{"answer": str(g)} for g in data["gold"]]
    parts = {k: [] for k in ("answers", "correct", "latents", "answer_tokens")}
    for s, seed in enumerate(data["seeds"]):
        config = model.latent_generation_config(num_return_sequences=n_new - n, seed=seed, aggregate=None)
        started = time.time()
        found, found_latents = _draw(model, tok, data["prompts"], config, batch_questions, offset=n)
        parts["answers"].append(torch.tensor([[answer_code(a) for a in c.answers] for c in found]))
        parts["correct"].append(torch.tensor([[model.is_correct(t, e["answer"]) for t in c.texts]
                                              for c, e in zip(found, examples)]))
        parts["latents"].append(torch.stack(found_latents))
        parts["answer_tokens"].append(torch.stack([_answer_tokens(tok, c.texts, answer_width) for c in found]))
        log(f"seed {seed}: samples {n}..{n_new - 1} of {q} questions in {time.time() - started:.0f} s")
    for k, v in parts.items():
        data[k] = torch.cat([data[k], torch.stack(v)], dim=2)
    data["n"], data["scores"] = n_new, {}
    return data
