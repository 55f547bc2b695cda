"""The LatentRM's objective: step scores of a batch, the step-wise losses, and held-out evaluation.

* Loss (SPEC): at each latent step t, a softmax of the RM's step scores over
  the N trajectories of the same question; ``loss = -sum_n label[n,t] *
  log softmax[n,t]``, summed over t and averaged over questions.  Padded
  trajectories / steps are masked.  ``loss="bce"``: binary cross-entropy of
  ``sigmoid(score)`` against the step values, as an alternative.
* The step scores are the RM's outputs at the latent slots -- the same
  positions ``score_rollouts`` reads.
* Evaluation: recall@1 on held-out questions -- does the trajectory with the
  highest RM score (sum of step scores) reach the right answer; reported with
  the random-pick baseline (mean trajectory accuracy) of the same questions.
* Sums and units: ``reduction="sum"`` and :func:`loss_units` (questions for the
  contrastive loss, (trajectory, step) entries for BCE) let a data-parallel run
  divide the summed loss of every process and micro-batch by the global count,
  so a step's loss is the same for any split of its questions; evaluation sums
  its counts over the processes the same way.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

LOSSES = ("contrastive", "bce")


def _check_scores(scores, labels, mask):
    if scores.dim() != 3:
        raise ValueError(f"scores must be (questions, trajectories, steps); got shape {tuple(scores.shape)}.")
    if labels.shape != scores.shape:
        raise ValueError(f"labels shape {tuple(labels.shape)} does not match scores {tuple(scores.shape)}.")
    if mask is None:
        mask = torch.ones_like(scores, dtype=torch.bool)
    if mask.shape != scores.shape:
        raise ValueError(f"mask shape {tuple(mask.shape)} does not match scores {tuple(scores.shape)}.")
    return mask.bool()


def comparable(scores, mask) -> bool:
    """Whether some question of a (Q, N, T) batch has the 2 valid trajectories the contrastive loss compares."""
    trajectories = mask.bool().any(-1).sum(-1)
    return scores.shape[1] >= 2 and trajectories.numel() > 0 and int(trajectories.max()) >= 2


def stepwise_contrastive_loss(scores, labels, mask=None, reduction="mean"):
    """SPEC's step-wise contrastive loss (``reduction="sum"``: summed over the questions instead).

    scores, labels: (Q, N, T) -- step scores and Monte Carlo step values of the N trajectories of Q
    questions; mask: (Q, N, T) bool, False on padded trajectories / steps.
    At each (q, t): ``-sum_n labels * log_softmax_n(scores)`` over the valid n; summed over t;
    averaged over the questions that have a valid entry.
    """
    mask = _check_scores(scores, labels, mask)
    trajectories = mask.any(-1).sum(-1)  # (Q,) valid trajectories per question
    most = int(trajectories.max()) if trajectories.numel() else 0
    if scores.shape[1] < 2 or most < 2:
        raise ValueError(
            "The step-wise contrastive loss compares the N trajectories of a question, so it needs N >= 2 "
            f"trajectories per question (got at most {most}). Annotate with "
            "--num-trajectories >= 2, or use --loss bce."
        )
    scores = scores.float()
    masked = scores.masked_fill(~mask, float("-inf"))
    log_p = torch.log_softmax(masked, dim=1)  # over trajectories
    log_p = torch.where(mask, log_p, torch.zeros_like(log_p))  # fully masked (q, t) gives NaN -> 0
    per_question = -(labels.float() * log_p).sum(dim=(1, 2))
    valid = mask.flatten(1).any(-1)
    if not bool(valid.any()):
        return scores.sum() * 0.0
    return per_question[valid].sum() if reduction == "sum" else per_question[valid].mean()


def stepwise_bce_loss(scores, labels, mask=None, reduction="mean"):
    """Binary cross-entropy of ``sigmoid(score)`` against the step values, mean (or sum) over valid entries."""
    mask = _check_scores(scores, labels, mask)
    if not bool(mask.any()):
        return scores.sum() * 0.0
    loss = F.binary_cross_entropy_with_logits(scores.float(), labels.float().clamp(0, 1), reduction="none")
    return loss[mask].sum() if reduction == "sum" else loss[mask].mean()


def compute_loss(kind, scores, labels, mask=None, reduction="mean"):
    """The ``kind`` loss of a batch: its mean over :func:`loss_units`, or (``reduction="sum"``) its sum."""
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be mean or sum; got {reduction!r}.")
    if kind == "contrastive":
        return stepwise_contrastive_loss(scores, labels, mask, reduction)
    if kind == "bce":
        return stepwise_bce_loss(scores, labels, mask, reduction)
    raise ValueError(f"loss must be one of {LOSSES}; got {kind!r}.")


def loss_units(kind, mask) -> int:
    """What the ``kind`` loss averages over in a batch of (Q, N, T) ``mask``: questions, or valid entries (BCE)."""
    mask = mask.bool()
    return int(mask.sum()) if kind == "bce" else int(mask.flatten(1).any(-1).sum())


def step_scores(model, batch):
    """RM step scores (Q, N, T) of a collated batch (with gradient)."""
    out = model(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        position_ids=batch["position_ids"],
        latents=batch["latents"],
    )
    logits = out.logits[..., 0] if hasattr(out, "logits") else out[0][..., 0]
    scores = logits.gather(1, batch["slot_index"])  # (rows, T)
    q, n, t = batch["values"].shape
    return scores.view(q, n, t)


@torch.no_grad()
def evaluate(model, batches, loss_kind, reduce=None):
    """recall@1 of the RM's top trajectory (sum of step scores), the random-pick baseline and the loss.

    ``batches``: this process's held-out batches; ``reduce(tensor)`` sums a tensor over the processes
    (data parallel evaluation: each question is scored by exactly one process).
    """
    was_training = model.training
    model.eval()
    totals = torch.zeros(5, dtype=torch.float64)  # hits, random-pick sum, questions, loss sum, loss units
    try:
        for batch in batches:
            scores = step_scores(model, batch).float()
            mask = batch["mask"]
            traj = torch.where(mask, scores, torch.zeros_like(scores)).sum(-1)
            traj = traj.masked_fill(~batch["traj_mask"], float("-inf"))
            top = traj.argmax(-1)
            correct = batch["correct"]
            totals[0] += float(correct.gather(1, top[:, None]).float().sum())
            totals[1] += float((correct.float().sum(-1) / batch["traj_mask"].float().sum(-1)).sum())
            totals[2] += correct.shape[0]
            if loss_kind != "contrastive" or comparable(scores, mask):  # else no loss is defined for the batch
                totals[3] += float(compute_loss(loss_kind, scores, batch["values"], mask, reduction="sum"))
                totals[4] += loss_units(loss_kind, mask)
    finally:
        model.train(was_training)
    if reduce is not None:
        totals = reduce(totals)
    hits, baseline, questions, loss_sum, units = totals.tolist()
    if questions == 0:
        return {}
    return {
        "eval_recall_at_1": hits / questions,
        "eval_random_pick": baseline / questions,
        "eval_loss": loss_sum / max(units, 1),
        "eval_questions": int(questions),
    }


__all__ = ["LOSSES", "compute_loss", "evaluate", "loss_units", "step_scores", "stepwise_bce_loss",
           "stepwise_contrastive_loss"]
