"""Make the plain ``lm_eval`` / ``lm-eval`` / ``python -m lm_eval`` commands see this package.

lm-eval 0.4.13 has no plugin discovery of its own, so the package installs a
one-line ``lm_eval_latenttts_hook.pth`` file into site-packages (see
``setup.py``).  Python runs it at start-up; it calls :func:`install`, which
only appends a tiny finder to ``sys.meta_path``.  Nothing heavy is imported
(no torch, no transformers, not even lm_eval): a Python process that never
imports lm-eval pays for one small module import.

The finder waits for two lm-eval modules and, right after each has executed:

* ``lm_eval.models`` (the module whose import registers every built-in model
  lazily): registers ``latent_tts`` as a *lazy placeholder*
  (``"lm_eval_latenttts.harness.model:LatentTTSModel"``), so torch is imported
  only when the model is actually used.  Registering after ``lm_eval.models``
  is imported matters: lm-eval imports its built-ins only while the model
  registry is empty, so a model registered earlier would hide all of them.
* ``lm_eval.tasks.manager``: wraps ``TaskManager.__init__`` so that the
  package's ``tasks/`` folder is appended to ``include_path`` (whenever the
  built-in tasks are included), which is how ``--tasks latent_gsm8k`` works
  without ``--include_path``.

For harness versions that read the ``lm_eval.models`` entry-point group the
package also declares ``latent_tts`` there (pyproject.toml).

Set ``LM_EVAL_LATENTTTS_DISABLE_HOOK=1`` to switch the hook off.
"""

from __future__ import annotations

import os
import sys

MODEL_NAME = "latent_tts"
MODEL_TARGET = "lm_eval_latenttts.harness.model:LatentTTSModel"


def tasks_dir() -> str | None:
    """Where the package's task YAMLs are installed: the package ``lm_eval_latenttts.tasks``, i.e. the
    repository's top-level ``tasks/`` in an editable install; None if it is missing."""
    from importlib.util import find_spec

    try:
        spec = find_spec("lm_eval_latenttts.tasks")
    except ImportError:
        return None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    return os.path.abspath(locations[0]) if locations else None

_WATCHED = ("lm_eval.models", "lm_eval.tasks.manager")


def register_model() -> None:
    """Register ``latent_tts`` (lazily) in lm-eval's model registry; idempotent."""
    import lm_eval.models  # noqa: F401  (built-ins first, see module docstring)
    from lm_eval.api.registry import model_registry

    if MODEL_NAME not in model_registry:
        model_registry.register(MODEL_NAME, target=MODEL_TARGET)


def patch_task_manager(manager_module=None) -> None:
    """Make every ``TaskManager`` that includes the built-in tasks also index the package's tasks."""
    if manager_module is None:
        import lm_eval.tasks.manager as manager_module
    cls = manager_module.TaskManager
    if getattr(cls.__init__, "_latent_tts_patched", False):
        return
    original = cls.__init__

    def __init__(self, *args, **kwargs):
        include_defaults = kwargs.get("include_defaults", args[2] if len(args) > 2 else True)
        if include_defaults and tasks_dir() is not None:
            if len(args) > 1:
                args = list(args)
                args[1] = _with_tasks_dir(args[1])
            else:
                kwargs["include_path"] = _with_tasks_dir(kwargs.get("include_path"))
        original(self, *args, **kwargs)

    __init__._latent_tts_patched = True
    __init__.__wrapped__ = original
    __init__.__doc__ = original.__doc__
    cls.__init__ = __init__


def _with_tasks_dir(include_path):
    """``include_path`` with the package's tasks folder first (user paths later, so they can override)."""
    if include_path is None:
        paths = []
    elif isinstance(include_path, (list, tuple)):
        paths = list(include_path)
    else:
        paths = [include_path]
    folder = tasks_dir()
    if any(os.path.abspath(os.fspath(p)) == folder for p in paths):
        return include_path
    return [folder] + paths


class _Loader:
    """Wraps the real loader: run the module, then our post-import action."""

    def __init__(self, loader, action):
        self._loader = loader
        self._action = action

    def create_module(self, spec):
        create = getattr(self._loader, "create_module", None)
        return create(spec) if create is not None else None

    def exec_module(self, module):
        self._loader.exec_module(module)
        try:
            self._action(module)
        except Exception as err:  # never break lm-eval itself
            sys.stderr.write(f"lm_eval_latenttts: could not hook into {module.__name__}: {err!r}\n")

    def __getattr__(self, name):
        return getattr(self._loader, name)


class _Finder:
    """A ``sys.meta_path`` finder that only reacts to the two watched lm-eval modules."""

    _busy = False

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in _WATCHED or self._busy:
            return None
        self._busy = True
        try:
            from importlib.machinery import PathFinder

            spec = None
            for finder in sys.meta_path:
                if finder is self or not hasattr(finder, "find_spec"):
                    continue
                spec = finder.find_spec(fullname, path, target)
                if spec is not None:
                    break
            if spec is None:
                spec = PathFinder.find_spec(fullname, path)
        finally:
            self._busy = False
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        action = _after_models if fullname == "lm_eval.models" else patch_task_manager
        spec.loader = _Loader(spec.loader, action)
        return spec


def _after_models(module):
    register_model()


def install() -> None:
    """Install the finder (called from the .pth file at interpreter start-up); idempotent."""
    if os.environ.get("LM_EVAL_LATENTTTS_DISABLE_HOOK", "").strip() not in ("", "0"):
        return
    if any(isinstance(f, _Finder) or type(f).__name__ == "_Finder" and getattr(f, "_latent_tts", False)
           for f in sys.meta_path):
        return
    finder = _Finder()
    finder._latent_tts = True
    sys.meta_path.insert(0, finder)
    # lm-eval already imported (e.g. install() called late): act now.
    if "lm_eval.models" in sys.modules:
        register_model()
    if "lm_eval.tasks.manager" in sys.modules:
        patch_task_manager(sys.modules["lm_eval.tasks.manager"])
