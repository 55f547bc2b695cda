"""What an lm-eval results file records about the checkpoints a ``latent_tts`` run used.

lm-eval's own ``HFLM.get_model_info`` writes ``model_num_parameters``,
``model_dtype``, ``model_revision`` and ``model_sha`` into the results'
``config``; leaderboard back-ends read them.  ``checkpoint_info`` gives those
values for a latent backbone or a LatentRM (the same meaning: parameters,
``torch.*`` dtype string, the revision asked for or ``main``, the Hub commit or
"" for a local folder) and the weights' sha256 that ``export-results``
identifies a model folder by.
"""

from __future__ import annotations

import os

from lm_eval_latenttts.publishing.identity import hub_commit, weights_sha256

DATA_ENV_PREFIX = "LATENT_TTS_DATA_"


def checkpoint_info(model, path_or_id, revision: str | None = None) -> dict:
    """``num_parameters``, ``dtype``, ``revision``, ``sha`` (Hub commit or "") and ``weights_sha256``."""
    from hf_modeling import resolve_checkpoint

    folder = resolve_checkpoint(str(path_or_id), revision=revision)
    try:
        weights = weights_sha256(folder)
    except FileNotFoundError:  # e.g. a .bin-only checkpoint: nothing to identify it by
        weights = ""
    return {
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "dtype": str(next(model.parameters()).dtype),
        "revision": revision or "main",
        "sha": hub_commit(folder),
        "weights_sha256": weights,
    }


def data_overrides() -> dict:
    """The ``LATENT_TTS_DATA_*`` variables of this run: tasks that read a local file instead of their Hub data."""
    return {k: v for k, v in sorted(os.environ.items()) if k.startswith(DATA_ENV_PREFIX) and v}


__all__ = ["DATA_ENV_PREFIX", "checkpoint_info", "data_overrides"]
