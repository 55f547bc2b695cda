"""The plan of a request: one resolved setting turned, once, into what the engine does with it.

``make_plan(config, has_rm, payload)`` is the one function that decides a
request's policy, as transformers' ``get_generation_mode`` decides a
``generate`` call's: the selection strategy (``aggregate``, or its default:
best-of-N with a LatentRM, else majority; ``scaling.strategies``), whether its
candidates come from samples or a search and how they are drawn (the
``Schedule``: a search, one rollout standing for all with sampling off, N
samples in one round, or adaptive rounds), the greedy decode beside them (or
none), and the ``n`` the results report.  Everything downstream (the engine's
draws and out-of-memory splits, the stopping rules, the typed result, the
settings recorded in the results) reads the plan; nothing compares names or
re-derives the mode.  Settings that no LatentRM is there for are refused here,
before any compute.
"""

from __future__ import annotations

from dataclasses import dataclass

from lm_eval_latenttts.keys import ADAPTIVE_KEYS, BEAM_KEYS, GENERATION_KEYS, SCORE_KEYS
from lm_eval_latenttts.scaling.strategies import DrawMode, Schedule, Strategy, strategy

# the greedy decode: one deterministic rollout per question
GREEDY = Schedule(DrawMode.ONE, 1, 1)


@dataclass(frozen=True, eq=False)
class Plan:
    """One distinct setting, resolved: ``strategy`` chooses among the candidates that ``schedule`` draws with
    ``config`` (a resolved ``LatentGenerationConfig``, used as is); ``greedy`` is the config of the greedy decode
    beside them (None: not drawn); ``payload``: the request wants the typed result, not ``#### <answer>``.
    Equal settings share one plan (the harness caches them), which is how the engine groups their questions."""

    strategy: Strategy
    config: object
    schedule: Schedule
    greedy: object
    has_rm: bool
    payload: bool

    @property
    def mode(self) -> DrawMode:
        return self.schedule.mode

    @property
    def n(self) -> int:
        """The ``n`` the results report: N rollouts, or the B beams of beam search."""
        return self.strategy.reported_n(self.config)

    @property
    def first_round(self) -> int | None:
        """The rollouts every question draws in adaptive rounds (``single_acc`` and ``pass@k`` use them)."""
        return self.schedule.round if self.mode is DrawMode.ROUNDS else None

    @property
    def reports_greedy(self) -> bool:
        """Whether the typed result reports the greedy decode (the ``greedy`` row of the ``latent_*`` tasks)."""
        return self.payload and bool(self.config.greedy_baseline)

    def settings(self) -> dict:
        """The test-time-scaling settings in ``model_args`` names (``keys.SCORE_KEYS``): what a score depends on
        besides the checkpoints and the questions, as the results record them; the settings the mode does not
        read (beams and candidates without a search, the adaptive ones without rounds) are None."""
        config = self.config
        found = {key: getattr(config, GENERATION_KEYS[key]) for key in SCORE_KEYS}
        found.update(sampling=config.latent_sampling or "none", aggregate=self.strategy.name)
        unread = (*(BEAM_KEYS if self.mode is not DrawMode.SEARCH else ()),
                  *(ADAPTIVE_KEYS if self.mode is not DrawMode.ROUNDS else ()))
        return {**found, **dict.fromkeys(unread)}


def make_plan(config, has_rm: bool, payload: bool = True) -> Plan:
    """The plan of a resolved ``config`` (``model.latent_generation_config``) for a run with or without a LatentRM;
    ``payload``: the typed result is wanted (it reports the greedy decode).  Raises ``SettingError`` for an
    unknown ``aggregate`` (naming the registered ones) and for a setting that needs a LatentRM without one."""
    from hf_modeling.generation_config import SettingError

    chosen = strategy(config.aggregate or ("best_of_n" if has_rm else "majority"))
    if chosen.needs_rm and not has_rm:
        raise SettingError("{aggregate} needs a LatentRM; pass {rm!} or use {aggregate=majority}.",
                           aggregate=chosen.name)
    if config.adaptive and config.adaptive_votes == "rm" and not has_rm:
        raise SettingError("{adaptive_votes} weighs votes by a LatentRM; pass {rm!} or use {adaptive_votes=count}.",
                           adaptive_votes=config.adaptive_votes)
    schedule = chosen.schedule(config)
    # sampling off: the rollout itself is the greedy decode
    wanted = chosen.needs_greedy or (payload and config.greedy_baseline)
    greedy = config.greedy() if wanted and schedule.mode is not DrawMode.ONE else None
    return Plan(chosen, config, schedule, greedy, has_rm, payload)


__all__ = ["GREEDY", "Plan", "make_plan"]
