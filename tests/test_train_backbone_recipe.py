"""The backbone training recipe runs a few steps and writes the released COCONUT layout."""

import json
import os

import pytest
from crafted_pickle import Payload

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


def test_time_limited_run_resumes_to_the_uninterrupted_weights(tmp_path):
    """A --max-minutes stop exports the model before saving the resumable state: the export must not draw from
    torch's generator, or the resumed run trains on other dropout masks than the uninterrupted one."""
    from safetensors.torch import load_file

    whole, out = str(tmp_path / "whole"), str(tmp_path / "ckpt")
    tb.main(ARGS + ["--out", whole, "--max-steps", "4"])
    tb.main(ARGS + ["--out", out, "--max-steps", "4", "--max-minutes", "0"])  # stops at once
    assert os.path.exists(os.path.join(out, "train_state.pt"))
    tb.main(ARGS + ["--out", out, "--max-steps", "4", "--resume"])
    with open(os.path.join(out, "training_info.json")) as f:
        assert json.load(f)["step"] == 4
    _check_layout(out)
    a, b = load_file(os.path.join(whole, "model.safetensors")), load_file(os.path.join(out, "model.safetensors"))
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)


def test_evaluation_scores_the_greedy_rollouts(monkeypatch):
    from lm_eval_latenttts.scaling.rollouts import decode_answers

    tok = tb.build_tokenizer()
    model = tb.build_model(tok, 1, 16, 2, 0.1, 0, latent_length=2)  # the recipe trains the project's COCONUTGPT2
    exs = [{"question": "Start at 47, plus 8, then times 3. Answer mod 100?", "answer": "65"},
           {"question": "hi", "answer": "1"}]  # unequal lengths: left padding
    # by hand: the greedy latent rollout of each question alone, dropout off
    model.eval()
    expected = []
    for e in exs:
        enc = tok([model.format_prompt(e["question"])], return_tensors="pt", add_special_tokens=False)
        ids = model.generate(**enc, latent_sampling=None, num_return_sequences=1, max_new_tokens=3,
                             return_dict_in_generate=True).answer_ids
        expected.append(decode_answers(tok, ids)[0])
    model.train()
    # a random model answers nothing right: let the first example's answer count as right, the second's not
    seen = []
    monkeypatch.setattr(type(model), "is_correct", lambda self, text, gold: seen.append(text) or gold == "65")
    acc = tb.evaluate(model, tok, exs, 2, max_new_tokens=3)
    assert seen == expected  # it scores exactly those decodes
    assert acc == 0.5
    assert model.training  # training mode restored


def test_training_loss_is_the_models_own_latent_forward():
    """The recipe has no private latent loop: its loss equals a hand-written teacher-forced loop."""
    import torch
    from transformers import DynamicCache

    from lm_eval_latenttts.data import arith

    tok = tb.build_tokenizer()
    model = tb.build_model(tok, 2, 32, 2, 0.0, 0, latent_length=2).eval()
    examples = arith.make_splits(seed=0, n_train=4)["train"]
    for stage in (0, 1, 2):
        loss = tb.train_loss(model, tok, examples, stage, 1, 0.0)
        # by hand: prompt pass, `stage` fed-back hidden states, then the rest of the chain with the LM loss
        input_ids, mask, labels = tb.encode_batch(tok, examples, stage, stage)
        prompts = [e["question"] + "\n" + tb.START_LATENT for e in examples]
        prompt_len = tok(prompts, padding=True, return_tensors="pt", add_special_tokens=False).input_ids.shape[1]
        body = model.transformer
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = DynamicCache(config=model.config)
        h = body(input_ids=input_ids[:, :prompt_len], attention_mask=mask[:, :prompt_len],
                 position_ids=pos[:, :prompt_len], cache=cache, use_cache=True).last_hidden_state
        hidden = [h]
        for k in range(stage):
            col = prompt_len + k
            h = body(inputs_embeds=h[:, -1:], attention_mask=mask[:, : col + 1], position_ids=pos[:, col: col + 1],
                     cache=cache, use_cache=True).last_hidden_state
            hidden.append(h)
        rest = prompt_len + stage
        hidden.append(body(input_ids=input_ids[:, rest:], attention_mask=mask, position_ids=pos[:, rest:],
                           cache=cache, use_cache=True).last_hidden_state)
        logits = model.lm_head(torch.cat(hidden, 1))
        expected = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]),
                                                     labels[:, 1:].reshape(-1), ignore_index=-100)
        torch.testing.assert_close(loss, expected)


def test_help_documents_options(capsys):
    with pytest.raises(SystemExit):
        tb.main(["--help"])
    text = capsys.readouterr().out
    for opt in ("--out", "--resume", "--max-minutes", "--max-steps", "--small", "--seed",
                "--stage-steps", "--latents-per-step", "--resid-pdrop", "--latent-noise"):
        assert opt in text


SHIPPED = str(__import__("lm_eval_latenttts.checkpoints", fromlist=["DEFAULT_MODEL_DIR"]).DEFAULT_MODEL_DIR)


@pytest.mark.skipif(not os.path.exists(os.path.join(SHIPPED, "model.safetensors")),
                    reason="shipped checkpoint not present")
def test_shipped_checkpoint_latent_accuracy():
    from hf_modeling import AutoLatentModel, load_latent_tokenizer
    from lm_eval_latenttts.data import arith

    size = sum(os.path.getsize(os.path.join(SHIPPED, f)) for f in os.listdir(SHIPPED))
    assert size < 15 * 2 ** 20
    assert not os.path.exists(os.path.join(SHIPPED, "train_state.pt"))
    with open(os.path.join(SHIPPED, "config.json")) as f:
        cfg = json.load(f)
    assert cfg["architectures"] == ["COCONUTGPT2"] and cfg["latent_length"] == 2
    model = AutoLatentModel.from_pretrained(SHIPPED).eval()
    tok = load_latent_tokenizer(SHIPPED, model.config)
    acc = tb.evaluate(model, tok, arith.load_split("test")[:100], cfg["latent_length"])
    assert acc == 0.75, acc  # greedy latent decoding of the shipped model: 75 of the first 100 test questions


def _interrupted_at(monkeypatch, step):
    """Make the recipe die (as a kill would) when it reaches optimizer step ``step``."""
    real = tb.Run.train_step

    def train_step(self):
        if self.step == step:
            raise KeyboardInterrupt
        return real(self)

    monkeypatch.setattr(tb.Run, "train_step", train_step)


def test_killed_run_resumes_to_the_uninterrupted_weights(tmp_path, monkeypatch):
    from safetensors.torch import load_file

    whole, killed = str(tmp_path / "whole"), str(tmp_path / "killed")
    tb.main(ARGS + ["--out", whole, "--max-steps", "6"])
    with monkeypatch.context() as m:
        _interrupted_at(m, 5)
        with pytest.raises(KeyboardInterrupt):
            tb.main(ARGS + ["--out", killed, "--max-steps", "6"])
    assert os.path.exists(os.path.join(killed, "train_state.pt"))  # the checkpoint of step 4 (--ckpt-every 2)
    tb.main(ARGS + ["--out", killed, "--max-steps", "6", "--resume", "--threads", "1", "--max-minutes", "60"])
    a, b = load_file(os.path.join(whole, "model.safetensors")), load_file(os.path.join(killed, "model.safetensors"))
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)
    with open(os.path.join(whole, "training_info.json")) as f, open(os.path.join(killed, "training_info.json")) as g:
        assert [h["loss"] for h in json.load(f)["history"]] == [h["loss"] for h in json.load(g)["history"]]


def test_resume_refuses_changed_settings_and_names_them(tmp_path):
    out = str(tmp_path / "ckpt")
    tb.main(ARGS + ["--out", out, "--max-steps", "4", "--max-minutes", "0"])  # stops at once, resumable
    state = open(os.path.join(out, "train_state.pt"), "rb").read()
    with pytest.raises(SystemExit) as err:
        tb.main(ARGS + ["--out", out, "--max-steps", "4", "--resume", "--lr", "0.002", "--seed", "1",
                        "--resid-pdrop", "0.2"])
    message = str(err.value)
    for change in ("lr: was 0.001, now 0.002", "seed: was 0, now 1", "resid_pdrop: was 0.1, now 0.2"):
        assert change in message, message
    assert "same arguments" in message and out in message
    assert open(os.path.join(out, "train_state.pt"), "rb").read() == state  # the run is left as it was
    # a fresh start would discard the unfinished run: refused too
    with pytest.raises(SystemExit, match="unfinished training run: pass --resume"):
        tb.main(ARGS + ["--out", out, "--max-steps", "4"])
    tb.main(ARGS + ["--out", out, "--max-steps", "4", "--resume"])  # the same settings resume
    with open(os.path.join(out, "training_info.json")) as f:
        info = json.load(f)
    assert info["step"] == 4 and info["args"]["lr"] == 0.001 and info["args"]["seed"] == 0



def test_resume_never_unpickles_a_crafted_state(tmp_path):
    import torch

    out, marker = tmp_path / "ckpt", tmp_path / "payload-ran"
    out.mkdir()
    torch.save({"model": Payload(marker), "step": 0}, out / "train_state.pt")
    with pytest.raises(SystemExit) as err:
        tb.main(ARGS + ["--out", str(out), "--max-steps", "4", "--resume"])
    assert not marker.exists()
    assert str(out / "train_state.pt") in str(err.value) and "tensors and plain data" in str(err.value)


def test_out_naming_a_file_is_a_clear_error(tmp_path):
    path = tmp_path / "model.txt"
    path.write_text("not a folder")
    with pytest.raises(SystemExit, match=f"--out {path} is an existing file, not a folder"):
        tb.main(ARGS + ["--out", str(path), "--max-steps", "2"])
    assert path.read_text() == "not a folder"


def test_out_holding_another_model_is_refused_and_its_own_output_is_regenerated(tmp_path):
    from tiny_models import make_checkpoint

    other = make_checkpoint(tmp_path / "rm-or-other", "coconut")
    before = {p.name: p.read_bytes() for p in other.iterdir() if p.is_file()}
    with pytest.raises(SystemExit, match=f"--out {other} holds another model \\(config.json, model.safetensors"):
        tb.main(ARGS + ["--out", str(other), "--max-steps", "2"])
    assert {p.name: p.read_bytes() for p in other.iterdir() if p.is_file()} == before
    out = str(tmp_path / "ckpt")  # the recipe's own finished run: trained again with its own settings only
    tb.main(ARGS + ["--out", out, "--max-steps", "2"])
    weights = open(os.path.join(out, "model.safetensors"), "rb").read()
    tb.main(ARGS + ["--out", out, "--max-steps", "2"])
    assert open(os.path.join(out, "model.safetensors"), "rb").read() == weights
    with pytest.raises(SystemExit, match=f"--out {out} holds a finished run of this recipe with other settings "
                                         "\\(max_steps: was 2, now 4"):
        tb.main(ARGS + ["--out", out, "--max-steps", "4"])
    assert open(os.path.join(out, "model.safetensors"), "rb").read() == weights
