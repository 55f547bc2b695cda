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


def stepwise_contrastive_loss(scores, labels, mask=None):
    """SPEC's step-wise contrastive loss.

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
    return per_question[valid].mean()


def stepwise_bce_loss(scores, labels, mask=None):
    """Binary cross-entropy of ``sigmoid(score)`` against the step values, mean over valid entries."""
    mask = _check_scores(scores, labels, mask)
    if not bool(mask.any()):
        return scores.sum() * 0.0
    loss = F.binary_cross_entropy_with_logits(scores.float(), labels.float().clamp(0, 1), reduction="none")
    return loss[mask].mean()


def compute_loss(kind, scores, labels, mask=None):
    if kind == "contrastive":
        return stepwise_contrastive_loss(scores, labels, mask)
    if kind == "bce":
        return stepwise_bce_loss(scores, labels, mask)
    raise ValueError(f"loss must be one of {LOSSES}; got {kind!r}.")


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
def evaluate(model, loader, loss_kind):
    """recall@1 of the RM's top trajectory (sum of step scores), the random-pick baseline and the loss."""
    was_training = model.training
    model.eval()
    hits, baseline, questions, loss_total, batches = 0.0, 0.0, 0, 0.0, 0
    try:
        for batch in loader:
            scores = step_scores(model, batch).float()
            mask = batch["mask"]
            traj = torch.where(mask, scores, torch.zeros_like(scores)).sum(-1)
            traj = traj.masked_fill(~batch["traj_mask"], float("-inf"))
            top = traj.argmax(-1)
            correct = batch["correct"]
            hits += float(correct.gather(1, top[:, None]).float().sum())
            baseline += float((correct.float().sum(-1) / batch["traj_mask"].float().sum(-1)).sum())
            questions += correct.shape[0]
            try:
                loss_total += float(compute_loss(loss_kind, scores, batch["values"], mask))
                batches += 1
            except ValueError:
                pass
    finally:
        model.train(was_training)
    if questions == 0:
        return {}
    return {
        "eval_recall_at_1": hits / questions,
        "eval_random_pick": baseline / questions,
        "eval_loss": loss_total / max(batches, 1),
        "eval_questions": questions,
    }


__all__ = ["LOSSES", "compute_loss", "evaluate", "step_scores", "stepwise_bce_loss", "stepwise_contrastive_loss"]
