"""Step-wise Monte Carlo annotation on tiny random checkpoints (no Hub)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(1)  # tiny tensors: extra threads only add contention on a shared CPU

from processes import accelerate_cpu_launch  # noqa: E402
from tiny_models import make_checkpoint  # noqa: E402

from lm_eval_latenttts.training import annotate as ann  # noqa: E402
from lm_eval_latenttts.training.annotate import AnnotateConfig, annotate, load_questions  # noqa: E402
from lm_eval_latenttts.training.annotation_store import (  # noqa: E402
    AnnotationDataError,
    done_question_ids,
    load_annotations,
)

N, M = 3, 2


@pytest.fixture(scope="module")
def backbone(tmp_path_factory):
    from hf_modeling import AutoLatentModel, load_latent_tokenizer

    folder = make_checkpoint(tmp_path_factory.mktemp("ck") / "coconut", "coconut", seed=1)
    model = AutoLatentModel.from_pretrained(str(folder))
    model.config.latent_length = 3
    tok = load_latent_tokenizer(str(folder), model.config)
    return folder, model, tok


@pytest.fixture()
def questions(tmp_path):
    path = tmp_path / "q.json"
    path.write_text(json.dumps([{"question": f"{i} plus {i}?", "steps": [], "answer": str(2 * i)} for i in range(5)]))
    return path


GENERATION = {"num_trajectories": "num_return_sequences", "sampling": "latent_sampling", "dropout_p": "dropout_p",
              "noise_std": "noise_std", "max_new_tokens": "max_new_tokens", "latent_length": "latent_length"}


def _config(backbone, data, out, **kw):
    """An annotation config; the sampling options go into its generation settings, as the CLI passes them."""
    generation = {"num_return_sequences": N, "latent_sampling": "dropout", "dropout_p": 0.3, "max_new_tokens": 4,
                  "latent_length": 3}
    generation.update({GENERATION[k]: kw.pop(k) for k in list(kw) if k in GENERATION})
    args = dict(model=str(backbone[0]), data=str(data), output_dir=str(out), generation=generation,
                num_continuations=M, keep_all=True, shard_size=2, progress=False)
    args.update(kw)
    return AnnotateConfig(**args)


def _run(backbone, cfg, **kw):
    return annotate(cfg, model=backbone[1], tokenizer=backbone[2], **kw)


def _rows(ds):
    return {r["question_id"]: r for r in ds}


def test_values_and_shapes(backbone, questions, tmp_path):
    stats = _run(backbone, _config(backbone, questions, tmp_path / "out"))
    assert stats["kept"] == 5 and stats["dropped"] == 0
    # per question: N trajectories, continuations at steps 0..T-2, the last step decoded once
    assert stats["continuations"] == 5 * (N * M * 2 + N)
    ds = load_annotations(tmp_path / "out")
    assert ds["question_id"] == list(range(5))
    hidden = backbone[1].config.n_embd
    for row in ds:
        lat = torch.tensor(row["latents"])
        vals = torch.tensor(row["step_values"])
        assert lat.shape == (N, 3, hidden)
        assert vals.shape == (N, 3)
        assert bool(((vals >= 0) & (vals <= 1)).all())
        # values are fractions of M continuations; the last step is the trajectory's own correctness
        assert bool(((vals * M).round() == vals * M).all())
        assert vals[:, -1].tolist() == [float(c) for c in row["correct"]]
        assert row["num_steps"] == [3] * N and len(row["answers"]) == N
        assert row["prompt_ids"][-1] == backbone[1].config.latent_start_id


def test_labels_reach_gold_answer(backbone, questions, tmp_path, monkeypatch):
    # make every answer "right" for an odd gold so that values are 1 there and 0 elsewhere
    monkeypatch.setattr(type(backbone[1]), "is_correct", lambda self, text, gold: gold in ("2", "6"))
    _run(backbone, _config(backbone, questions, tmp_path / "out"))
    rows = _rows(load_annotations(tmp_path / "out"))
    assert torch.tensor(rows[1]["step_values"]).eq(1).all() and all(rows[1]["correct"])
    assert torch.tensor(rows[2]["step_values"]).eq(0).all() and not any(rows[2]["correct"])


def test_outcome_labels_are_the_trajectories_correctness_without_continuations(backbone, questions, tmp_path,
                                                                             monkeypatch):
    mc = _rows(load_annotations(_run_and_path(backbone, questions, tmp_path / "mc")))
    calls = iter(range(10**6))  # every third answer "right", so that the labels are not all 0
    monkeypatch.setattr(type(backbone[1]), "is_correct", lambda self, text, gold: next(calls) % 3 == 0)
    stats = _run(backbone, _config(backbone, questions, tmp_path / "out", labels="outcome"))
    assert stats["continuations"] == 5 * N  # the trajectories' own answers only
    recorded = json.loads((tmp_path / "out" / "annotation_config.json").read_text())
    assert recorded["labels"] == "outcome"
    for qid, row in _rows(load_annotations(tmp_path / "out")).items():
        # the same trajectories as the Monte Carlo run (same keys); every step labelled with the outcome
        assert row["latents"] == mc[qid]["latents"] and row["answer_texts"] == mc[qid]["answer_texts"]
        assert row["step_values"] == [[float(c)] * 3 for c in row["correct"]]
        assert row["num_continuations"] == 0
        assert any(row["correct"]) and not all(row["correct"])
    # the run records its labels: a Monte Carlo rerun into the folder is refused
    with pytest.raises(ValueError, match="different settings"):
        _run(backbone, _config(backbone, questions, tmp_path / "out"))


def test_all_right_or_all_wrong_dropped(backbone, questions, tmp_path):
    stats = _run(backbone, _config(backbone, questions, tmp_path / "out", keep_all=False))
    assert stats["kept"] == 0 and stats["dropped"] == 5  # random model: always wrong
    assert done_question_ids(tmp_path / "out") == set(range(5))
    with pytest.raises(AnnotationDataError, match="no questions"):
        load_annotations(tmp_path / "out")


def test_resume_after_interruption(backbone, questions, tmp_path):
    reference = _rows(load_annotations(_run_and_path(backbone, questions, tmp_path / "ref")))

    class Stop(Exception):
        pass

    def stop_after_three(qid, seen=[]):
        seen.append(qid)
        if len(seen) == 3:
            raise Stop

    out = tmp_path / "out"
    with pytest.raises(Stop):
        _run(backbone, _config(backbone, questions, out), on_question_done=stop_after_three)
    assert done_question_ids(out) == {0, 1}  # one complete shard of 2; question 2 was in flight
    # a half-written shard left by a killed run is ignored and cleaned up
    (out / ".tmp-r000-00009-123").mkdir()
    stats = _run(backbone, _config(backbone, questions, out))
    assert stats["already_done"] == 2 and stats["questions"] == 3
    ds = load_annotations(out)
    assert ds["question_id"] == list(range(5))
    for qid, row in _rows(ds).items():
        assert row["step_values"] == reference[qid]["step_values"]
        assert row["latents"] == reference[qid]["latents"]
    assert not list(out.glob(".tmp-*"))
    # a rerun after completion does nothing
    assert _run(backbone, _config(backbone, questions, out))["questions"] == 0


def _run_and_path(backbone, questions, out, **kw):
    _run(backbone, _config(backbone, questions, out, **kw))
    return out


def test_sharding_over_ranks_matches_single_process(backbone, questions, tmp_path, monkeypatch):
    reference = _rows(load_annotations(_run_and_path(backbone, questions, tmp_path / "ref")))
    out = tmp_path / "out"
    for rank in (0, 1):
        monkeypatch.setattr(ann, "_dist_state", lambda r=rank: (r, 2, torch.device("cpu"), lambda: None))
        stats = _run(backbone, _config(backbone, questions, out))
        assert stats["questions"] == (3 if rank == 0 else 2)
    rows = _rows(load_annotations(out))
    assert sorted(rows) == list(range(5))
    for qid in rows:
        assert rows[qid]["latents"] == reference[qid]["latents"]
        assert rows[qid]["step_values"] == reference[qid]["step_values"]


def _manifest_ids(shard) -> list:
    manifest = json.loads((shard / "manifest.json").read_text())
    return manifest["kept"] + manifest["dropped"]


def test_two_processes_split_the_questions_and_a_killed_rank_resumes(backbone, questions, tmp_path):
    """``accelerate launch`` of the annotate command: 2 real CPU processes (gloo) split the questions (rank r takes
    questions r, r + 2, ..., each rank writes its own shards).  Rank 1 is SIGKILLed while writing its second shard:
    the launch fails, a half-written shard is left under a temporary name, and rerunning the same 2-process command
    completes the dataset, equal to one process's, with nothing half-written left."""
    launch, launch_env = accelerate_cpu_launch(2)
    if launch is None:
        pytest.skip("accelerate CLI not installed")
    out = tmp_path / "par"
    args = ["--model", str(backbone[0]), "--data", str(questions), "-N", str(N), "-M", str(M), "--dropout-p", "0.3",
            "--max-new-tokens", "4", "--latent-length", "3", "--keep-all", "--shard-size", "1", "--threads", "1",
            "--no-progress", "--output-dir", str(out)]
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore", **launch_env)
    killer = str(Path(__file__).with_name("kill_rank_annotate.py"))
    killed = subprocess.run(launch + [killer] + args, capture_output=True, text=True, env=env, timeout=300)
    assert killed.returncode != 0, killed.stdout[-2000:]
    # rank 1 (questions 1, 3) completed question 1; question 3's shard is half-written under a temporary name
    assert 1 in done_question_ids(out) and 3 not in done_question_ids(out)
    # (rank 0, stopped by the launcher when rank 1 died, may have been mid-shard too)
    assert any(p.name.startswith(".tmp-r001-") for p in out.glob(".tmp-*")), sorted(p.name for p in out.iterdir())

    rerun = subprocess.run(launch + ["-m", "lm_eval_latenttts", "annotate"] + args, capture_output=True, text=True,
                           env=env, timeout=300)
    assert rerun.returncode == 0, rerun.stdout[-2000:] + rerun.stderr[-4000:]
    assert not list(out.glob(".tmp-*"))
    # both ranks wrote shards: questions 0, 2, 4 on rank 0 and 1, 3 on rank 1, one a shard
    by_rank = {rank: sorted(q for shard in out.glob(f"shard-r00{rank}-*") for q in _manifest_ids(shard))
               for rank in (0, 1)}
    assert by_rank == {0: [0, 2, 4], 1: [1, 3]}, sorted(p.name for p in out.iterdir())
    single = _run_and_path(backbone, questions, tmp_path / "single", shard_size=1)
    assert sorted(p.name for p in single.glob("shard-*"))[0] == "shard-r000-00000"
    reference = _rows(load_annotations(single))
    rows = _rows(load_annotations(out))
    assert sorted(rows) == sorted(reference) == list(range(5))
    for qid, row in rows.items():
        for key in ("latents", "step_values", "answers", "correct", "prompt_ids"):
            assert row[key] == reference[qid][key], (qid, key)


def _wait_for(path, proc, seconds=240):
    import time

    deadline = time.time() + seconds
    while not path.exists():
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.time() < deadline, "the held annotate run did not start"
        time.sleep(0.1)


def test_second_concurrent_run_into_the_folder_is_refused_and_a_killed_runs_lock_is_not(backbone, questions,
                                                                                        tmp_path, capsys):
    """Two processes: while one annotate run (a child process) works in a folder, a second into the same folder (this
    process) is refused (before, both annotated every question and the folder held each twice); once the first is
    SIGKILLed, its lock is gone and a rerun resumes and completes the dataset."""
    from lm_eval_latenttts import cli

    args = ["--model", str(backbone[0]), "--data", str(questions), "-N", str(N), "-M", str(M), "--dropout-p", "0.3",
            "--max-new-tokens", "4", "--latent-length", "3", "--keep-all", "--shard-size", "2", "--threads", "1",
            "--no-progress"]
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore",
               HOLD_STARTED=str(tmp_path / "started"), HOLD_GO=str(tmp_path / "go"))
    holder = [sys.executable, str(Path(__file__).with_name("hold_annotate.py"))]
    reference = _rows(load_annotations(_run_and_path(backbone, questions, tmp_path / "single")))

    out = tmp_path / "out"
    first = subprocess.Popen(holder + args + ["--output-dir", str(out)], env=env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _wait_for(tmp_path / "started", first)  # the first run is mid-way: annotating, no shard written yet
        capsys.readouterr()
        assert cli.main(["annotate", *args, "--output-dir", str(out)]) == 2
        assert f"error: {out} is being written by another annotate run (process {first.pid} holds " \
               f"{out / '.run.lock'})" in capsys.readouterr().err
        (tmp_path / "go").touch()
        _, err = first.communicate(timeout=300)
        assert first.returncode == 0, err[-3000:]
    finally:
        first.kill()
    rows = _rows(load_annotations(out))  # each question once (load_annotations refuses duplicated ids)
    assert sorted(rows) == sorted(reference) == list(range(5))
    for qid, row in rows.items():
        assert row["latents"] == reference[qid]["latents"] and row["step_values"] == reference[qid]["step_values"]

    # a run killed while it holds the lock does not block its rerun
    (tmp_path / "started").unlink()
    (tmp_path / "go").unlink()
    out = tmp_path / "killed"
    killed = subprocess.Popen(holder + args + ["--output-dir", str(out)], env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _wait_for(tmp_path / "started", killed)
    killed.kill()
    killed.communicate(timeout=60)
    assert cli.main(["annotate", *args, "--output-dir", str(out)]) == 0, capsys.readouterr().err[-3000:]
    assert sorted(_rows(load_annotations(out))) == list(range(5))


def test_output_dir_naming_a_file_is_a_clear_error(backbone, questions, tmp_path, capsys):
    from lm_eval_latenttts import cli

    path = tmp_path / "annotations.txt"
    path.write_text("a file")
    code = cli.main(["annotate", "--model", str(backbone[0]), "--data", str(questions), "--output-dir", str(path),
                     "--no-progress"])
    assert code == 2
    assert capsys.readouterr().err.startswith(f"error: --output-dir {path} is an existing file, not a folder")
    assert path.read_text() == "a file"


def test_changed_arguments_refuse_to_resume(backbone, questions, tmp_path):
    _run(backbone, _config(backbone, questions, tmp_path / "out", limit=2))
    with pytest.raises(ValueError, match="different settings.*num_continuations"):
        _run(backbone, _config(backbone, questions, tmp_path / "out", limit=2, num_continuations=M + 1))


def test_noise_sampled_trajectories_differ(backbone, questions, tmp_path):
    cfg = _config(backbone, questions, tmp_path / "out", sampling="noise", dropout_p=0.0, noise_std=0.5, limit=2)
    _run(backbone, cfg)
    ds = load_annotations(tmp_path / "out")
    lat = torch.tensor(ds[0]["latents"])
    assert not torch.allclose(lat[0], lat[1])  # trajectories differ


def test_dynamic_backbone_has_one_value_per_latent_step_taken(tmp_path, questions):
    from hf_modeling import AutoLatentModel, load_latent_tokenizer

    folder = make_checkpoint(tmp_path / "colar", "colar", seed=0)
    model = AutoLatentModel.from_pretrained(str(folder))
    tok = load_latent_tokenizer(str(folder), model.config)
    cfg = AnnotateConfig(model=str(folder), data=str(questions), output_dir=str(tmp_path / "out"),
                         generation={"num_return_sequences": 2, "dropout_p": 0.2, "max_new_tokens": 3},
                         num_continuations=2, keep_all=True, limit=2, progress=False)
    annotate(cfg, model=model, tokenizer=tok)
    for row in load_annotations(tmp_path / "out"):
        assert [len(v) for v in row["step_values"]] == row["num_steps"]
        assert all(1 <= k <= model.config.max_latent_length for k in row["num_steps"])


def test_bad_inputs(tmp_path, backbone, questions):
    with pytest.raises(AnnotationDataError, match="does not exist"):
        load_annotations(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(AnnotationDataError, match="no annotation shards"):
        load_annotations(tmp_path / "empty")
    from datasets import Dataset

    bad = tmp_path / "bad" / "shard-r000-00000"
    Dataset.from_list([{"question_id": 0, "text": "x"}]).save_to_disk(str(bad))
    (bad / "manifest.json").write_text(json.dumps({"kept": [0], "dropped": []}))
    with pytest.raises(AnnotationDataError, match="missing columns"):
        load_annotations(tmp_path / "bad")
    with pytest.raises(ValueError, match=">= 2"):
        _config(backbone, questions, tmp_path / "o", num_trajectories=1, keep_all=False).resolve(backbone[1])
    with pytest.raises(ValueError, match="needs stochastic trajectories"):
        _config(backbone, questions, tmp_path / "o", dropout_p=0.0).resolve(backbone[1])
    with pytest.raises(ValueError, match="num_continuations"):
        _config(backbone, questions, tmp_path / "o", num_continuations=0).validate()
    jsonl = tmp_path / "q.jsonl"
    jsonl.write_text('{"question": "a", "answer": "1"}\n\n{"question": "b", "answer": "#### 2"}\n')
    assert [q["gold"] for q in load_questions(jsonl)] == ["1", "2"]
    (tmp_path / "bad.json").write_text('[{"q": 1}]')
    with pytest.raises(ValueError, match="question"):
        load_questions(tmp_path / "bad.json")


def test_question_seed_is_stable():
    grid = [(seed, qid) for seed in range(3) for qid in range(200)]
    seeds = [ann.question_seed(seed, qid) for seed, qid in grid]
    # different (seed, question) -> different generator seeds, all valid torch seeds
    assert len(set(seeds)) == len(grid)
    assert all(isinstance(s, int) and 0 <= s < 2**63 for s in seeds)
    # the same in another process with another hash seed (ranks of a data-parallel run must agree)
    code = ("import json, sys; from lm_eval_latenttts.training.annotate import question_seed; "
            "print(json.dumps([question_seed(s, q) for s, q in json.loads(sys.argv[1])]))")
    other = "2" if os.environ.get("PYTHONHASHSEED") == "1" else "1"  # this process's is another (random or set)
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(grid)], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONHASHSEED=other), timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout) == seeds


@pytest.mark.parametrize("field, value", [("limit", -1), ("limit", 0), ("threads", 0)])
def test_annotate_refuses_limits_that_meant_something_else(tmp_path, field, value):
    """Sweep of issue 21: --limit -1 annotated all questions but the last, --limit 0 none, --threads 0 all threads."""
    from lm_eval_latenttts.training.annotate import AnnotateConfig

    config = AnnotateConfig(model="m", data="d", output_dir=str(tmp_path), **{field: value})
    with pytest.raises(ValueError, match=f"{field} must be an integer >= 1"):
        config.validate()
