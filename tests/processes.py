"""Shared helpers for tests that run Python in child processes.

* :func:`run_without_this_package`: a child Python in which ``hf_modeling`` and
  ``lm_eval_latenttts`` cannot be imported, as in an environment that never
  installed this project -- works the same in a virtualenv and a system Python
  (it does not switch off the site module, read site-packages paths or use machine paths).
* :func:`accelerate_cpu_launch`: ``accelerate launch`` of two (or more) real CPU
  processes (gloo). ``accelerate launch --num_processes 2`` alone, or with
  ``--cpu``, starts ONE process on a machine without GPUs; several CPU
  processes need ``--multi_gpu`` with ``ACCELERATE_USE_CPU=1``.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

BLOCKED_PACKAGES = ("hf_modeling", "lm_eval_latenttts")

# Runs first in the child. The package's .pth hook is switched off by the environment
# (LM_EVAL_LATENTTTS_DISABLE_HOOK=1), but the .pth line still imports the tiny
# ``lm_eval_latenttts.harness.plugin`` at start-up: forget it, then refuse every import
# of the two packages, whatever sys.path holds (editable install, PYTHONPATH, cwd).
_PRELUDE = textwrap.dedent(
    f"""
    import importlib.abc as _abc
    import sys as _sys

    _BLOCKED = {BLOCKED_PACKAGES!r}

    class _BlockThisPackage(_abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in _BLOCKED:
                raise ImportError("blocked for this test: " + name)
            return None

    for _name in [m for m in _sys.modules if m.split(".")[0] in _BLOCKED]:
        del _sys.modules[_name]
    _sys.meta_path[:] = [f for f in _sys.meta_path if type(f).__module__.split(".")[0] not in _BLOCKED]
    _sys.meta_path.insert(0, _BlockThisPackage())
    try:
        import hf_modeling  # noqa: F401
    except ImportError:
        pass
    else:
        raise SystemExit("the import blocker does not work")
    """
)

_EPILOGUE = textwrap.dedent(
    """
    _leaked = sorted(m for m in _sys.modules if m.split(".")[0] in _BLOCKED)
    assert not _leaked, _leaked
    """
)


def run_without_this_package(code, tmp_path, *args, timeout=300):
    """Run ``code`` (a script; ``sys.argv[1:]`` are ``args``) where this project's packages cannot be imported.

    The script prints one JSON value as its last line of output; that value is returned.
    ``trust_remote_code`` modules are cached under ``tmp_path`` (nothing stale from other runs).
    """
    env = dict(os.environ, HF_HUB_OFFLINE="1", LM_EVAL_LATENTTTS_DISABLE_HOOK="1",
               HF_MODULES_CACHE=str(Path(tmp_path) / "hf_modules"), OMP_NUM_THREADS="1")
    script = _PRELUDE + textwrap.dedent(code) + _EPILOGUE
    proc = subprocess.run([sys.executable, "-c", script, *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=str(tmp_path), timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def console_script(name):
    """A console script of the running interpreter's environment (its venv), else the one on PATH."""
    exe = Path(sys.executable).parent / name
    return str(exe) if exe.exists() else shutil.which(name)


def accelerate_cpu_launch(num_processes=2):
    """(command prefix, extra environment) for ``accelerate launch`` of ``num_processes`` real CPU processes."""
    accelerate = console_script("accelerate")
    if accelerate is None:
        return None, None
    cmd = [accelerate, "launch", "--multi_gpu", "--num_processes", str(num_processes), "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(free_port())]
    return cmd, {"ACCELERATE_USE_CPU": "1"}
