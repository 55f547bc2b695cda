"""The bare question of an lm-eval request, taken from what lm-eval says it built, or an error.

Latent reasoning models are evaluated zero-shot on the bare question: the
backbone applies its own prompt format, and was never trained on worked
examples, instructions or descriptions.  lm-eval builds a request's context in
``ConfigurableTask.fewshot_context`` as ``system instruction + description +
few-shot examples + doc_to_text(doc) [+ gen_prefix]``; the model is handed only
the resulting text and the document.  So that the guard *knows* what lm-eval
added instead of guessing it from the text's shape, ``install`` wraps that
method: the context it returns is a ``LatentContext``, a ``str`` equal to
lm-eval's that carries its ``PromptParts`` (the system instruction, the
resolved description, the number of few-shot examples, whether a chat template
was applied, the rendered ``doc_to_text``, the ``gen_prefix`` and the task's
``doc_to_text`` setting).  ``bare_question`` then refuses any system
instruction, description, few-shot example or chat template, checks that the
context is exactly the rendered ``doc_to_text`` (and ``gen_prefix``), and takes
the question from the document: the one document field that the rendered text
holds, with nothing around it but whitespace and the template labels of
``LABELS`` (``"Question: {{question}}\\nAnswer:"``, ``"Q: {{problem}}\\nA:"``).
Any other text (an instruction in ``doc_to_text``, a second field) is refused,
never dropped or sent along in silence.

A request whose context does not carry its parts (a task class with its own
``fewshot_context``, requests cached by ``--cache_requests`` before) but that
has a document is refused: what lm-eval added cannot be told.  A request
without a document (built by hand, not by a task) is its own question.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Mapping
from dataclasses import dataclass

from lm_eval_latenttts.data.questions import QUESTION_KEYS
from lm_eval_latenttts.harness.arguments import LatentTTSArgumentError

# the template labels that may wrap the question (before or after it); any other text is refused
LABELS = ("Question:", "Q:", "Problem:", "Answer:", "A:", "Solution:")
_EXCERPT = 120

ZERO_SHOT_HELP = (
    "Latent reasoning models are evaluated zero-shot on the bare question (the model applies its own prompt "
    "format), so few-shot examples (--num_fewshot or the task's num_fewshot), --system_instruction, a task "
    "description, a chat template and instructions in doc_to_text cannot be honoured. Run with --num_fewshot 0 "
    "and without --system_instruction, or write a task for latent_tts: doc_to_text names one field of the "
    "document, at most wrapped in the labels " + ", ".join(LABELS) + " (e.g. \"{{question}}\" or "
    "\"Question: {{question}}\\nAnswer:\"), num_fewshot: 0 and no description, as tasks/latent_gsm8k.yaml."
)


@dataclass(frozen=True)
class PromptParts:
    """What lm-eval put into a request's context (``ConfigurableTask.fewshot_context``'s inputs, resolved)."""

    task: str | None
    system_instruction: str | None
    description: str
    num_fewshot: int
    chat_template: bool
    text: object  # doc_to_text(doc) as lm-eval rendered it
    gen_prefix: str | None
    target_delimiter: str
    template: str  # the task's doc_to_text setting, for messages

    def additions(self) -> list[str]:
        """What lm-eval added besides the document's text, by name."""
        added = [f"the system instruction {_excerpt(self.system_instruction)} (--system_instruction)"
                 if self.system_instruction else "",
                 f"the task's description {_excerpt(self.description)}" if self.description else "",
                 f"{self.num_fewshot} few-shot example(s) (--num_fewshot or the task's num_fewshot)"
                 if self.num_fewshot else "",
                 "a chat template (--apply_chat_template)" if self.chat_template else ""]
        return [a for a in added if a]

    def expected_context(self) -> str:
        """The context lm-eval builds from the document's text alone (``build_qa_turn`` of the last turn)."""
        from lm_eval.api.utils import requires_delimiter

        text, prefix = str(self.text), self.gen_prefix or ""
        return text + (self.target_delimiter if prefix and requires_delimiter(text, prefix) else "") + prefix


class LatentContext(str):
    """A request's context, equal to lm-eval's string, with the ``PromptParts`` it was built from."""

    latent_tts_parts: PromptParts

    def __new__(cls, text: str, parts: PromptParts):
        made = super().__new__(cls, text)
        made.latent_tts_parts = parts
        return made

    def __reduce__(self):  # requests are pickled by --cache_requests
        return (LatentContext, (str(self), self.latent_tts_parts))


def _template_name(task) -> str:
    template = task.prompt if getattr(task, "prompt", None) is not None else task.config.doc_to_text
    if isinstance(template, str):
        return repr(template)
    return getattr(template, "__qualname__", None) or type(template).__name__


def install() -> None:
    """Wrap lm-eval's ``ConfigurableTask.fewshot_context`` so that its contexts carry their ``PromptParts``;
    idempotent.  The returned text is lm-eval's own, unchanged."""
    from lm_eval.api.task import ConfigurableTask

    method = ConfigurableTask.fewshot_context
    if getattr(method, "_latent_tts", False):
        return
    signature = inspect.signature(method)

    @functools.wraps(method)
    def fewshot_context(self, *args, **kwargs):
        context = method(self, *args, **kwargs)
        if not isinstance(context, str):  # several contexts (multiple inputs): not a latent_tts request
            return context
        given = signature.bind(self, *args, **kwargs)
        given.apply_defaults()
        doc, arg = given.arguments["doc"], given.arguments
        parts = PromptParts(
            task=self.config.task, system_instruction=arg["system_instruction"],
            description=self.resolve_field(doc, self.config.description) or "",
            num_fewshot=int(arg["num_fewshot"] or 0), chat_template=bool(arg["apply_chat_template"]),
            text=self.doc_to_text(doc), gen_prefix=arg["gen_prefix"],
            target_delimiter=self.config.target_delimiter, template=_template_name(self))
        return LatentContext(context, parts)

    fewshot_context._latent_tts = True
    ConfigurableTask.fewshot_context = fewshot_context


def _excerpt(text) -> str:
    text = str(text).strip()
    return repr(text if len(text) <= _EXCERPT else text[:_EXCERPT - 3] + "...")


def _unlabelled(text: str) -> str:
    """``text`` without whitespace and the template labels of ``LABELS`` (whole words): what is left over."""
    return " ".join(word for word in text.split() if word not in LABELS)


def _fields(doc: Mapping) -> list[tuple[str, str]]:
    """(key, stripped text) of the document's text fields: the question keys first, then the longest first."""
    found = [(str(k), v.strip()) for k, v in doc.items() if isinstance(v, str) and v.strip()]
    return sorted(found, key=lambda kv: (kv[0] not in QUESTION_KEYS, -len(kv[1])))


def bare_question(context, doc=None, where: str = "a request") -> str:
    """The question to give the model for a request with ``context`` about ``doc``; ``where`` names the request.

    Raises ``LatentTTSArgumentError`` (a setting: the run stops before any compute) when lm-eval added anything
    but template labels to the document's question, or when what it added cannot be told.
    """
    parts = getattr(context, "latent_tts_parts", None)
    if parts is None:
        if isinstance(doc, Mapping) and doc:
            raise LatentTTSArgumentError(
                f"latent_tts cannot tell what lm-eval added to the prompt of {where}: it was not built by lm-eval's "
                "ConfigurableTask.fewshot_context in this process (a task class with its own fewshot_context, or a "
                "request cached by --cache_requests before; rerun without it). " + ZERO_SHOT_HELP)
        return str(context).strip()
    added = parts.additions()
    if added:
        raise LatentTTSArgumentError(
            f"latent_tts: the prompt of {where} holds {'; '.join(added)} besides the question. " + ZERO_SHOT_HELP)
    if not isinstance(parts.text, str) or str(context) != parts.expected_context():
        raise LatentTTSArgumentError(
            f"latent_tts cannot tell what lm-eval added to the prompt of {where}: it is not the task's doc_to_text "
            f"{parts.template} of the document. " + ZERO_SHOT_HELP)
    text = parts.expected_context()
    nearest = None
    for key, value in _fields(doc) if isinstance(doc, Mapping) else []:
        at = text.find(value)
        if at < 0:
            continue
        extra = " ".join(filter(None, (_unlabelled(text[:at]), _unlabelled(text[at + len(value):]))))
        if not extra:
            return value
        nearest = nearest or (key, extra)
    if nearest is None:
        raise LatentTTSArgumentError(
            f"latent_tts: the prompt of {where} ({_excerpt(text)}, from doc_to_text {parts.template}) holds no "
            "field of its document as it is, so the bare question cannot be told. " + ZERO_SHOT_HELP)
    raise LatentTTSArgumentError(
        f"latent_tts: the prompt of {where} holds {_excerpt(nearest[1])} besides the document's {nearest[0]!r} "
        f"(doc_to_text {parts.template}); only the labels {', '.join(LABELS)} may wrap the question. "
        + ZERO_SHOT_HELP)


__all__ = ["LABELS", "LatentContext", "PromptParts", "ZERO_SHOT_HELP", "bare_question", "install"]
