"""Run records: the settings a resumable run was started with, so that a resume never mixes two runs.

``annotate`` and ``train-rm`` write their settings once (atomically, by the main
process) and compare them on every resume; a difference is an error that names
each changed setting.
"""

from __future__ import annotations

import json
import os
from pathlib import Path


def flatten(settings: dict, prefix: str = "") -> dict:
    """Nested settings as ``{"a.b": value}``, so that a change deep inside is named exactly."""
    flat = {}
    for key, value in settings.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def changed_settings(was: dict, now: dict) -> str:
    """``"key: was X, now Y; ..."`` for every differing (nested) setting, or "" when they match."""
    was, now = flatten(was), flatten(now)
    changed = sorted(k for k in set(was) | set(now) if was.get(k) != now.get(k))
    return "; ".join(f"{k}: was {was.get(k)!r}, now {now.get(k)!r}" for k in changed)


def write_json_atomic(path: Path, obj) -> None:
    """Write ``obj`` as JSON to ``path`` via a temporary file and a rename: never a half-written file."""
    path = Path(path)
    tmp = path.with_name(f".tmp-{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str))
    os.replace(tmp, path)


def check_or_write(path: Path, settings: dict, is_main: bool, wait, what: str, remedy: str) -> None:
    """Compare ``settings`` with the record at ``path`` (error on a difference), or write it if there is none."""
    path = Path(path)
    if path.is_file():
        changed = changed_settings(json.loads(path.read_text()), settings)
        if changed:
            raise ValueError(f"{path.parent} holds {what} with different settings ({changed}). {remedy}")
    elif is_main:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, settings)
    wait()


__all__ = ["changed_settings", "check_or_write", "flatten", "write_json_atomic"]
