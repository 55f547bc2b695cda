"""Selection strategies as plug-ins: how one answer is chosen among a question's candidates, one class each.

A ``Strategy`` declares everything the engine needs to know about it:

- ``name``: what ``aggregate=`` names it (``--model_args aggregate=<name>``);
- ``needs_rm``: it reads LatentRM scores (a run without ``rm=`` is refused before any compute);
- ``needs_greedy``: it reads the greedy decode's answer (the engine then draws the greedy decode beside
  the candidates, whether or not the task reports the ``greedy`` row);
- ``needs_step_scores``: it reads the RM's per-step scores (recorded for it; otherwise never kept);
- ``search``: where its candidates come from: ``None`` (the default) means N keyed samples per question
  (drawn in one round, or in adaptive rounds, and split over calls when memory runs out); a method means
  one search per question (RM-guided beam search), which has no sample index, no rounds and no split;
- ``schedule(config)``: how its candidates are drawn (a ``Schedule``: the mode and the round size);
- ``reported_n(config)``: the ``n`` the results report (N rollouts; the B beams of beam search);
- ``candidate_work``: extra work per candidate that the engine runs after a question's samples are drawn
  (``None``: none); a method ``candidate_work(model, tokenizer, prompts, latents, config) -> [Work]`` that gets
  each question's prompt and its candidates' latent vectors and returns per question one value per candidate
  (``QuestionView.work``) and the forward positions it cost (the ``extra_positions`` row).  The engine batches it
  like the draws (a group's questions, calls of ``batch_size`` questions, halving on out-of-memory), so a
  strategy's work must be a function of the question and its candidates only;
- ``check_backbone(model, config)``: refuses (a ``SettingError``) a backbone or setting it cannot run with,
  before any compute;
- ``ignores``: settings it does not read (a value asked for one is refused, saying ``why_ignored`` and what
  to set ``instead``);
- ``choose(view)``: the choice, from a ``QuestionView`` (answers, RM trajectory scores, per-step scores
  when asked for, vote counts and shares, the search's own pick, the greedy decode's answer, the values of its
  ``candidate_work``);
- ``row``: the metric row that reports this rule's answer in every run that can compute it (``majority``,
  ``best_of_n``, ``weighted``), or None.  lm-eval aggregates only the rows a task's ``metric_list`` names,
  so a row of its own also needs a line there (``tasks/_default_template_yaml``).

``register_strategy`` adds a class to ``STRATEGIES`` (one instance per name); ``strategy(name)`` looks one
up and refuses an unknown name, listing the registered ones.  ``scaling.plan.make_plan`` resolves a
request's setting into the strategy once; nothing else compares names.

Adding a selector is one class and one registration, e.g. the answer that more than half of the candidates
give, or none (reported as ``acc`` with ``aggregate=consensus``)::

    from lm_eval_latenttts.scaling.strategies import Choice, Strategy, register_strategy

    @register_strategy
    class Consensus(Strategy):
        name = "consensus"

        def choose(self, view):
            share, answer = max(((s, a) for a, s in view.shares.items()), default=(0.0, None))
            return Choice(answer, view.first_giving(answer)) if share > 0.5 else Choice(None, None)

Register it before the model resolves its settings: import the module that defines it first (e.g. in
the script that calls ``lm_eval.simple_evaluate``), or, for the ``lm_eval`` command, declare the module in
the entry-point group ``lm_eval_latenttts.strategies`` of your package (``[project.entry-points.
"lm_eval_latenttts.strategies"] mine = "my_package.selectors"``): an ``aggregate=`` name the registry does
not know loads that group once before it is refused.  Pure Python: importing this module loads no torch.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from functools import cached_property
from typing import ClassVar

from hf_modeling.answers import answer_key
from lm_eval_latenttts.scaling.aggregation import best_of_n_index, consistency_vote, majority_vote, tally, weighted_vote


class DrawMode(enum.Enum):
    """Where a question's candidates come from and how they are drawn: decided once per setting."""

    SEARCH = "search"  # one search per question (beam search): no sample index, no rounds, no split
    ONE = "one"  # sampling off: one rollout stands for all N
    SAMPLES = "samples"  # N keyed samples in one round, which may be split over calls
    ROUNDS = "rounds"  # adaptive sampling: rounds of k keyed samples, only undecided questions go on


@dataclass(frozen=True)
class Schedule:
    """How a question's candidates are drawn: the ``mode``, ``n`` rollouts per question (the budget in rounds)
    and ``round`` rollouts per question and round (``n`` unless adaptive)."""

    mode: DrawMode
    n: int
    round: int

    @property
    def splittable(self) -> bool:
        """Whether a question's rollouts may be drawn over several calls (keyed samples, not a search)."""
        return self.mode in (DrawMode.SAMPLES, DrawMode.ROUNDS)


@dataclass(frozen=True)
class Choice:
    """A strategy's choice: the ``answer`` and the ``index`` of a candidate that gives it (None: none does)."""

    answer: str | None
    index: int | None


@dataclass(frozen=True)
class Work:
    """A strategy's ``candidate_work`` for one question: one value per candidate and the forward ``positions``
    it cost."""

    values: tuple
    positions: int


@dataclass(frozen=True)
class QuestionView:
    """What a strategy sees of one question: its candidates' ``answers`` (canonical; None: no answer could be
    extracted), their RM trajectory ``scores`` (None without a LatentRM), ``step_scores`` (the RM's per latent
    step, only for a strategy that ``needs_step_scores``), ``searched`` (the candidate a search chose) and
    ``greedy``, the greedy decode's answer (``has_greedy``: the run has one), and ``work``: the values of the
    strategy's ``candidate_work``, one per candidate (None: it has none)."""

    answers: tuple
    scores: tuple | None = None
    step_scores: tuple | None = None
    searched: int | None = None
    greedy: str | None = None
    has_greedy: bool = False
    work: tuple | None = None

    def __post_init__(self) -> None:
        if self.scores is not None and len(self.scores) != len(self.answers):
            raise ValueError(f"{len(self.answers)} answers but {len(self.scores)} scores; give one score per answer.")
        if self.work is not None and len(self.work) != len(self.answers):
            raise ValueError(f"{len(self.answers)} answers but {len(self.work)} work values; give one per answer.")

    @cached_property
    def votes(self) -> list[tuple[float, int, str]]:
        """``(votes, first index, answer)`` per distinct answer, leader first (ties: earliest first occurrence)."""
        return tally(list(self.answers))

    @cached_property
    def shares(self) -> dict:
        """Each distinct answer's share of the answered candidates' votes (they add up to 1)."""
        total = sum(votes for votes, _, _ in self.votes)
        return {answer: votes / total for votes, _, answer in self.votes} if total else {}

    def first_giving(self, answer) -> int | None:
        """The index of the first candidate whose answer equals ``answer`` (None: none does)."""
        key = answer_key(answer)
        return next((i for i, a in enumerate(self.answers) if key is not None and answer_key(a) == key), None)


class Strategy:
    """A selection strategy (see the module docstring); subclass it and ``register_strategy`` the class."""

    name: ClassVar[str] = ""
    needs_rm: ClassVar[bool] = False
    needs_greedy: ClassVar[bool] = False
    needs_step_scores: ClassVar[bool] = False
    row: ClassVar[str | None] = None
    ignores: ClassVar[tuple[str, ...]] = ()
    instead: ClassVar[str] = ""
    search = None  # or a method search(model, tokenizer, prompts, config, rm, record=None) -> [QuestionDraw]
    candidate_work = None  # or a method candidate_work(model, tokenizer, prompts, latents, config) -> [Work]

    def check_backbone(self, model, config) -> None:
        """Refuse (``SettingError``) a backbone or setting this strategy cannot run with; called before any compute
        (the harness when it resolves a setting, ``Engine.plan``)."""

    def schedule(self, config) -> Schedule:
        """N keyed samples: one round, or adaptive rounds of ``adaptive_round``; sampling off: one rollout."""
        n = config.num_return_sequences
        if self.search is not None:
            return Schedule(DrawMode.SEARCH, n, n)
        if not config.samples:
            return Schedule(DrawMode.ONE, n, n)
        if config.adaptive:
            return Schedule(DrawMode.ROUNDS, n, min(config.adaptive_round, n))
        return Schedule(DrawMode.SAMPLES, n, n)

    def reported_n(self, config) -> int:
        return config.num_return_sequences

    def why_ignored(self, config) -> str:
        """Why the settings of ``ignores`` do not apply (``instead``: what to set instead)."""
        return f"aggregate={self.name} does not read them"

    def applies(self, view: QuestionView) -> bool:
        """Whether the rule can choose for ``view`` (an RM's scores, a greedy decode where it needs them)."""
        return (view.scores is not None or not self.needs_rm) and (view.has_greedy or not self.needs_greedy) \
            and (view.work is not None or self.candidate_work is None)

    def choose(self, view: QuestionView) -> Choice:
        raise NotImplementedError


STRATEGIES: dict[str, Strategy] = {}
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def register_strategy(cls: type[Strategy]) -> type[Strategy]:
    """Register ``cls`` under ``cls.name`` (a lowercase identifier, as ``aggregate=`` takes it); returns ``cls``,
    so it works as a class decorator.  A name registered again replaces the earlier class."""
    if not (isinstance(cls, type) and issubclass(cls, Strategy)):
        raise TypeError(f"register_strategy takes a Strategy subclass; got {cls!r}.")
    if not isinstance(cls.name, str) or not _NAME.match(cls.name):
        raise ValueError(f"{cls.__name__}.name must be a lowercase identifier (what aggregate= names); "
                         f"got {cls.name!r}.")
    STRATEGIES[cls.name] = cls()
    return cls


ENTRY_POINTS = "lm_eval_latenttts.strategies"  # modules of other packages that register strategies when imported
_loaded_entry_points: list = []


def _load_entry_points() -> None:
    """Import the modules of the ``ENTRY_POINTS`` group (once): they register their strategies."""
    from importlib.metadata import entry_points

    if _loaded_entry_points:
        return
    _loaded_entry_points.append(True)
    for point in entry_points(group=ENTRY_POINTS):
        point.load()


def strategy(name: str) -> Strategy:
    """The registered strategy ``name``; an unknown name is a ``SettingError`` listing the registered ones."""
    if name not in STRATEGIES:
        _load_entry_points()
    if name not in STRATEGIES:
        from hf_modeling.generation_config import SettingError

        raise SettingError("{aggregate} is not a registered selection strategy; registered: "
                           f"{', '.join(STRATEGIES)} (scaling.strategies.register_strategy adds one).",
                           aggregate=name)
    return STRATEGIES[name]


def row_names() -> list[str]:
    """The metric rows of the registered strategies, in registration order."""
    return [s.row for s in STRATEGIES.values() if s.row]


def rows(view: QuestionView) -> dict:
    """Every row's answer for ``view``: the rule's choice where it applies, else None."""
    return {s.row: (s.choose(view).answer if s.applies(view) else None) for s in STRATEGIES.values() if s.row}


# --------------------------------------------------------------------------------------------- the built-in ones
@register_strategy
class Majority(Strategy):
    """The most frequent answer (ties: earliest first occurrence)."""

    name = row = "majority"

    def choose(self, view):
        answer = majority_vote(view.answers)
        return Choice(answer, view.first_giving(answer))


@register_strategy
class BestOfN(Strategy):
    """The candidate with the highest RM trajectory score (earliest on ties)."""

    name = row = "best_of_n"
    needs_rm = True

    def choose(self, view):
        if not view.answers:
            return Choice(None, None)
        index = best_of_n_index(view.scores)
        return Choice(view.answers[index], index)


@register_strategy
class Weighted(Strategy):
    """The answer with the largest total softmax weight of its candidates' RM scores."""

    name = row = "weighted"
    needs_rm = True

    def choose(self, view):
        answer = weighted_vote(view.answers, view.scores)
        return Choice(answer, view.first_giving(answer))


@register_strategy
class BeamSearch(Strategy):
    """RM-guided beam search over latent steps (``scaling.beam``): the B final beams are the candidates and the
    search's own pick (the best trajectory score) is the answer."""

    name = "beam"
    needs_rm = True
    ignores = ("num_return_sequences", "adaptive")
    instead = "size the search with beams= and candidates="

    def search(self, model, tokenizer, prompts, config, rm, record=None):
        from lm_eval_latenttts.scaling import rollouts

        return rollouts.beam(model, tokenizer, prompts, config, rm, record=record)

    def reported_n(self, config) -> int:
        return config.latent_beams

    def why_ignored(self, config) -> str:
        return (f"RM-guided beam search keeps beams={config.latent_beams} beams of candidates="
                f"{config.latent_candidates} candidates each (B*C rollouts per latent step) and returns the B beams")

    def choose(self, view):
        searched = view.searched
        return Choice(view.answers[searched] if view.answers and searched is not None else None, searched)


@register_strategy
class Consistency(Strategy):
    """The read-back consistency vote: each candidate's first latent is read back (``scaling.readback``: the clean
    prompt, that latent, the end marker, a greedy decode without dropout: the backbone writes the rest of the
    reasoning in tokens), and a candidate votes with weight 1 when its answer equals its read-back's answer, with
    ``epsilon`` otherwise (``aggregation.consistency_vote``; ties: earliest first occurrence).

    It needs a backbone with an explicit continuation mode (``explicit_continuation``: COCONUT's curriculum writes
    the steps after a latent prefix in tokens; CODI and CoLaR do not) and has a rule for two latent steps only
    (latent 0 is read back and the second step written out, the prefix of the curriculum's stage 1; which prefix
    to read back for more steps is not measured).  Measured on the shipped task (issue 23): N=16, test 80.7 %
    against majority 74.5 % and greedy 74.0 %; ``epsilon`` = 0.001 chosen on the valid split.  Its answer depends
    on read-backs drawn after the samples, so adaptive rounds (which settle the plain vote) are refused.
    """

    name = "consistency"
    epsilon = 0.001
    latent_steps = 2  # the latent count it has a rule for: latent 0 read back, step 2 written out
    ignores = ("adaptive",)
    instead = "draw all N rollouts (adaptive=false), or choose another aggregate for adaptive sampling"

    def why_ignored(self, config) -> str:
        return ("adaptive rounds stop when a question's plain (or RM-weighted) vote is settled, and the consistency "
                "vote weighs each vote by the sample's read-back, which a settled count does not settle")

    def schedule(self, config) -> Schedule:
        n = config.num_return_sequences
        return Schedule(DrawMode.SAMPLES if config.samples else DrawMode.ONE, n, n)

    def check_backbone(self, model, config) -> None:
        from hf_modeling.generation_config import SettingError

        kind = getattr(model, "latent_kind", type(model).__name__)
        if not getattr(model, "explicit_continuation", False):
            raise SettingError(f"{{aggregate}} reads each sample's first latent back in tokens, and a {kind} backbone "
                               "has no explicit continuation mode (only a COCONUT curriculum trains the backbone to "
                               "write the steps after a latent prefix); use {aggregate=majority}.",
                               aggregate=self.name)
        steps = model.latent_steps_of(config)
        if getattr(model, "dynamic_latent_length", False) or steps != self.latent_steps:
            raise SettingError(f"{{aggregate}} has a rule for {self.latent_steps} latent steps (latent 0 read back, "
                               f"the second step written out) and this run takes {steps}: which latent prefix to "
                               "read back is not defined for it; use {aggregate=majority}.", aggregate=self.name)

    def candidate_work(self, model, tokenizer, prompts, latents, config) -> list[Work]:
        from lm_eval_latenttts.scaling.readback import read_back

        found = read_back(model, tokenizer, prompts, [vectors[:, :1] for vectors in latents])
        return [Work(tuple(model.extract_answer(text) for text in texts), positions) for texts, positions in found]

    def choose(self, view):
        if view.work is None:
            raise ValueError("aggregate=consistency chooses with its read-backs (candidate_work), which the engine "
                             "computes (Engine.run); this question has none.")
        answer = consistency_vote(view.answers, view.work, self.epsilon)
        return Choice(answer, view.first_giving(answer))


__all__ = ["ENTRY_POINTS", "STRATEGIES", "Choice", "Consistency", "DrawMode", "QuestionView", "Schedule", "Strategy",
           "Work", "register_strategy", "row_names", "rows", "strategy"]
