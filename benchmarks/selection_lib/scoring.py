"""LatentRM step scores of stored rollouts: the prompt runs once per question, all its trajectories' latents in
one more forward (the RM's own ``rm_prefill`` / ``rm_step``, as ``score_rollouts`` does)."""

from __future__ import annotations

import torch


@torch.no_grad()
def score_stored(rm, prompts: list[list[int]], latents: torch.Tensor, batch_questions: int = 8) -> torch.Tensor:
    """Step scores (S, Q, N, T) of ``latents`` (S, Q, N, T, H); ``prompts`` the Q prompts' token ids."""
    s, q, n, t, h = latents.shape
    out = torch.zeros(s, q, n, t)
    rm.eval()
    for b in range(0, q, batch_questions):
        chunk = list(range(b, min(q, b + batch_questions)))
        width = max(len(prompts[i]) for i in chunk)
        ids = torch.zeros(len(chunk), width, dtype=torch.long)
        mask = torch.zeros(len(chunk), width, dtype=torch.long)
        for r, i in enumerate(chunk):
            ids[r, width - len(prompts[i]):] = torch.tensor(prompts[i])
            mask[r, width - len(prompts[i]):] = 1
        state = rm.rm_prefill(ids, mask).repeat_interleave(s * n)
        z = latents[:, chunk].permute(1, 0, 2, 3, 4).reshape(len(chunk) * s * n, t, h)
        scores = rm.rm_step(state, z)  # (rows, T)
        out[:, chunk] = scores.view(len(chunk), s, n, t).permute(1, 0, 2, 3)
    return out


def load_rm(path):
    from hf_modeling import AutoLatentModel

    return AutoLatentModel.from_pretrained(path).eval()


@torch.no_grad()
def score_stored_with_answers(rm, prompts, latents, answer_tokens, batch_questions: int = 8) -> torch.Tensor:
    """Step scores (S, Q, N, T + 1) of an RM that reads the answer (``rm_input="latents+answer"``): the T latent
    steps and the outcome step at the answer's last token, as the training collator lays them out."""
    s, q, n, t, h = latents.shape
    latent_id, end_id, pad = rm.config.latent_id, rm.config.latent_end_id, rm.config.pad_token_id or 0
    out = torch.zeros(s, q, n, t + 1)
    for b in range(0, q, batch_questions):
        chunk = list(range(b, min(q, b + batch_questions)))
        rows = [(i, seed, j) for i in chunk for seed in range(s) for j in range(n)]
        seqs, slots = [], []
        for i, seed, j in rows:
            answer = [int(x) for x in answer_tokens[seed, i, j].tolist() if x >= 0]
            p = len(prompts[i])
            seqs.append(list(prompts[i]) + [latent_id] * t + [end_id] + answer)
            slots.append(list(range(p, p + t)) + [len(seqs[-1]) - 1])
        width = max(len(x) for x in seqs)
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros(len(rows), width, dtype=torch.long)
        for r, x in enumerate(seqs):
            ids[r, :len(x)] = torch.tensor(x)
            mask[r, :len(x)] = 1
        z = torch.stack([latents[seed, i, j] for i, seed, j in rows])
        logits = rm(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
                    latents=z).logits[..., 0]
        scores = logits.gather(1, torch.tensor(slots))
        out[:, chunk] = scores.view(len(chunk), s, n, t + 1).permute(1, 0, 2, 3)
    return out
