"""The modeling code saved next to the shipped checkpoints is the package's, as ``save_pretrained`` writes it."""

import filecmp
import json
from pathlib import Path

import pytest

from hf_modeling import AutoLatentModel
from lm_eval_latenttts.checkpoints import CHECKPOINTS_DIR

PACKAGE_CODE = Path(__file__).resolve().parents[1] / "hf_modeling"


@pytest.mark.parametrize("folder", sorted(p for p in CHECKPOINTS_DIR.iterdir() if p.is_dir() and p.name != "__pycache__"),
                         ids=lambda p: p.name)
def test_shipped_code_copies_equal_the_sources(folder, tmp_path):
    raw = json.loads((folder / "config.json").read_text())
    shipped = sorted(p.name for p in folder.glob("*.py"))
    if not raw.get("auto_map"):
        assert shipped == [], f"{folder.name} has no auto_map, so its .py files are never used: {shipped}"
        return
    AutoLatentModel.from_pretrained(folder).save_pretrained(tmp_path)
    written = sorted(p.name for p in tmp_path.glob("*.py"))
    assert shipped == written, f"{folder.name}: shipped {shipped}, save_pretrained writes {written}"
    stale = [name for name in shipped if not filecmp.cmp(folder / name, PACKAGE_CODE / name, shallow=False)]
    assert not stale, (f"{folder.name}: {stale} differ from hf_modeling/; regenerate them with "
                       "AutoLatentModel.from_pretrained(folder).save_pretrained(folder)")
