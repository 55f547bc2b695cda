"""The shipped-RM recipe end to end for a few steps on a tiny random backbone."""

import json

from tiny_models import make_checkpoint

from hf_modeling import AutoLatentModel
from lm_eval_latenttts.training.recipes import train_rm


def test_train_rm_recipe_installs_a_loadable_rm_without_code_and_resumes(tmp_path):
    backbone = make_checkpoint(tmp_path / "backbone", "coconut")
    out = tmp_path / "arith-rm"
    argv = [
        "--backbone", str(backbone), "--out", str(out), "--work-dir", str(tmp_path / "work"),
        "--train-questions", "6", "-N", "2", "-M", "2", "--keep-all", "--max-steps", "2", "--batch-size", "2",
        "--threads", "1", "--no-progress",
    ]
    report = train_rm.main(argv)
    assert report["annotation"]["kept"] == 6
    assert (out / "model.safetensors").is_file() and (out / "README.md").is_file()
    assert not (out / "checkpoints").exists()  # training checkpoints are not installed
    # the installed RM loads through the package: no copy of hf_modeling; the Hub-ready folder keeps it
    assert sorted(p.name for p in out.glob("*.py")) == [] and "auto_map" not in json.loads((out / "config.json").read_text())
    assert (tmp_path / "work" / "rm" / "modeling_latent_rm.py").is_file()
    rm = AutoLatentModel.from_pretrained(out)
    assert type(rm).__name__ == "COCONUTGPT2ForTokenClassification"
    assert json.loads((out / "config.json").read_text())["latent_id"] == rm.config.latent_id
    # rerunning resumes every stage instead of redoing it
    again = train_rm.main(argv)
    assert again["annotation"]["questions"] == 0 and again["annotation"]["already_done"] == 6


def test_recipe_refuses_to_install_over_another_model(tmp_path):
    import pytest

    backbone = make_checkpoint(tmp_path / "backbone", "coconut")
    before = {p.name: p.read_bytes() for p in backbone.iterdir() if p.is_file()}
    argv = ["--backbone", str(backbone), "--work-dir", str(tmp_path / "work"), "--train-questions", "6", "-N", "2",
            "-M", "2", "--keep-all", "--max-steps", "2", "--batch-size", "2", "--threads", "1", "--no-progress"]
    with pytest.raises(SystemExit, match=f"--out {backbone} holds another model \\(config.json"):
        train_rm.main(argv + ["--out", str(backbone)])
    assert {p.name: p.read_bytes() for p in backbone.iterdir() if p.is_file()} == before
    assert not (tmp_path / "work").exists()  # refused before any work
    (tmp_path / "file").write_text("x")
    with pytest.raises(SystemExit, match="--work-dir .* is an existing file, not a folder"):
        train_rm.main(argv[:2] + ["--out", str(tmp_path / "rm"), "--work-dir", str(tmp_path / "file")] + argv[4:])
