import json

import pytest
import torch
from transformers import AutoModel, AutoModelForTokenClassification, GPT2Config, GPT2ForTokenClassification

import hf_modeling
from hf_modeling import AutoLatentModel, load_latent_tokenizer
from hf_modeling.configuration_latent_rm import LatentRMGPT2Config, LatentRMLlamaConfig
from hf_modeling.latent_state import ghost_questions
from hf_modeling.modeling_latent_rm import (
    COCONUTGPT2ForTokenClassification,
    LatentRMLlamaForTokenClassification,
    reduce_step_scores,
)
from processes import run_without_this_package
from tiny_models import LATENT_TOKENS, make_checkpoint, make_tokenizer


def make_rm_checkpoint(folder, hidden=32, n_layer=2, tokenizer=None, seed=1, ids_in_config=False):
    """The released RM layout: a GPT2ForTokenClassification (num_labels=1) with architectures renamed."""
    tok = tokenizer if tokenizer is not None else make_tokenizer()
    torch.manual_seed(seed)
    eos = tok.eos_token_id
    config = GPT2Config(
        vocab_size=len(tok), n_positions=256, n_embd=hidden, n_layer=n_layer, n_head=2, num_labels=1,
        bos_token_id=eos, eos_token_id=eos, pad_token_id=eos,
    )
    model = GPT2ForTokenClassification(config)
    with torch.no_grad():
        model.classifier.bias.fill_(0.25)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    raw = json.loads((folder / "config.json").read_text())
    raw["architectures"] = ["COCONUTGPT2ForTokenClassification"]
    raw["transformers_version"] = "4.52.4"
    if ids_in_config:
        for field, text in zip(("latent_start_id", "latent_id", "latent_end_id"), LATENT_TOKENS):
            raw[field] = tok.convert_tokens_to_ids(text)
    (folder / "config.json").write_text(json.dumps(raw))
    return model


@pytest.fixture(scope="module")
def coconut(tmp_path_factory):
    root = tmp_path_factory.mktemp("rm")
    backbone_dir = make_checkpoint(root / "coconut", "coconut")
    rm_dir = root / "rm"
    original = make_rm_checkpoint(rm_dir)
    backbone = AutoLatentModel.from_pretrained(backbone_dir).eval()
    rm = AutoLatentModel.from_pretrained(rm_dir).eval()
    tok = load_latent_tokenizer(backbone_dir, backbone.config)
    return dict(root=root, backbone=backbone, rm=rm, tok=tok, original=original, rm_dir=rm_dir)


def rollouts(kind, model, tok, n=3, **kw):
    prompts = [model.format_prompt(q) for q in ("1+2=?", "What is twelve times three, approximately?")]
    enc = tok(prompts, return_tensors="pt", padding=True)
    kw.setdefault("latent_sampling", "noise")
    kw.setdefault("noise_std", 0.5)
    return model.generate(
        enc.input_ids, enc.attention_mask, num_return_sequences=n, seed=0, max_new_tokens=4,
        return_dict_in_generate=True, **kw,
    )


def naive_step_scores(rm, out):
    """Full forward per row over prompt + latent slots (no cache sharing)."""
    p, steps = out.prompt_length, out.latents.shape[1]
    ids = out.sequences[:, : p + steps]
    mask = out.attention_mask[:, : p + steps]
    positions = (mask.long().cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        logits = rm(input_ids=ids, attention_mask=mask, position_ids=positions, latents=out.latents).logits[..., 0]
    return logits[:, p : p + steps]


def test_released_layout_loads(coconut):
    rm = coconut["rm"]
    assert isinstance(rm, COCONUTGPT2ForTokenClassification)
    assert isinstance(rm.config, LatentRMGPT2Config) and rm.config.num_labels == 1
    assert torch.equal(rm.classifier.weight, coconut["original"].classifier.weight)
    assert torch.equal(rm.transformer.h[0].mlp.c_fc.weight, coconut["original"].transformer.h[0].mlp.c_fc.weight)
    # latent ids were not in config.json: read from the tokenizer
    assert rm.config.latent_id == coconut["tok"].convert_tokens_to_ids("<|latent|>")
    rm.check_backbone(coconut["backbone"])


def test_score_rollouts_matches_full_forward_and_shares_prompt(coconut):
    rm, backbone, tok = coconut["rm"], coconut["backbone"], coconut["tok"]
    out = rollouts("coconut", backbone, tok, n=3)
    seen = []
    handle = rm.transformer.wte.register_forward_hook(lambda m, i, o: seen.append(tuple(i[0].shape)))
    try:
        scores = rm.score_rollouts(out)
    finally:
        handle.remove()
    # prompt pass once per question (2 rows of prompt_length, plus the ghost copies that keep small batches
    # on the batch-invariant kernels), no other token embedding lookups
    assert seen == [(2 + ghost_questions(2, 3), out.prompt_length)]
    assert scores.step_scores.shape == (6, 6)
    expected = naive_step_scores(rm, out)
    torch.testing.assert_close(scores.step_scores, expected, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(scores.trajectory_scores, expected.sum(-1), atol=1e-4, rtol=1e-4)
    # samples differ, so do their scores
    assert not torch.allclose(scores.trajectory_scores[0], scores.trajectory_scores[1])
    for reduction, fn in (("min", lambda s: s.min(-1).values), ("last", lambda s: s[:, -1]), ("mean", lambda s: s.mean(-1))):
        torch.testing.assert_close(rm.score_rollouts(out, reduction=reduction).trajectory_scores, fn(expected), atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="reduction"):
        rm.score_rollouts(out, reduction="max")


def test_score_rollouts_unshared_prompts_same_result(coconut):
    rm, backbone, tok = coconut["rm"], coconut["backbone"], coconut["tok"]
    out = rollouts("coconut", backbone, tok, n=2)
    shared = rm.score_rollouts(out).step_scores
    unshared = rm.score_rollouts(out, num_return_sequences=1).step_scores
    torch.testing.assert_close(shared, unshared, atol=1e-4, rtol=1e-4)


def test_reduce_step_scores_respects_mask():
    s = torch.tensor([[1.0, -2.0, 5.0], [3.0, 4.0, 100.0], [7.0, 7.0, 7.0]])
    m = torch.tensor([[True, True, True], [True, True, False], [False, False, False]])
    assert reduce_step_scores(s, m, "sum").tolist() == [4.0, 7.0, 0.0]
    assert reduce_step_scores(s, m, "min").tolist() == [-2.0, 3.0, 0.0]
    assert reduce_step_scores(s, m, "last").tolist() == [5.0, 4.0, 0.0]
    assert reduce_step_scores(s, m, "mean").tolist() == pytest.approx([4.0 / 3, 3.5, 0.0])


def test_llama_rm_with_dynamic_colar(tmp_path):
    tok = make_tokenizer(colar=True)
    tok.padding_side = "left"
    backbone = AutoLatentModel.from_pretrained(make_checkpoint(tmp_path / "colar", "colar", tokenizer=tok)).eval()
    # a random CoLaR never emits "###"; stop on a feature of the hidden state so that row lengths vary
    backbone.latent_should_stop = lambda h: h[:, 0] > 1.0
    torch.manual_seed(3)
    config = LatentRMLlamaConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=2, max_position_embeddings=256, latent_id=backbone.config.latent_id,
        end_marker_id=backbone.config.end_marker_id, pad_token_id=tok.eos_token_id,
    )
    rm = LatentRMLlamaForTokenClassification(config).eval()
    rm.check_backbone(backbone)
    out = rollouts("colar", backbone, tok, n=4, noise_std=2.0, latent_length=8)
    scores = rm.score_rollouts(out)
    lengths = out.latent_lengths
    assert len(set(lengths.tolist())) > 2 and int(lengths.min()) < 8  # some steps are masked
    assert torch.equal(scores.step_mask.sum(-1), lengths)
    assert bool((scores.step_scores[~scores.step_mask] == 0).all())
    expected = naive_step_scores(rm, out)
    masked = torch.where(scores.step_mask, expected, torch.zeros_like(expected))
    torch.testing.assert_close(scores.step_scores, masked, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(scores.trajectory_scores, masked.sum(-1), atol=1e-4, rtol=1e-4)
    # save/load round trip through the transformers Auto class
    rm.save_pretrained(tmp_path / "llama_rm")
    again = AutoModelForTokenClassification.from_pretrained(tmp_path / "llama_rm").eval()
    assert isinstance(again, LatentRMLlamaForTokenClassification)
    torch.testing.assert_close(again.score_rollouts(out).step_scores, scores.step_scores)


def test_mismatched_rm_errors(coconut, tmp_path):
    backbone, tok = coconut["backbone"], coconut["tok"]
    small = COCONUTGPT2ForTokenClassification(
        LatentRMGPT2Config(vocab_size=len(tok), n_embd=16, n_layer=1, n_head=2, n_positions=256)
    )
    out = rollouts("coconut", backbone, tok, n=2)
    with pytest.raises(ValueError, match=r"hidden size 16 does not match .* latent size 32"):
        small.score_rollouts(out)
    with pytest.raises(ValueError, match=r"hidden size 16 does not match .*latent size 32"):
        small.check_backbone(backbone)
    other = COCONUTGPT2ForTokenClassification(
        LatentRMGPT2Config(vocab_size=len(tok), n_embd=32, n_layer=1, n_head=2, n_positions=256, latent_id=7)
    )
    with pytest.raises(ValueError, match=r"latent_id=7 does not match"):
        other.check_backbone(backbone)
    with pytest.raises(ValueError, match=r"latent slots hold token id \d+ but the LatentRM's latent_id is 7"):
        other.score_rollouts(out)
    tiny_vocab = COCONUTGPT2ForTokenClassification(LatentRMGPT2Config(vocab_size=10, n_embd=32, n_layer=1, n_head=2))
    with pytest.raises(ValueError, match="outside the LatentRM's vocabulary of 10"):
        tiny_vocab.score_rollouts(out)


REMOTE_RM = """
import json
import sys
import torch
from transformers import AutoModel, AutoModelForTokenClassification
folder = sys.argv[1]
a = AutoModel.from_pretrained(folder, trust_remote_code=True)
b = AutoModelForTokenClassification.from_pretrained(folder, trust_remote_code=True)
assert type(a).__name__ == type(b).__name__ == "COCONUTGPT2ForTokenClassification", (type(a), type(b))
assert type(a).__module__.startswith("transformers_modules"), type(a).__module__
lat = torch.load(sys.argv[2])
state = a.rm_prefill(lat["prompt"], lat["mask"])
print(json.dumps(a.rm_step(state, lat["latents"]).tolist()))
"""


def test_trust_remote_code_without_package(coconut, tmp_path):
    rm = coconut["rm"]
    rm.save_pretrained(tmp_path / "saved")
    raw = json.loads((tmp_path / "saved" / "config.json").read_text())
    assert raw["model_type"] == "latent_rm_gpt2"
    assert raw["auto_map"]["AutoModel"].endswith("modeling_latent_rm.COCONUTGPT2ForTokenClassification")
    assert raw["auto_map"]["AutoModelForTokenClassification"] == raw["auto_map"]["AutoModel"]
    for name in ("modeling_latent_rm.py", "configuration_latent_rm.py", "latent_state.py"):
        assert (tmp_path / "saved" / name).is_file()
    torch.manual_seed(0)
    inputs = dict(prompt=torch.randint(0, 200, (2, 5)), mask=torch.ones(2, 5, dtype=torch.long), latents=torch.randn(2, 3, 32))
    torch.save(inputs, tmp_path / "inputs.pt")
    remote = torch.tensor(run_without_this_package(REMOTE_RM, tmp_path, tmp_path / "saved", tmp_path / "inputs.pt"))
    state = rm.rm_prefill(inputs["prompt"], inputs["mask"])
    torch.testing.assert_close(remote, rm.rm_step(state, inputs["latents"]), atol=1e-5, rtol=1e-5)
    # and the saved folder loads with this package's AutoLatentModel too
    again = AutoLatentModel.from_pretrained(tmp_path / "saved")
    assert isinstance(again, COCONUTGPT2ForTokenClassification)
    assert isinstance(AutoModel.from_pretrained(tmp_path / "saved"), COCONUTGPT2ForTokenClassification)


def test_labels_are_refused_rather_than_trained_on_a_one_class_loss():
    """The parents' token-classification loss with one output is a one-class cross-entropy: 0 for any integer
    labels (training would silently learn nothing). Both RMs refuse labels and say what to do."""
    gpt2 = COCONUTGPT2ForTokenClassification(LatentRMGPT2Config(
        vocab_size=40, n_embd=16, n_layer=1, n_head=2, n_positions=64, latent_id=37, pad_token_id=0))
    llama = LatentRMLlamaForTokenClassification(LatentRMLlamaConfig(
        vocab_size=40, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=2, max_position_embeddings=64, latent_id=37, pad_token_id=0))
    ids = torch.randint(1, 30, (2, 5))
    for rm in (gpt2, llama):
        assert rm(input_ids=ids).logits.shape == (2, 5, 1)
        with pytest.raises(ValueError, match="no built-in loss"):
            rm(input_ids=ids, labels=torch.ones(2, 5, dtype=torch.long))
