"""The LatentRM model card (``rm_model_card``): its text for a set of run summaries, byte for byte.

``tests/golden/rm_model_cards.json`` holds the cards written before ``rm_model_card`` was split into
steps; regenerate it only for an intended change of the card (``python tests/test_model_card.py``).
"""

import copy
import json
import sys
from pathlib import Path

import pytest

from hf_modeling import COCONUTGPT2ForTokenClassification, LatentRMGPT2Config
from lm_eval_latenttts.checkpoints import DEFAULT_RM_DIR
from lm_eval_latenttts.publishing.model_card import rm_model_card

GOLDEN = Path(__file__).resolve().parent / "golden" / "rm_model_cards.json"


def _cases():
    shipped = json.loads((DEFAULT_RM_DIR / "training_summary.json").read_text())
    noise = copy.deepcopy(shipped)
    noise["annotation_config"] = {
        "model": "me/latent-coconut", "data": "openai/gsm8k", "keep_all": True, "num_continuations": 32,
        "generation": {"latent_sampling": "noise", "noise_std": 0.5, "num_return_sequences": 4}}
    noise["config"].update(loss="bce", lora_r=8, push_to_hub="me/latent-rm", license="mit", base_model="me/base")
    noise.update(num_processes=2, global_batch=32, first_loss=None, eval_after=None)
    hub_init = {"init": "me/latent-coconut", "init_kind": "backbone", "optimizer_steps": 3,
                "annotation_config": {"sampling": "dropout", "dropout_p": 0.1, "num_trajectories": 6}}
    return {"shipped": (shipped, None), "noise_bce_lora_pushed": (noise, None),
            "hub_init_flat_annotation": (hub_init, "me/rm"), "empty": ({}, None)}


def _cards():
    rm = COCONUTGPT2ForTokenClassification(LatentRMGPT2Config(vocab_size=10, n_embd=8, n_layer=1, n_head=2,
                                                                        bos_token_id=0, eos_token_id=0))
    return {name: rm_model_card(summary, rm if name == "shipped" else None, repo_id)
            for name, (summary, repo_id) in _cases().items()}


@pytest.mark.parametrize("name", sorted(_cases()))
def test_rm_model_card_text_is_unchanged(name, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # relative paths in the summaries name no local folder (hub_repo_id looks)
    assert _cards()[name] == json.loads(GOLDEN.read_text())[name]


if __name__ == "__main__":
    import os
    import tempfile

    os.chdir(tempfile.mkdtemp())
    GOLDEN.write_text(json.dumps(_cards(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {GOLDEN}", file=sys.stderr)
