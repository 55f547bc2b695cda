"""Best-of-N with a LatentRM: N stochastic rollouts per question, keep the highest-scoring one."""

from dataclasses import dataclass

import torch


@dataclass
class BestOfNResult:
    """answer_ids: (questions, T) of the chosen rollout; chosen: (questions,) index in 0..N-1;
    trajectory_scores: (questions, N); answer_ids_all: (questions, N, T); output: the rollouts;
    latent_forward_passes: backbone latent forwards spent (rows x latent steps)."""

    answer_ids: torch.Tensor
    chosen: torch.Tensor
    trajectory_scores: torch.Tensor
    answer_ids_all: torch.Tensor
    output: object
    latent_forward_passes: int


def latent_forward_passes_of(output):
    """Backbone latent forward passes of a ``LatentGenerateOutput``: one per row per latent step taken by the batch."""
    return int(output.latents.shape[0] * output.latents.shape[1])


def choose_best(trajectory_scores, n):
    """(rows,) question-major scores -> (questions,) index of the best of each question's n (earliest on ties)."""
    scores = trajectory_scores.float().view(-1, n)
    scores = torch.nan_to_num(scores, nan=float("-inf"))
    # argmax returns the first maximal index
    return scores.argmax(-1)


@torch.no_grad()
def best_of_n_generate(backbone, rm, input_ids, attention_mask=None, *, n, reduction="sum", **generate_kwargs):
    """Draw n rollouts per question with ``backbone.generate`` and pick each question's best by ``rm``."""
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an integer >= 1; got {n!r}.")
    rm.check_backbone(backbone)
    generate_kwargs["return_dict_in_generate"] = True
    output = backbone.generate(input_ids, attention_mask, num_return_sequences=n, **generate_kwargs)
    scores = rm.score_rollouts(output, reduction=reduction).trajectory_scores
    chosen = choose_best(scores, n)
    answers = output.answer_ids.view(-1, n, output.answer_ids.shape[-1])
    picked = answers[torch.arange(answers.shape[0]), chosen.to(answers.device)]
    return BestOfNResult(
        answer_ids=picked,
        chosen=chosen,
        trajectory_scores=scores.view(-1, n),
        answer_ids_all=answers,
        output=output,
        latent_forward_passes=latent_forward_passes_of(output),
    )
