"""train-rm resumes only its own run: changed settings, a second run into a used folder, another run's
checkpoints and settings that would silently train something else are refused (tiny models, few steps)."""

import json
import shutil

import pytest
from crafted_pickle import Payload
from safetensors.torch import load_file
from test_rm_training import _write_annotation, backbone_dir  # noqa: F401 (backbone_dir is a fixture)

from lm_eval_latenttts import cli
from lm_eval_latenttts.training.rm_checkpoints import RUN_FILE
from lm_eval_latenttts.training.rm_training import TrainConfig, train_rm


@pytest.fixture(scope="module")
def annotation(backbone_dir, tmp_path_factory):  # noqa: F811
    return _write_annotation(tmp_path_factory.mktemp("ann") / "ann", backbone_dir, questions=10)


def _config(annotation, out, **kw):
    settings = dict(annotations=str(annotation), output_dir=str(out), max_steps=2, batch_size=2, lr=1e-3,
                    eval_fraction=0.2, save_every=1, progress=False)
    return TrainConfig(**{**settings, **kw})


def _weights(folder):
    return load_file(str(folder / "model.safetensors"))


def _assert_same_weights(a, b):
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    different = [k for k in wa if not (wa[k] == wb[k]).all()]
    assert not different, f"weights differ: {different}"


def _steps(out):
    return sorted(p.name for p in (out / "checkpoints").glob("step-*"))


def test_resume_refuses_changed_settings(annotation, tmp_path):
    out = tmp_path / "rm"
    train_rm(_config(annotation, out))
    record = (out / "checkpoints" / RUN_FILE).read_text()

    with pytest.raises(ValueError) as err:
        train_rm(_config(annotation, out, resume=True, lr=2e-3))
    message = str(err.value)
    assert "lr: was 0.001, now 0.002" in message
    assert "same arguments" in message and "--output-dir" in message and "--overwrite" in message

    with pytest.raises(ValueError) as err:
        train_rm(_config(annotation, out, resume=True, loss="bce", batch_size=4, max_steps=3))
    message = str(err.value)
    for change in ("loss: was 'contrastive', now 'bce'", "batch_size: was 2, now 4", "max_steps: was 2, now 3"):
        assert change in message
    assert "lr:" not in message  # only what changed

    # the annotation folder's identity is part of the run
    changed = tmp_path / "changed-ann"
    shutil.copytree(annotation, changed)
    config = json.loads((changed / "annotation_config.json").read_text())
    (changed / "annotation_config.json").write_text(json.dumps({**config, "dropout_p": 0.2}))
    with pytest.raises(ValueError, match=r"annotation_config\.dropout_p: was 0\.1, now 0\.2"):
        train_rm(_config(changed, out, resume=True))

    # refusals leave the run as it was, and the same arguments still resume it
    assert (out / "checkpoints" / RUN_FILE).read_text() == record
    assert _steps(out) == ["step-1", "step-2"]
    assert train_rm(_config(annotation, out, resume=True))["optimizer_steps"] == 2


def test_second_shorter_run_needs_overwrite_and_keeps_its_own_model(annotation, tmp_path):
    out, reference = tmp_path / "rm", tmp_path / "reference"
    first = train_rm(_config(annotation, out, max_steps=4))
    assert first["optimizer_steps"] == 4 and _steps(out) == ["step-3", "step-4"]

    with pytest.raises(ValueError) as err:
        train_rm(_config(annotation, out, max_steps=2))
    message = str(err.value)
    assert str(out / "checkpoints") in message
    assert "--resume" in message and "--output-dir" in message and "--overwrite" in message
    assert _steps(out) == ["step-3", "step-4"]  # refused before touching anything

    second = train_rm(_config(annotation, out, max_steps=2, overwrite=True))
    train_rm(_config(annotation, reference, max_steps=2))
    _assert_same_weights(out, reference)
    assert second["optimizer_steps"] == 2 and second["run_id"] != first["run_id"]
    assert json.loads((out / "training_summary.json").read_text())["optimizer_steps"] == 2
    assert _steps(out) == ["step-1", "step-2"]  # its own checkpoints survive, the first run's are gone

    # resuming hands back the second run's model, not the first run's longer one
    resumed = train_rm(_config(annotation, out, max_steps=2, resume=True))
    assert resumed["optimizer_steps"] == 2 and resumed["run_id"] == second["run_id"]
    _assert_same_weights(out, reference)


def test_interrupted_run_resumes_its_own_checkpoint_to_the_same_weights(annotation, tmp_path):
    # 8 training questions, 2 per batch: 4 steps an epoch, so step 3 and step 6 are mid-epoch
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    train_rm(_config(annotation, whole, max_steps=6, save_every=3))
    train_rm(_config(annotation, killed, max_steps=6, save_every=3))
    run_id = json.loads((killed / "checkpoints" / RUN_FILE).read_text())["run_id"]
    for step in ("step-3", "step-6"):
        assert json.loads((killed / "checkpoints" / step / "trainer_state.json").read_text())["run_id"] == run_id

    # killed after step 6 was taken... by another run: a checkpoint this run did not write is refused
    shutil.rmtree(killed / "checkpoints" / "step-6")
    shutil.copytree(whole / "checkpoints" / "step-6", killed / "checkpoints" / "step-6")
    with pytest.raises(ValueError, match="did not write: step-6"):
        train_rm(_config(annotation, killed, max_steps=6, save_every=3, resume=True))

    # killed before step 6: resumes mid-epoch from step 3 and ends where the uninterrupted run did
    shutil.rmtree(killed / "checkpoints" / "step-6")
    resumed = train_rm(_config(annotation, killed, max_steps=6, save_every=3, resume=True))
    assert resumed["optimizer_steps"] == 6
    _assert_same_weights(killed, whole)


@pytest.mark.parametrize("args, message", [
    (["--max-steps", "0"], "--max-steps must be >= 1 (or left out to train for --epochs); got 0."),
    (["--max-steps", "-3"], "--max-steps must be >= 1 (or left out to train for --epochs); got -3."),
    (["--epochs", "0"], "--epochs must be > 0; got 0.0."),
    (["--epochs", "-1"], "--epochs must be > 0; got -1.0."),
    (["--lr", "0"], "--lr must be > 0; got 0.0."),
    (["--lr", "-0.001"], "--lr must be > 0; got -0.001."),
    (["--batch-size", "0"], "--batch-size must be >= 1; got 0."),
    (["--grad-accum", "0"], "--grad-accum must be >= 1; got 0."),
    (["--resume", "--overwrite"], "--resume continues the run in --output-dir and --overwrite deletes it"),
])
def test_cli_refuses_settings_that_would_train_something_else(annotation, tmp_path, capsys, args, message):
    out = tmp_path / "rm"
    code = cli.main(["train-rm", "--annotations", str(annotation), "--output-dir", str(out), "--threads", "1",
                     "--no-progress", *args])
    assert code == 2
    assert capsys.readouterr().err.startswith(f"error: {message}")
    assert not out.exists()



def test_resume_never_unpickles_crafted_files(annotation, tmp_path):
    """A crafted pickle where resume reads (the training state) is refused without running; crafted files with the
    names of accelerate's pickled state (scheduler, random states) are ignored, and resume still reproduces the
    uninterrupted run exactly."""
    import torch

    whole, killed = tmp_path / "whole", tmp_path / "killed"
    train_rm(_config(annotation, whole, max_steps=4, save_every=2))
    train_rm(_config(annotation, killed, max_steps=4, save_every=2))
    shutil.rmtree(killed / "checkpoints" / "step-4")  # killed before its last checkpoint
    step = killed / "checkpoints" / "step-2"
    marker = tmp_path / "payload-ran"
    for name in ("custom_checkpoint_0.pkl", "random_states_0.pkl"):  # accelerate unpickled these
        torch.save(Payload(marker), step / name)
    resumed = train_rm(_config(annotation, killed, max_steps=4, save_every=2, resume=True))
    assert not marker.exists()
    assert resumed["optimizer_steps"] == 4
    _assert_same_weights(killed, whole)

    shutil.rmtree(killed / "checkpoints" / "step-4")
    state = step / "training_state.pt"
    torch.save({"model": Payload(marker)}, state)
    with pytest.raises(ValueError) as err:
        train_rm(_config(annotation, killed, max_steps=4, save_every=2, resume=True))
    assert not marker.exists()
    message = str(err.value)
    assert str(state) in message and "tensors and plain data" in message and "--overwrite" in message
    torch.save({"model": {}}, state)  # tensors and plain data, but not a training state
    with pytest.raises(ValueError, match="is not a train-rm training state"):
        train_rm(_config(annotation, killed, max_steps=4, save_every=2, resume=True))
    state.unlink()  # a checkpoint of the older format (accelerate's save_state)
    with pytest.raises(ValueError, match="has no training_state.pt"):
        train_rm(_config(annotation, killed, max_steps=4, save_every=2, resume=True))


def _snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _cli_train(annotation, out, *args):
    return cli.main(["train-rm", "--annotations", str(annotation), "--output-dir", str(out), "--threads", "1",
                     "--no-progress", "--max-steps", "1", "--batch-size", "2", "--eval-fraction", "0.2", *args])


def test_output_dir_holding_another_model_is_refused(annotation, backbone_dir, tmp_path, capsys):  # noqa: F811
    """train-rm into a backbone's folder (its weights, config, card, generation settings and eval results) is
    refused, --overwrite or not, and leaves every file as it was."""
    folder = tmp_path / "backbone"
    shutil.copytree(backbone_dir, folder)
    (folder / "generation_config.json").write_text('{"latent_sampling": "dropout"}')
    (folder / "training_info.json").write_text('{"step": 4}')
    (folder / ".eval_results").mkdir()
    (folder / ".eval_results" / "arith.yaml").write_text("value: 0.74\n")
    before = _snapshot(folder)
    for extra in ([], ["--overwrite"]):
        assert _cli_train(annotation, folder, *extra) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: --output-dir {folder} holds another model (config.json, model.safetensors")
        assert "no training_summary.json of train-rm" in err and "Choose another --output-dir" in err
        assert _snapshot(folder) == before


def test_output_dir_naming_a_file_is_a_clear_error(annotation, tmp_path, capsys):
    path = tmp_path / "rm.txt"
    path.write_text("a file")
    assert _cli_train(annotation, path) == 2
    assert capsys.readouterr().err.startswith(f"error: --output-dir {path} is an existing file, not a folder")
    assert path.read_text() == "a file"


def test_earlier_rm_without_its_checkpoints_needs_overwrite(annotation, tmp_path, capsys):
    out = tmp_path / "rm"
    assert _cli_train(annotation, out) == 0
    shutil.rmtree(out / "checkpoints")  # e.g. an installed RM: the final model only
    before = _snapshot(out)
    for extra in ([], ["--resume"]):
        capsys.readouterr()
        assert _cli_train(annotation, out, *extra) == 2
        assert "holds a LatentRM trained earlier (training_summary.json)" in capsys.readouterr().err
        assert _snapshot(out) == before
    assert _cli_train(annotation, out, "--overwrite") == 0


def test_second_run_into_a_folder_in_use_is_refused(annotation, tmp_path):
    """While a run holds OUT's lock (here: this process, as a running train-rm would), another train-rm into OUT
    (even --resume, as the recipe reruns) is refused before it touches anything; once released, it runs."""
    import os

    from lm_eval_latenttts.training.run_record import exclusive_run

    out = tmp_path / "rm"
    train_rm(_config(annotation, out))
    before = _snapshot(out)
    with exclusive_run(out, "train-rm run"):
        with pytest.raises(ValueError, match=f"{out} is being written by another train-rm run \\(process "
                                             f"{os.getpid()} holds {out / '.run.lock'}\\)"):
            train_rm(_config(annotation, out, resume=True))
        assert _snapshot(out) == before
    assert train_rm(_config(annotation, out, resume=True))["optimizer_steps"] == 2


def test_damaged_checkpoints_name_the_file_and_what_to_do(annotation, tmp_path):
    """Issue 21, item 11: a truncated training_state.pt gave a bare OSError, a well-formed state of other tensors
    a raw load_state_dict error, and a damaged trainer_state.json was called a checkpoint "the run did not write"."""
    import torch

    out = tmp_path / "rm"
    train_rm(_config(annotation, out, max_steps=2, save_every=1))
    step = out / "checkpoints" / "step-2"
    state = step / "training_state.pt"
    whole = state.read_bytes()
    state.write_bytes(whole[: len(whole) // 2])  # cut mid-way (a full disk, a killed copy)
    with pytest.raises(ValueError) as err:
        train_rm(_config(annotation, out, max_steps=2, save_every=1, resume=True))
    assert str(state) in str(err.value) and "damaged" in str(err.value) and "--overwrite" in str(err.value)
    torch.save({"model": {"transformer.wte.weight": torch.zeros(3, 3)}, "optimizer": {}, "scheduler": {}}, state)
    with pytest.raises(ValueError) as err:
        train_rm(_config(annotation, out, max_steps=2, save_every=1, resume=True))
    assert str(state) in str(err.value) and "does not fit this run" in str(err.value)
    state.write_bytes(whole)
    (step / "trainer_state.json").write_text('{"run_id": ')
    with pytest.raises(ValueError) as err:
        train_rm(_config(annotation, out, max_steps=2, save_every=1, resume=True))
    message = str(err.value)
    assert str(step / "trainer_state.json") in message and "is damaged" in message and "did not write" not in message
    assert f"Delete {step}" in message
