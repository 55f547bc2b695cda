"""The checkpoints shipped with the package: a tiny COCONUT-layout backbone and its LatentRM.

They are trained on the synthetic arithmetic task (``lm_eval_latenttts.data.arith``)
by ``lm_eval_latenttts.training.recipes``; ``lm_eval --model latent_tts`` with no
``pretrained`` runs them, offline.  Their recommended test-time settings are in
their own ``generation_config.json`` (the backbone: dropout sampling, p=0.2,
N=16; the RM: the RM-weighted vote), not here.  No torch import: the lm-eval
argument checks read this module.
"""

from pathlib import Path

CHECKPOINTS_DIR = Path(__file__).resolve().parent
DEFAULT_MODEL_DIR = CHECKPOINTS_DIR / "arith-coconut"
DEFAULT_RM_DIR = CHECKPOINTS_DIR / "arith-rm"


def shipped_model() -> Path:
    """The shipped backbone's folder (a clear error if the installation lacks it)."""
    if not (DEFAULT_MODEL_DIR / "config.json").is_file():
        raise FileNotFoundError(
            f"The shipped latent model is missing at {DEFAULT_MODEL_DIR}. Reinstall lm-eval-latenttts, pass "
            "pretrained=<Hub id or folder>, or regenerate it with "
            "`python -m lm_eval_latenttts.training.recipes.train_backbone`."
        )
    return DEFAULT_MODEL_DIR


def shipped_rm() -> Path | None:
    """The shipped LatentRM's folder, or None when it is not installed (the backbone still runs)."""
    return DEFAULT_RM_DIR if (DEFAULT_RM_DIR / "config.json").is_file() else None


__all__ = ["CHECKPOINTS_DIR", "DEFAULT_MODEL_DIR", "DEFAULT_RM_DIR", "shipped_model", "shipped_rm"]
