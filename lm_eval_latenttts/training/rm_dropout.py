"""Dropout of LatentRM training, keyed by (seed, epoch, question, trajectory, position, site).

torch's dropout draws from a generator shared by the whole batch, so the masks
a question gets depend on its batch neighbours, the batch size and the
process that trains it: a 2-process run could not match a 1-process run.
Here, as in the rollouts (``hf_modeling.latent_sampling``), every mask element
is a function of a key: the question's key ``(seed, epoch, question id)``
folded with the trajectory index, the token's position id, the dropout site
and the feature index.  The model runs in ``eval()`` mode (torch's dropout
off) while forward hooks on its dropout modules apply the keyed masks with
each module's own probability; gradients flow through them as usual.

Sites: every ``nn.Dropout`` with p > 0 whose output is (rows, positions,
features): GPT-2's embedding, residual and MLP dropouts, the classifier
dropout, LoRA's dropouts.  Dropout on attention probabilities (GPT-2
``attn_pdrop``) is not applied: it happens inside the attention kernel.
"""

from __future__ import annotations

import contextlib
import logging

import torch
from torch import nn

from hf_modeling.latent_sampling import fold, key_from_ints, keyed_uniform
from hf_modeling.latent_state import eval_mode

logger = logging.getLogger(__name__)

_ATTENTION = ("attn_dropout", "attention_dropout")


def question_keys(seed: int, epoch: int, question_ids: torch.Tensor) -> torch.Tensor:
    """(Q,) int64 keys of the questions of a batch in ``epoch``: a new mask per question and epoch."""
    return torch.tensor([key_from_ints(seed, epoch, int(q)) for q in question_ids.tolist()], dtype=torch.int64)


class KeyedTrainingDropout:
    """The keyed dropout hooks of one model (see the module docstring)."""

    def __init__(self, model: nn.Module) -> None:
        self.sites = [(name, module) for name, module in model.named_modules()
                      if isinstance(module, nn.Dropout) and module.p > 0 and not name.endswith(_ATTENTION)]
        skipped = [name for name, module in model.named_modules()
                   if isinstance(module, nn.Dropout) and module.p > 0 and name.endswith(_ATTENTION)]
        if skipped:
            logger.info("RM training: attention-probability dropout (%s) is not applied; keyed dropout runs at %d "
                        "other sites.", skipped[0], len(self.sites))
        self._keys: torch.Tensor | None = None

    @contextlib.contextmanager
    def applied(self, model: nn.Module, row_keys: torch.Tensor, positions: torch.Tensor):
        """Run ``model`` in eval mode with the keyed masks of rows ``row_keys`` (rows,) at ``positions`` (rows, L)."""
        self._keys = fold(row_keys.to(positions.device)[:, None], positions)
        handles = [module.register_forward_hook(self._hook(i, module.p)) for i, (_, module) in enumerate(self.sites)]
        try:
            with eval_mode(model):  # torch's dropout off; the model gets its mode back
                yield
        finally:
            for handle in handles:
                handle.remove()
            self._keys = None

    def _hook(self, site: int, p: float):
        def hook(module, inputs, output):
            keys = self._keys
            if tuple(output.shape[:2]) != tuple(keys.shape):
                raise RuntimeError(f"dropout site {self.sites[site][0]}: output {tuple(output.shape)} does not match "
                                   f"the (rows, positions) keys {tuple(keys.shape)}")
            kept = keyed_uniform(keys, site, output.shape[-1]) >= p
            return output * (kept.to(output.dtype) / (1.0 - p))

        return hook


def row_keys(question_keys_: torch.Tensor, trajectories: int) -> torch.Tensor:
    """Keys of the Q*N rows of a collated batch (question-major): question key folded with the trajectory."""
    index = torch.arange(trajectories, dtype=torch.int64).repeat(question_keys_.numel())
    return fold(question_keys_.repeat_interleave(trajectories), index)


__all__ = ["KeyedTrainingDropout", "question_keys", "row_keys"]
