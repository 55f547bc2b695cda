"""``LatentGenerationConfig``: every setting of latent rollouts and of the choice among them, in one object.

It is a ``transformers.GenerationConfig``: a checkpoint carries its
recommended settings in ``generation_config.json`` (the shipped model: dropout
sampling, p=0.2, N=16), ``model.generation_config`` holds them after loading,
and ``model.generate(**inputs, generation_config=cfg, **overrides)`` works as
in transformers.  The lm-eval harness (``--model_args``/``--gen_kwargs``), the
command line, the recipes, beam search and annotation all build one and pass it
on unchanged; it is validated here and nowhere else, and it owns every default.

Token-sampling fields of ``GenerationConfig`` (``do_sample``, ``temperature``,
...) mean nothing to a latent model, whose answer is decoded greedily after the
latent phase; they are kept but never read.  This file imports only
transformers: it is copied next to saved checkpoints for ``trust_remote_code``.
"""

from __future__ import annotations

import copy
import math
import re

from transformers import GenerationConfig

SAMPLING_MODES = (None, "dropout", "noise")
DROPOUT_SCOPES = ("all", "latent")
REDUCTIONS = ("sum", "min", "last", "mean")
ADAPTIVE_RULES = ("exact", "confidence", "esc")
ADAPTIVE_VOTES = ("count", "rm")

# SPEC: typical sampling strengths per backbone (dropout p; noise sigma), used when a strength is not given
DEFAULT_STRENGTH = {
    "coconut": {"dropout_p": 0.2, "noise_std": 0.6},
    "codi": {"dropout_p": 0.2, "noise_std": 1.0},
    "colar": {"dropout_p": 0.02, "noise_std": 0.02},
}

# the latent fields and their defaults (inherited GenerationConfig fields whose default differs are below)
LATENT_DEFAULTS = {
    "latent_sampling": None,
    "dropout_p": None,
    "noise_std": None,
    "dropout_scope": "all",
    "latent_length": None,
    "seed": 0,
    "aggregate": None,
    "latent_beams": 4,
    "latent_candidates": 4,
    "reduction": "sum",
}
# how many of the N rollouts a question gets (adaptive sampling) and the greedy baseline beside them; the
# defaults are the setting measured to meet the targets in benchmarks/adaptive.py (docs/adaptive.md)
ADAPTIVE_DEFAULTS = {
    "adaptive": False,
    "adaptive_rule": "confidence",
    "adaptive_round": 3,
    "adaptive_threshold": 0.9,
    "adaptive_votes": "count",
    "greedy_baseline": True,
}
BOOLEAN_FIELDS = tuple(k for k, v in ADAPTIVE_DEFAULTS.items() if isinstance(v, bool))
# fields whose None is a setting of its own, not "unset": ``seed=None`` draws a seed per ``generate`` call (a
# saved ``"seed": null`` loads as None, never as the default 0)
NONE_IS_A_VALUE = ("seed",)
INHERITED_DEFAULTS = {"num_return_sequences": 1, "max_new_tokens": 32}
# what a rollout reads; the other GenerationConfig fields concern token sampling and are refused as overrides
ROLLOUT_FIELDS = frozenset({*LATENT_DEFAULTS, *ADAPTIVE_DEFAULTS, *INHERITED_DEFAULTS, "eos_token_id",
                            "pad_token_id", "bos_token_id", "return_dict_in_generate"})


_MARK = re.compile(r"\{(\w+)(!|=[^}]*)?\}")
# braces inside a user's value shown in a message: kept out of the template's marks, restored when written
_BRACES = str.maketrans("{}", "\ue000\ue001")
_UNBRACES = str.maketrans("\ue000\ue001", "{}")


class SettingError(ValueError):
    """A setting a latent rollout cannot use.

    The message names each setting the way its reader typed it: ``str(err)``
    names the config's fields (``latent_sampling='dropout'``), and
    ``err.named(names)`` the names a front end's users type (the lm-eval
    harness's short keys: ``sampling=dropout``).  The message is written once,
    as a template: ``{field}`` is the field with its value, ``{field=text}`` the
    field with the value ``text``, ``{field!}`` the name alone; ``{rm!}`` is how
    to pass a LatentRM.
    """

    def __init__(self, template: str, **values) -> None:
        self.template, self.values = template, values
        super().__init__(self.named())

    def named(self, names: dict | None = None) -> str:
        """The message with the fields called ``names[field]`` (command-line style values) when given."""
        names = names or {}

        def shown(value) -> str:
            if names:
                return "none" if value is None else str(value)
            return repr(value)

        def put(match: re.Match) -> str:
            field, rest = match.group(1), match.group(2)
            if field not in FIELD_CHECKS and field != "rm":  # text of a value, not a mark
                return match.group(0)
            name = names.get(field, "one" if field == "rm" else field)
            if rest == "!":
                return name
            return f"{name}={shown(rest[1:] if rest else self.values.get(field))}"

        return _MARK.sub(put, self.template).translate(_UNBRACES)


class LatentGenerationConfig(GenerationConfig):
    """Settings of latent rollouts (test-time scaling).

    Args:
        latent_sampling (`str`, *optional*): ``None`` (deterministic), ``"dropout"``
            (Monte Carlo dropout with ``dropout_p``) or ``"noise"``
            (``z + N(0, noise_std^2)`` on every fed-back latent).
        dropout_p (`float`, *optional*): dropout probability in [0, 1); ``None``:
            the backbone's typical value (``DEFAULT_STRENGTH``).
        noise_std (`float`, *optional*): noise sigma >= 0; ``None``: the backbone's typical value.
        dropout_scope (`str`, defaults to ``"all"``): ``"all"`` (prompt pass and latent
            steps, as in the paper) or ``"latent"`` (latent steps only: the N samples
            share one prompt pass).
        num_return_sequences (`int`, defaults to 1): N rollouts per question.
        latent_length (`int`, *optional*): latent steps of a fixed-length backbone,
            or the cap of a dynamic one (CoLaR); ``None``: the model config's.
        max_new_tokens (`int`, defaults to 32): answer tokens after the end marker.
        seed (`int`, defaults to 0): sample j of a question is a function of
            (seed, its prompt tokens, j) only.  ``None``: as transformers' sampling,
            which draws from torch's global generator, each ``generate`` call draws
            its own seed from it (or from ``generator=``): reproducible with
            ``torch.manual_seed`` before the call, and within a call a question's
            samples do not depend on the other questions, but two calls (two
            batches) draw different seeds.  The lm-eval harness draws one seed per
            run instead, logs and records it (``seed=none``).
        aggregate (`str`, *optional*): the name of the selection strategy that chooses one
            answer among the N (the lm-eval harness's registry,
            ``lm_eval_latenttts.scaling.strategies``: ``"majority"``, ``"best_of_n"``,
            ``"weighted"``, ``"beam"`` and any registered one; checked there); ``None``:
            ``best_of_n`` with a LatentRM, else ``majority``.
        latent_beams (`int`, defaults to 4), latent_candidates (`int`, defaults to 4):
            B beams and C candidates per beam and latent step of RM-guided beam
            search over latent steps (transformers' ``num_beams``, token beam
            search, does not apply).
        reduction (`str`, defaults to ``"sum"``): trajectory score from step scores
            (``"sum"`` as in the paper, ``"min"``, ``"last"``, ``"mean"``).
        adaptive (`bool`, defaults to `False`): draw a question's rollouts in rounds of
            ``adaptive_round`` (samples ``r*k .. r*k+k-1`` in round r) and stop when
            ``adaptive_rule`` says so, at most N in all; only undecided questions go on.
            Rollouts are keyed, so the rollouts drawn are the first ones of the fixed-N
            run.  Read by the lm-eval harness and ``lm_eval_latenttts.scaling.adaptive``;
            ``model.generate`` always draws ``num_return_sequences``.  Not used by beam
            search or without sampling.
        adaptive_rule (`str`, defaults to ``"confidence"``): ``"exact"`` (stop when the
            leading answer cannot be overtaken by the rollouts left: the majority vote
            then equals majority@N), ``"confidence"`` (Adaptive-Consistency's Beta
            criterion: stop when P(leader beats the runner-up) >= ``adaptive_threshold``)
            or ``"esc"`` (early-stopping self-consistency: stop when a round's answers all
            agree); see ``lm_eval_latenttts.scaling.adaptive``.
        adaptive_round (`int`, defaults to 3): rollouts per question and round (k).
        adaptive_threshold (`float`, defaults to 0.9): the confidence rule's threshold, in (0, 1).
        adaptive_votes (`str`, defaults to ``"count"``): the confidence rule's votes: one per
            rollout, or ``"rm"``: RM-weighted (needs a LatentRM).
        greedy_baseline (`bool`, defaults to `True`): also decode each question once with
            sampling off (one extra rollout), reported as the ``greedy`` row.
    """

    def __init__(self, **kwargs):
        for key, default in {**LATENT_DEFAULTS, **ADAPTIVE_DEFAULTS, **INHERITED_DEFAULTS}.items():
            value = kwargs.pop(key, None) if key not in NONE_IS_A_VALUE else kwargs.pop(key, default)
            setattr(self, key, default if value is None and key not in NONE_IS_A_VALUE else value)
        inherited = {k: getattr(self, k) for k in INHERITED_DEFAULTS}
        super().__init__(**kwargs, **inherited)

    def to_dict(self) -> dict:
        """As transformers'; ``do_sample`` says whether the N rollouts are samples, so that a saved
        ``generation_config.json`` with ``num_return_sequences > 1`` also loads as a plain GenerationConfig."""
        data = super().to_dict()
        data.pop("_resolved_for", None)  # a mark of this object (see ``for_backbone``), not a setting
        data["do_sample"] = bool(data.get("latent_sampling")) or (data.get("num_return_sequences") or 1) > 1
        return data

    @classmethod
    def from_generation_config(cls, config: GenerationConfig | None) -> LatentGenerationConfig:
        """A deep copy of ``config`` (e.g. a model's plain ``generation_config``) as a latent config."""
        if config is None:
            return cls()
        if isinstance(config, cls):
            return copy.deepcopy(config)
        return cls(**{k: v for k, v in config.to_dict().items() if k != "transformers_version"})

    def update(self, defaults_only: bool = False, allow_custom_entries: bool = False, **kwargs) -> dict:
        """As ``GenerationConfig.update``; choosing another ``latent_sampling`` drops the strength that the
        previous mode had (a checkpoint's ``dropout_p`` does not follow a switch to noise)."""
        if "latent_sampling" in kwargs and kwargs["latent_sampling"] != self.latent_sampling:
            for mode, field in (("dropout", "dropout_p"), ("noise", "noise_std")):
                if field not in kwargs and kwargs["latent_sampling"] != mode:
                    setattr(self, field, None)
        return super().update(defaults_only=defaults_only, allow_custom_entries=allow_custom_entries, **kwargs)

    # -- checks ---------------------------------------------------------------------------------
    def validate(self, strict: bool = False, user_set_attributes: set[str] | None = None) -> None:
        """Raise ``ValueError`` naming the field for any value a latent rollout cannot use.

        transformers' own checks concern token sampling (e.g. they refuse
        ``num_return_sequences > 1`` without ``do_sample``) and do not apply.
        """
        for field in FIELD_CHECKS:
            check_field(field, getattr(self, field))
        values = {"dropout_p": self.dropout_p, "noise_std": self.noise_std, "latent_sampling": self.latent_sampling}
        if self.dropout_p and self.latent_sampling != "dropout":
            raise SettingError("{dropout_p} is set but {latent_sampling}; set {latent_sampling=dropout} to use Monte "
                               "Carlo dropout.", **values)
        if self.noise_std and self.latent_sampling != "noise":
            raise SettingError("{noise_std} is set but {latent_sampling}; set {latent_sampling=noise} to add "
                               "Gaussian noise to the latents.", **values)
        if self.adaptive and self.adaptive_rule == "esc" and self.adaptive_round < 2:
            raise SettingError("{adaptive_rule} stops when the answers of a round agree, so it needs "
                               "{adaptive_round!} >= 2; got {adaptive_round}.", adaptive_rule=self.adaptive_rule,
                               adaptive_round=self.adaptive_round)

    # -- resolved views ---------------------------------------------------------------------------
    def for_backbone(self, kind: str | None) -> LatentGenerationConfig:
        """A copy with the sampling strength filled in for backbone ``kind`` (typical value when unset).

        The other mode's strength becomes ``None`` (unset), not 0: a resolved
        config switched to that mode later must get the typical strength, not
        a silent zero that turns sampling off.
        """
        resolved = copy.deepcopy(self)
        typical = DEFAULT_STRENGTH.get(kind, DEFAULT_STRENGTH["coconut"])
        for mode, field in (("dropout", "dropout_p"), ("noise", "noise_std")):
            if self.latent_sampling == mode:
                if getattr(resolved, field) is None:
                    setattr(resolved, field, typical[field])
            else:
                setattr(resolved, field, None)
        resolved._resolved_for = kind
        return resolved

    def resolved_for(self, kind: str | None) -> bool:
        """Whether this object came out of ``for_backbone(kind)`` (validated, strengths filled in): such a
        config is used as is, not copied or validated again (``latent_generation_config``)."""
        return getattr(self, "_resolved_for", False) == kind

    def greedy(self) -> LatentGenerationConfig:
        """The same settings decoded once with sampling off (the ``greedy`` row beside the N rollouts).

        Derived from a resolved config by setting values that are valid on their
        own and together, so it is not validated again; it is resolved for the
        same backbone (no strengths: no sampling).
        """
        plain = copy.deepcopy(self)
        plain.latent_sampling = plain.dropout_p = plain.noise_std = None
        plain.num_return_sequences, plain.adaptive, plain.aggregate = 1, False, "majority"
        return plain

    @property
    def samples(self) -> bool:
        """True when the N rollouts of a question differ (a sampling mode of non-zero strength)."""
        return bool(self.latent_sampling) and bool(self.dropout_p or self.noise_std)

    def idle_settings(self, names: dict | None = None, ignored=()) -> list[tuple[str, str]]:
        """``(key, message)`` for each setting that runs but does not do what its name promises.

        The one place these warnings are worded: ``generate`` raises them as
        ``UserWarning``, the lm-eval harness logs each once per run.  ``names``
        maps fields to the names the caller's user typed (the harness's short keys);
        ``ignored``: fields the caller does not read (a search's ``num_return_sequences``).
        """
        name = (names or {}).get
        found = []
        n, mode = self.num_return_sequences, self.latent_sampling
        if mode is not None and not self.samples:
            strength = "dropout_p" if mode == "dropout" else "noise_std"
            found.append((f"zero:{mode}", f"{name('latent_sampling', 'latent_sampling')}={mode} with "
                          f"{name(strength, strength)}=0 samples nothing: the {name('num_return_sequences', 'n')}"
                          f"={n} rollouts of a prompt are identical. Raise the strength or turn sampling off."))
        if n > 1 and mode is None and "num_return_sequences" not in ignored:
            found.append(("n_without_sampling", f"{name('num_return_sequences', 'num_return_sequences')}={n} "
                          f"without sampling gives {n} identical rollouts per prompt; pass "
                          f"{name('latent_sampling', 'latent_sampling')}=dropout or noise."))
        return found

    def latent_settings(self) -> dict:
        """The latent fields and N, as a plain dict (for logs, results and run records)."""
        keys = (*LATENT_DEFAULTS, "num_return_sequences", "max_new_tokens")
        return {k: getattr(self, k) for k in keys}


def check_field(field: str, value: object) -> None:
    """Raise ``SettingError`` if ``value`` is not a valid value of the config field ``field`` on its own."""
    try:
        FIELD_CHECKS[field]("{" + field + "!}", value)  # the message names the field through a mark
    except ValueError as err:
        shown = repr(value)  # the value's text as the message quotes it: its braces are no marks
        raise SettingError(str(err).replace(shown, shown.translate(_BRACES)), **{field: value}) from None


def _choice(choices):
    def check(name, value):
        if value not in choices:
            shown = ", ".join("None" if c is None else repr(c) for c in choices)
            raise ValueError(f"{name} must be one of {shown}; got {value!r}.")
    return check


def _integer(minimum, optional=False):
    def check(name, value):
        if value is None and optional:
            return
        if isinstance(value, bool) or not isinstance(value, int) or (minimum is not None and value < minimum):
            bound = f" >= {minimum}" if minimum is not None else ""
            raise ValueError(f"{name} must be an integer{bound}; got {value!r}.")
    return check


SEED_RANGE = (-(2**127), 2**127 - 1)  # the keys hash the seed as 16 signed bytes (latent_sampling.token_key)


def _seed(name, value):
    if value is None:
        return
    low, high = SEED_RANGE
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer in [-2**127, 2**127 - 1]; got {value!r}.")


def _number(low, high, high_open=False, low_open=False, optional=False):
    def check(name, value):
        if value is None and optional:
            return
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
            raise ValueError(f"{name} must be a finite number; got {value!r}.")
        if value < low or value > high or (high_open and value >= high) or (low_open and value <= low):
            bracket = ")" if high_open else "]"
            raise ValueError(f"{name} must be in {'(' if low_open else '['}{low}, {high}{bracket}; got {value!r}.")
    return check


def _name(optional=False):
    def check(name, value):
        if value is None and optional:
            return
        if not isinstance(value, str) or not re.fullmatch(r"[a-z][a-z0-9_]*", value):
            raise ValueError(f"{name} must be a name (lowercase letters, digits, _); got {value!r}.")
    return check


def _boolean(name, value):
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False; got {value!r}.")


FIELD_CHECKS = {
    "latent_sampling": _choice(SAMPLING_MODES),
    "dropout_p": _number(0.0, 1.0, high_open=True, optional=True),  # None: the backbone's typical strength
    "noise_std": _number(0.0, math.inf, optional=True),
    "dropout_scope": _choice(DROPOUT_SCOPES),
    "aggregate": _name(optional=True),  # a strategy's name; the registry of the harness knows which exist
    "reduction": _choice(REDUCTIONS),
    "num_return_sequences": _integer(1),
    "max_new_tokens": _integer(1),
    "latent_beams": _integer(1),
    "latent_candidates": _integer(1),
    "latent_length": _integer(0, optional=True),
    "seed": _seed,
    "adaptive": _boolean,
    "adaptive_rule": _choice(ADAPTIVE_RULES),
    "adaptive_round": _integer(1),
    "adaptive_threshold": _number(0.0, 1.0, high_open=True, low_open=True),
    "adaptive_votes": _choice(ADAPTIVE_VOTES),
    "greedy_baseline": _boolean,
}


__all__ = [
    "ADAPTIVE_RULES",
    "ADAPTIVE_VOTES",
    "BOOLEAN_FIELDS",
    "ROLLOUT_FIELDS",
    "check_field",
    "DEFAULT_STRENGTH",
    "DROPOUT_SCOPES",
    "LatentGenerationConfig",
    "SettingError",
    "REDUCTIONS",
    "SAMPLING_MODES",
]
