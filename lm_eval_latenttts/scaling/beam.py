"""RM-guided beam search over latent steps.

Per question: B beams.  At each latent step every beam branches into C
stochastic candidates, the LatentRM scores each candidate's new latent with
one incremental forward on its own KV cache, and the B best candidates
survive.  After the last latent step the B beams decode their answers greedily
and the beam with the best trajectory score is chosen.

A candidate's latent comes from its own randomness: under Monte Carlo dropout
the latent a row feeds back is the output of its previous forward, so
candidate k of a beam first runs that forward itself (the beam's kept latent
goes in, with dropout keyed by the candidate) and its output is the latent the
RM scores; at the first step that forward is the prompt pass (each candidate
runs its own with ``dropout_scope='all'``; with ``'latent'`` the prompt has no
dropout and the first step's candidates are alike).  Under Gaussian noise the
candidate's latent is the beam's output plus noise keyed by the candidate.
The kept latents of the last step are fed after the search.

Compute per question: ``B*C*(L-1) + B`` latent forwards for L latent steps
(``latent_forwards`` counts them; best-of-N with N = B*C spends ``N*L``), B*C
prompt passes with dropout on the prompt (else one), B rows decoding answers.

Details:

* Randomness: candidate k (0..B*C-1) of a question at latent step t is keyed
  by (question key, t, k), so a question's search does not depend on the
  other questions of the batch (see ``hf_modeling.latent_sampling``).
* At step 1 all B beams are the same prefix, so the first step draws B*C
  candidates from it.
* Candidates are ranked by the RM score of the new step (as in the paper);
  ties go to the earlier candidate (beam order, then candidate order).
* Dynamic backbones (CoLaR): a beam that has emitted the end marker stops;
  only one copy of it competes (ranked by its last step score), and it takes
  no further latent steps.
* The final choice is by trajectory score (``reduction``: 'sum' by default).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from hf_modeling.generation_config import LatentGenerationConfig
from hf_modeling.latent_sampling import fold
from hf_modeling.latent_state import LatentState, RolloutSetup, batch_invariant_attention, eval_mode
from hf_modeling.rm_state import RMState, reduce_step_scores


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
    latent_forwards: (Q,) backbone latent forwards (rows) each question's search ran, in the
        forwards where any of its rows took a latent (the unit best-of-N is compared in).
    """

    answer_ids: torch.Tensor
    chosen: torch.Tensor
    beam_answer_ids: torch.Tensor
    beam_scores: torch.Tensor
    beam_step_scores: torch.Tensor
    beam_step_mask: torch.Tensor
    beam_latents: torch.Tensor
    latent_forwards: torch.Tensor


@dataclass
class _Beams:
    """Rows of a search between two latent steps: the kept beams (B per question) or their candidates (B*C).

    ``latent`` is the vector each row took at the last step; the backbone has
    not fed it yet (its next forward, run by each candidate with its own keys,
    does), while the RM has (``rm_state``).
    """

    state: LatentState
    rm_state: RMState
    latent: torch.Tensor | None  # (rows, hidden); None before the first step
    active: torch.Tensor | None  # (rows,) the row took a latent at the last step (False: it had stopped)
    step_scores: torch.Tensor  # (rows, steps) RM score of each step on the path
    step_mask: torch.Tensor  # (rows, steps) which steps the path took
    last_score: torch.Tensor  # (rows,) score of the last step the path took


@torch.no_grad()
def rm_beam_search(backbone, rm, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                   generation_config: LatentGenerationConfig | None = None, **overrides) -> BeamSearchResult:
    """RM-guided beam search for a batch of left-padded prompts; see the module docstring.

    Args:
        backbone: a latent model (COCONUTGPT2, CODIGPT2, ColarLlama).
        rm: a LatentRM of the backbone's size (``check_backbone`` is enforced).
        generation_config, overrides: as in ``backbone.generate``; ``latent_beams``
            (B) and ``latent_candidates`` (C) size the search, ``reduction`` gives the
            trajectory score of the final choice.  With sampling off the C
            candidates of a beam are identical, and B=C=1 is plain greedy decoding.
    Returns:
        :class:`BeamSearchResult`.
    """
    config = backbone.latent_generation_config(generation_config, **overrides)
    rm.check_backbone(backbone)
    B, C = config.latent_beams, config.latent_candidates
    # ghosts: every forward, down to the B rows per question of the last feed and the answers, has >= MIN_ROWS rows
    setup, real = backbone.prepare_rollout(input_ids, attention_mask, config).with_ghosts(B)
    spent = torch.zeros(setup.input_ids.shape[0], dtype=torch.long, device=setup.input_ids.device)
    with eval_mode(backbone, rm), setup.sampler.attached(backbone), \
            batch_invariant_attention(setup.input_ids.device):
        beams = _prompt(backbone, rm, setup, B * C if setup.steps else B, real)
        for t in backbone.latent_loop(setup.steps, lambda: beams.state.stopped):
            beams = _keep_best(_candidates(backbone, rm, setup, beams, t, C, spent), B, C)
        state = _feed_kept(backbone, setup.sampler, beams, B, spent)
        answers = backbone.decode_answer(state, setup.max_new_tokens, setup.eos_token_id, setup.pad_token_id,
                                         setup.room(B))
    return _result(beams, state, answers, B, config.reduction, spent, real)


def _candidate_keys(setup: RolloutSetup, t: int, width: int) -> torch.Tensor:
    """Row keys of the ``width`` candidates of each question at latent step t: (question key, t, k)."""
    keys = setup.question_keys
    index = torch.arange(width, device=keys.device).repeat(keys.shape[0])
    return fold(fold(keys, t).repeat_interleave(width), index)


def _prompt(backbone, rm, setup: RolloutSetup, width: int, real: int) -> _Beams:
    """``width`` rows per question after the prompt pass, keyed as the candidates of step 1 (no latent yet).

    With dropout on the prompt each row runs its own prompt pass; else the question's is shared.
    """
    state = backbone.start_samples(setup, width, _candidate_keys(setup, 0, width), real)
    rm_state = rm.rm_prefill(setup.input_ids, setup.attention_mask, setup.steps).repeat_interleave(width)
    rm_device = rm_state.positions.device
    rows = state.rows
    return _Beams(state=state, rm_state=rm_state, latent=None, active=None,
                  step_scores=torch.zeros(rows, 0, device=rm_device),
                  step_mask=torch.zeros(rows, 0, dtype=torch.bool, device=rm_device),
                  last_score=torch.zeros(rows, device=rm_device))


def _candidates(backbone, rm, setup: RolloutSetup, beams: _Beams, t: int, C: int, spent: torch.Tensor) -> _Beams:
    """The C candidates of each beam at latent step t (0-based), each with its own latent and its RM score.

    Candidate k of a question is keyed by (question, t, k) and runs the forward whose output is its
    latent: the feed of its beam's kept latent (at t=0 the prompt pass, run by ``_prompt``).
    """
    if beams.latent is None:  # step 1: the B*C rows of the prompt are the candidates
        candidates = beams
    else:
        width = beams.state.rows // setup.input_ids.shape[0] * C
        state = beams.state.repeat_interleave(C)
        state.row_keys = _candidate_keys(setup, t, width)
        fed = beams.active.repeat_interleave(C)
        backbone.feed_latent(state, beams.latent.repeat_interleave(C, dim=0), fed, setup.sampler)
        _charge(spent, fed, width)
        candidates = _Beams(state=state, rm_state=beams.rm_state.repeat_interleave(C), latent=None, active=None,
                            step_scores=beams.step_scores.repeat_interleave(C, dim=0),
                            step_mask=beams.step_mask.repeat_interleave(C, dim=0),
                            last_score=beams.last_score.repeat_interleave(C))
    latent, active = backbone.next_latent(candidates.state, setup.sampler)
    active_rm = active.to(candidates.last_score.device)
    score = rm.rm_step(candidates.rm_state, latent.to(active_rm.device), active_rm)
    candidates.latent, candidates.active = latent, active
    candidates.step_scores = torch.cat([candidates.step_scores, score[:, None]], dim=1)
    candidates.step_mask = torch.cat([candidates.step_mask, active_rm[:, None]], dim=1)
    candidates.last_score = torch.where(active_rm, score, candidates.last_score)
    return candidates


def _keep_best(candidates: _Beams, B: int, C: int) -> _Beams:
    """The B candidates of each question with the best last step score (stable: ties keep the earlier one)."""
    key = torch.nan_to_num(candidates.last_score.float(), nan=float("-inf"))
    Q = key.shape[0] // (B * C)
    key = key.view(Q, B, C)
    # one copy of a stopped beam competes (its C candidates are alike); at step 1 every candidate counts
    stopped = ~candidates.step_mask[:, -1].view(Q, B, C)
    duplicate = torch.zeros_like(stopped)
    duplicate[:, :, 1:] = stopped[:, :, 1:]
    key = key.masked_fill(duplicate, float("-inf")).view(Q, B * C)
    order = torch.sort(key, dim=1, descending=True, stable=True).indices[:, :B]
    index = (order + torch.arange(Q, device=order.device)[:, None] * (B * C)).flatten()
    backbone_index = index.to(candidates.latent.device)
    return _Beams(state=candidates.state.select(backbone_index), rm_state=candidates.rm_state.select(index),
                  latent=candidates.latent[backbone_index], active=candidates.active[backbone_index],
                  step_scores=candidates.step_scores[index], step_mask=candidates.step_mask[index],
                  last_score=candidates.last_score[index])


def _feed_kept(backbone, sampler, beams: _Beams, B: int, spent: torch.Tensor) -> LatentState:
    """Feed the latents the kept beams took at the last step (keyed by the candidate each beam is)."""
    state = beams.state
    if beams.latent is None:  # no latent steps
        return state
    backbone.feed_latent(state, beams.latent, beams.active, sampler)
    _charge(spent, beams.active, B)
    return state


def _charge(spent: torch.Tensor, fed: torch.Tensor, width: int) -> None:
    """Add one forward of ``width`` rows to each question of which any row fed a latent in it."""
    spent += (fed.view(-1, width).any(-1).long() * width).to(spent.device)  # on the device: no sync per step


def _result(beams: _Beams, state: LatentState, answers: torch.Tensor, B: int, reduction: str,
            spent: torch.Tensor, real: int) -> BeamSearchResult:
    """The search's outcome for the ``real`` questions (ghost questions dropped)."""
    Q = beams.last_score.shape[0] // B
    taken = beams.step_scores.shape[1]
    beam_scores = reduce_step_scores(beams.step_scores, beams.step_mask, reduction).view(Q, B)
    chosen = torch.nan_to_num(beam_scores, nan=float("-inf")).argmax(-1)[:real]
    beam_answers = answers.view(Q, B, -1)[:real]
    hidden = state.hidden.shape[-1]
    latents = torch.stack(state.latents, dim=1).view(Q, B, taken, hidden) if taken else \
        state.hidden.new_zeros(Q, B, 0, hidden)
    return BeamSearchResult(
        answer_ids=beam_answers[torch.arange(real, device=beam_answers.device), chosen.to(beam_answers.device)],
        chosen=chosen,
        beam_answer_ids=beam_answers,
        beam_scores=beam_scores[:real],
        beam_step_scores=beams.step_scores.view(Q, B, taken)[:real],
        beam_step_mask=beams.step_mask.view(Q, B, taken)[:real],
        beam_latents=latents[:real],
        latent_forwards=spent[:real].cpu(),
    )
