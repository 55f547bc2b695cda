"""A ``latent_tts`` run's settings, resolved once each into the plan the engine runs.

The checkpoint's recommended settings, then ``--model_args`` (resolved once,
when the model is created: ``run_config``), then each distinct request
``gen_kwargs`` (resolved the first time they are seen; equal settings share one
``scaling.plan.Plan``).  ``model.latent_generation_config`` is the one
validation of a setting, ``scaling.plan.make_plan`` the one decision of its
policy; errors are worded with the keys the user typed (``keys.SHORT_NAMES``)
and name where the setting came from.  Here too: ``seed=none`` becomes the
run's one drawn seed, settings that run but do nothing are said once, and a
setting the chosen strategy does not read (``n`` with beam search) is refused.
"""

from __future__ import annotations

from collections.abc import Callable

from hf_modeling.generation_config import SettingError
from lm_eval_latenttts.harness.arguments import LatentTTSArgumentError, request_overrides
from lm_eval_latenttts.keys import BOILERPLATE, IGNORED_GEN_KEYS, SHORT_NAMES
from lm_eval_latenttts.scaling.engine import check_window
from lm_eval_latenttts.scaling.plan import Plan, make_plan


class Settings:
    """The run's settings (``run_config``) and the plan of every distinct request setting (``plan_of``)."""

    def __init__(self, model, tokenizer, has_rm: bool, base, overrides: dict, drawn_seed: int,
                 warn: Callable[..., None]) -> None:
        self.model, self.tokenizer, self.has_rm, self.warn = model, tokenizer, has_rm, warn
        self.drawn_seed, self.seed_drawn = drawn_seed, False
        self._plans: dict[str, Plan] = {}  # a request's gen_kwargs -> its plan
        self._distinct: dict[tuple, Plan] = {}  # (settings JSON, payload) -> the plan equal settings share
        self.run_config = self.resolve(base, overrides, "model_args")
        self.given = set(overrides)  # the settings model_args name: a setting that cannot apply is refused
        self.check_given(self.plan(self.run_config), self.given, "model_args")

    def plan(self, config, payload: bool = True) -> Plan:
        return make_plan(config, self.has_rm, payload)

    def resolve(self, base, overrides: dict, source: str):
        """``base`` updated with ``overrides``: validated and resolved for the backbone, its policy checked (the
        strategy, its LatentRM, the context window) before any compute; errors name ``source`` and its keys.

        ``seed=none`` becomes the run's drawn seed (logged, recorded in the results): a question's samples never
        depend on its batch.  Settings that run but do not do what their names promise are said once; sampling of
        strength 0 runs as sampling=none, since its N rollouts are identical.
        """
        try:
            config = self.model.latent_generation_config(
                base, eos_token_id=self.tokenizer.eos_token_id, pad_token_id=self.tokenizer.pad_token_id,
                return_dict_in_generate=True, **overrides)
            chosen = self.plan(config).strategy
            check_window(self.model, self.tokenizer, config)
            chosen.check_backbone(self.model, config)
        except ValueError as err:
            message = err.named(SHORT_NAMES) if isinstance(err, SettingError) else str(err)
            raise LatentTTSArgumentError(f"latent_tts {source}: {message}") from None
        if config.seed is None:
            config.seed, self.seed_drawn = self.drawn_seed, True
            self.warn("seed", "latent_tts: seed=none: this run draws its samples with seed=%d, drawn at random "
                      "(recorded in the results); pass seed=%d to reproduce them.", config.seed, config.seed)
        for key, message in config.idle_settings(SHORT_NAMES, ignored=chosen.ignores):
            self.warn(key, "latent_tts: %s", message)
        if config.latent_sampling is not None and not config.samples:  # as for_backbone leaves sampling=none:
            config.latent_sampling = config.dropout_p = config.noise_std = None  # valid, so not validated again
        return config

    def check_given(self, plan: Plan, given: set, source: str, run_given: set = frozenset()) -> None:
        """Refuse a setting asked for (in ``source``: ``given``) that the plan's strategy does not read (beam search
        keeps B beams of C candidates: ``n`` would be ignored, and it draws no rounds: ``adaptive``).  One the
        run's model_args asked for (``run_given``) while a task's gen_kwargs choose such a strategy is said once."""
        chosen, config = plan.strategy, plan.config

        def ignored(fields: set) -> list[str]:
            return [f"{SHORT_NAMES[f]}={_shown(getattr(config, f))}" for f in chosen.ignores
                    if f in fields and getattr(config, f) is not False]

        why = chosen.why_ignored(config)
        if ignored(given):
            raise LatentTTSArgumentError(
                f"latent_tts {source}: {' and '.join(ignored(given))} cannot apply with aggregate={chosen.name}: "
                f"{why}. Leave it out{', and ' + chosen.instead if chosen.instead else ''}.")
        if ignored(run_given - given):
            self.warn(f"ignores:{chosen.name}", "latent_tts: a task's gen_kwargs choose aggregate=%s, so model_args %s "
                      "do not apply to it: %s.", chosen.name, " and ".join(ignored(run_given - given)), why)

    def plan_of(self, gen_kwargs: dict) -> Plan:
        """The plan of a request's ``gen_kwargs`` (the run's settings, then its overrides): resolved the first time
        these ``gen_kwargs`` are seen, then looked up."""
        key = repr(sorted((k, repr(v)) for k, v in gen_kwargs.items()))
        if key in self._plans:
            return self._plans[key]
        overrides, ignored, payload = request_overrides(gen_kwargs)
        for name in ignored:
            value = gen_kwargs.get(name)
            greedy_anyway = value is False or value is None or (not isinstance(value, bool) and value in (0, 1))
            if IGNORED_GEN_KEYS[name] == BOILERPLATE or greedy_anyway:
                continue  # task boilerplate, or a value that means greedy anyway (do_sample=True is not: True == 1)
            self.warn(f"ignored:{name}", "latent_tts ignores the generation setting %r (answers are decoded "
                      "greedily after the latent phase).", name)
        changes = {k: v for k, v in overrides.items() if getattr(self.run_config, k) != v}
        config = self.resolve(self.run_config, overrides, "gen_kwargs") if changes else self.run_config
        distinct = (config.to_json_string(use_diff=False), payload)
        plan = self._distinct.get(distinct) or self.plan(config, payload)
        self.check_given(plan, set(overrides), "gen_kwargs", run_given=self.given)
        self._distinct[distinct] = self._plans[key] = plan
        return plan


def _shown(value) -> str:
    """A value as the command line writes it (``true``, ``16``)."""
    return str(value).lower() if isinstance(value, bool) else str(value)


__all__ = ["Settings"]
