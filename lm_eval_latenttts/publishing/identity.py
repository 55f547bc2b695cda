"""Which checkpoint a result or a card is about: weights hash, Hub repo id and commit of a folder.

A results file names the checkpoint as the user typed it (a Hub id, a local
folder, a cache path), so export cannot compare names.  It compares the
*weights*: ``weights_sha256`` hashes the safetensors files of a folder, the
same bytes whether the folder is a Hub download, a copy or the original.
The Hub repo id and commit of a folder in the Hugging Face cache
(``.../models--org--name/snapshots/<commit>/``) are read from its path, without
network access.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

_SNAPSHOT = re.compile(r"^(models|datasets)--(?P<repo>.+)$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")


def weights_sha256(folder) -> str:
    """sha256 over the folder's ``*.safetensors`` files (name and content, sorted by name).

    Raises FileNotFoundError when the folder holds no safetensors weights.
    """
    files = sorted(Path(folder).glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{folder} holds no *.safetensors weights to identify the model by.")
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode() + b"\0")
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                digest.update(block)
    return digest.hexdigest()


def _cache_parts(folder: Path):
    """(repo id, commit) of a Hugging Face cache snapshot folder, else (None, None)."""
    parts = Path(folder).resolve().parts if Path(folder).exists() else Path(folder).parts
    for i in range(len(parts) - 2):
        match = _SNAPSHOT.match(parts[i])
        if match and parts[i + 1] == "snapshots" and _COMMIT.match(parts[i + 2]):
            return match.group("repo").replace("--", "/"), parts[i + 2]
    return None, None


def hub_commit(folder) -> str:
    """The Hub commit of a cache snapshot folder, or "" for any other folder (as lm-eval's HFLM reports)."""
    return _cache_parts(Path(folder))[1] or ""


def hub_repo_id(path_or_id) -> str | None:
    """The Hub repo id behind ``path_or_id``: a cache snapshot's repo, an id that is not a local path, else None."""
    if path_or_id is None:
        return None
    text = str(path_or_id)
    if Path(text).expanduser().exists():
        return _cache_parts(Path(text).expanduser())[0]
    return text if _REPO_ID.match(text) and "/" in text else None


__all__ = ["hub_commit", "hub_repo_id", "weights_sha256"]
