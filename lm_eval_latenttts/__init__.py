"""Parallel test-time scaling for latent reasoning models (COCONUT, CODI, CoLaR).

Importing this package is cheap (no torch / transformers): the lm-eval model
class is loaded on first use of ``lm_eval_latenttts.LatentTTSModel``.
"""

__all__ = ["LatentTTSModel"]


def __getattr__(name):
    if name == "LatentTTSModel":
        from lm_eval_latenttts.harness.model import LatentTTSModel

        return LatentTTSModel
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
