"""One question's step-wise Monte Carlo annotation (``annotate`` runs it for every question of a rank).

The N trajectories advance one latent step at a time; after step t their state
is branched into N*M continuation rows (``LatentState.select``) that finish the
remaining latent steps and the greedy answer; a step's value is the share of
its continuations that are right.  See ``annotate`` for the method and the keys.
With ``labels="decoded"`` or ``"outcome"`` no continuations are run (read-back labels; final correctness).
"""

from __future__ import annotations

import torch

from hf_modeling.latent_sampling import fold
from hf_modeling.latent_state import batch_invariant_attention, eval_mode, sample_keys
from lm_eval_latenttts.scaling.rollouts import decode_answers


def _finish(model, state, sampler, steps_left, setup):
    """Run the remaining latent steps and the greedy answer on ``state`` (modified in place)."""
    for _ in model.latent_loop(steps_left, lambda: state.stopped):
        model.latent_step(state, sampler)
    return model.decode_answer(state, setup.max_new_tokens, setup.eos_token_id, setup.pad_token_id,
                               setup.answer_room)


@torch.no_grad()
def annotate_question(model, tokenizer, prompt_ids: list[int], gold: str, config, num_continuations: int,
                      max_batch_rows: int = 1024, labels: str = "monte_carlo", gold_steps=None,
                      latents_per_step: int = 1) -> tuple[dict, int]:
    """Annotate one question with the settings ``config`` (N = ``num_return_sequences``). Returns (record, runs).

    ``record`` has ``latents`` (N, steps, hidden), ``step_values`` (N, steps), ``num_steps`` (N,),
    ``correct`` (N,) bool, ``answers`` and ``answer_texts``; runs = continuations (or read-backs) decoded.
    ``labels="decoded"``: no continuations; the step values are the exact labels of
    :func:`~lm_eval_latenttts.training.exact_labels.decoded_step_labels` (the question's ``gold_steps``).
    ``labels="outcome"``: no continuations; every step the trajectory took is labelled with its final correctness.
    """
    n, m = config.num_return_sequences, (num_continuations if labels == "monte_carlo" else 0)
    setup = model.prepare_rollout(torch.tensor([list(prompt_ids)], dtype=torch.long), None, config)
    ids, sampler, steps = setup.input_ids, setup.sampler, setup.steps

    def correct(answer_ids):
        return [model.is_correct(t, gold) for t in decode_answers(tokenizer, answer_ids, setup.eos_token_id)]

    # trajectory j is keyed by (question key, j); continuation c from step t of trajectory j by (j's key, t, c)
    values, continuations = [], 0  # per step: (N,) float, NaN where a dynamic row is inactive / filled later
    with eval_mode(model), sampler.attached(model), batch_invariant_attention(ids.device):
        state = model.start_samples(setup, n, sample_keys(setup.question_keys, n))
        for t in model.latent_loop(steps, lambda: state.stopped):
            model.latent_step(state, sampler)
            step_value, runs = _continuation_values(model, state, setup, t, m, max_batch_rows, correct)
            values.append(step_value)
            continuations += runs
        # the trajectories themselves: nothing random is left, so this is also the last step's value
        answer_ids = model.decode_answer(state, setup.max_new_tokens, setup.eos_token_id, setup.pad_token_id,
                                         setup.answer_room)
        continuations += n
    record = _record(model, tokenizer, state, answer_ids, values, gold, setup.eos_token_id)
    if labels == "decoded" and values:
        from lm_eval_latenttts.training.exact_labels import decoded_step_labels

        record["step_values"], _ = decoded_step_labels(model, tokenizer, prompt_ids, record["latents"],
                                                       record["num_steps"], record["correct"], gold_steps,
                                                       latents_per_step)
        continuations += int(((record["num_steps"] - 1).clamp(min=0)).sum())
    elif labels == "outcome":
        record["step_values"] = _outcome_labels(record)
    return record, continuations


def _outcome_labels(record: dict) -> torch.Tensor:
    """(N, steps): every step a trajectory took labelled with its final correctness (the rest as they were)."""
    step_values, num_steps = record["step_values"], record["num_steps"]
    taken = torch.arange(step_values.shape[1])[None, :] < num_steps[:, None]
    return torch.where(taken, record["correct"][:, None].float().expand_as(step_values), step_values)


def _continuation_values(model, state, setup, t: int, m: int, max_batch_rows: int, correct) -> tuple:
    """(N,) the value of step t of each trajectory: the share of its ``m`` continuations (the remaining steps
    and the answer, from its prefix) that are right (NaN where a row took no step, or none is left); the runs."""
    step_value = torch.full((state.rows,), float("nan"))
    rows = state.latent_active[-1].nonzero().flatten()
    left = setup.steps - t - 1
    if not (left > 0 and rows.numel() and m):
        return step_value, 0
    index = rows.repeat_interleave(m)
    keys = fold(fold(state.row_keys[index], t), torch.arange(m, device=setup.input_ids.device).repeat(rows.numel()))
    hits = []
    for chunk, chunk_keys in zip(index.split(max_batch_rows), keys.split(max_batch_rows)):
        branch = state.select(chunk)
        branch.row_keys = chunk_keys
        hits += correct(_finish(model, branch, setup.sampler, left, setup))
    step_value[rows.cpu()] = torch.tensor(hits, dtype=torch.float32).view(-1, m).mean(1)
    return step_value, index.numel()


def _record(model, tokenizer, state, answer_ids, values: list, gold: str, eos_token_id) -> dict:
    """The question's record from its trajectories' final state, answers and step values (the last step each
    row took has the value of its final correctness)."""
    n = state.rows
    texts = decode_answers(tokenizer, answer_ids, eos_token_id)
    right = torch.tensor([model.is_correct(t, gold) for t in texts], dtype=torch.bool)
    if values:
        num_steps = torch.stack(state.latent_active, 1).cpu().sum(1)
        step_values = torch.stack(values, 1)
        last = (num_steps - 1).clamp(min=0)
        fill = torch.isnan(step_values.gather(1, last[:, None]))[:, 0] & (num_steps > 0)
        step_values[fill, last[fill]] = right[fill].float()
        latents = torch.stack(state.latents, 1).float().cpu()
    else:
        num_steps = torch.zeros(n, dtype=torch.long)
        step_values = torch.zeros(n, 0)
        latents = torch.zeros(n, 0, state.hidden.shape[-1])
    return {"latents": latents, "step_values": step_values, "num_steps": num_steps, "correct": right,
            "answers": [model.extract_answer(t) for t in texts], "answer_texts": texts}


__all__ = ["annotate_question"]
