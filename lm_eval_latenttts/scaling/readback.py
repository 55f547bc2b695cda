"""Read-backs: what a backbone writes in tokens after a latent prefix, for a batch of questions at once.

A COCONUT-style backbone is trained with a curriculum in which stage ``s``
replaces the first ``s`` reasoning steps by latents and writes the rest as
text, so it has an *explicit continuation mode*: after ``prompt + latent
prefix + <|end-latent|>`` it writes the remaining steps and the answer.  A
read-back feeds the clean prompt (no dropout), the prefix's vectors as they are
(not re-derived), the end marker, and decodes greedily.

``read_back`` runs one prompt pass per question (deterministic, its cache
shared by the question's rows) and all rows of all questions as one batch.  Like
a rollout it is a function of (question, prefix) only: the prompts of a call are
left-padded to their own bucket width (the engine groups questions by it) and
every forward has at least ``MIN_ROWS`` rows (ghost copies of the last row), so a
row's bits do not depend on its neighbours or the batch size
(``tests/test_consistency.py`` checks batch sizes 1, 17 and 33).

Used by the read-back consistency vote (``scaling.strategies.Consistency``) and
by exact step labels (``training.exact_labels``).
"""

from __future__ import annotations

import torch

from hf_modeling.latent_state import MIN_ROWS, batch_invariant_attention, eval_mode, sample_keys
from lm_eval_latenttts.scaling.rollouts import answer_lengths, decode_answers, left_pad

READ_BACK_TOKENS = 24  # enough for one explicit step of GSM8K-Aug ("<<...=...>>"), the shipped task's rest and answer


@torch.no_grad()
def read_back(model, tokenizer, prompts: list[list[int]], prefixes: list[torch.Tensor],
              max_new_tokens: int = READ_BACK_TOKENS) -> list[tuple[list[str], int]]:
    """Per question: the texts its backbone writes after ``prompt + prefix + end marker`` (one per row of its
    ``prefixes``, a (rows, k, hidden) tensor; every question the same k), greedily and without dropout, and the
    forward positions this cost (the prompt pass, then per row k latents and the decoded tokens up to and
    including EOS)."""
    counts = [int(p.shape[0]) for p in prefixes]
    if not prompts or not sum(counts):
        return [([], 0) for _ in prompts]
    k = int(prefixes[0].shape[1])
    if any(int(p.shape[1]) != k for p in prefixes):
        raise ValueError(f"read_back: every question's prefixes must have the same length; got "
                         f"{[int(p.shape[1]) for p in prefixes]}.")
    config = model.latent_generation_config(latent_sampling=None, num_return_sequences=1, seed=0,
                                            max_new_tokens=max_new_tokens, eos_token_id=tokenizer.eos_token_id,
                                            pad_token_id=tokenizer.pad_token_id)
    ids, mask = left_pad(prompts, tokenizer.pad_token_id, model.device)
    setup = model.prepare_rollout(ids, mask, config)
    device = setup.input_ids.device
    owner = torch.tensor([q for q, c in enumerate(counts) for _ in range(c)], dtype=torch.long, device=device)
    rows = int(owner.numel())
    ghosts = max(0, MIN_ROWS - rows)  # copies of the last row keep every forward at >= MIN_ROWS rows
    owner = torch.cat([owner, owner[-1:].repeat(ghosts)])
    vectors = torch.cat([p for p in prefixes if p.shape[0]])
    vectors = torch.cat([vectors, vectors[-1:].repeat(ghosts, 1, 1)])
    lengths = mask.sum(-1)
    room = model.context_room(lengths, k)
    sampler = setup.sampler
    dtype = model.get_input_embeddings().weight.dtype
    with eval_mode(model), sampler.attached(model), batch_invariant_attention(device):
        state = model.start_samples(setup, 1, sample_keys(setup.question_keys, 1))
        state = state.select(owner)
        active = torch.ones(owner.numel(), dtype=torch.bool, device=device)
        for step in range(k):
            model.feed_latent(state, vectors[:, step].to(device=device, dtype=dtype), active, sampler)
        answer = model.decode_answer(state, max_new_tokens, setup.eos_token_id, setup.pad_token_id,
                                     None if room is None else room.to(device)[owner])
    texts = decode_answers(tokenizer, answer[:rows], setup.eos_token_id)
    spent = answer_lengths(tokenizer, answer[:rows]) if answer.shape[1] else [0] * rows
    found, start = [], 0
    for q, count in enumerate(counts):
        found.append((texts[start:start + count],
                      (int(lengths[q]) + sum(k + s for s in spent[start:start + count])) if count else 0))
        start += count
    return found


__all__ = ["READ_BACK_TOKENS", "read_back"]
