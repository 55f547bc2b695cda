"""RM-guided beam search over latent steps.

Per question: B beams.  At each latent step every beam branches into C
stochastic candidates (Monte Carlo dropout or Gaussian noise via
``LatentSampler``), the LatentRM scores each candidate's new latent with one
incremental forward on its own KV cache, and the B best candidates survive.
After the last latent step the B beams decode their answers greedily and the
beam with the best trajectory score is chosen.

Compute: each latent step costs B*C backbone latent forwards (rows) per
question, so a search of L steps spends ``B*C*L`` per question, the same as
best-of-N with ``N = B*C`` (``latent_forward_passes`` reports the total).
Answer decoding costs B rows per question instead of N.

Details:

* The prompt pass runs once per question; its state is repeated to the B
  beams (with ``dropout_scope='all'`` the prompt's dropout draw is shared by
  the beams of a question).
* Randomness: candidate k (0..B*C-1) of a question at latent step t is keyed
  by (question key, t, k), so a question's search does not depend on the
  other questions of the batch (see ``hf_modeling.latent_sampling``).
* At step 1 all B beams are the same prefix, so the first step draws B*C
  candidates from it.
* ``select_by='step'`` (default, as in the paper) ranks candidates by the RM
  score of the new step; ``'cumulative'`` by the sum of the path's step scores.
  Ties go to the earlier candidate (beam order, then candidate order).
* Dynamic backbones (CoLaR): a beam that has emitted the end marker stops;
  only one copy of it competes (ranked by its last step score for
  ``'step'``), and it takes no further latent steps.
* The final choice is by trajectory score (``reduction``: 'sum' by default).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from hf_modeling.generation_config import LatentGenerationConfig
from hf_modeling.latent_sampling import fold
from hf_modeling.latent_state import batch_invariant_attention
from hf_modeling.modeling_latent_rm import reduce_step_scores

SELECT_BY = ("step", "cumulative")


@dataclass
class BeamSearchResult:
    """Outcome of :func:`rm_beam_search` for Q questions, B beams, L latent steps, T answer tokens.

    answer_ids: (Q, T) answer tokens of each question's chosen beam (pad after EOS).
    chosen: (Q,) index of the chosen beam.
    beam_answer_ids: (Q, B, T) answers of all final beams.
    beam_scores: (Q, B) trajectory scores of the final beams.
    beam_step_scores: (Q, B, L) step scores along each beam's path (0 on skipped steps).
    beam_step_mask: (Q, B, L) which steps the beam took.
    beam_latents: (Q, B, L, hidden) the beams' latent vectors.
    latent_forward_passes: backbone latent forwards spent (rows fed, summed over steps).
    """

    answer_ids: torch.Tensor
    chosen: torch.Tensor
    beam_answer_ids: torch.Tensor
    beam_scores: torch.Tensor
    beam_step_scores: torch.Tensor
    beam_step_mask: torch.Tensor
    beam_latents: torch.Tensor
    latent_forward_passes: int


@torch.no_grad()
def rm_beam_search(backbone, rm, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                   generation_config: LatentGenerationConfig | None = None, *, select_by: str = "step",
                   generator: torch.Generator | None = None, **overrides) -> BeamSearchResult:
    """RM-guided beam search for a batch of left-padded prompts; see the module docstring.

    Args:
        backbone: a latent model (COCONUTGPT2, CODIGPT2, ColarLlama).
        rm: a LatentRM of the backbone's size (``check_backbone`` is enforced).
        generation_config, overrides: as in ``backbone.generate``; ``latent_beams``
            (B) and ``latent_candidates`` (C) size the search, ``reduction`` gives the
            trajectory score of the final choice.  With sampling off the C
            candidates of a beam are identical, and B=C=1 is plain greedy decoding.
        select_by: 'step' (RM score of the new step) or 'cumulative'.
    Returns:
        :class:`BeamSearchResult`.
    """
    if select_by not in SELECT_BY:
        raise ValueError(f"select_by must be one of {SELECT_BY}; got {select_by!r}.")
    config = backbone.latent_generation_config(generation_config, **overrides)
    rm.check_backbone(backbone)
    B, C, reduction = config.latent_beams, config.latent_candidates, config.reduction

    device = backbone.get_input_embeddings().weight.device
    setup = backbone.prepare_rollout(input_ids, attention_mask, config, generator)
    setup, real_questions = setup.with_ghosts(B * C)
    input_ids, attention_mask, sampler = setup.input_ids, setup.attention_mask, setup.sampler
    steps, max_new_tokens = setup.steps, setup.max_new_tokens
    eos_token_id, pad_token_id = setup.eos_token_id, setup.pad_token_id
    candidate_index = torch.arange(B * C, device=device).repeat(input_ids.shape[0])

    Q = input_ids.shape[0]
    rm_device = rm.get_input_embeddings().weight.device
    was_training = (backbone.training, rm.training)
    backbone.eval()
    rm.eval()
    latent_forwards = 0
    try:
        with sampler.attached(backbone), batch_invariant_attention():
            state = backbone.prefill(input_ids, attention_mask, sampler, setup.question_keys).repeat_interleave(B)
            rm_state = rm.rm_prefill(input_ids, attention_mask).repeat_interleave(B)
            rows = Q * B
            path_scores = torch.zeros(rows, 0, device=rm_device)
            path_active = torch.zeros(rows, 0, dtype=torch.bool, device=rm_device)
            last_score = torch.zeros(rows, device=rm_device)
            for t in range(steps):
                if backbone.dynamic_latent_length and bool(state.stopped.all()):
                    break
                cand = state.repeat_interleave(C)
                cand.row_keys = fold(fold(setup.question_keys, t).repeat_interleave(B * C), candidate_index)
                cand_rm = rm_state.repeat_interleave(C)
                latent = backbone.latent_step(cand, sampler)
                active = cand.latent_active[-1].to(rm_device)
                latent_forwards += cand.rows
                score = rm.rm_step(cand_rm, latent.to(rm_device), active)
                cand_scores = torch.cat([path_scores.repeat_interleave(C, dim=0), score[:, None]], dim=1)
                cand_active = torch.cat([path_active.repeat_interleave(C, dim=0), active[:, None]], dim=1)
                cand_last = torch.where(active, score, last_score.repeat_interleave(C))
                if select_by == "step":
                    key = cand_last.clone()
                else:
                    key = torch.where(cand_active, cand_scores, torch.zeros_like(cand_scores)).sum(-1)
                key = torch.nan_to_num(key.float(), nan=float("-inf"))
                key = key.view(Q, B, C)
                # one copy of a stopped beam competes; identical prefixes at step 1 count once per candidate
                dup = torch.zeros(Q, B, C, dtype=torch.bool, device=rm_device)
                dup[:, :, 1:] = (~active.view(Q, B, C))[:, :, 1:]
                key = key.masked_fill(dup, float("-inf")).view(Q, B * C)
                # stable top-B: sort descending, ties keep the earlier index
                order = torch.sort(key, dim=1, descending=True, stable=True).indices[:, :B]
                index = (order + torch.arange(Q, device=rm_device)[:, None] * (B * C)).flatten()
                state = cand.select(index.to(device))
                rm_state = cand_rm.select(index)
                path_scores = cand_scores[index]
                path_active = cand_active[index]
                last_score = cand_last[index]
            answers = backbone.decode_answer(state, max_new_tokens, eos_token_id, pad_token_id, setup.room(B))
    finally:
        backbone.train(was_training[0])
        rm.train(was_training[1])

    taken = path_scores.shape[1]
    traj = reduce_step_scores(path_scores, path_active, reduction)
    beam_scores = traj.view(Q, B)
    chosen = torch.nan_to_num(beam_scores, nan=float("-inf")).argmax(-1)
    beam_answers = answers.view(Q, B, -1)
    hidden = state.hidden.shape[-1]
    if taken:
        latents = torch.stack(state.latents, dim=1).view(Q, B, taken, hidden)
    else:
        latents = state.hidden.new_zeros(Q, B, 0, hidden)
    real = real_questions  # drop the ghost questions (and their share of the compute counters)
    return BeamSearchResult(
        answer_ids=beam_answers[torch.arange(real, device=beam_answers.device), chosen[:real].to(beam_answers.device)],
        chosen=chosen[:real],
        beam_answer_ids=beam_answers[:real],
        beam_scores=beam_scores[:real],
        beam_step_scores=path_scores.view(Q, B, taken)[:real],
        beam_step_mask=path_active.view(Q, B, taken)[:real],
        beam_latents=latents[:real],
        latent_forward_passes=latent_forwards * real // Q,
    )
