"""Run records: the settings a resumable run was started with, so that a resume never mixes two runs.

``annotate`` and ``train-rm`` write their settings once (atomically, by the main
process) and compare them on every resume; a difference is an error that names
each changed setting.  Their output folders are checked here too (a file, another
model, another run holding the folder's lock).  Resume state (weights, optimizer, schedule) is read back
by :func:`load_resume_state`: tensors and plain data only, never an unpickled
object.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from lm_eval_latenttts.publishing.hub import RUN_LOCK_FILE

LOCK_FILE = RUN_LOCK_FILE  # in the output folder of a run: held (flock) for the run's lifetime; never uploaded


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


def load_resume_state(path: Path, remedy: str):
    """The tensors and plain data saved with ``torch.save`` at ``path``, read with ``weights_only=True``.

    A file holding anything else (a crafted pickle, an object of some class) is refused, never run: resume
    folders are written by processes we do not control once they are on disk.
    """
    import pickle

    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise ValueError(f"{path} holds more than tensors and plain data, so it is not read (loading it could run "
                         f"code). {remedy} ({str(err).splitlines()[0]})") from None
    except (RuntimeError, EOFError, KeyError, OSError) as err:  # truncated (OSError 22 when cut mid-way), empty,
        # or not a torch.save file
        raise ValueError(f"{path} is damaged or not a saved training state ({type(err).__name__}: "
                         f"{_first_line(err)}). {remedy}") from None


def restore_state(path: Path, remedy: str, restore) -> None:
    """Run ``restore()`` (``load_state_dict`` calls with the state read from ``path``); a state that does not fit
    (other weights' names or shapes, another optimizer, a missing entry) is an error naming ``path``."""
    try:
        restore()
    except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as err:
        raise ValueError(f"{path} does not fit this run: it holds the state of another model or optimizer "
                         f"({type(err).__name__}: {_first_line(err)}). {remedy}") from None


def read_json_record(path: Path, what: str, remedy: str) -> dict:
    """The JSON object in ``path`` (a run's record), or an error naming the file, ``what`` it is and ``remedy``."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path} ({what}) is damaged ({type(err).__name__}: {_first_line(err)}). {remedy}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} ({what}) is not a JSON object. {remedy}")
    return data


def _first_line(err: BaseException) -> str:
    return str(err).splitlines()[0] if str(err) else "empty"


@contextlib.contextmanager
def exclusive_run(folder: Path, what: str, take: bool = True):
    """Hold ``folder``'s run lock while the ``with`` body runs; a second run into the folder is refused.

    An ``fcntl.flock`` on ``folder/.run.lock``: the OS releases it when the process ends, however it ends, so a
    killed run never blocks its rerun.  One lock per run, not per process: under ``accelerate launch`` only the
    main process takes it (``take``), before the others pass the run record's barrier.
    """
    if not take:
        yield
        return
    import fcntl

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise ValueError(f"{folder} is being written by another {what} (process {holder} holds {path}). Wait "
                             "for it to finish (rerun then to resume), or choose another output folder.") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


# files that say a folder holds a model (a run writing its own model there would overwrite or contradict them)
MODEL_FILES = ("config.json", "model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
               "adapter_config.json", "generation_config.json", "training_info.json")


def foreign_model_files(folder, marker: str) -> list[str]:
    """The model files in ``folder`` when it holds a model without ``marker`` (the file by which a run knows
    its own output, e.g. train-rm's ``training_summary.json``), else ``[]``."""
    folder = Path(folder)
    if not folder.is_dir() or (folder / marker).is_file():
        return []
    return [name for name in MODEL_FILES if (folder / name).exists()]


def require_folder(path, option: str) -> Path:
    """``path`` as a folder path, or an error naming ``option`` when it names an existing file."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{option} {path} is an existing file, not a folder: pass the path of a folder (a new one, "
                         "or the one of the run to resume).")
    return path


def require_output_folder(path, option: str, marker: str, writer: str) -> Path:
    """``path`` as an output folder of ``writer``: an error naming ``option`` when it names a file or a folder
    holding another model (model files without ``marker``, by which ``writer`` knows its own output), which
    the run would overwrite, leaving that model's other files describing the wrong one."""
    path = require_folder(path, option)
    other = foreign_model_files(path, marker)
    if other:
        raise ValueError(f"{option} {path} holds another model ({', '.join(other)}; no {marker} of {writer}), "
                         f"which this run would overwrite. Choose another {option}.")
    return path


__all__ = ["LOCK_FILE", "MODEL_FILES", "changed_settings", "check_or_write", "exclusive_run", "flatten",
           "foreign_model_files", "load_resume_state", "read_json_record", "require_folder", "require_output_folder",
           "restore_state", "write_json_atomic"]
