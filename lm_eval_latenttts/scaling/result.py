"""One question's result, typed: what the engine answers a question with, and what a ``latent_*`` task scores.

``QuestionResult.answered(plan, draw, greedy)`` builds it from the candidates a
question drew: its strategy chooses (``scaling.strategies``), every strategy
with a metric row gives its answer too, the answers are put in canonical form
and the RM scores rounded as reported.  lm-eval hands a model's response to the
task as a string, so the result crosses that boundary as JSON, in one pair:
``to_json`` (the model's response) and ``from_json`` (the task's
``process_results``, which passes the typed result to
``scaling.metrics.question_metrics``).  Pure Python.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from hf_modeling.answers import normalize_number, number_text
from lm_eval_latenttts.scaling.rollouts import Candidate, QuestionDraw
from lm_eval_latenttts.scaling.strategies import DrawMode, QuestionView, row_names, rows

FAILED = "failed"  # ``stopped`` of a document that could not run
SCORE_DIGITS = 6  # RM scores as reported


def canonical_answer(answer) -> str | None:
    """An extracted answer in canonical text form (numbers as exact numbers: '1,234.0' -> '1234')."""
    if answer is None:
        return None
    number = normalize_number(answer)
    return str(answer) if number is None else number_text(number)


@dataclass(frozen=True)
class Selection:
    """One question's choice: ``answer`` (by the run's strategy), the index of a candidate giving it
    (``chosen``; None if no candidate does), and ``rows``: the answer of every strategy with a metric row
    (``scaling.strategies.rows``; None where it does not apply)."""

    answer: str | None = None
    chosen: int | None = None
    rows: dict = field(default_factory=dict)


@dataclass
class QuestionResult:
    """A question's candidates, the choice among them and what they cost.

    ``aggregate``: the strategy's name; ``n``: N rollouts (the B beams of beam search); ``has_rm``: scored by a
    LatentRM; ``first_round``: the rollouts every question draws with adaptive sampling (``single_acc`` and
    ``pass@k`` use them), else None; ``has_greedy``: the run reports the greedy decode, whose answer is
    ``greedy``; ``extra_positions``: the forward positions of the strategy's own work per candidate (the
    read-backs of ``aggregate=consistency``; None: it has none); ``error``: why a document failed
    (``stopped == "failed"``).
    """

    aggregate: str | None
    n: int
    candidates: list[Candidate] = field(default_factory=list)
    selection: Selection = field(default_factory=Selection)
    has_rm: bool = False
    rollouts: int | None = None
    latent_forwards: int | None = None
    extra_positions: int | None = None
    stopped: str | None = None
    first_round: int | None = None
    has_greedy: bool = False
    greedy: str | None = None
    error: str | None = None

    @property
    def answers(self) -> list:
        return [c.answer for c in self.candidates]

    @property
    def texts(self) -> list:
        return [c.text for c in self.candidates]

    @classmethod
    def answered(cls, plan, draw: QuestionDraw, greedy: QuestionDraw | None = None,
                 step_scores: list | None = None, work=None) -> QuestionResult:
        """The result of a question that ``plan`` drew ``draw`` for (and the greedy decode ``greedy``, the RM's
        ``step_scores`` and the strategy's ``work``, a ``strategies.Work``, where it has them)."""
        answers = tuple(canonical_answer(a) for a in draw.answers)
        scores = draw.scores
        baseline = greedy if greedy is not None else (draw if plan.mode is DrawMode.ONE else None)
        greedy_answer = canonical_answer(baseline.answers[0]) if baseline is not None else None
        view = QuestionView(answers, None if scores is None else tuple(float(s) for s in scores),
                            None if step_scores is None else tuple(step_scores), draw.searched, greedy_answer,
                            baseline is not None, None if work is None else tuple(work.values))
        choice = plan.strategy.choose(view)
        spent = greedy if greedy is not None else QuestionDraw()
        return cls(
            aggregate=plan.strategy.name, n=plan.n, selection=Selection(choice.answer, choice.index, rows(view)),
            candidates=[Candidate(answer, None if c.score is None else round(float(c.score), SCORE_DIGITS), c.text,
                                  int(c.latent_steps)) for answer, c in zip(answers, draw.candidates)],
            has_rm=scores is not None, rollouts=draw.drawn + spent.drawn,
            latent_forwards=draw.latent_forwards + spent.latent_forwards,
            extra_positions=None if work is None else int(work.positions), stopped=draw.stopped,
            first_round=plan.first_round, has_greedy=plan.reports_greedy,
            greedy=greedy_answer if plan.reports_greedy else None)

    @classmethod
    def failed(cls, plan, reason: str) -> QuestionResult:
        """The result of a document that could not run (a named reason): no candidates, scored wrong; the fields
        that depend only on the settings are an answered document's, so that it reports the same rows."""
        return cls(aggregate=plan.strategy.name, n=plan.n, selection=Selection(rows=dict.fromkeys(row_names())),
                   has_rm=plan.has_rm, rollouts=0, latent_forwards=0,
                   extra_positions=0 if plan.strategy.candidate_work is not None else None, stopped=FAILED,
                   first_round=plan.first_round,
                   has_greedy=plan.reports_greedy, error=reason)

    def to_json(self) -> str:
        """The response string of a ``latent_*`` request."""
        record = {"answer": self.selection.answer, "aggregate": self.aggregate, "n": self.n}
        if self.first_round is not None:
            record["first_round"] = self.first_round
        record["chosen"] = self.selection.chosen
        record.update({name: self.selection.rows.get(name) for name in row_names()})
        record.update({"has_rm": self.has_rm, "rollouts": self.rollouts, "latent_forwards": self.latent_forwards})
        if self.extra_positions is not None:
            record["extra_positions"] = self.extra_positions
        record["stopped"] = self.stopped
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
        if isinstance(response, (list, tuple)):
            response = response[0] if response else ""
        record = None
        if isinstance(response, str):
            try:
                record = json.loads(response)
            except (json.JSONDecodeError, ValueError):
                record = None
        if not (isinstance(record, dict) and "candidates" in record):
            return cls._plain(response)
        found = [Candidate(c.get("answer"), c.get("score"), c.get("text"), c.get("latent_steps"))
                 for c in record["candidates"] or []]
        return cls(
            aggregate=record.get("aggregate"), n=int(record.get("n") or len(found) or 1), candidates=found,
            selection=Selection(record.get("answer"), record.get("chosen"),
                                {name: record.get(name) for name in row_names()}),
            has_rm=bool(record.get("has_rm")), rollouts=record.get("rollouts"),
            latent_forwards=record.get("latent_forwards"), extra_positions=record.get("extra_positions"),
            stopped=record.get("stopped"),
            first_round=record.get("first_round"), has_greedy="greedy" in record, greedy=record.get("greedy"),
            error=record.get("error"),
        )

    @classmethod
    def _plain(cls, response) -> QuestionResult:
        """Another model's text as one candidate: its last number, chosen by every rule that needs no RM."""
        from hf_modeling.answers import last_number

        answer = last_number(response)
        return cls(aggregate=None, n=1, candidates=[Candidate(answer)],
                   selection=Selection(answer, None, rows(QuestionView((answer,)))))


__all__ = ["FAILED", "QuestionResult", "SCORE_DIGITS", "Selection", "canonical_answer"]
