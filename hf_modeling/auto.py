"""Load any latent checkpoint: released (transformers 4.52 layout) or saved by this project.

The released checkpoints say ``model_type: gpt2`` / ``llama`` and name the
latent class only in ``architectures`` (``COCONUTGPT2``, ``CODIGPT2``,
``ColarLlama``, ``COCONUTGPT2ForTokenClassification``); some carry the latent
token ids in config.json, others only in the tokenizer.  ``AutoLatentModel``
reads the raw config.json, picks the class, fills in missing ids from the
tokenizer and loads the weights with the ordinary ``from_pretrained``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .configuration_latent import CodiConfig, CoconutConfig, ColarConfig
from .loading import CheckpointLoadError, check_config_json
from .modeling_latent import CODIGPT2, COCONUTGPT2, ColarLlama

LATENT_TOKENS = {"latent_start_id": "<|start-latent|>", "latent_id": "<|latent|>", "latent_end_id": "<|end-latent|>"}
COLAR_END_MARKER = "###"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model")

# architectures name -> (config class, model class); the RM module adds its classes
ARCHITECTURES = {
    "COCONUTGPT2": (CoconutConfig, COCONUTGPT2),
    "CODIGPT2": (CodiConfig, CODIGPT2),
    "ColarLlama": (ColarConfig, ColarLlama),
}


def register_architecture(name: str, config_class: type, model_class: type) -> None:
    """Let ``AutoLatentModel`` load checkpoints whose ``architectures`` is ``name``."""
    ARCHITECTURES[name] = (config_class, model_class)


def resolve_checkpoint(path_or_id: str | os.PathLike, revision: str | None = None, token: str | None = None,
                       cache_dir: str | None = None) -> Path:
    """A local folder as is; otherwise a Hub id downloaded (or found in the cache) by huggingface_hub."""
    path = Path(os.fspath(path_or_id)).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"{path} is a folder but has no config.json; it is not a model checkpoint.")
        return path
    if path.exists():
        raise ValueError(f"{path} is a file; pass the checkpoint folder that holds config.json.")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError

    try:
        return Path(snapshot_download(str(path_or_id), revision=revision, token=token, cache_dir=cache_dir))
    except HFValidationError as err:
        raise FileNotFoundError(
            f"{path_or_id!r} is neither a local checkpoint folder nor a valid Hub id ({err})."
        ) from err
    except Exception as err:  # offline, unknown repo, no network
        raise OSError(
            f"Could not get checkpoint {path_or_id!r} from the Hugging Face Hub ({type(err).__name__}: {err}). "
            "If you are offline (HF_HUB_OFFLINE=1 or no network), download it beforehand with "
            f"`hf download {path_or_id} --local-dir <folder>` and pass the path of that local copy."
        ) from err


def _read_config(folder):
    check_config_json(folder)
    with open(Path(folder) / "config.json", encoding="utf-8") as f:
        raw = json.load(f)
    if not isinstance(raw, dict):
        raise CheckpointLoadError(f"{Path(folder) / 'config.json'} is not a JSON object; the file is damaged.")
    return raw


def has_tokenizer(folder) -> bool:
    """Whether ``folder`` holds tokenizer files."""
    return any((Path(folder) / f).is_file() for f in TOKENIZER_FILES)


def _load_tokenizer(folder):
    """The folder's tokenizer, or an error that names the folder and says what is missing."""
    from transformers import AutoTokenizer

    if not has_tokenizer(folder):
        raise CheckpointLoadError(
            f"{folder} has no tokenizer files ({', '.join(TOKENIZER_FILES)}). A latent checkpoint needs its "
            "tokenizer (with the added tokens <|start-latent|>, <|latent|>, <|end-latent|>): copy the tokenizer "
            "files of the checkpoint into the folder, or download the checkpoint again."
        )
    try:
        return AutoTokenizer.from_pretrained(str(folder))
    except Exception as err:  # noqa: BLE001 - named and explained
        raise CheckpointLoadError(
            f"Could not load the tokenizer in {folder} ({type(err).__name__}: {err}); its tokenizer files are "
            "incomplete or damaged: download the checkpoint again."
        ) from err


def _tokenizer_ids(folder, names):
    """Ids of special tokens from the folder's tokenizer."""
    tok = _load_tokenizer(folder)
    ids = {}
    for field, text in names.items():
        token_id = tok.convert_tokens_to_ids(text)
        if token_id is not None and token_id != tok.unk_token_id:
            ids[field] = token_id
    return ids


def latent_config(folder: str | os.PathLike) -> tuple:
    """Build this project's config object for the checkpoint in ``folder``."""
    folder = Path(folder)
    raw = _read_config(folder)
    by_type = {cfg.model_type: (cfg, model) for cfg, model in ARCHITECTURES.values()}
    if raw.get("model_type") in by_type:
        config_class, model_class = by_type[raw["model_type"]]
    else:
        names = [a for a in raw.get("architectures") or [] if a in ARCHITECTURES]
        if not names:
            raise ValueError(
                f"{folder}/config.json describes no latent model: model_type={raw.get('model_type')!r}, "
                f"architectures={raw.get('architectures')!r}. Known architectures: {sorted(ARCHITECTURES)}."
            )
        config_class, model_class = ARCHITECTURES[names[0]]
    fields = {k: v for k, v in raw.items() if k not in ("model_type", "transformers_version", "auto_map")}
    for field in (*LATENT_TOKENS, "end_marker_id", "target_id"):
        # the reference configs default unset ids to -100 / -1: read those from the tokenizer instead
        if isinstance(fields.get(field), int) and fields[field] < 0:
            fields[field] = None
    wanted = dict(LATENT_TOKENS)
    if issubclass(config_class, ColarConfig):
        wanted["end_marker_id"] = COLAR_END_MARKER
    missing = {f: t for f, t in wanted.items() if fields.get(f) is None}
    required = ["end_marker_id", "latent_id"] if issubclass(config_class, ColarConfig) else list(LATENT_TOKENS)
    required = getattr(config_class, "required_latent_ids", required)  # the LatentRM needs none
    if missing and (has_tokenizer(folder) or any(f in required for f in missing)):
        found = _tokenizer_ids(folder, missing)
        fields.update(found)
        still = sorted(set(missing) - set(found))
        lacking = [f for f in still if f in required]
        if lacking:
            raise ValueError(
                f"{folder}: the latent token ids {lacking} are neither in config.json nor in the tokenizer "
                f"(tokens {[wanted[f] for f in lacking]}). A latent checkpoint's tokenizer must have the added "
                "tokens <|start-latent|>, <|latent|>, <|end-latent|>."
            )
    return config_class(**fields), model_class


class AutoLatentModel:
    """``AutoLatentModel.from_pretrained(path_or_hub_id, **kwargs)`` -> the right latent model class."""

    def __init__(self):
        raise EnvironmentError("Use AutoLatentModel.from_pretrained(path_or_hub_id).")

    @classmethod
    def from_pretrained(cls, path_or_id: str | os.PathLike, *, revision: str | None = None, token: str | None = None,
                        cache_dir: str | None = None, **kwargs):
        folder = resolve_checkpoint(path_or_id, revision=revision, token=token, cache_dir=cache_dir)
        config, model_class = latent_config(folder)
        for key, value in list(kwargs.items()):
            if hasattr(config, key) and key not in ("dtype", "device_map", "attn_implementation"):
                setattr(config, key, kwargs.pop(key))
        return model_class.from_pretrained(str(folder), config=config, **kwargs)

    @classmethod
    def rm_from_pretrained(cls, path_or_id: str | os.PathLike, *, revision: str | None = None,
                           token: str | None = None, cache_dir: str | None = None, **kwargs) -> tuple:
        """(LatentRM, "rm" | "backbone"): the RM in an RM checkpoint, or one initialised from a backbone's
        weights with a new classifier head (said in one log line) -- for training an RM."""
        folder = resolve_checkpoint(path_or_id, revision=revision, token=token, cache_dir=cache_dir)
        if is_rm_checkpoint(folder):
            return cls.from_pretrained(str(folder), **kwargs), "rm"
        return _rm_from_backbone(folder, **kwargs), "backbone"


# backbone config fields that a LatentRM initialised from the backbone does not take over
_NOT_RM_FIELDS = {
    "model_type", "architectures", "auto_map", "transformers_version", "id2label", "label2id", "num_labels",
    "_name_or_path", "dtype", "torch_dtype", "latent_length", "max_latent_length", "projector",
    "projector_hidden_size", "projector_dropout", "latent_intermediate_size", "latent_embedding_std",
}


def is_rm_checkpoint(folder: str | os.PathLike) -> bool:
    """True when ``folder`` holds a LatentRM (a token-classification architecture), not a backbone."""
    raw = _read_config(folder)
    archs = raw.get("architectures") or []
    return any("TokenClassification" in a for a in archs) or str(raw.get("model_type", "")).startswith("latent_rm")


def _rm_from_backbone(folder, **kwargs):
    """A LatentRM on a backbone's transformer weights with a new one-output head (SPEC: RM initialisation)."""
    from transformers import GPT2Config, LlamaConfig

    from .configuration_latent_rm import LatentRMGPT2Config, LatentRMLlamaConfig
    from .modeling_latent_rm import COCONUTGPT2ForTokenClassification, LatentRMLlamaForTokenClassification

    backbone_config, _ = latent_config(folder)
    if isinstance(backbone_config, GPT2Config):
        config_class, rm_class = LatentRMGPT2Config, COCONUTGPT2ForTokenClassification
    elif isinstance(backbone_config, LlamaConfig):
        config_class, rm_class = LatentRMLlamaConfig, LatentRMLlamaForTokenClassification
    else:
        raise ValueError(f"No LatentRM class for a {type(backbone_config).__name__} backbone (GPT-2 or Llama only).")
    known = config_class().to_dict()
    fields = {k: v for k, v in backbone_config.to_dict().items()
              if k not in _NOT_RM_FIELDS and (k in known or k.endswith("_id"))}
    return rm_class.from_pretrained(str(folder), config=config_class(**fields, num_labels=1), new_head=True, **kwargs)


def load_latent_tokenizer(path_or_id: str | os.PathLike, config=None, revision: str | None = None,
                          token: str | None = None, cache_dir: str | None = None):
    """The checkpoint's tokenizer, left padded, with a pad token, checked against ``config``."""
    folder = resolve_checkpoint(path_or_id, revision=revision, token=token, cache_dir=cache_dir)
    tok = _load_tokenizer(folder)
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    if config is not None:
        wanted = dict(LATENT_TOKENS)
        if isinstance(config, ColarConfig):
            wanted = {"latent_id": "<|latent|>", "end_marker_id": COLAR_END_MARKER}
        for field, text in wanted.items():
            token_id = tok.convert_tokens_to_ids(text)
            expected = getattr(config, field, None)
            if token_id is None or token_id == tok.unk_token_id:
                raise ValueError(
                    f"The tokenizer of {path_or_id} has no token {text!r}; latent checkpoints need the added "
                    "tokens <|start-latent|>, <|latent|>, <|end-latent|>."
                )
            if expected is not None and token_id != expected:
                raise ValueError(
                    f"Tokenizer and config disagree on {text!r}: tokenizer id {token_id}, config {field}={expected}."
                )
    return tok
