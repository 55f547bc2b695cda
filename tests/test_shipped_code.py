"""The shipped checkpoints carry no modeling code: they load through the package's classes, and
``save_pretrained`` (what ``push`` uploads) writes the package's code next to them for the Hub."""

import filecmp
import json
from pathlib import Path

import pytest
import torch
from processes import run_without_this_package

from hf_modeling import AutoLatentModel
from lm_eval_latenttts.checkpoints import CHECKPOINTS_DIR, DEFAULT_RM_DIR

PACKAGE_CODE = Path(__file__).resolve().parents[1] / "hf_modeling"
SHIPPED = sorted(p for p in CHECKPOINTS_DIR.iterdir() if p.is_dir() and p.name != "__pycache__")


@pytest.mark.parametrize("folder", SHIPPED, ids=lambda p: p.name)
def test_shipped_checkpoints_carry_no_code_and_load_through_the_package(folder):
    """A copy of hf_modeling next to a shipped checkpoint would have to be regenerated after every change."""
    raw = json.loads((folder / "config.json").read_text())
    assert sorted(p.name for p in folder.glob("*.py")) == [], f"{folder.name} ships generated code"
    assert "auto_map" not in raw, f"{folder.name}: an auto_map points at code the folder does not ship"
    model = AutoLatentModel.from_pretrained(folder)
    assert type(model).__module__.startswith("hf_modeling."), type(model).__module__
    assert type(model).__name__ == raw["architectures"][0]


REMOTE_RM = """
import json
import sys
import torch
from transformers import AutoModelForTokenClassification
rm = AutoModelForTokenClassification.from_pretrained(sys.argv[1], trust_remote_code=True)
assert type(rm).__module__.startswith("transformers_modules"), type(rm).__module__
rm.eval()
lat = torch.load(sys.argv[2])
with torch.no_grad():
    print(json.dumps(rm.rm_step(rm.rm_prefill(lat["prompt"], lat["mask"]), lat["latents"]).tolist()))
"""


def test_save_pretrained_of_the_shipped_rm_writes_the_package_code_for_the_hub(tmp_path):
    """What ``push`` uploads: the shipped RM saved loads with trust_remote_code and no package, same scores."""
    rm = AutoLatentModel.from_pretrained(DEFAULT_RM_DIR).eval()
    rm.save_pretrained(tmp_path / "saved")
    raw = json.loads((tmp_path / "saved" / "config.json").read_text())
    assert raw["auto_map"]["AutoModelForTokenClassification"] == "modeling_latent_rm.COCONUTGPT2ForTokenClassification"
    written = sorted(p.name for p in (tmp_path / "saved").glob("*.py"))
    assert "modeling_latent_rm.py" in written
    assert [n for n in written if not filecmp.cmp(tmp_path / "saved" / n, PACKAGE_CODE / n, shallow=False)] == []
    torch.manual_seed(0)
    inputs = dict(prompt=torch.randint(0, 60, (2, 5)), mask=torch.ones(2, 5, dtype=torch.long),
                  latents=torch.randn(2, 2, rm.config.n_embd))
    torch.save(inputs, tmp_path / "inputs.pt")
    remote = torch.tensor(run_without_this_package(REMOTE_RM, tmp_path, tmp_path / "saved", tmp_path / "inputs.pt"))
    with torch.no_grad():
        here = rm.rm_step(rm.rm_prefill(inputs["prompt"], inputs["mask"]), inputs["latents"])
    torch.testing.assert_close(remote, here, atol=1e-5, rtol=1e-5)
