"""The shipped default model, its LatentRM and the test-time settings they were tuned for.

``lm_eval --model latent_tts`` with no ``pretrained`` runs these, offline: a
tiny COCONUT-layout backbone and its LatentRM trained on the synthetic
arithmetic task (``lm_eval_latenttts.arith``) by the recipes in
``lm_eval_latenttts.recipes``.  No torch import here: the lm-eval argument
checks read it.
"""

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
CHECKPOINTS_DIR = PACKAGE_DIR / "checkpoints"
DEFAULT_MODEL_DIR = CHECKPOINTS_DIR / "arith-coconut"
DEFAULT_RM_DIR = CHECKPOINTS_DIR / "arith-rm"
ARITH_TEST = PACKAGE_DIR / "data" / "arith_test.json"
ARITH_VALID = PACKAGE_DIR / "data" / "arith_valid.json"

# model_args used when ``pretrained`` is not given (measured on the shipped valid split; see
# README "The shipped model").  Anything the user passes wins.
SHIPPED_RUN_DEFAULTS = {
    "sampling": "dropout",
    "n": 16,
    "max_new_tokens": 8,
    "seed": 0,  # written out so that the results (and the printed table) state it
}
# the sampling strength the shipped model was tuned with, per sampling method
SHIPPED_STRENGTH = {"dropout": ("dropout_p", 0.2), "noise": ("noise_std", 1.0)}
# with the shipped RM: RM-weighted vote, measured >= majority at every N (best-of-N was below majority)
SHIPPED_RM_AGGREGATE = "weighted"


def _require(path, what, recipe):
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"The shipped {what} is missing at {path}. Reinstall lm-eval-latenttts, pass pretrained=/rm= "
            f"explicitly, or regenerate it with `{recipe}`."
        )
    return path


def default_model_path():
    return _require(DEFAULT_MODEL_DIR, "default latent model", "python -m lm_eval_latenttts.recipes.train_backbone")


def default_rm_path():
    """The shipped LatentRM, or None when it is not there (the backbone still runs)."""
    return DEFAULT_RM_DIR if (DEFAULT_RM_DIR / "config.json").is_file() else None


def default_arith_test_path():
    if not ARITH_TEST.is_file():
        raise FileNotFoundError(f"The shipped latent_arith test split is missing at {ARITH_TEST}.")
    return ARITH_TEST


def default_sampling(model_path=None):
    """Sampling strengths for the scaling report: the shipped settings for the shipped model."""
    return {key: value for key, value in SHIPPED_STRENGTH.values()}
