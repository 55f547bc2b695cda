"""Exact step labels: read a latent prefix back as the explicit step the backbone writes next.

A COCONUT-style backbone is trained with a curriculum in which stage ``s``
replaces the first ``s`` reasoning steps by latents and writes the rest as
text (``question <|start-latent|> [latent]*s <|end-latent|> <<step s+1>> ...
### answer``).  So a latent prefix (latents 0..t of a trajectory) can be *read*:
feed the clean prompt (no dropout), the prefix's vectors as they are, the end
marker, and let the backbone write greedily what comes next.  Its first
explicit step ``<<expression=result>>`` shows which values the prefix carries:
for the arithmetic task, latent 0 of "Start at 47, plus 8, then times 3"
reads back as ``<<55*3=65>>`` when it carries x1 = 55, and as ``<<45*3=35>>``
when it carries 45.

**Definition (``labels="decoded"``).**  With ``latents_per_step = c`` latents
per reasoning step, the prefix of latents 0..t has replaced ``k = (t+1) // c``
gold steps.  Its label is 1 when the first explicit step it reads back as has
the *expression* (left of ``=``) of gold step ``k`` -- it starts from the right
values -- and 0 otherwise (also when it writes no step).  The result right of
``=`` is not compared: that is the explicit step's own arithmetic, not the
prefix's.  The label of the trajectory's last latent step, and of any step
with ``k`` past the gold steps, is the trajectory's final correctness, exactly
as in Monte Carlo annotation.  Gold steps are the question row's ``steps``
(the GSM8K-Aug layout ``["<<47+8=55>>", "<<55*3=65>>"]``); a question without
them cannot be labelled this way.

No continuation is sampled: a label is one greedy decode per (trajectory,
step), so it is exact (free of Monte Carlo noise) and costs far less than M
continuations.  It says whether a step is right, not how likely the rest of
the trajectory is to recover from it.
"""

from __future__ import annotations

import re

import torch

from lm_eval_latenttts.scaling.readback import READ_BACK_TOKENS
from lm_eval_latenttts.scaling.readback import read_back as batch_read_back

STEP_RE = re.compile(r"<<([^<>=]*)=([^<>]*)>>")


def step_expression(text: str | None) -> str | None:
    """The expression (left of ``=``, spaces removed) of the first ``<<expression=result>>`` in ``text``."""
    if not text:
        return None
    match = STEP_RE.search(text)
    return None if match is None else "".join(match.group(1).split())


def read_back(model, tokenizer, prompt_ids: list[int], prefixes: torch.Tensor,
              max_new_tokens: int = READ_BACK_TOKENS) -> list[str]:
    """What the backbone writes after ``prompt + prefix + end marker``, greedily and without dropout
    (``scaling.readback.read_back`` for one question).

    ``prefixes``: (rows, k, hidden) latent vectors fed as they are (not re-derived).  Returns one text per row.
    The prompt runs once (deterministic) and its cache is shared by the rows.
    """
    return batch_read_back(model, tokenizer, [list(prompt_ids)], [prefixes], max_new_tokens)[0][0]


def gold_expressions(steps) -> list[str | None]:
    """The expression of each gold step (``"<<47+8=55>>"`` -> ``"47+8"``)."""
    return [step_expression(s) for s in (steps or [])]


def decoded_step_labels(model, tokenizer, prompt_ids: list[int], latents: torch.Tensor, num_steps: torch.Tensor,
                        correct: torch.Tensor, steps, latents_per_step: int = 1) -> tuple[torch.Tensor, list]:
    """Exact labels (N, T) of N trajectories (see the module docstring) and the texts read back per step.

    ``latents`` (N, T, hidden); ``num_steps`` (N,) latent steps each row took; ``correct`` (N,) final
    correctness; ``steps`` the question's gold steps.  Positions past a row's ``num_steps`` are NaN.
    """
    if latents_per_step < 1:
        raise ValueError(f"latents_per_step must be >= 1; got {latents_per_step}.")
    gold = gold_expressions(steps)
    if not gold or any(g is None for g in gold):
        raise ValueError("decoded step labels need the question's gold steps ('steps': ['<<47+8=55>>', ...]); "
                         f"got {steps!r}.")
    n, t_max = latents.shape[:2]
    labels = torch.full((n, t_max), float("nan"))
    texts: list[list[str | None]] = [[None] * t_max for _ in range(n)]
    num_steps = num_steps.cpu()
    for t in range(t_max):
        rows = (num_steps > t).nonzero().flatten()
        if not rows.numel():
            continue
        last = num_steps[rows] == t + 1
        k = (t + 1) // latents_per_step
        labels[rows[last], t] = correct.cpu()[rows[last]].float()
        inner = rows[~last]
        if not inner.numel():
            continue
        if k >= len(gold):
            labels[inner, t] = correct.cpu()[inner].float()
            continue
        read = read_back(model, tokenizer, prompt_ids, latents[inner, : t + 1])
        for row, text in zip(inner.tolist(), read):
            labels[row, t] = float(step_expression(text) == gold[k])
            texts[row][t] = text
    return labels, texts


__all__ = ["READ_BACK_TOKENS", "decoded_step_labels", "gold_expressions", "read_back", "step_expression"]
