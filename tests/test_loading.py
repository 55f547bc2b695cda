"""Loading is exact or an error: released layouts load with every tensor used, incomplete or damaged files are refused."""

import json
import logging
import shutil
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_lm_eval_plugin import make_rm  # noqa: E402
from tiny_models import make_checkpoint, make_tokenizer  # noqa: E402

from hf_modeling import AutoLatentModel, CheckpointLoadError, load_latent_tokenizer  # noqa: E402
from lm_eval_latenttts import cli  # noqa: E402
from lm_eval_latenttts.training.rm_training import load_rm  # noqa: E402

# one tensor per layout whose absence must be refused
REMOVED = {
    "coconut": "transformer.h.1.mlp.c_fc.weight",
    "codi": "projector.3.weight",
    "colar": "lt_head.mean.weight",
    "rm": "classifier.weight",
}


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    """A tiny checkpoint per released layout, written with the reference classes' parameter names."""
    root = tmp_path_factory.mktemp("released")
    folders = {kind: make_checkpoint(root / kind, kind=kind) for kind in ("coconut", "codi", "colar")}
    folders["rm"] = make_rm(root / "rm")
    return folders


def _copy(folder, dest):
    """A copy of the checkpoint ``folder`` at ``dest``, to damage without touching the original."""
    shutil.copytree(folder, dest)
    return dest


def _without(folder, key, dest):
    """A copy of ``folder`` whose weights lack ``key``."""
    _copy(folder, dest)
    state = load_file(str(folder / "model.safetensors"))
    assert key in state, sorted(state)
    del state[key]
    save_file(state, str(dest / "model.safetensors"), metadata={"format": "pt"})
    return dest


@pytest.mark.parametrize("kind", ["coconut", "codi", "colar", "rm"])
def test_released_layout_loads_with_every_tensor_used(released, kind):
    folder = released[kind]
    stored = load_file(str(folder / "model.safetensors"))
    model = AutoLatentModel.from_pretrained(folder)
    params = model.state_dict()
    tied = {"lm_head.weight": "transformer.wte.weight"} if model.config.tie_word_embeddings else {}
    # every file tensor is a model parameter, with the file's values
    for key, tensor in stored.items():
        assert key in params, f"{key} of the file is not used by {type(model).__name__}"
        assert torch.equal(params[key], tensor), key
    # every model parameter comes from the file (none left at its initial value)
    for key, value in params.items():
        source = key if key in stored else tied.get(key)
        assert source in stored, f"{key} is not in the file: it would keep its random initial value"
        assert torch.equal(value, stored[source]), key


def test_colar_latent_head_is_the_released_one(released):
    model = AutoLatentModel.from_pretrained(released["colar"])
    stored = load_file(str(released["colar"] / "model.safetensors"))
    h = torch.randn(3, model.config.hidden_size)
    # reference: lt_head = fc (Linear, GELU, Linear, LayerNorm) then mean (Linear), times latent_embedding_std
    x = torch.nn.functional.linear(h, stored["lt_head.fc.0.weight"], stored["lt_head.fc.0.bias"])
    x = torch.nn.functional.gelu(x)
    x = torch.nn.functional.linear(x, stored["lt_head.fc.2.weight"], stored["lt_head.fc.2.bias"])
    x = torch.nn.functional.layer_norm(x, x.shape[-1:], stored["lt_head.fc.3.weight"], stored["lt_head.fc.3.bias"])
    x = torch.nn.functional.linear(x, stored["lt_head.mean.weight"], stored["lt_head.mean.bias"])
    with torch.no_grad():
        torch.testing.assert_close(model.latent_vector(h), x * model.config.latent_embedding_std)
    # and it saves in the released layout, which loads back exactly
    out = released["colar"].parent / "colar-resaved"
    model.save_pretrained(out)
    assert {k for k in load_file(str(out / "model.safetensors")) if k.startswith("lt_head.")} == {
        k for k in stored if k.startswith("lt_head.")}


@pytest.mark.parametrize("kind", ["coconut", "codi", "colar", "rm"])
def test_missing_tensor_is_refused_by_name(released, kind, tmp_path, caplog):
    broken = _without(released[kind], REMOVED[kind], tmp_path / f"{kind}-broken")
    with caplog.at_level(logging.WARNING), pytest.raises(CheckpointLoadError) as err:
        AutoLatentModel.from_pretrained(broken)
    text = str(err.value)
    assert REMOVED[kind] in text and str(broken / "model.safetensors") in text and "missing" in text
    assert "LOAD REPORT" not in caplog.text  # the report is replaced by the error, not printed before it


def test_unexpected_tensor_is_refused(released, tmp_path):
    extra = tmp_path / "extra"
    _copy(released["coconut"], extra)
    state = load_file(str(extra / "model.safetensors"))
    state["transformer.h.7.mlp.c_fc.weight"] = torch.zeros(2, 2)
    save_file(state, str(extra / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(CheckpointLoadError, match=r"not used by COCONUTGPT2: transformer\.h\.7\.mlp\.c_fc\.weight"):
        AutoLatentModel.from_pretrained(extra)


def test_pre_release_colar_names_get_a_rename_hint(released, tmp_path):
    old = tmp_path / "old-colar"
    _copy(released["colar"], old)
    state = load_file(str(old / "model.safetensors"))
    renames = {"lt_head.fc.0": "latent_head.0", "lt_head.fc.2": "latent_head.2", "lt_head.fc.3": "latent_head.3",
               "lt_head.mean": "latent_head.4"}
    for key in [k for k in state if k.startswith("lt_head.")]:
        prefix, leaf = key.rsplit(".", 1)
        state[f"{renames[prefix]}.{leaf}"] = state.pop(key)
    save_file(state, str(old / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(CheckpointLoadError, match="lt_head.fc"):
        AutoLatentModel.from_pretrained(old)


def test_codi_without_projector_follows_its_config(tmp_path):
    folder = make_checkpoint(tmp_path / "codi", kind="codi")
    raw = json.loads((folder / "config.json").read_text())
    raw["projector"] = False
    (folder / "config.json").write_text(json.dumps(raw))
    # the file still holds projector weights that a projector-less CODI does not use: refused, with a hint
    with pytest.raises(CheckpointLoadError, match="projector"):
        AutoLatentModel.from_pretrained(folder)
    state = {k: v for k, v in load_file(str(folder / "model.safetensors")).items() if not k.startswith("projector.")}
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    model = AutoLatentModel.from_pretrained(folder)
    h = torch.randn(2, model.config.n_embd)
    assert not hasattr(model, "projector") and torch.equal(model.latent_vector(h), h)


def test_reference_placeholder_ids_are_read_from_the_tokenizer(tmp_path):
    folder = make_checkpoint(tmp_path / "coconut", kind="coconut")
    raw = json.loads((folder / "config.json").read_text())
    expected = {k: raw[k] for k in ("latent_id", "latent_start_id", "latent_end_id")}
    raw.update(latent_id=-100, latent_start_id=-100, latent_end_id=-100)  # the reference config's defaults
    (folder / "config.json").write_text(json.dumps(raw))
    config = AutoLatentModel.from_pretrained(folder).config
    assert {k: getattr(config, k) for k in expected} == expected


def test_rm_initialised_from_a_backbone_says_so_in_one_line(released, caplog):
    with caplog.at_level(logging.INFO):
        rm, _, source = load_rm(str(released["coconut"]))
    assert source == "backbone" and rm.classifier.weight.shape == (1, rm.config.n_embd)
    lines = [r.getMessage() for r in caplog.records if "new head" in r.getMessage()]
    assert len(lines) == 1 and "classifier.weight" in lines[0] and "LOAD REPORT" not in caplog.text
    # the backbone's transformer weights were all used
    stored = load_file(str(released["coconut"] / "model.safetensors"))
    for key, value in rm.transformer.state_dict().items():
        assert torch.equal(value, stored[f"transformer.{key}"]), key
    # but a backbone missing one of them is still refused
    broken = _without(released["coconut"], REMOVED["coconut"], released["coconut"].parent / "cc-broken-rm")
    with pytest.raises(CheckpointLoadError, match=REMOVED["coconut"]):
        load_rm(str(broken))


def test_missing_tensor_is_refused_by_annotate(released, tmp_path, capsys):
    broken = _without(released["coconut"], REMOVED["coconut"], tmp_path / "broken")
    data = tmp_path / "q.json"
    data.write_text(json.dumps([{"question": "1 plus 1?", "answer": "2"}]))
    code = cli.main(["annotate", "--model", str(broken), "--data", str(data), "--output-dir", str(tmp_path / "ann"),
                     "-N", "2", "-M", "1", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and REMOVED["coconut"] in err and "Traceback" not in err


def test_missing_tensor_is_refused_by_lm_eval(released, tmp_path):
    """``lm_eval --model latent_tts --model_args pretrained=<a checkpoint missing a tensor>`` stops when the model is
    created (``create_from_arg_string``), naming the tensor."""
    from lm_eval_latenttts.harness.model import LatentTTSModel

    broken = _without(released["coconut"], REMOVED["coconut"], tmp_path / "broken")
    with pytest.raises(CheckpointLoadError) as info:
        LatentTTSModel.create_from_arg_string(f"pretrained={broken},device=cpu", {"batch_size": 1})
    assert REMOVED["coconut"] in str(info.value) and "does not match COCONUTGPT2 exactly" in str(info.value)


# ------------------------------------------------------------------------------------- damaged files
def test_truncated_weights_name_the_file(released, tmp_path):
    folder = tmp_path / "truncated"
    folder.mkdir()
    for f in released["codi"].iterdir():
        data = f.read_bytes()
        (folder / f.name).write_bytes(data[: len(data) // 3] if f.name == "model.safetensors" else data)
    with pytest.raises(CheckpointLoadError) as err:
        AutoLatentModel.from_pretrained(folder)
    assert str(folder / "model.safetensors") in str(err.value) and "download" in str(err.value)


def test_invalid_config_json_names_the_file(released, tmp_path):
    folder = tmp_path / "badconfig"
    _copy(released["coconut"], folder)
    (folder / "config.json").write_text('{"model_type": "gpt2", ')
    with pytest.raises(CheckpointLoadError) as err:
        AutoLatentModel.from_pretrained(folder)
    assert str(folder / "config.json") in str(err.value) and "not valid JSON" in str(err.value)


def test_missing_tokenizer_files_are_named(released, tmp_path):
    folder = tmp_path / "notok"
    folder.mkdir()
    for name in ("config.json", "model.safetensors"):
        (folder / name).write_bytes((released["coconut"] / name).read_bytes())
    model = AutoLatentModel.from_pretrained(folder)  # ids are in config.json: the weights load
    with pytest.raises(CheckpointLoadError, match="has no tokenizer files"):
        load_latent_tokenizer(folder, model.config)
    raw = json.loads((folder / "config.json").read_text())
    del raw["latent_id"]  # now the ids must come from the tokenizer, which is missing: said so, not "no token"
    (folder / "config.json").write_text(json.dumps(raw))
    with pytest.raises(CheckpointLoadError, match="has no tokenizer files"):
        AutoLatentModel.from_pretrained(folder)


def test_damaged_tokenizer_is_named(released, tmp_path):
    folder = tmp_path / "badtok"
    _copy(released["coconut"], folder)
    (folder / "tokenizer.json").write_text("{ not json")
    with pytest.raises(CheckpointLoadError, match=f"tokenizer in {folder}"):
        load_latent_tokenizer(folder)


def test_tokenizer_is_checked_against_the_config(released, tmp_path):
    folder = tmp_path / "othertok"
    _copy(released["coconut"], folder)
    make_tokenizer(extra_tokens=["<|latent|>", "<|start-latent|>", "<|end-latent|>"]).save_pretrained(folder)
    model = AutoLatentModel.from_pretrained(folder)  # ids from config.json
    with pytest.raises(ValueError, match="disagree"):
        load_latent_tokenizer(folder, model.config)
