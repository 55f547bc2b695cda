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
_TASK_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")  # an eval.yaml task id: one name, no path


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


def repo_id_problem(repo_id, namespace: bool = False) -> str | None:
    """Why ``repo_id`` is not a Hub repo id as the Hub validates it (``huggingface_hub``'s ``validate_repo_id``:
    ``name`` or ``namespace/name`` of letters, digits, ``-``, ``_``, ``.``, no ``--`` or ``..``, at most 96
    characters), or None; ``namespace``: the ``namespace/`` part is required."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    if not isinstance(repo_id, str):
        return f"{repo_id!r} is not text"
    try:
        validate_repo_id(repo_id)
    except HFValidationError as err:
        return str(err).splitlines()[0]
    if namespace and "/" not in repo_id:
        return f"{repo_id!r} has no namespace: expected namespace/name, e.g. openai/gsm8k"
    return None


def check_repo_id(repo_id, option: str, namespace: bool = False) -> str:
    """``repo_id``, or a ``ValueError`` naming ``option`` when the Hub would refuse it."""
    problem = repo_id_problem(repo_id, namespace)
    if problem:
        raise ValueError(f"{option} {repo_id!r} is not a Hugging Face Hub repo id: {problem}.")
    return repo_id


def check_task_id(task_id, option: str) -> str:
    """``task_id`` (an eval.yaml task id: letters, digits, ``_``, ``.``, ``-``, no ``..``), or a ``ValueError``."""
    if not isinstance(task_id, str) or not _TASK_ID.match(task_id) or ".." in task_id:
        raise ValueError(f"{option}: the task id {task_id!r} is not a task id (letters, digits, '_', '.', '-'; no "
                         "path).")
    return task_id


def hub_repo_id(path_or_id) -> str | None:
    """The Hub repo id behind ``path_or_id``: a cache snapshot's repo, an id that is not a local path, else None."""
    if path_or_id is None:
        return None
    text = str(path_or_id)
    if Path(text).expanduser().exists():
        return _cache_parts(Path(text).expanduser())[0]
    return text if repo_id_problem(text, namespace=True) is None else None


__all__ = ["check_repo_id", "check_task_id", "hub_commit", "hub_repo_id", "repo_id_problem", "weights_sha256"]
