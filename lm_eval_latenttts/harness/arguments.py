"""``--model_args`` and ``--gen_kwargs`` of ``lm_eval --model latent_tts``: names, conversion, errors.

Short harness names map onto the fields of ``hf_modeling.LatentGenerationConfig``
(one table, ``GENERATION_KEYS``); the config validates the values and owns the
defaults, so this module only converts command-line strings and names the
offending key.  The checkpoint's ``generation_config.json`` supplies the
defaults that ``--model_args`` override, and ``--gen_kwargs`` override both
per task.  Pure Python at import (no torch): the checks run before anything
heavy is loaded.

==================  ======================  ====================================================
key                 config field            meaning
==================  ======================  ====================================================
pretrained                                  Hub id or local folder of a COCONUT / CODI / CoLaR
                                            checkpoint (default: the shipped ``arith-coconut``)
rm                                          optional LatentRM (Hub id or folder)
sampling            latent_sampling         none | dropout | noise
dropout_p           dropout_p               Monte Carlo dropout probability
noise_std           noise_std               sigma of the Gaussian noise on fed-back latents
dropout_scope       dropout_scope           all (prompt and latent steps) | latent
n                   num_return_sequences    rollouts per question (N)
aggregate           aggregate               majority | best_of_n | weighted | beam
beams, candidates   latent_beams,           RM-guided beam search: B beams, C candidates
                    latent_candidates
latent_length       latent_length           latent steps (fixed backbones) / their cap (CoLaR)
max_new_tokens      max_new_tokens          answer tokens decoded after the latent phase
seed                seed                    sample j of a question depends on (seed, question, j)
adaptive            adaptive                true: draw rollouts in rounds, stop when settled
adaptive_rule       adaptive_rule           exact | confidence | esc (see scaling.adaptive)
adaptive_round      adaptive_round          rollouts per question and round
adaptive_threshold  adaptive_threshold      the confidence rule's threshold, in (0, 1)
adaptive_votes      adaptive_votes          count | rm (the confidence rule's votes)
greedy              greedy_baseline         also decode each question greedily (``greedy`` row)
dtype                                       auto | float32 | bfloat16 | float16
device                                      cpu | cuda | cuda:N | mps (default: picked)
batch_size                                  questions per generate call at N rollouts, or
                                            ``auto`` (halves on out-of-memory); results do not
                                            depend on it.  Not given: about 128 rollouts per
                                            call on CPU (128 // n questions), ``auto`` up to
                                            512 on CUDA, sized by the memory model
                                            (``setup.pick_batch_size``, ``memory``)
max_batch_size                              cap for ``batch_size=auto`` (default: 512 on CUDA,
                                            64 elsewhere)
revision                                    Hub revision of ``pretrained`` and ``rm``
==================  ======================  ====================================================
"""

from __future__ import annotations

GENERATION_KEYS = {
    "sampling": "latent_sampling",
    "dropout_p": "dropout_p",
    "noise_std": "noise_std",
    "dropout_scope": "dropout_scope",
    "n": "num_return_sequences",
    "aggregate": "aggregate",
    "beams": "latent_beams",
    "candidates": "latent_candidates",
    "latent_length": "latent_length",
    "max_new_tokens": "max_new_tokens",
    "seed": "seed",
    "adaptive": "adaptive",
    "adaptive_rule": "adaptive_rule",
    "adaptive_round": "adaptive_round",
    "adaptive_threshold": "adaptive_threshold",
    "adaptive_votes": "adaptive_votes",
    "greedy": "greedy_baseline",
}
# config field -> the name a user of the harness types: errors and warnings of the config are worded with these
# (``hf_modeling.generation_config.SettingError.named``), never rewritten afterwards
SHORT_NAMES = {**{field: key for key, field in GENERATION_KEYS.items()}, "rm": "rm=<Hub id or folder>"}
FLOAT_FIELDS = ("dropout_p", "noise_std", "adaptive_threshold")
LOAD_DEFAULTS = {
    "pretrained": None, "rm": None, "dtype": "auto", "device": None, "batch_size": None, "max_batch_size": None,
    "revision": None,
}
VALID_KEYS = ("pretrained", "rm", *GENERATION_KEYS, *[k for k in LOAD_DEFAULTS if k not in ("pretrained", "rm")])
IGNORED_MODEL_KEYS = ("trust_remote_code",)  # lm-eval adds it with --trust_remote_code; checkpoints need no code
DTYPES = ("auto", "float32", "bfloat16", "float16")
# generation keys that lm-eval tasks or users pass to every model; a latent model decodes its answer greedily
HARNESS_GEN_KEYS = (
    "until", "do_sample", "temperature", "top_p", "top_k", "min_p", "max_gen_toks", "num_beams",
    "repetition_penalty", "typical_p", "max_length", "stop",
)
PAYLOAD_KEY = "latent_tts_payload"  # our tasks' marker: "return the JSON payload of all N candidates"
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
        elif key in HARNESS_GEN_KEYS:
            ignored.append(key)
        else:
            raise LatentTTSArgumentError(
                f"latent_tts gen_kwargs: unknown key {key!r}. Keys that latent_tts reads: "
                f"{', '.join(GENERATION_KEYS)} (ignored: {', '.join(HARNESS_GEN_KEYS)})."
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
