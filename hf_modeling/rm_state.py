"""What LatentRM scoring produces and carries: step scores (``RMScores``), the incremental state of beam
search (``RMState``), and the trajectory score from step scores (``reduce_step_scores``).

Only torch and transformers are imported: this file is copied next to saved
checkpoints for ``trust_remote_code`` loading.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers.cache_utils import DynamicCache
from transformers.utils import ModelOutput

from .generation_config import REDUCTIONS
from .latent_cache import map_cache


@dataclass
class RMScores(ModelOutput):
    """Scores of latent rollouts.

    step_scores: (rows, steps) float; the score of step t of each row (0.0 where
        ``step_mask`` is False, i.e. steps beyond the row's ``latent_lengths``).
    step_mask: (rows, steps) bool; which steps the row actually took.
    trajectory_scores: (rows,) the reduction of the valid step scores (a row with
        no latent step gets 0.0).
    reduction: the reduction used ('sum', 'min', 'last' or 'mean').
    """

    step_scores: torch.Tensor | None = None
    step_mask: torch.Tensor | None = None
    trajectory_scores: torch.Tensor | None = None
    reduction: str | None = None


@dataclass
class RMState:
    """The RM's incremental state for a batch of rows (KV cache, mask, next position)."""

    cache: DynamicCache
    attention_mask: torch.Tensor  # (rows, cached length)
    positions: torch.Tensor  # (rows,) position id of the next input

    @property
    def rows(self) -> int:
        return self.positions.shape[0]

    def select(self, index: torch.Tensor) -> RMState:
        """A new state with rows ``index`` (repeats allowed); the original stays valid."""
        return self._map(lambda t: t[index])

    def repeat_interleave(self, n: int) -> RMState:
        """A new state in which each row becomes n consecutive rows."""
        return self._map(lambda t: t.repeat_interleave(n, dim=0))

    def _map(self, fn):
        return RMState(cache=map_cache(self.cache, fn), attention_mask=fn(self.attention_mask), positions=fn(self.positions))


def reduce_step_scores(step_scores: torch.Tensor, step_mask: torch.Tensor, reduction: str = "sum") -> torch.Tensor:
    """Trajectory scores (rows,) from step scores (rows, steps) over the steps where ``step_mask`` is True."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}; got {reduction!r}.")
    mask = step_mask.bool()
    scores = step_scores.float()
    count = mask.sum(-1)
    has = count > 0
    if reduction == "sum":
        return torch.where(mask, scores, torch.zeros_like(scores)).sum(-1)
    if reduction == "mean":
        total = torch.where(mask, scores, torch.zeros_like(scores)).sum(-1)
        return torch.where(has, total / count.clamp(min=1), torch.zeros_like(total))
    if reduction == "min":
        if scores.shape[1] == 0:
            return scores.new_zeros(scores.shape[0])
        low = torch.where(mask, scores, torch.full_like(scores, float("inf"))).min(-1).values
        return torch.where(has, low, torch.zeros_like(low))
    # last
    if scores.shape[1] == 0:
        return scores.new_zeros(scores.shape[0])
    idx = (count - 1).clamp(min=0)
    last = scores.gather(1, idx[:, None])[:, 0]
    return torch.where(has, last, torch.zeros_like(last))


__all__ = ["RMScores", "RMState", "reduce_step_scores"]
