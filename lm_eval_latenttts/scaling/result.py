"""One question's result, typed: what ``latent_tts`` answers a ``latent_*`` task's request with.

lm-eval hands a model's response to the task as a string, so the result
crosses that boundary as JSON, in one pair: ``QuestionResult.to_json`` (the
model's response) and ``QuestionResult.from_json`` (the task's
``process_results``).  Everything on either side works on the typed object.
Pure Python.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from lm_eval_latenttts.scaling.aggregation import Selection

FAILED = "failed"  # ``stopped`` of a document that could not run


@dataclass
class CandidateRow:
    """One candidate as reported: extracted answer, RM trajectory score (None without an RM), decoded text,
    latent steps taken."""

    answer: str | None
    score: float | None = None
    text: str | None = None
    latent_steps: int | None = None


@dataclass
class QuestionResult:
    """A question's candidates, the choice among them and what they cost.

    ``n``: N rollouts (the B beams of beam search); ``first_round``: the round every question draws
    with adaptive sampling (``single_acc`` and ``pass@k`` use it), else None; ``greedy``: the answer of
    the deterministic decode when the run reports it (``has_greedy``); ``error``: why a document
    failed (``stopped == "failed"``).
    """

    aggregate: str | None
    n: int
    candidates: list[CandidateRow] = field(default_factory=list)
    selection: Selection = Selection(None, None, None, None, None)
    has_rm: bool = False
    rollouts: int | None = None
    latent_forwards: int | None = None
    stopped: str | None = None
    first_round: int | None = None
    has_greedy: bool = False
    greedy: str | None = None
    error: str | None = None

    @property
    def answers(self) -> list:
        return [c.answer for c in self.candidates]

    @property
    def run(self) -> dict:
        """What ``scaling.metrics.question_metrics`` reads beside the candidates (its ``run``)."""
        run = {"rollouts": self.rollouts, "latent_forwards": self.latent_forwards}
        if self.first_round is not None:
            run["first_round"] = self.first_round
        if self.has_greedy:
            run["greedy"] = self.greedy
        return run

    def to_json(self) -> str:
        """The response string of a ``latent_*`` request."""
        record = {"answer": self.selection.answer, "aggregate": self.aggregate, "n": self.n}
        if self.first_round is not None:
            record["first_round"] = self.first_round
        record.update({
            "chosen": self.selection.chosen, "majority": self.selection.majority,
            "best_of_n": self.selection.best_of_n, "weighted": self.selection.weighted, "has_rm": self.has_rm,
            "rollouts": self.rollouts, "latent_forwards": self.latent_forwards, "stopped": self.stopped,
        })
        if self.has_greedy:
            record["greedy"] = self.greedy
        if self.error is not None:
            record["error"] = self.error
        record["candidates"] = [{"answer": c.answer, "score": c.score, "text": c.text,
                                 "latent_steps": c.latent_steps} for c in self.candidates]
        return json.dumps(record, ensure_ascii=False)

    @classmethod
    def from_json(cls, response) -> QuestionResult:
        """The result in a response: ``to_json``'s string, or any other text (e.g. a model other than
        ``latent_tts`` run on a ``latent_*`` task) as one candidate, its last number."""
        from hf_modeling.answers import last_number

        if isinstance(response, (list, tuple)):
            response = response[0] if response else ""
        record = None
        if isinstance(response, str):
            try:
                record = json.loads(response)
            except (json.JSONDecodeError, ValueError):
                record = None
        if not (isinstance(record, dict) and "candidates" in record):
            answer = last_number(response)
            return cls(aggregate=None, n=1, candidates=[CandidateRow(answer)],
                       selection=Selection(answer, None, answer, None, None))
        rows = [CandidateRow(c.get("answer"), c.get("score"), c.get("text"), c.get("latent_steps"))
                for c in record["candidates"] or []]
        return cls(
            aggregate=record.get("aggregate"), n=int(record.get("n") or len(rows) or 1), candidates=rows,
            selection=Selection(record.get("answer"), record.get("chosen"), record.get("majority"),
                                record.get("best_of_n"), record.get("weighted")),
            has_rm=bool(record.get("has_rm")), rollouts=record.get("rollouts"),
            latent_forwards=record.get("latent_forwards"), stopped=record.get("stopped"),
            first_round=record.get("first_round"), has_greedy="greedy" in record, greedy=record.get("greedy"),
            error=record.get("error"),
        )


__all__ = ["FAILED", "CandidateRow", "QuestionResult"]
