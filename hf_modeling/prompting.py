"""The text side of a latent backbone: its prompt format (SPEC) and where its answer is.

``LatentPromptMixin`` gives every backbone ``format_prompt``, ``encode_prompt``
(special-token text in a question stays text), ``extract_answer`` and
``is_correct``; the lm-eval model, the tasks, annotation, the recipes and the
benchmarks call these instead of knowing the formats themselves.  This file is
copied next to saved checkpoints for ``trust_remote_code`` loading.
"""

from __future__ import annotations

from transformers import PreTrainedTokenizerBase

from .answers import answers_equal, extract_answer


class LatentPromptMixin:
    """Prompt and answer formats of a backbone; classes set ``latent_kind`` and ``prompt_template``."""

    latent_kind: str | None = None  # "coconut" | "codi" | "colar": prompt and answer formats (SPEC)
    prompt_template = "{question}"

    def format_prompt(self, question: str) -> str:
        """The backbone's prompt format (SPEC) around a bare question, ending with the start marker."""
        return self.prompt_template.replace("{question}", question)

    def encode_prompt(self, tokenizer: PreTrainedTokenizerBase, question: str) -> list[int]:
        """Token ids of the prompt for ``question``; special-token text inside the question stays text.

        A question that contains e.g. ``<|latent|>`` would otherwise be parsed
        into the control token itself; such questions are tokenised in pieces
        cut where a special token's text starts, so it can never match.
        """
        text = self.format_prompt(question)
        specials = [s for s in getattr(tokenizer, "added_tokens_encoder", {}) if s and s in question]
        if not specials:
            return list(tokenizer(text)["input_ids"])
        prefix, suffix = self.prompt_template.split("{question}")
        cuts = sorted({i for s in specials for i in _occurrences(question, s)} | {
            i + 1 for s in specials for i in _occurrences(question, s)})
        bounds = [0] + [c for c in cuts if 0 < c < len(question)] + [len(question)]
        chunks = [question[a:b] for a, b in zip(bounds, bounds[1:])]
        chunks[0], chunks[-1] = prefix + chunks[0], chunks[-1] + suffix
        ids = list(tokenizer(chunks[0])["input_ids"])
        for chunk in chunks[1:]:
            ids += tokenizer(chunk, add_special_tokens=False)["input_ids"]
        return ids

    def extract_answer(self, text: str | None) -> str | None:
        """The answer in a decoded answer ``text``, in this backbone's answer format (SPEC)."""
        return extract_answer(text, self.latent_kind)

    def is_correct(self, text: str | None, gold: str | int | float | None) -> bool:
        """True when the answer in ``text`` equals ``gold`` (numbers compare as numbers)."""
        return answers_equal(self.extract_answer(text), gold)


def _occurrences(text: str, sub: str) -> list[int]:
    """Start indices of every (possibly overlapping) occurrence of ``sub`` in ``text``."""
    found, start = [], text.find(sub)
    while start != -1:
        found.append(start)
        start = text.find(sub, start + 1)
    return found
