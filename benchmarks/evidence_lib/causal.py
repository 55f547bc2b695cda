"""Where a sampled answer's change comes from, and whether the answer reads latent 2: re-decodes and implants.

A COCONUT rollout with Monte Carlo dropout over prompt and latents changes a
sample's answer through three things: the prompt pass's KV cache (perturbed
by dropout), the two fed-back latent vectors, and the dropout in the latent
slots' own forwards.  :func:`causal_rollouts` draws the same samples as
``scaling.rollouts.sample`` (the model's public step functions, same keys) and
re-decodes each with parts swapped, every re-decode without dropout:

* ``replay``: its own prompt cache and its own latents (only the latent slots' dropout is gone);
* ``latents_only`` (a): the clean (greedy) prompt cache and its own latents;
* ``prompt_only`` (b): its own (perturbed) prompt cache and the greedy latents;

and implants a changed first intermediate into latent 2 (the input of the
second latent slot, which the answer reads), on its own prompt cache and latent 1:

* ``swap``: latent 2 of another question's greedy trajectory that has the same second operation and operand
  and whose x1 ones digit is the target digit (its latent 2 read as that digit by the ones-digit probe);
* ``shift``: latent 2 moved by the difference of the class means (greedy training latents) of the target
  digit and of the digit it carries now;
* ``null_swap``: latent 2 of another question with the same second operation, operand *and* ones digit of
  x1 as the row's latent 2 carries: changes everything but the digit.

The target digit of a row is drawn among the digits whose implied answer ones digit (the second operation
applied to it; ``+``, ``-``, ``*`` mod 100 fix the answer's ones digit from x1's) differs from the replay
answer's, so "follows the implant" and "keeps its answer" cannot both hold.
"""

from __future__ import annotations

import random
from typing import Dict, List, Sequence

import numpy as np
import torch

from hf_modeling.latent_state import batch_invariant_attention, eval_mode, sample_keys
from lm_eval_latenttts.scaling.rollouts import decode_answers, left_pad
from evidence_lib.readout import parse_steps
from evidence_lib.store import answer_codes
from lm_eval_latenttts.data.arith import apply_op

VARIANTS = ("full", "replay", "latents_only", "prompt_only", "swap", "shift", "null_swap")


def implied_ones(example: Dict, digit: int) -> int:
    """The answer's ones digit when x1's ones digit is ``digit`` (the question's second operation)."""
    _, op, c, _ = parse_steps(example)[1]
    return apply_op(op, int(digit), c) % 10


class Donors:
    """Greedy latent-2 vectors of other questions by (second operation, operand, x1 ones digit), and the class
    means of latent 2 per x1 ones digit; only latents the ones-digit probe reads as their true digit qualify."""

    def __init__(self, examples: Sequence[Dict], z2: torch.Tensor, read_ones: torch.Tensor):
        self.z2 = z2.float()
        ones = torch.tensor([parse_steps(e)[0][3] % 10 for e in examples])
        self.means = torch.stack([self.z2[ones == d].mean(0) for d in range(10)])
        self.pool: Dict[tuple, List[int]] = {}
        self.question = [e["question"] for e in examples]
        for i, e in enumerate(examples):
            if int(read_ones[i]) != int(ones[i]):
                continue
            _, op, c, _ = parse_steps(e)[1]
            self.pool.setdefault((op, c, int(ones[i])), []).append(i)

    def pick(self, example: Dict, digit: int, rng: random.Random) -> int | None:
        """A donor index with the example's second (operation, operand) and x1 ones digit ``digit`` (never the
        example itself), or None."""
        _, op, c, _ = parse_steps(example)[1]
        found = [i for i in self.pool.get((op, c, int(digit)), []) if self.question[i] != example["question"]]
        return rng.choice(found) if found else None


def _decode(model, tok, state, setup, n):
    ids = model.decode_answer(state, setup.max_new_tokens, setup.eos_token_id, setup.pad_token_id, setup.room(n))
    return [model.extract_answer(t) for t in decode_answers(tok, ids)]


def _feed(model, state, latents, sampler):
    """Feed ``latents`` (each (rows, d)) into a copy of ``state`` with ``sampler`` (dropout off: clean)."""
    s = state.select(torch.arange(state.rows))
    for z in latents:
        model.feed_latent(s, z, torch.ones(s.rows, dtype=torch.bool), sampler)
    return s


@torch.no_grad()
def causal_rollouts(model, tok, examples: Sequence[Dict], n: int, sampling: Dict | None, seed: int,
                    donors: Donors, ones_probe, greedy: bool = False, batch_rows: int = 1024,
                    max_new_tokens: int = 8) -> Dict[str, np.ndarray]:
    """Per question and sample, the answer codes of :data:`VARIANTS`, the target digit, the digit latent 2
    carries (``ones_probe``), what the probe reads on the implanted latents and the donors used.

    ``greedy=True``: the clean rows (greedy prompt and latents, n implants per question with n targets);
    then ``full``, ``replay``, ``latents_only`` and ``prompt_only`` are the greedy answer.  ``ones_probe``:
    ``(probe, threshold)`` of latent 2's ones digit of x1.
    """
    probe, tau = ones_probe
    bq = max(1, batch_rows // n)
    out = {k: [] for k in VARIANTS}
    out.update(target=[], carried=[], swap_read=[], shift_read=[], donor=[], null_donor=[])
    for b in range(0, len(examples), bq):
        chunk = examples[b:b + bq]
        prompts = [model.encode_prompt(tok, e["question"]) for e in chunk]
        ids, mask = left_pad(prompts, tok.pad_token_id, model.device)
        common = dict(num_return_sequences=n, seed=seed, max_new_tokens=max_new_tokens,
                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
        cfg = model.latent_generation_config(**common, **(sampling or {"latent_sampling": None}))
        gcfg = model.latent_generation_config(**common, latent_sampling=None)
        setup, questions = model.prepare_rollout(ids, mask, cfg).with_ghosts(n)
        gsetup, _ = model.prepare_rollout(ids, mask, gcfg).with_ghosts(n)
        keys = sample_keys(setup.question_keys, n, 0)
        clean = gsetup.sampler
        with eval_mode(model), setup.sampler.attached(model), batch_invariant_attention(ids.device):
            s_prompt = model.start_samples(setup, n, keys, questions)
            g_prompt = model.start_samples(gsetup, n, keys, questions)
            g = g_prompt.select(torch.arange(g_prompt.rows))
            for _ in range(setup.steps):
                model.latent_step(g, clean)
            zg = list(g.latents)
            ans = {"greedy": _decode(model, tok, g, setup, n)}
            if greedy:
                zs, p_state = zg, g_prompt
                for k in ("full", "replay", "latents_only", "prompt_only"):
                    ans[k] = ans["greedy"]
            else:
                full = s_prompt.select(torch.arange(s_prompt.rows))
                for _ in range(setup.steps):
                    model.latent_step(full, setup.sampler)
                zs, p_state = list(full.latents), s_prompt
                ans["full"] = _decode(model, tok, full, setup, n)
                ans["replay"] = _decode(model, tok, _feed(model, s_prompt, zs, clean), setup, n)
                ans["latents_only"] = _decode(model, tok, _feed(model, g_prompt, zs, clean), setup, n)
                ans["prompt_only"] = _decode(model, tok, _feed(model, s_prompt, zg, clean), setup, n)
            # implants into latent 2, on the row's own prompt cache and latent 1
            z2 = zs[1].float()
            carried, _ = probe.decode(z2, tau)
            rows = z2.shape[0]  # ghost rows (copies of the last question) included; dropped below
            targets, swap_z, shift_z, null_z, donor, null_donor = [], [], [], [], [], []
            for r in range(rows):
                q, j = divmod(r, n)
                e = chunk[min(q, len(chunk) - 1)]
                rng = random.Random(f"implant-{e['question']}-{seed}-{j}")
                cur = int(carried[r])
                base = ans["replay"][r]
                base_ones = _ones(base)
                have = implied_ones(e, cur) if cur >= 0 else None
                choices = [d for d in range(10) if implied_ones(e, d) != base_ones and implied_ones(e, d) != have]
                t = rng.choice(choices) if choices else -1
                d = donors.pick(e, t, rng) if t >= 0 else None
                nd = donors.pick(e, cur, rng) if cur >= 0 else None
                targets.append(t)
                donor.append(-1 if d is None else d)
                null_donor.append(-1 if nd is None else nd)
                swap_z.append(z2[r] if d is None else donors.z2[d])
                null_z.append(z2[r] if nd is None else donors.z2[nd])
                shift_z.append(z2[r] if t < 0 or cur < 0 else z2[r] + donors.means[t] - donors.means[cur])
            swap_z, shift_z, null_z = (torch.stack(v).to(zs[1].dtype) for v in (swap_z, shift_z, null_z))
            for name, z in (("swap", swap_z), ("shift", shift_z), ("null_swap", null_z)):
                ans[name] = _decode(model, tok, _feed(model, p_state, [zs[0], z], clean), setup, n)
            swap_read, _ = probe.decode(swap_z.float(), tau)
            shift_read, _ = probe.decode(shift_z.float(), tau)
        keep = slice(0, len(chunk) * n)
        for k in VARIANTS:
            out[k] += [ans[k][keep][i:i + n] for i in range(0, len(chunk) * n, n)]
        for k, v in (("target", targets), ("carried", carried.tolist()), ("swap_read", swap_read.tolist()),
                     ("shift_read", shift_read.tolist()), ("donor", donor), ("null_donor", null_donor)):
            v = list(v)[keep]
            out[k] += [v[i:i + n] for i in range(0, len(v), n)]
    res = {k: answer_codes(out[k]) for k in VARIANTS}
    for k in ("target", "carried", "swap_read", "shift_read"):
        res[k] = np.array(out[k], dtype=np.int8)
    for k in ("donor", "null_donor"):
        res[k] = np.array(out[k], dtype=np.int32)
    return res


def _ones(answer):
    from hf_modeling.answers import normalize_number

    v = normalize_number(answer)
    return v % 10 if isinstance(v, int) else None
