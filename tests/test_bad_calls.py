"""Wrong calls get a one-line error that says what was expected; settings that sample nothing are warned about."""

import json
import logging
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_lm_eval_plugin import make_rm, rigged_checkpoint  # noqa: E402
from tiny_models import make_checkpoint  # noqa: E402

from hf_modeling import AutoLatentModel, load_latent_tokenizer  # noqa: E402
from lm_eval_latenttts.harness.model import LatentTTSModel  # noqa: E402
from lm_eval_latenttts.harness.arguments import LatentTTSArgumentError  # noqa: E402


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("calls")
    folder = make_checkpoint(root / "coconut", kind="coconut")
    model = AutoLatentModel.from_pretrained(folder)
    tok = load_latent_tokenizer(folder, model.config)
    rm = AutoLatentModel.from_pretrained(make_rm(root / "rm"))
    return {"folder": folder, "model": model, "tok": tok, "rm": rm, "codi": rigged_checkpoint(root / "codi"),
            "enc": tok([model.format_prompt("What is 2 plus 3?")], return_tensors="pt")}


@pytest.mark.parametrize("value", [2.5, -5, 0, True, "8"])
def test_max_new_tokens_must_be_a_positive_integer(tiny, value):
    with pytest.raises(ValueError, match=f"max_new_tokens must be an integer >= 1; got {value!r}"):
        tiny["model"].generate(**tiny["enc"], max_new_tokens=value)


@pytest.mark.parametrize("key, value", [("latent_length", 1.5), ("latent_length", -1), ("num_return_sequences", 0),
                                        ("sample_offset", -1), ("seed", "0")])
def test_counts_must_be_integers(tiny, key, value):
    with pytest.raises(ValueError, match=f"{key} must be an integer"):
        tiny["model"].generate(**tiny["enc"], **{key: value})


def test_float_input_ids_are_refused(tiny):
    enc = tiny["enc"]
    with pytest.raises(TypeError, match=r"input_ids must be an integer tensor of token ids \(torch.long\); got a "
                                        r"torch.float32 tensor"):
        tiny["model"].generate(enc.input_ids.float(), enc.attention_mask)
    with pytest.raises(TypeError, match="got list"):
        tiny["model"].generate(enc.input_ids.tolist())


def test_score_rollouts_needs_the_generate_output(tiny):
    sequences = tiny["model"].generate(**tiny["enc"], max_new_tokens=2)  # a tensor: return_dict_in_generate=False
    with pytest.raises(TypeError, match=r"expects the LatentGenerateOutput .* got a Tensor of shape .*"
                                        r"return_dict_in_generate=True"):
        tiny["rm"].score_rollouts(sequences)


def _warnings(caplog):
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_sampling_of_strength_zero_and_no_latents_are_warned_about_in_generate(tiny):
    with pytest.warns(UserWarning) as record:
        out = tiny["model"].generate(**tiny["enc"], latent_sampling="dropout", dropout_p=0.0, num_return_sequences=3,
                                     max_new_tokens=2, latent_length=0, return_dict_in_generate=True)
    text = " ".join(str(w.message) for w in record)
    assert "samples nothing" in text and "latent_length=0" in text
    assert out.latents.shape[1] == 0 and len({tuple(r) for r in out.sequences.tolist()}) == 1


def test_lm_eval_warns_about_zero_strength_and_runs_it_once(tiny, caplog):
    lm = LatentTTSModel(pretrained=str(tiny["codi"]), device="cpu", n=4, sampling="dropout", dropout_p=0.0)
    calls = []
    original = lm.model.rollout
    lm.model.rollout = lambda *a, **k: calls.append(a[3]) or original(*a, **k)
    from lm_eval.api.instance import Instance

    with caplog.at_level(logging.WARNING):
        out = lm.generate_until([Instance("generate_until", {}, ("What is 1 plus 1?", {"latent_tts_payload": True}),
                                          0)])
    warned = [m for m in _warnings(caplog) if "samples nothing" in m]
    assert len(warned) == 1 and "dropout_p=0" in warned[0] and "identical" in warned[0]
    assert calls == [1] and len(json.loads(out[0])["candidates"]) == 4  # one rollout, reported N times
    assert lm.get_model_info()["latent_tts"]["sampling"] == "none"


def test_question_with_control_token_text_is_tokenised_as_text(tiny):
    model, tok = tiny["model"], tiny["tok"]
    plain = "What is 2 plus 3?"
    assert model.encode_prompt(tok, plain) == tok(model.format_prompt(plain))["input_ids"]  # reference tokenisation
    tricky = "What is <|latent|> plus <|start-latent|><|end-latent|>?"
    ids = model.encode_prompt(tok, tricky)
    cfg = model.config
    assert cfg.latent_id not in ids and cfg.latent_end_id not in ids
    assert ids.count(cfg.latent_start_id) == 1 and ids[-1] == cfg.latent_start_id  # only the real start marker
    assert tok.decode(ids) == model.format_prompt(tricky)  # the text survives as text
    # parsed naively, the question would carry control tokens into the model
    assert cfg.latent_id in tok(model.format_prompt(tricky))["input_ids"]


def test_no_device_warning_when_nobody_asked_for_one(tiny, caplog):
    """lm-eval passes device='cuda:0' when --device is not given: that means 'pick one', said once at INFO."""
    lm_eval_logger = logging.getLogger("lm_eval")
    propagate, lm_eval_logger.propagate = lm_eval_logger.propagate, True
    try:
        with caplog.at_level(logging.INFO):
            lm = LatentTTSModel.create_from_arg_obj({"pretrained": str(tiny["codi"])}, {"device": "cuda:0"})
    finally:
        lm_eval_logger.propagate = propagate
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert lm.device.type == expected
    assert not _warnings(caplog)
    assert [m for m in caplog.messages if "running on" in m] == [f"latent_tts: running on {expected} (pass "
                                                                 "device=... in --model_args to choose)."]


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_explicit_cuda_without_cuda_is_an_error(tiny):
    with pytest.raises(LatentTTSArgumentError, match="device='cuda' was requested but CUDA is not available"):
        LatentTTSModel(pretrained=str(tiny["codi"]), device="cuda")


@pytest.mark.parametrize("seed", [2**127, -(2**127) - 1, 2**200])
def test_seed_out_of_range_is_refused_up_front(tiny, seed):
    """The keys hash the seed as 16 signed bytes: 2**127 passed validation, then every question failed."""
    with pytest.raises(ValueError, match=r"seed must be an integer in \[-2\*\*127, 2\*\*127 - 1\]"):
        tiny["model"].generate(**tiny["enc"], seed=seed, max_new_tokens=2)


@pytest.mark.parametrize("seed", [2**127 - 1, -(2**127)])
def test_seed_at_the_ends_of_the_range_samples_repeatably(tiny, seed):
    def draw():
        return tiny["model"].generate(**tiny["enc"], seed=seed, max_new_tokens=2, latent_sampling="noise",
                                      num_return_sequences=2, return_dict_in_generate=True)

    first, again = draw(), draw()
    assert first.sequences.shape[0] == 2 * tiny["enc"]["input_ids"].shape[0]
    assert torch.equal(first.sequences, again.sequences)  # keyed by the seed: the same samples every time


@pytest.mark.parametrize("field,value", [("seed", "{dropout_p}"), ("aggregate", "{rm!}")])
def test_a_value_with_braces_is_quoted_as_typed_in_the_error(field, value):
    """Error messages are templates with {field} marks: braces in a user's value are text, not marks."""
    from hf_modeling.generation_config import SettingError, check_field

    with pytest.raises(SettingError) as err:
        check_field(field, value)
    assert f"got {value!r}" in str(err.value) and f"got {value!r}" in err.value.named({field: field})
