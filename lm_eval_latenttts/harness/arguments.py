"""``--model_args`` and ``--gen_kwargs`` of ``lm_eval --model latent_tts``: conversion and errors.

The keys, what they set and mean are one table, ``lm_eval_latenttts.keys.KEYS``
(short key -> ``hf_modeling.LatentGenerationConfig`` field, or a load option);
the config validates the values and owns the defaults, so this module only
converts command-line strings and names the offending key.  The checkpoint's
``generation_config.json`` supplies the defaults that ``--model_args``
override, and ``--gen_kwargs`` override both per task.  Pure Python at import
(no torch): the checks run before anything heavy is loaded.
"""

from __future__ import annotations

from lm_eval_latenttts.keys import GENERATION_KEYS, IGNORED_GEN_KEYS, KEYS, LOAD_KEYS, PAYLOAD_KEY, SHORT_NAMES

FLOAT_FIELDS = ("dropout_p", "noise_std", "adaptive_threshold")
LOAD_DEFAULTS = {key: None for key in LOAD_KEYS} | {"dtype": "auto"}  # None: picked (see harness.setup)
VALID_KEYS = tuple(key.name for key in KEYS)
IGNORED_MODEL_KEYS = ("trust_remote_code",)  # lm-eval adds it with --trust_remote_code; checkpoints need no code
DTYPES = ("auto", "float32", "bfloat16", "float16")
# the spellings of None: lm-eval's parser of a model_args string (simple_evaluate) turns "none" into None, the CLI
# passes the text; both mean the same ("not given" for load options, None for a setting)
_NONE = ("none", "null", "")
_SAMPLING_OFF = ("off", "greedy")  # sampling only: another name of sampling=none
_TRUE, _FALSE = ("true", "yes", "on"), ("false", "no", "off")


class LatentTTSArgumentError(ValueError):
    """A bad ``--model_args`` / ``--gen_kwargs`` key or value."""


def _is_none(value) -> bool:
    """``None`` or one of its spellings ('none', 'null', '')."""
    return value is None or (isinstance(value, str) and value.strip().lower() in _NONE)


def _coerce(value, key: str | None = None):
    """Command-line text to a value: 'none' -> None, '8' -> 8, '0.2' -> 0.2, 'Noise' -> 'noise'; for ``sampling``
    also 'off' / 'greedy' -> None."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if _is_none(text) or (key == "sampling" and text.lower() in _SAMPLING_OFF):
        return None
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return text.lower()


def _boolean(value):
    """Command-line text or 0/1 to a bool ('true', 'on', '1' -> True; 'false', 'off', '0' -> False); else as is
    (``None`` / 'none' too: a switch is on or off, and the check names it)."""
    text = str(value).strip().lower()
    if isinstance(value, bool) or text not in (*_TRUE, *_FALSE, "0", "1"):
        return value
    return text in (*_TRUE, "1")


def generation_overrides(args: dict, source: str = "model_args") -> dict:
    """``{config field: value}`` from harness keys, each value checked by ``LatentGenerationConfig``."""
    from hf_modeling.generation_config import BOOLEAN_FIELDS, SettingError, check_field

    overrides = {}
    for key, value in args.items():
        field = GENERATION_KEYS[key]
        value = _boolean(value) if field in BOOLEAN_FIELDS else _coerce(value, key)
        if isinstance(value, float) and value.is_integer() and field not in FLOAT_FIELDS:
            value = int(value)
        try:
            check_field(field, value)
        except SettingError as err:
            raise LatentTTSArgumentError(f"latent_tts {source}: {key}={args[key]!r} is invalid: "
                                         f"{err.named(SHORT_NAMES)} Valid keys: {', '.join(VALID_KEYS)}.") from None
        overrides[field] = value
    return overrides


def parse_model_args(kwargs: dict) -> tuple[dict, dict]:
    """Check ``LatentTTSModel``'s keyword arguments: (load options, generation config overrides)."""
    unknown = sorted(k for k in kwargs if k not in VALID_KEYS and k not in IGNORED_MODEL_KEYS)
    if unknown:
        raise LatentTTSArgumentError(
            f"latent_tts model_args: unknown key(s) {', '.join(unknown)}. Valid keys: {', '.join(VALID_KEYS)}."
        )
    load = dict(LOAD_DEFAULTS)
    for key in LOAD_DEFAULTS:
        if key in kwargs:
            load[key] = _load_value(key, kwargs[key])
    return load, generation_overrides({k: v for k, v in kwargs.items() if k in GENERATION_KEYS})


def _load_value(key, value):
    """A load option's value; ``None`` and its spellings ('none') mean the same from Python and the CLI: no LatentRM
    (``rm``), the default revision, and for ``dtype``, ``device``, ``batch_size``, ``max_batch_size`` "not given"
    (picked: ``auto``, see ``setup``).  ``pretrained=none`` is refused: leave it out for the shipped model."""
    if key == "pretrained" and _is_none(value):
        _fail(key, value, "a Hub id or a folder path (leave pretrained out for the shipped model)")
    if _is_none(value):
        return "auto" if key == "dtype" else None
    if key in ("pretrained", "rm", "revision"):
        if not isinstance(value, str):
            _fail(key, value, "a Hub id or a folder path (a non-empty string)")
        return value.strip()
    if key == "dtype":
        text = str(value).strip().lower().replace("torch.", "")
        if text not in DTYPES:
            _fail(key, value, f"one of: {', '.join(DTYPES)}")
        return text
    if key == "device":
        if not isinstance(value, str):
            _fail(key, value, "a device string such as cpu, cuda, cuda:0")
        return value.strip()
    if key == "batch_size" and isinstance(value, str) and value.strip().lower().startswith("auto"):
        if value.strip().lower() != "auto":  # lm-eval's auto:N (recompute N times) has no meaning here
            _fail(key, value, "an integer >= 1 or auto (latent_tts's auto halves a call whenever it runs out of "
                              "memory, so auto:N has nothing to recompute)")
        return "auto"
    value = _coerce(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        _fail(key, value, "an integer >= 1" + (" or auto" if key == "batch_size" else ""))
    return value


def _fail(key, value, expected):
    raise LatentTTSArgumentError(
        f"latent_tts model_args: {key}={value!r} is invalid; expected {expected}. Valid keys: {', '.join(VALID_KEYS)}."
    )


def request_overrides(gen_kwargs: dict | None) -> tuple[dict, list[str], bool]:
    """A request's ``gen_kwargs``: (checked config overrides, ignored harness keys, wants the payload)."""
    ours, ignored, payload = {}, [], False
    for key, value in (gen_kwargs or {}).items():
        if key == PAYLOAD_KEY:
            if not isinstance(value, bool):  # "false" in quotes would have been True
                raise LatentTTSArgumentError(f"latent_tts gen_kwargs: {PAYLOAD_KEY}={value!r} must be true or false "
                                             "(a YAML boolean, unquoted).")
            payload = value
        elif key in GENERATION_KEYS:
            ours[key] = value
        elif key in IGNORED_GEN_KEYS:
            ignored.append(key)
        else:
            raise LatentTTSArgumentError(
                f"latent_tts gen_kwargs: unknown key {key!r}. Keys that latent_tts reads: "
                f"{', '.join(GENERATION_KEYS)} (ignored: {', '.join(IGNORED_GEN_KEYS)})."
            )
    return generation_overrides(ours, source="gen_kwargs"), ignored, payload


__all__ = [
    "GENERATION_KEYS",
    "LatentTTSArgumentError",
    "PAYLOAD_KEY",
    "SHORT_NAMES",
    "VALID_KEYS",
    "generation_overrides",
    "parse_model_args",
    "request_overrides",
]
