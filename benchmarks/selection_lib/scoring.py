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
