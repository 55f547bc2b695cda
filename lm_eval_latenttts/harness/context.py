"""The bare question of an lm-eval request, or an error when the prompt holds more than the question.

Latent reasoning models are evaluated zero-shot on the bare question: the
backbone applies its own prompt format, and was never trained on worked
examples, instructions or descriptions.  lm-eval builds a request's context
as ``system instruction + description + few-shot examples + doc_to_text(doc)``;
the model sees only that text and the document.  So the question is taken
from the document (its ``question`` / ``input`` / ``Question`` field, as in
``data.questions``) when the context contains it, and whatever surrounds it
may only be a template's wrapping: at most one short label before it
(``Question:``, ``Q:``, ``Problem:``) and one after it (``Answer:``, ``A:``).
Anything else (a few-shot example from ``--num_fewshot`` or the task's
``num_fewshot``, ``--system_instruction``, a task ``description``) is an
error, never dropped or glued to the question in silence.

A document without such a field (a task whose template rewrites the
question) falls back to the context: one label line before and after is
removed, and a context that repeats its first label (``Question:`` twice) is
few-shot.  Without the document's question, other extra text (an instruction
before an unlabelled question) cannot be told from the question and reaches
the model as it is: give such a task's documents a ``question`` field.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from lm_eval_latenttts.data.questions import QUESTION_KEYS
from lm_eval_latenttts.harness.arguments import LatentTTSArgumentError

_LABEL = r"[A-Za-z][A-Za-z ]{0,19}:"  # a template's label: 'Question:', 'Q:', 'Problem:', 'Answer:'
_WRAPPING = re.compile(rf"\s*(?:{_LABEL})?\s*")
_WRAPPED = re.compile(rf"^\s*(?P<label>{_LABEL})\s*(?P<q>.*?)\s*\n\s*{_LABEL}\s*$", re.DOTALL)
_EXCERPT = 120

ZERO_SHOT_HELP = (
    "Latent reasoning models are evaluated zero-shot on the bare question (the model applies its own prompt "
    "format), so few-shot examples (--num_fewshot or the task's num_fewshot), --system_instruction and a task "
    "description cannot be honoured. Run with --num_fewshot 0 and without --system_instruction, or use a task "
    "whose doc_to_text is the question, at most wrapped in labels (e.g. \"Question: {{question}}\\nAnswer:\")."
)


def _doc_question(doc) -> str | None:
    if not isinstance(doc, Mapping):
        return None
    for key in QUESTION_KEYS:
        value = doc.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def _excerpt(text: str) -> str:
    text = text.strip()
    return repr(text if len(text) <= _EXCERPT else text[:_EXCERPT - 3] + "...")


def bare_question(context: str, doc=None, where: str = "a request") -> str:
    """The question to give the model for a request with ``context`` about ``doc``; ``where`` names the request.

    Raises ``LatentTTSArgumentError`` (a setting, so the run stops before any compute) when the context holds
    more than the question and its template's labels.
    """
    question = _doc_question(doc)
    if question is not None and question in context:
        before, after = context.rsplit(question, 1)
        for part, side in ((before, "before"), (after, "after")):
            if not _WRAPPING.fullmatch(part):
                raise LatentTTSArgumentError(
                    f"latent_tts: the prompt of {where} holds more than the question: {_excerpt(part)} {side} it. "
                    + ZERO_SHOT_HELP)
        return question
    match = _WRAPPED.match(context)
    if match is not None:
        label = match.group("label")
        if re.search(rf"(?m)^\s*{re.escape(label)}", match.group("q")):
            raise LatentTTSArgumentError(
                f"latent_tts: the prompt of {where} repeats {label!r} (a few-shot context). " + ZERO_SHOT_HELP)
        return match.group("q")
    return context.strip()


__all__ = ["ZERO_SHOT_HELP", "bare_question"]
