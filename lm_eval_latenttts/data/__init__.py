"""Questions: the one reader of question files (``questions``) and the shipped arithmetic task (``arith``).

The shipped splits of the arithmetic task (``arith_test.json``, ``arith_valid.json``)
sit next to this file.
"""

from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent
ARITH_TEST = DATA_DIR / "arith_test.json"
ARITH_VALID = DATA_DIR / "arith_valid.json"

# the Hub datasets of the latent_* tasks (tasks/utils.py), when no local file is given: (repo, config, split)
HUB_SOURCES = {
    "gsm8k": ("openai/gsm8k", "main", "test"),
    "gsm_hard": ("reasoning-machines/gsm-hard", None, "train"),
    "multiarith": ("ChilleD/MultiArith", None, "test"),
}

__all__ = ["ARITH_TEST", "ARITH_VALID", "DATA_DIR", "HUB_SOURCES"]
