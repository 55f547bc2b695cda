"""train-rm under ``accelerate launch``: 2 real CPU processes (gloo) train the RM that 1 process trains.

At equal global batch (2 processes x 2 questions against 1 process x 4) the step losses, the held-out metrics
and the saved RM's scores agree within TOLERANCE; only the main process writes the RM, its card and the
checkpoint metadata; a killed 2-process run resumes to the weights of the uninterrupted one.
"""

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from processes import accelerate_cpu_launch
from safetensors.torch import load_file
from test_rm_training import _as_rollout, _write_annotation, backbone_dir  # noqa: F401 (backbone_dir: a fixture)

from lm_eval_latenttts.training.annotation_store import load_annotations
from lm_eval_latenttts.training.rm_data import split_questions
from lm_eval_latenttts.training.rm_training import TrainConfig, train_rm

# float32 rounding: the 2 processes sum their gradients in another order and pad their batches differently
TOLERANCE = 1e-4
QUESTIONS, EVAL_FRACTION, STEPS = 12, 0.25, 6  # 9 training questions: global micro-batches of 4, 4 and 1
ARGS = dict(max_steps=STEPS, lr=1e-3, eval_fraction=EVAL_FRACTION, save_every=2, eval_every=2)


def _cli_args(annotation, out, batch_size, *extra):
    args = ["-m", "lm_eval_latenttts", "train-rm", "--annotations", str(annotation), "--output-dir", str(out),
            "--batch-size", str(batch_size), "--threads", "1", "--no-progress"]
    for key, value in ARGS.items():
        args += [f"--{key.replace('_', '-')}", str(value)]
    return args + list(extra)


def _launch(args, tmp_path):
    launch, launch_env = accelerate_cpu_launch(2)
    if launch is None:
        pytest.skip("accelerate CLI not installed")
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore", **launch_env)
    proc = subprocess.run(launch + args, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc


def _scores(rm_dir, annotation, question_ids):
    """The saved RM's step scores of the trajectories of ``question_ids`` (score_rollouts, inference path)."""
    from hf_modeling import AutoLatentModel

    rm = AutoLatentModel.from_pretrained(str(rm_dir)).eval()
    rows = {r["question_id"]: r for r in load_annotations(annotation)}
    with torch.no_grad():
        return torch.stack([rm.score_rollouts(_as_rollout(rm, rows[q]["prompt_ids"], rows[q]["latents"])).step_scores
                            for q in question_ids])


def test_two_processes_train_the_single_process_rm(backbone_dir, tmp_path):  # noqa: F811
    torch.set_num_threads(1)
    annotation = _write_annotation(tmp_path / "ann", backbone_dir, questions=QUESTIONS)
    single = train_rm(TrainConfig(annotations=str(annotation), output_dir=str(tmp_path / "single"), batch_size=4,
                                  progress=False, **ARGS))
    par_out = tmp_path / "par"
    proc = _launch(_cli_args(annotation, par_out, 2), tmp_path)
    par = json.loads((par_out / "training_summary.json").read_text())
    assert proc.stdout.count('"optimizer_steps"') == 1  # one report: only the main process prints it

    assert (par["num_processes"], par["global_batch"]) == (2, 4) and single["global_batch"] == 4
    assert [h["step"] for h in par["history"]] == [h["step"] for h in single["history"]] == list(range(STEPS + 1))
    for a, b in zip(single["history"], par["history"]):
        for key in ("loss", "eval_loss", "eval_recall_at_1", "eval_random_pick"):
            assert (key in a) == (key in b)
            if key in a:
                assert abs(a[key] - b[key]) <= TOLERANCE, (a["step"], key, a[key], b[key])
    assert par["eval_after"]["eval_questions"] == single["eval_after"]["eval_questions"] == 3  # none lost or doubled
    held_out = split_questions(list(range(QUESTIONS)), EVAL_FRACTION, 0)[1]
    # compared up to a shift per question and step: the classifier bias moves every score of a step alike, so
    # the contrastive loss gives it a zero gradient (Adam turns its rounding noise into lr-sized steps) and no
    # selection, vote weight or loss depends on it
    single_scores, par_scores = (_scores(d, annotation, held_out) for d in (tmp_path / "single", par_out))
    difference = ((single_scores - single_scores.mean(1, keepdim=True))
                  - (par_scores - par_scores.mean(1, keepdim=True))).abs()
    assert float(difference.max()) <= TOLERANCE, float(difference.max())
    print(f"1 vs 2 processes: final loss {single['last_loss']:.8f} vs {par['last_loss']:.8f}, "
          f"max |held-out step score difference| {float(difference.max()):.2e}")

    # the main process wrote each checkpoint: tensors and plain data, no pickled objects or random states
    checkpoints = sorted(p.name for p in (par_out / "checkpoints").iterdir())
    assert checkpoints == ["run_config.json", f"step-{STEPS - 2}", f"step-{STEPS}"], checkpoints
    assert {"training_state.pt", "trainer_state.json"} == set(
        os.listdir(par_out / "checkpoints" / f"step-{STEPS}"))
    assert {"README.md", "model.safetensors", "training_summary.json"} <= set(os.listdir(par_out))

    # killed before the last checkpoint: the same 2-process command with --resume ends with the same weights
    finished = load_file(str(par_out / "model.safetensors"))
    shutil.rmtree(par_out / "checkpoints" / f"step-{STEPS}")
    (par_out / "model.safetensors").unlink()
    _launch(_cli_args(annotation, par_out, 2, "--resume"), tmp_path)
    resumed = load_file(str(par_out / "model.safetensors"))
    assert all(torch.equal(finished[k], resumed[k]) for k in finished)
    assert json.loads((par_out / "training_summary.json").read_text())["history"] == par["history"]

    # another process count is another global batch: refused, not mixed
    with pytest.raises(ValueError, match="num_processes: was 2, now 1"):
        train_rm(TrainConfig(annotations=str(annotation), output_dir=str(par_out), batch_size=2, resume=True,
                             progress=False, **ARGS))


def test_equal_global_batch_equal_training_in_one_process(backbone_dir, tmp_path):  # noqa: F811
    """The loss weighting alone: 4 questions per micro-batch = 2 x 2 accumulated = 1 x 4 accumulated."""
    torch.set_num_threads(1)
    annotation = _write_annotation(tmp_path / "ann", backbone_dir, questions=11)
    runs = [train_rm(TrainConfig(annotations=str(annotation), output_dir=str(tmp_path / f"b{b}"), batch_size=b,
                                 grad_accum=4 // b, max_steps=5, lr=1e-3, eval_fraction=0.2, progress=False))
            for b in (4, 2, 1)]
    for run in runs[1:]:
        for a, b in zip(runs[0]["history"], run["history"]):
            assert a.keys() == b.keys()
            assert all(abs(a[k] - b[k]) <= TOLERANCE for k in a if k.startswith(("loss", "eval_loss"))), (a, b)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
