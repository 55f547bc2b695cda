"""Loading the released layouts and the stochastic latent ``generate`` (issue: latent rollouts)."""

import json

import pytest
import torch
from processes import run_without_this_package
from tiny_models import make_checkpoint, make_tokenizer

import hf_modeling
from hf_modeling import CODIGPT2, COCONUTGPT2, AutoLatentModel, ColarLlama, load_latent_tokenizer

KINDS = ("coconut", "codi", "colar")
QUESTIONS = ["What is 2 plus 3?", "Tom has 7 apples and eats 2. How many are left?"]


def load(folder):
    model = AutoLatentModel.from_pretrained(folder)
    return model, load_latent_tokenizer(folder, model.config)


def encode(tok, model, questions):
    return tok([model.format_prompt(q) for q in questions], return_tensors="pt", padding=True)


# -- loading ------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind,cls", [("coconut", COCONUTGPT2), ("codi", CODIGPT2), ("colar", ColarLlama)])
def test_released_layout_loads(tiny_checkpoints, kind, cls):
    raw = json.loads((tiny_checkpoints[kind] / "config.json").read_text())
    assert raw["model_type"] in ("gpt2", "llama")
    model, tok = load(tiny_checkpoints[kind])
    assert type(model) is cls
    assert model.config.latent_id == tok.convert_tokens_to_ids("<|latent|>")
    # weights really came from the file (not a fresh init)
    from safetensors.torch import load_file

    state = load_file(str(tiny_checkpoints[kind] / "model.safetensors"))
    key = "transformer.wte.weight" if kind != "colar" else "model.embed_tokens.weight"
    assert torch.equal(model.get_input_embeddings().weight, state[key])


def test_latent_ids_read_from_tokenizer_when_config_lacks_them(tmp_path):
    folder = make_checkpoint(tmp_path / "m", "coconut", ids_in_config=False)
    assert "latent_id" not in json.loads((folder / "config.json").read_text())
    model, tok = load(folder)
    assert model.config.latent_start_id == tok.convert_tokens_to_ids("<|start-latent|>")
    assert model.config.latent_end_id == tok.convert_tokens_to_ids("<|end-latent|>")


def test_tokenizer_without_latent_tokens_is_a_clear_error(tmp_path):
    folder = make_checkpoint(tmp_path / "m", "coconut", ids_in_config=False, tokenizer=make_tokenizer(extra_tokens=[]))
    with pytest.raises(ValueError, match="<\\|start-latent\\|>"):
        AutoLatentModel.from_pretrained(folder)


def test_unknown_architecture_and_missing_hub_id(tmp_path):
    folder = make_checkpoint(tmp_path / "m", "coconut")
    raw = json.loads((folder / "config.json").read_text())
    raw["architectures"] = ["GPT2LMHeadModel"]
    (folder / "config.json").write_text(json.dumps(raw))
    with pytest.raises(ValueError, match="Known architectures"):
        AutoLatentModel.from_pretrained(folder)
    with pytest.raises(OSError, match="local copy"):
        AutoLatentModel.from_pretrained("ModalityDance/latent-tts-coconut")


@pytest.mark.parametrize("kind", KINDS)
def test_saved_checkpoint_loads_with_auto_classes(tiny_checkpoints, tmp_path, kind):
    from transformers import AutoModelForCausalLM

    model, tok = load(tiny_checkpoints[kind])
    model.save_pretrained(tmp_path / "saved")
    tok.save_pretrained(tmp_path / "saved")
    saved = json.loads((tmp_path / "saved" / "config.json").read_text())
    name = f"modeling_latent.{type(model).__name__}"
    assert saved["auto_map"]["AutoModelForCausalLM"] == saved["auto_map"]["AutoModel"] == name
    assert (tmp_path / "saved" / "modeling_latent.py").is_file() and (tmp_path / "saved" / "hub.py").is_file()
    again = AutoModelForCausalLM.from_pretrained(tmp_path / "saved")
    assert type(again) is type(model)
    from transformers import AutoModel

    assert type(AutoModel.from_pretrained(tmp_path / "saved")) is type(model)
    # a model card with the Hub's metadata, naming the backbone's prompt format
    from huggingface_hub import ModelCard

    card = ModelCard.load(tmp_path / "saved" / "README.md")
    assert card.data.library_name == "transformers" and card.data.pipeline_tag == "text-generation"
    assert {"latent-reasoning", kind} <= set(card.data.tags)
    assert repr(model.prompt_template) in card.text and "trust_remote_code=True" in card.text
    enc = encode(tok, model, QUESTIONS)
    assert torch.equal(model.generate(**enc, max_new_tokens=4), again.generate(**enc, max_new_tokens=4))
    # the project's own loader reads its own layout too
    assert type(AutoLatentModel.from_pretrained(tmp_path / "saved")) is type(model)


REMOTE_GENERATE = """
import json
import sys
from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer
m = AutoModelForCausalLM.from_pretrained(sys.argv[1], trust_remote_code=True)
assert type(m).__module__.startswith("transformers_modules"), type(m).__module__
bare = AutoModel.from_pretrained(sys.argv[1], trust_remote_code=True)
assert type(bare).__name__ == type(m).__name__ and type(bare).__module__.startswith("transformers_modules")
t = AutoTokenizer.from_pretrained(sys.argv[1], trust_remote_code=True)
t.padding_side = "left"
enc = t(json.loads(sys.argv[2]), return_tensors="pt", padding=True)
print(json.dumps(m.generate(**enc, max_new_tokens=4).tolist()))
"""


def test_saved_checkpoint_loads_with_remote_code_without_this_package(tiny_checkpoints, tmp_path):
    model, tok = load(tiny_checkpoints["coconut"])
    model.save_pretrained(tmp_path / "saved")
    tok.save_pretrained(tmp_path / "saved")
    enc = encode(tok, model, QUESTIONS)
    expected = model.generate(**enc, max_new_tokens=4).tolist()
    prompts = [model.format_prompt(q) for q in QUESTIONS]
    assert run_without_this_package(REMOTE_GENERATE, tmp_path, tmp_path / "saved", json.dumps(prompts)) == expected


# -- the rollout equals a hand-written loop ---------------------------------------------------------
def hand_written_rollout(model, prompt_ids, max_new_tokens):
    """Full recomputation, no cache: forward, take the fed-back vector, append it, repeat."""
    kind = type(model)
    embed = model.get_input_embeddings()
    body = model.model if kind is ColarLlama else model.transformer
    embeds = embed(prompt_ids)[None]
    latents = []
    steps = model.config.max_latent_length if kind is ColarLlama else model.config.latent_length
    for _ in range(steps):
        h = body(inputs_embeds=embeds).last_hidden_state[0, -1]
        if kind is ColarLlama:
            if int(model.lm_head(h).argmax()) == model.config.end_marker_id:
                break
            z = model.lt_head(h) * model.config.latent_embedding_std
        elif kind is CODIGPT2:
            z = model.projector(h)
        else:
            z = h
        latents.append(z)
        embeds = torch.cat([embeds, z[None, None]], dim=1)
    end = model.config.end_marker_id if kind is ColarLlama else model.config.latent_end_id
    token = torch.tensor([end])
    answer = []
    for _ in range(max_new_tokens):
        embeds = torch.cat([embeds, embed(token)[None]], dim=1)
        h = body(inputs_embeds=embeds).last_hidden_state[0, -1]
        token = model.lm_head(h).argmax(-1, keepdim=True)
        answer.append(int(token))
        if int(token) == model.config.eos_token_id:
            break
    return torch.stack(latents) if latents else torch.zeros(0), answer


@pytest.mark.parametrize("kind", KINDS)
@torch.no_grad()
def test_greedy_rollout_equals_hand_written_loop(tiny_checkpoints, kind):
    model, tok = load(tiny_checkpoints[kind])
    model.eval()
    enc = encode(tok, model, QUESTIONS)
    out = model.generate(**enc, max_new_tokens=6, return_dict_in_generate=True)
    for row, question in enumerate(QUESTIONS):
        ids = tok(model.format_prompt(question), return_tensors="pt").input_ids[0]
        latents, answer = hand_written_rollout(model, ids, 6)
        steps = int(out.latent_lengths[row])
        assert steps == len(latents)
        torch.testing.assert_close(out.latents[row, :steps], latents, rtol=1e-4, atol=1e-4)
        got = out.answer_ids[row].tolist()[: len(answer)]
        assert got == answer


@torch.no_grad()
def test_dynamic_latent_length_stops_per_row_and_matches_unbatched(tiny_checkpoints, monkeypatch):
    model, tok = load(tiny_checkpoints["colar"])
    # a stop rule that depends on the hidden state, so rows stop at different steps
    # (chosen for the tiny seed-0 CoLaR: its rows stop after 2, 3, 0 and 2 latent steps)
    monkeypatch.setattr(ColarLlama, "latent_should_stop", lambda self, h: h[:, 5] > h[:, 19])
    questions = QUESTIONS + ["Five?", "A much longer question about numbers: 12 times 12?"]
    out = model.generate(**encode(tok, model, questions), max_new_tokens=5, return_dict_in_generate=True)
    lengths = out.latent_lengths.tolist()
    assert len(set(lengths)) >= 3 and max(lengths) < model.config.max_latent_length, lengths
    for row, question in enumerate(questions):
        alone = model.generate(**encode(tok, model, [question]), max_new_tokens=5, return_dict_in_generate=True)
        steps = int(alone.latent_lengths[0])
        assert int(out.latent_lengths[row]) == steps
        torch.testing.assert_close(out.latents[row, :steps], alone.latents[0, :steps], rtol=1e-4, atol=1e-4)
        assert out.answer_ids[row].tolist()[: alone.answer_ids.shape[1]] == alone.answer_ids[0].tolist()


# -- sampling ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_zero_strength_sampling_equals_sampling_off(tiny_checkpoints, kind):
    model, tok = load(tiny_checkpoints[kind])
    enc = encode(tok, model, QUESTIONS)
    with pytest.warns(UserWarning, match="identical rollouts"):
        off = model.generate(**enc, max_new_tokens=5, num_return_sequences=3, return_dict_in_generate=True)
    for kwargs in ({"latent_sampling": "noise", "noise_std": 0.0}, {"latent_sampling": "dropout", "dropout_p": 0.0}):
        with pytest.warns(UserWarning, match="samples nothing"):
            on = model.generate(**enc, max_new_tokens=5, num_return_sequences=3, seed=1, return_dict_in_generate=True,
                                **kwargs)
        assert torch.equal(on.sequences, off.sequences)
        torch.testing.assert_close(on.latents, off.latents)


@pytest.mark.parametrize("kind", KINDS)
def test_switching_the_mode_of_a_resolved_config_gets_the_typical_strength(tiny_checkpoints, kind):
    """A resolved config (e.g. a checkpoint's dropout settings, or greedy) switched to another mode samples
    with that mode's typical strength; before, the resolved 0 of the inactive mode stuck and sampling was off."""
    from hf_modeling.generation_config import DEFAULT_STRENGTH

    model, _ = load(tiny_checkpoints[kind])
    typical = DEFAULT_STRENGTH.get(model.latent_kind, DEFAULT_STRENGTH["coconut"])
    dropout = model.latent_generation_config(latent_sampling="dropout", dropout_p=0.3)
    noise = model.latent_generation_config(dropout, latent_sampling="noise")
    assert noise.samples and noise.noise_std == typical["noise_std"] and not noise.dropout_p
    greedy = model.latent_generation_config(latent_sampling=None)
    back = model.latent_generation_config(greedy, latent_sampling="dropout")
    assert back.samples and back.dropout_p == typical["dropout_p"] and not back.noise_std


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "kwargs",
    [
        {"latent_sampling": "noise", "noise_std": 0.5},
        {"latent_sampling": "dropout", "dropout_p": 0.2},
        {"latent_sampling": "dropout", "dropout_p": 0.2, "dropout_scope": "latent"},
    ],
)
def test_sampling_gives_distinct_reproducible_trajectories(tiny_checkpoints, kind, kwargs):
    model, tok = load(tiny_checkpoints[kind])
    enc = encode(tok, model, QUESTIONS)
    n = 4
    a = model.generate(**enc, max_new_tokens=4, num_return_sequences=n, seed=7, return_dict_in_generate=True, **kwargs)
    b = model.generate(**enc, max_new_tokens=4, num_return_sequences=n, seed=7, return_dict_in_generate=True, **kwargs)
    c = model.generate(**enc, max_new_tokens=4, num_return_sequences=n, seed=8, return_dict_in_generate=True, **kwargs)
    assert a.latents.shape[0] == len(QUESTIONS) * n
    assert torch.equal(a.sequences, b.sequences) and torch.equal(a.latents, b.latents)
    assert not torch.equal(a.latents, c.latents)
    first_question = a.latents[:n, -1]
    assert torch.cdist(first_question, first_question).fill_diagonal_(1).min() > 0  # all N distinct
    # answer decoding is deterministic: the model is left in eval mode, no dropout hooks remain
    assert not model.training
    assert all(not m._forward_hooks for m in model.modules())


def test_torch_generator_can_replace_seed(tiny_checkpoints):
    model, tok = load(tiny_checkpoints["coconut"])
    enc = encode(tok, model, QUESTIONS)
    kw = dict(latent_sampling="noise", noise_std=1.0, num_return_sequences=2, max_new_tokens=3, return_dict_in_generate=True)
    a = model.generate(**enc, generator=torch.Generator().manual_seed(3), **kw)
    b = model.generate(**enc, generator=torch.Generator().manual_seed(3), **kw)
    c = model.generate(**enc, generator=torch.Generator().manual_seed(4), **kw)
    assert torch.equal(a.latents, b.latents) and not torch.equal(a.latents, c.latents)


def test_noise_is_added_to_every_fed_back_latent(tiny_checkpoints):
    model, tok = load(tiny_checkpoints["coconut"])
    enc = encode(tok, model, QUESTIONS[:1])
    sigma = 3.0
    out = model.generate(**enc, latent_sampling="noise", noise_std=sigma, seed=0, max_new_tokens=2,
                         num_return_sequences=64, return_dict_in_generate=True)
    # the first latent's clean value is shared by all 64 rows; the spread is the noise
    spread = out.latents[:, 0].std(dim=0).mean()
    assert abs(float(spread) - sigma) < 0.4 * sigma


@pytest.mark.parametrize("kind", KINDS)
def test_batching_with_longer_prompts_does_not_change_results(tiny_checkpoints, kind):
    model, tok = load(tiny_checkpoints[kind])
    short = QUESTIONS[0]
    longer = [short, "This is a considerably longer question, padded differently: 123 + 456 - 7?"]
    alone = model.generate(**encode(tok, model, [short]), max_new_tokens=6, return_dict_in_generate=True)
    batched = model.generate(**encode(tok, model, longer), max_new_tokens=6, return_dict_in_generate=True)
    torch.testing.assert_close(batched.latents[0], alone.latents[0], rtol=1e-4, atol=1e-4)
    assert batched.answer_ids[0].tolist()[: alone.answer_ids.shape[1]] == alone.answer_ids[0].tolist()


def test_shared_prompt_runs_the_prompt_once(tiny_checkpoints):
    model, tok = load(tiny_checkpoints["coconut"])
    enc = encode(tok, model, QUESTIONS)
    rows = []
    hook = model.transformer.register_forward_pre_hook(
        lambda mod, args, kwargs: rows.append(kwargs["input_ids"].shape[0]) if kwargs.get("input_ids") is not None else None,
        with_kwargs=True,
    )
    try:
        model.generate(**enc, latent_sampling="noise", noise_std=0.5, num_return_sequences=16, seed=0, max_new_tokens=2)
        assert rows == [2]  # prompt pass on 2 rows, not 32
        rows.clear()
        model.generate(**enc, latent_sampling="dropout", dropout_p=0.1, num_return_sequences=16, seed=0, max_new_tokens=2)
        assert rows == [32]  # dropout on the prompt: each sample needs its own prompt pass
    finally:
        hook.remove()


def test_latent_head_not_computed_at_latent_steps_for_fixed_length(tiny_checkpoints):
    model, tok = load(tiny_checkpoints["coconut"])
    calls = []
    hook = model.lm_head.register_forward_hook(lambda *a: calls.append(1))
    try:
        out = model.generate(**encode(tok, model, QUESTIONS), max_new_tokens=3, return_dict_in_generate=True)
    finally:
        hook.remove()
    assert len(calls) == out.answer_ids.shape[1]  # only answer tokens use the LM head


# -- bad input ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"num_return_sequences": 0}, "num_return_sequences"),
        ({"latent_sampling": "dropout", "dropout_p": 1.0}, "dropout_p"),
        ({"latent_sampling": "dropout", "dropout_p": -0.1}, "dropout_p"),
        ({"latent_sampling": "noise", "noise_std": -1.0}, "noise_std"),
        ({"latent_sampling": "noise", "noise_std": float("nan")}, "noise_std"),
        ({"latent_sampling": "noise", "noise_std": float("inf")}, "noise_std"),
        ({"latent_sampling": "gumbel"}, "latent_sampling"),
        ({"noise_std": 0.5}, "latent_sampling='noise'"),
        ({"dropout_scope": "prompt"}, "dropout_scope"),
        ({"temperature": 0.7}, "unexpected generation settings .*temperature"),
    ],
)
def test_bad_sampling_arguments(tiny_checkpoints, kwargs, match):
    model, tok = load(tiny_checkpoints["coconut"])
    with pytest.raises((ValueError, TypeError), match=match):
        model.generate(**encode(tok, model, QUESTIONS), max_new_tokens=2, **kwargs)


def test_prompt_without_start_marker(tiny_checkpoints):
    model, tok = load(tiny_checkpoints["coconut"])
    enc = tok(["What is 2 plus 3?"], return_tensors="pt")
    with pytest.raises(ValueError, match="start marker"):
        model.generate(**enc)


def test_right_padding_is_refused(tiny_checkpoints):
    model, tok = load(tiny_checkpoints["coconut"])
    tok.padding_side = "right"
    with pytest.raises(ValueError, match="left padded"):
        model.generate(**encode(tok, model, QUESTIONS))


def test_prompt_longer_than_context(tiny_checkpoints):
    model, tok = load(tiny_checkpoints["coconut"])
    with pytest.raises(ValueError, match="context window"):
        model.generate(**encode(tok, model, ["x" * 300]))
    # an answer budget that does not fit is shortened, with a logged warning
    enc = encode(tok, model, ["y" * 200])
    with pytest.warns(UserWarning, match="does not fit"):
        out = model.generate(**enc, max_new_tokens=100, return_dict_in_generate=True)
    assert out.sequences.shape[1] <= model.config.n_positions


def test_context_window_check_is_one_rule_for_generate_and_the_harness(tiny_checkpoints):
    """A prompt that leaves no room for one answer token is refused by ``generate`` and by the harness alike
    (``context_room``).  Before, the harness refused it (``+2``) while ``generate`` (``+1``) returned an empty
    answer for it; one token shorter, both answer."""
    from lm_eval_latenttts.scaling.engine import DocError, Engine, Job

    model, tok = load(tiny_checkpoints["coconut"])
    config = model.latent_generation_config()
    steps, limit = model.latent_steps_of(config), model.max_context_length()
    harness = Engine(model, tok)
    setting = harness.plan(config)
    for length, fits in ((limit - steps - 1, False), (limit - steps - 2, True)):
        ids = torch.full((1, length), tok.convert_tokens_to_ids("x"), dtype=torch.long)
        ids[0, -1] = model.start_marker_id()
        job = Job(0, ids[0].tolist(), setting, question="x")
        if fits:
            out = model.generate(ids, max_new_tokens=3, return_dict_in_generate=True)
            assert out.answer_ids.shape[1] >= 1
            harness.check(job)
        else:
            with pytest.raises(ValueError, match="no room for an answer"):
                model.generate(ids, max_new_tokens=3)
            with pytest.raises(DocError, match="no room for an answer"):
                harness.check(job)


def test_backbone_without_dropout_sites(tiny_checkpoints, monkeypatch):
    model, tok = load(tiny_checkpoints["coconut"])
    monkeypatch.setattr(COCONUTGPT2, "dropout_sites", lambda self: [])
    with pytest.raises(ValueError, match="no dropout sites"):
        model.generate(**encode(tok, model, QUESTIONS), latent_sampling="dropout", dropout_p=0.1)


def test_config_without_latent_ids(tiny_checkpoints):
    from transformers import GPT2Config

    config = hf_modeling.CoconutConfig(**{k: v for k, v in GPT2Config(n_layer=1, n_embd=16, n_head=2).to_dict().items() if k != "model_type"})
    model = COCONUTGPT2(config)
    with pytest.raises(ValueError, match="latent_id"):
        model.generate(torch.tensor([[1, 2, 3]]))


# SPEC's prompt formats, written out independently of the models' templates
SPEC_PROMPTS = {
    "coconut": "What is 2+3?\n<|start-latent|>",
    "codi": "What is 2+3?<|start-latent|>",
    "colar": "Question: What is 2+3? Let's think step by step:(Thinking speed: 2)###",
}


@pytest.mark.parametrize("kind", KINDS)
def test_format_prompt_follows_spec(tiny_checkpoints, kind):
    model, tok = load(tiny_checkpoints[kind])
    assert model.format_prompt("What is 2+3?") == SPEC_PROMPTS[kind]
    assert tok(model.format_prompt("Q?")).input_ids[-1] == model.start_marker_id()
