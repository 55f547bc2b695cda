"""Exact checkpoint loading: every weight in the file is used and every parameter comes from the file.

transformers' ``from_pretrained`` only prints a LOAD REPORT when keys are
missing or unexpected and then runs with freshly initialised weights; for an
evaluation that numbers are published from, that is a silent wrong result.
``exact_from_pretrained`` loads with ``output_loading_info=True``, hides that
report and raises :class:`CheckpointLoadError` naming the keys and the file
instead.  The one expected exception -- a LatentRM initialised from a
backbone, whose classifier head is new -- is declared by the caller
(``new_head=...``) and reported in one line.

Damaged files get an error that names the file and says what to do, instead
of a bare ``SafetensorError`` or ``JSONDecodeError``.

Only torch, transformers and the standard library are imported: this file is
copied next to saved checkpoints for ``trust_remote_code`` loading.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

_REPORT_LOGGER = "transformers.modeling_utils"
_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
logger = logging.getLogger(__name__)


class CheckpointLoadError(OSError, ValueError):
    """A checkpoint that does not load exactly: damaged, incomplete, or for another architecture."""


def _weights_file(path) -> str:
    folder = Path(os.fspath(path))
    if folder.is_dir():
        for name in _WEIGHT_FILES:
            if (folder / name).is_file():
                return str(folder / name)
    return f"{path} (weights)"


def _not_a_load_report(record: logging.LogRecord) -> bool:
    return "LOAD REPORT" not in str(record.msg)


@contextlib.contextmanager
def _no_load_report() -> Iterator[None]:
    """Drop transformers' LOAD REPORT: the keys it lists are checked (and raised) here instead.

    A filter, not a higher logger level: transformers runs extra checks (and
    warns) when that logger's level is raised.
    """
    report = logging.getLogger(_REPORT_LOGGER)
    report.addFilter(_not_a_load_report)
    try:
        yield
    finally:
        report.removeFilter(_not_a_load_report)


def _short(keys: Iterable[str], most: int = 12) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:most])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > most else "")


def check_config_json(path: str | os.PathLike) -> None:
    """A clear error for a config.json that is not valid JSON (transformers raises a bare JSONDecodeError)."""
    config = Path(os.fspath(path)) / "config.json"
    if not config.is_file():
        return
    try:
        json.loads(config.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointLoadError(
            f"{config} is not valid JSON ({err}). The file is damaged: download the checkpoint again "
            "(hf download <repo> --force-download) or restore config.json."
        ) from None


def exact_from_pretrained(parent: super, cls: type, path: str | os.PathLike, *args, new_head: Iterable[str] = (),
                          **kwargs):
    """``parent.from_pretrained(path, ...)`` (``parent`` is ``super()`` of ``cls``), refusing inexact loads.

    ``new_head``: parameter-name prefixes that may be missing because they are
    new (an RM head on a backbone); their absence is reported in one line and
    weights of the file that such a model does not have are ignored likewise.
    """
    wants_info = kwargs.pop("output_loading_info", False)
    check_config_json(path)
    weights = _weights_file(path)
    try:
        with _no_load_report():
            model, info = parent.from_pretrained(path, *args, output_loading_info=True, **kwargs)
    except CheckpointLoadError:
        raise
    except Exception as err:  # noqa: BLE001 - translated into an error that names the file
        raise _translate(err, cls, path, weights) from err
    new_head = tuple(new_head)
    missing = set(info.get("missing_keys") or ())
    unexpected = set(info.get("unexpected_keys") or ())
    mismatched = {k[0] if isinstance(k, tuple) else k for k in info.get("mismatched_keys") or ()}
    fresh = {k for k in missing if k.startswith(new_head)} if new_head else set()
    missing -= fresh
    ignored = set(unexpected) if new_head else set()
    unexpected -= ignored
    problems = []
    if missing:
        problems.append(f"missing from the file (would be left at their random initial values): {_short(missing)}")
    if unexpected:
        problems.append(f"in the file but not used by {cls.__name__}: {_short(unexpected)}")
    if mismatched:
        problems.append(f"of the wrong shape: {_short(mismatched)}")
    if problems:
        hint = _hint(missing | unexpected)
        raise CheckpointLoadError(
            f"{weights} does not match {cls.__name__} exactly; weights " + "; weights ".join(problems) + ". "
            + (hint or "The checkpoint is incomplete or of another architecture: check that it is the model you "
               "meant and download it again if a file is damaged.")
        )
    if fresh:
        logger.warning(
            "%s: new head %s initialised for training (not in %s)%s.", cls.__name__, _short(fresh), weights,
            f"; backbone weights not used: {_short(ignored)}" if ignored else "",
        )
    return (model, info) if wants_info else model


def _hint(keys: set[str]) -> str:
    if any(k.startswith("latent_head.") for k in keys):
        return (
            "The file uses the pre-0.2 lm-eval-latenttts names latent_head.{0,2,3,4}.*; the released CoLaR "
            "layout (used now) is lt_head.fc.{0,2,3}.* and lt_head.mean.*: rename the tensors."
        )
    if any(k.startswith("projector.") for k in keys):
        return "Check config.json's `projector` field: it says whether a CODI checkpoint has a projector."
    return ""


def _translate(err: Exception, cls, path, weights: str) -> Exception:
    text = f"{type(err).__name__}: {err}"
    name = type(err).__name__
    if name == "SafetensorError" or "safetensor" in text.lower() or "header" in text.lower():
        return CheckpointLoadError(
            f"{weights} could not be read ({text}); the file is truncated or damaged. Download the checkpoint "
            "again (hf download <repo> --force-download) or save it again."
        )
    if isinstance(err, json.JSONDecodeError):
        return CheckpointLoadError(f"A JSON file of the checkpoint {path} is damaged ({text}); download it again.")
    if isinstance(err, RuntimeError) and ("size mismatch" in text or "ignore_mismatched_sizes" in text):
        return CheckpointLoadError(
            f"{weights} has weights of the wrong shape for {cls.__name__} ({text}); the config.json and the "
            "weights belong to different models."
        )
    return err


__all__ = ["CheckpointLoadError", "check_config_json", "exact_from_pretrained"]
