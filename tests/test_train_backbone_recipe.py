"""The backbone training recipe runs a few steps and writes the released COCONUT layout."""

import json
import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from lm_eval_latenttts.training.recipes import train_backbone as tb  # noqa: E402

ARGS = ["--small", "--no-progress", "--threads", "1", "--n-eval", "8", "--ckpt-every", "2"]


def _check_layout(out):
    import torch
    from transformers import AutoTokenizer, GPT2LMHeadModel

    with open(os.path.join(out, "config.json")) as f:
        cfg = json.load(f)
    assert cfg["model_type"] == "gpt2" and cfg["architectures"] == ["COCONUTGPT2"]
    assert cfg["latent_length"] == 2
    tok = AutoTokenizer.from_pretrained(out)
    for field, name in [("latent_id", "<|latent|>"), ("latent_start_id", "<|start-latent|>"),
                        ("latent_end_id", "<|end-latent|>"), ("target_id", ">>")]:
        assert cfg[field] == tok.convert_tokens_to_ids(name)
        assert cfg[field] != tok.unk_token_id
    assert cfg["eos_token_id"] == cfg["pad_token_id"] == tok.eos_token_id == tok.pad_token_id
    # tokenizer round-trips task text and does not crash on arbitrary text
    text = "Start at 47, plus 8, then times 3. Answer mod 100?\n<|start-latent|><|latent|><|end-latent|>### 65"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == text
    assert cfg["latent_start_id"] in ids and cfg["latent_end_id"] in ids
    assert tok("Ünïcode, tabs\tand zebra 日本")["input_ids"]
    model = GPT2LMHeadModel.from_pretrained(out)
    assert model.config.n_embd == 32
    from safetensors import safe_open
    with safe_open(os.path.join(out, "model.safetensors"), "pt") as f:
        keys = set(f.keys())
    assert "transformer.wte.weight" in keys and "transformer.h.0.attn.c_attn.weight" in keys
    with torch.no_grad():
        out_ = model(torch.tensor([ids]))
    assert out_.logits.shape == (1, len(ids), len(tok))


def test_recipe_few_steps(tmp_path):
    out = str(tmp_path / "ckpt")
    tb.main(ARGS + ["--out", out, "--max-steps", "4"])
    _check_layout(out)
    assert not os.path.exists(os.path.join(out, "train_state.pt"))
    with open(os.path.join(out, "training_info.json")) as f:
        info = json.load(f)
    assert info["step"] == 4 and info["complete"]


def test_recipe_resume(tmp_path):
    out = str(tmp_path / "ckpt")
    tb.main(ARGS + ["--out", out, "--max-steps", "4", "--max-minutes", "0"])  # stops at once
    assert os.path.exists(os.path.join(out, "train_state.pt"))
    tb.main(ARGS + ["--out", out, "--max-steps", "4", "--resume"])
    with open(os.path.join(out, "training_info.json")) as f:
        assert json.load(f)["step"] == 4
    _check_layout(out)


def test_evaluation_uses_the_project_rollout_with_shared_weights(tmp_path, monkeypatch):
    from lm_eval_latenttts import aggregation

    tok = tb.build_tokenizer()
    model = tb.build_model(tok, 1, 16, 2, 0.1, 0)
    latent = tb.as_latent_model(model, tok, 2)
    assert latent.transformer is model.transformer and latent.lm_head is model.lm_head
    exs = [{"question": "Start at 47, plus 8, then times 3. Answer mod 100?", "answer": "65"},
           {"question": "hi", "answer": "1"}]  # unequal lengths: left padding
    # by hand: the greedy latent rollout of each question alone, dropout off
    model.eval()
    expected = []
    for e in exs:
        enc = tok([latent.format_prompt(e["question"])], return_tensors="pt", add_special_tokens=False)
        ids = latent.generate(**enc, max_new_tokens=3, return_dict_in_generate=True).answer_ids
        expected.append(tok.batch_decode(ids, skip_special_tokens=True)[0])
    model.train()
    # a random model answers nothing right: let the first example's answer count as right, the second's not
    seen = []
    monkeypatch.setattr(aggregation, "extract_answer", lambda text, backbone: seen.append((text, backbone)) or text)
    monkeypatch.setattr(aggregation, "answers_equal", lambda pred, gold: gold == "65")
    acc = tb.evaluate(model, tok, exs, 2, max_new_tokens=3)
    assert seen == [(text, "coconut") for text in expected]  # it scores exactly those decodes
    assert acc == 0.5
    assert model.training  # training mode restored


def test_help_documents_options(capsys):
    with pytest.raises(SystemExit):
        tb.main(["--help"])
    text = capsys.readouterr().out
    for opt in ("--out", "--resume", "--max-minutes", "--max-steps", "--small", "--seed",
                "--stage-steps", "--latents-per-step", "--resid-pdrop", "--latent-noise"):
        assert opt in text


SHIPPED = os.path.join(os.path.dirname(tb.__file__), "..", "checkpoints", "arith-coconut")


@pytest.mark.skipif(not os.path.exists(os.path.join(SHIPPED, "model.safetensors")),
                    reason="shipped checkpoint not present")
def test_shipped_checkpoint_latent_accuracy():
    from transformers import AutoTokenizer, GPT2LMHeadModel

    from lm_eval_latenttts.data import arith

    size = sum(os.path.getsize(os.path.join(SHIPPED, f)) for f in os.listdir(SHIPPED))
    assert size < 15 * 2 ** 20
    assert not os.path.exists(os.path.join(SHIPPED, "train_state.pt"))
    with open(os.path.join(SHIPPED, "config.json")) as f:
        cfg = json.load(f)
    assert cfg["architectures"] == ["COCONUTGPT2"] and cfg["latent_length"] == 2
    tok = AutoTokenizer.from_pretrained(SHIPPED)
    model = GPT2LMHeadModel.from_pretrained(SHIPPED).eval()
    acc = tb.evaluate(model, tok, arith.load_split("test")[:100], cfg["latent_length"])
    assert 0.30 <= acc <= 0.85, acc
