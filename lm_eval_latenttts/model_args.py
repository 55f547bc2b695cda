"""``--model_args`` and ``--gen_kwargs`` of ``lm_eval --model latent_tts``: names, types, checks.

Pure Python (no torch): the checks run before anything heavy is loaded, and
every error names the offending key and lists the valid ones.

==================  =====================================================================
key                 meaning
==================  =====================================================================
pretrained          Hub id or local folder of a COCONUT / CODI / CoLaR checkpoint
                    (default: the checkpoint shipped with the package, ``arith-coconut``)
rm                  optional LatentRM (Hub id or folder); enables best-of-N, weighted vote, beam
sampling            none | dropout | noise  (how the N latent rollouts differ)
dropout_p           Monte Carlo dropout probability (default 0.2 GPT-2, 0.02 Llama)
noise_std           std of the Gaussian noise on latents (default 0.6 COCONUT, 1.0 CODI, 0.02 CoLaR)
dropout_scope       all (prompt pass and latent steps, as in the paper) | latent
n                   rollouts per question (N), run as one batched generate call
aggregate           majority | best_of_n | weighted | beam  (default: best_of_n with an RM,
                    else majority); the ``acc`` row scores the aggregated answer
beams, candidates   RM-guided beam search: B beams, C candidates per beam and step
latent_length       latent steps (fixed-length backbones) / cap on them (CoLaR)
max_new_tokens      answer tokens decoded after the latent phase (default 32)
seed                base seed; each question's rollouts are seeded from it and the question
dtype               auto | float32 | bfloat16 | float16
device              cpu | cuda | cuda:N | mps (default: cuda if available, else cpu)
batch_size          questions per generate call (each brings its N rollouts): an int or
                    ``auto``; on out-of-memory the batch is halved and retried
max_batch_size      cap for ``batch_size=auto``
==================  =====================================================================

``--gen_kwargs`` may override, per run, any of: sampling, dropout_p, noise_std,
dropout_scope, n, aggregate, beams, candidates, latent_length, max_new_tokens, seed.
"""

import math

SAMPLING = (None, "dropout", "noise")
AGGREGATES = ("majority", "best_of_n", "weighted", "beam")
DTYPES = ("auto", "float32", "bfloat16", "float16")
SCOPES = ("all", "latent")

# per-run settings (model_args defaults, overridable by --gen_kwargs)
RUN_KEYS = (
    "sampling", "dropout_p", "noise_std", "dropout_scope", "n", "aggregate", "beams", "candidates",
    "latent_length", "max_new_tokens", "seed",
)
LOAD_KEYS = ("pretrained", "rm", "dtype", "device", "batch_size", "max_batch_size", "revision")
VALID_KEYS = LOAD_KEYS[:2] + RUN_KEYS + LOAD_KEYS[2:]
# accepted and ignored: lm-eval adds it with --trust_remote_code
IGNORED_MODEL_KEYS = ("trust_remote_code",)

# generation keys that lm-eval tasks or users pass to every model; they mean nothing to a
# latent model (its answer is decoded greedily) and are ignored with a warning
HARNESS_GEN_KEYS = (
    "until", "do_sample", "temperature", "top_p", "top_k", "min_p", "max_gen_toks", "num_beams",
    "repetition_penalty", "typical_p", "max_length", "stop",
)
# marker our tasks put in generation_kwargs: "return the JSON payload of all N candidates"
PAYLOAD_KEY = "latent_tts_payload"

DEFAULTS = {
    "pretrained": None,
    "rm": None,
    "sampling": None,
    "dropout_p": None,
    "noise_std": None,
    "dropout_scope": "all",
    "n": 1,
    "aggregate": None,
    "beams": 4,
    "candidates": 4,
    "latent_length": None,
    "max_new_tokens": 32,
    "seed": 0,
    "dtype": "auto",
    "device": None,
    "batch_size": 1,
    "max_batch_size": 64,
    "revision": None,
}

# defaults of the sampling strength, per backbone (SPEC: typical ranges)
DEFAULT_DROPOUT_P = {"coconut": 0.2, "codi": 0.2, "colar": 0.02}
DEFAULT_NOISE_STD = {"coconut": 0.6, "codi": 1.0, "colar": 0.02}


class LatentTTSArgumentError(ValueError):
    """A bad ``--model_args`` / ``--gen_kwargs`` value."""


def _valid_keys_text(keys=VALID_KEYS):
    return ", ".join(keys)


def _fail(key, value, expected, source="model_args", keys=VALID_KEYS):
    raise LatentTTSArgumentError(
        f"latent_tts {source}: {key}={value!r} is invalid; expected {expected}. "
        f"Valid keys: {_valid_keys_text(keys)}."
    )


def _as_int(key, value, minimum, source, allow_none=False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool):
        _fail(key, value, f"an integer >= {minimum}", source)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str):
        text = value.strip()
        if allow_none and text.lower() in ("none", "null", ""):
            return None
        try:
            value = int(text)
        except ValueError:
            _fail(key, value, f"an integer >= {minimum}", source)
    if not isinstance(value, int) or value < minimum:
        _fail(key, value, f"an integer >= {minimum}", source)
    return value


def _as_float(key, value, lo, hi, hi_open, source, allow_none=True):
    if value is None and allow_none:
        return None
    if isinstance(value, bool):
        _fail(key, value, "a number", source)
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            _fail(key, value, "a number", source)
    if not isinstance(value, (int, float)) or not math.isfinite(float(value)):
        _fail(key, value, "a finite number", source)
    value = float(value)
    too_high = value >= hi if hi_open else value > hi
    if value < lo or too_high:
        bracket = ")" if hi_open else "]"
        _fail(key, value, f"a number in [{lo}, {hi}{bracket}", source)
    return value


def _as_choice(key, value, choices, source):
    if isinstance(value, str):
        low = value.strip().lower()
        if low in ("none", "null", "off", "greedy", "") and None in choices:
            return None
        if low in choices:
            return low
    elif value is None and None in choices:
        return None
    shown = ", ".join("none" if c is None else c for c in choices)
    _fail(key, value, f"one of: {shown}", source)


def check_value(key, value, source="model_args"):
    """The value of ``key`` converted to its type, or a :class:`LatentTTSArgumentError`."""
    if key in ("pretrained", "rm", "revision"):
        if value is None or (key == "rm" and isinstance(value, str) and value.strip().lower() in ("", "none")):
            return None
        if not isinstance(value, str) or not value.strip():
            _fail(key, value, "a Hub id or a folder path (a non-empty string)", source)
        return value.strip()
    if key == "sampling":
        return _as_choice(key, value, SAMPLING, source)
    if key == "dropout_p":
        return _as_float(key, value, 0.0, 1.0, True, source)
    if key == "noise_std":
        return _as_float(key, value, 0.0, math.inf, False, source)
    if key == "dropout_scope":
        return _as_choice(key, value, SCOPES, source)
    if key == "aggregate":
        if value is None:
            return None
        return _as_choice(key, value, AGGREGATES, source)
    if key in ("n", "beams", "candidates", "max_new_tokens", "max_batch_size"):
        return _as_int(key, value, 1, source)
    if key == "latent_length":
        return _as_int(key, value, 0, source, allow_none=True)
    if key == "seed":
        return _as_int(key, value, 0, source)
    if key == "dtype":
        if value is None:
            return "auto"
        if not isinstance(value, str) or value.strip().lower().replace("torch.", "") not in DTYPES:
            _fail(key, value, f"one of: {', '.join(DTYPES)}", source)
        return value.strip().lower().replace("torch.", "")
    if key == "device":
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            _fail(key, value, "a device string such as cpu, cuda, cuda:0", source)
        return value.strip()
    if key == "batch_size":
        if isinstance(value, str) and value.strip().lower().startswith("auto"):
            return "auto"
        return _as_int(key, value, 1, source)
    raise LatentTTSArgumentError(
        f"latent_tts {source}: unknown key {key!r}. Valid keys: {_valid_keys_text()}."
    )


def parse_model_args(kwargs):
    """Check the keyword arguments of ``LatentTTSModel``; return the full settings dict."""
    unknown = sorted(k for k in kwargs if k not in VALID_KEYS and k not in IGNORED_MODEL_KEYS)
    if unknown:
        raise LatentTTSArgumentError(
            f"latent_tts model_args: unknown key(s) {', '.join(unknown)}. Valid keys: {_valid_keys_text()}."
        )
    settings = dict(DEFAULTS)
    for key, value in kwargs.items():
        if key in IGNORED_MODEL_KEYS:
            continue
        settings[key] = check_value(key, value)
    check_consistency(settings, explicit=set(kwargs))
    return settings


def check_consistency(settings, explicit=(), source="model_args", has_rm=None):
    """Cross-key checks (sampling strength without a sampling mode, RM-only aggregations)."""
    has_rm = settings.get("rm") is not None if has_rm is None else has_rm
    mode = settings.get("sampling")
    if "dropout_p" in explicit and settings.get("dropout_p") and mode != "dropout":
        raise LatentTTSArgumentError(
            f"latent_tts {source}: dropout_p={settings['dropout_p']} is set but sampling={mode or 'none'}; "
            "add sampling=dropout to use Monte Carlo dropout."
        )
    if "noise_std" in explicit and settings.get("noise_std") and mode != "noise":
        raise LatentTTSArgumentError(
            f"latent_tts {source}: noise_std={settings['noise_std']} is set but sampling={mode or 'none'}; "
            "add sampling=noise to add Gaussian noise to the latents."
        )
    aggregate = settings.get("aggregate")
    if aggregate in ("best_of_n", "weighted", "beam") and not has_rm:
        raise LatentTTSArgumentError(
            f"latent_tts {source}: aggregate={aggregate} needs a LatentRM; pass rm=<Hub id or folder> "
            "or use aggregate=majority."
        )


def run_overrides(gen_kwargs):
    """Split a request's ``gen_kwargs`` into (checked run-setting overrides, ignored keys, wants_payload)."""
    overrides, ignored = {}, []
    payload = False
    for key, value in (gen_kwargs or {}).items():
        if key == PAYLOAD_KEY:
            payload = bool(value)
        elif key in RUN_KEYS:
            overrides[key] = check_value(key, value, source="gen_kwargs")
        elif key in HARNESS_GEN_KEYS:
            ignored.append(key)
        else:
            raise LatentTTSArgumentError(
                f"latent_tts gen_kwargs: unknown key {key!r}. Keys that latent_tts reads: "
                f"{', '.join(RUN_KEYS)} (ignored: {', '.join(HARNESS_GEN_KEYS)})."
            )
    return overrides, ignored, payload


def resolve_run_settings(base, overrides, backbone):
    """The effective per-request settings: model_args, then --gen_kwargs, then backbone defaults."""
    s = {k: base.get(k) for k in RUN_KEYS}
    s.update(overrides)
    explicit = set(overrides)
    check_consistency(s, explicit=explicit, source="gen_kwargs", has_rm=base.get("rm") is not None)
    if s["sampling"] == "dropout":
        if s["dropout_p"] is None:
            s["dropout_p"] = DEFAULT_DROPOUT_P.get(backbone, 0.1)
    else:
        s["dropout_p"] = 0.0
    if s["sampling"] == "noise":
        if s["noise_std"] is None:
            s["noise_std"] = DEFAULT_NOISE_STD.get(backbone, 0.5)
    else:
        s["noise_std"] = 0.0
    if s["aggregate"] is None:
        s["aggregate"] = "best_of_n" if base.get("rm") is not None else "majority"
    return s
