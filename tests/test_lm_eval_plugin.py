"""``lm_eval --model latent_tts``: the real CLI on tiny local models and a small local task file.

The CLI runs are the slow part (lm-eval indexes its ~10k task YAMLs at start-up),
so two runs are shared by many assertions: a single-process run with an RM,
dropout sampling, ``--gen_kwargs`` overrides, ``--limit`` and ``--log_samples``
(the plugin hook: ``latent_tts`` and the ``latent_*`` tasks found by plain
``lm_eval``); the same run data-parallel under ``accelerate launch`` (2 CPU
processes, gloo).  What a refused run says is checked in-process.
"""

import glob
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from processes import accelerate_cpu_launch, console_script  # noqa: E402
from tiny_models import LATENT_TOKENS, make_checkpoint, make_tokenizer  # noqa: E402

N_DOCS = 8
LIMIT = 7


def _env(**extra):
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1",
               TOKENIZERS_PARALLELISM="false", PYTHONWARNINGS="ignore")
    env.update({k: str(v) for k, v in extra.items()})
    return env


def _lm_eval_cmd():
    return [console_script("lm_eval") or "lm_eval"]


def rigged_checkpoint(folder, kind="codi", chars="0123456789", scale=6.0):
    """A tiny random checkpoint whose answers are digits (so answers can be extracted and scored)."""
    from safetensors.torch import load_file, save_file

    make_checkpoint(folder, kind=kind)
    tok = make_tokenizer()
    state = load_file(str(Path(folder) / "model.safetensors"))
    key = "lm_head.weight" if kind == "colar" else "transformer.wte.weight"
    ids = [tok.convert_tokens_to_ids(c) for c in chars]
    state[key][ids] *= scale
    save_file(state, str(Path(folder) / "model.safetensors"), metadata={"format": "pt"})
    return Path(folder)


def make_rm(folder, hidden=32, n_layer=2):
    """A tiny LatentRM in the released layout (GPT2ForTokenClassification, architectures renamed)."""
    from transformers import GPT2Config, GPT2ForTokenClassification

    tok = make_tokenizer()
    torch.manual_seed(3)
    eos = tok.eos_token_id
    config = GPT2Config(vocab_size=len(tok), n_positions=256, n_embd=hidden, n_layer=n_layer, n_head=2,
                        num_labels=1, bos_token_id=eos, eos_token_id=eos, pad_token_id=eos)
    GPT2ForTokenClassification(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    raw = json.loads((Path(folder) / "config.json").read_text())
    raw["architectures"] = ["COCONUTGPT2ForTokenClassification"]
    for field, text in zip(("latent_start_id", "latent_id", "latent_end_id"), LATENT_TOKENS):
        raw[field] = tok.convert_tokens_to_ids(text)
    (Path(folder) / "config.json").write_text(json.dumps(raw))
    return Path(folder)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("lm_eval_latent")
    codi = rigged_checkpoint(root / "tiny-codi")
    rm = make_rm(root / "tiny-rm")
    docs = [{"question": f"Tom has {i} apples and buys {i} more. How many?", "answer": "0" if i % 2 == 0 else "7",
             "steps": []} for i in range(N_DOCS - 2)]
    # the latent control tokens inside a question are text, not control tokens: the run goes on normally
    docs.append({"question": "What is <|latent|> plus <|start-latent|>?", "answer": "3", "steps": []})
    docs.append({"question": "many words " * 200, "answer": "0", "steps": []})  # longer than the context window
    data = root / "data.json"
    data.write_text(json.dumps(docs))
    # the built-in gsm8k task (its prompt, filters and metric), pointed at a local file in GSM8K's layout
    import importlib.util

    builtin = Path(importlib.util.find_spec("lm_eval").submodule_search_locations[0]) / "tasks" / "gsm8k" / "gsm8k.yaml"
    gsm = root / "gsm_local.jsonl"
    gsm.write_text("\n".join(json.dumps({"question": d["question"], "answer": f"So.\n#### {d['answer']}"})
                             for d in docs[: N_DOCS - 2]))
    tasks = root / "tasks"
    tasks.mkdir()
    (tasks / "gsm8k_local.yaml").write_text(
        f"include: {builtin}\ntask: gsm8k_local\ndataset_path: json\ndataset_name: null\n"
        f"dataset_kwargs:\n  data_files:\n    test: {gsm}\n    train: {gsm}\n"
    )
    return {"root": root, "codi": codi, "rm": rm, "data": data, "tasks": tasks}


def _run_args(s, out):
    return [
        "--model", "latent_tts",
        "--model_args", f"pretrained={s['codi']},rm={s['rm']},n=2,sampling=dropout,dropout_p=0.3,device=cpu",
        "--gen_kwargs", "n=4,max_new_tokens=12",
        "--tasks", "latent_gsm8k,gsm8k_local",
        "--include_path", str(s["tasks"]),
        "--num_fewshot", "0",
        "--limit", str(LIMIT),
        "--log_samples",
        "--output_path", str(out),
    ]


def _results(out):
    files = glob.glob(str(Path(out) / "*" / "results_*.json"))
    assert len(files) == 1, files
    rows = {}
    for task in ("latent_gsm8k", "gsm8k_local"):
        samples = glob.glob(str(Path(out) / "*" / f"samples_{task}_*.jsonl"))
        assert len(samples) == 1, samples
        found = [json.loads(line) for line in Path(samples[0]).read_text().splitlines() if line.strip()]
        rows[task] = sorted(found, key=lambda r: (r["doc_id"], r["filter"]))
    results = json.loads(Path(files[0]).read_text())
    results["builtin_samples"] = rows["gsm8k_local"]
    return results, rows["latent_gsm8k"], Path(files[0]).parent


@pytest.fixture(scope="module")
def single_run(setup):
    out = setup["root"] / "out_single"
    proc = subprocess.run(_lm_eval_cmd() + _run_args(setup, out), cwd=setup["root"], capture_output=True, text=True,
                          env=_env(LATENT_TTS_DATA_GSM8K=setup["data"]), timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc, _results(out)


@pytest.fixture(scope="module")
def parallel_run(setup):
    """The same run data-parallel: two real CPU processes (gloo) under ``accelerate launch``."""
    launch, launch_env = accelerate_cpu_launch(2)
    if launch is None:
        pytest.skip("accelerate CLI not installed")
    out = setup["root"] / "out_parallel"
    proc = subprocess.run(launch + ["-m", "lm_eval"] + _run_args(setup, out), cwd=setup["root"], capture_output=True,
                          text=True, env=_env(LATENT_TTS_DATA_GSM8K=setup["data"], **launch_env), timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc, _results(out)


# ----------------------------------------------------------------------------- plugin discovery
def test_hook_is_cheap_and_keeps_builtin_models():
    """In a fresh interpreter: the .pth hook is installed, registers ``latent_tts`` lazily (no torch) beside the
    built-in models, and the task manager is patched once lm-eval's is imported."""
    code = (
        "import sys\n"
        "assert any(type(f).__name__ == '_Finder' for f in sys.meta_path), 'plugin hook not installed'\n"
        "assert 'torch' not in sys.modules and 'lm_eval' not in sys.modules\n"
        "from lm_eval.api.registry import get_model, model_registry\n"
        "import lm_eval.models\n"
        "assert 'latent_tts' in model_registry and 'hf' in model_registry and 'vllm' in model_registry\n"
        "assert 'torch' not in sys.modules, 'registration must stay lazy'\n"
        "from lm_eval.tasks import TaskManager\n"
        "assert getattr(TaskManager.__init__, '_latent_tts_patched', False)\n"
        "print('ok')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(), timeout=300)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr[-3000:]


def test_task_manager_indexes_the_latent_tasks_with_the_builtin_ones(single_run):
    """Every ``TaskManager`` that includes lm-eval's tasks also indexes the package's (the plain CLI run found
    ``latent_gsm8k`` without ``--include_path`` for it); one without the defaults has none of them."""
    from lm_eval.tasks import TaskManager

    from lm_eval_latenttts.harness.plugin import _with_tasks_dir, patch_task_manager, tasks_dir

    patch_task_manager()
    proc, (results, _, _) = single_run
    assert "latent_gsm8k" in results["results"] and "gsm8k_local" in results["results"]
    assert _with_tasks_dir(None) == [tasks_dir()] and _with_tasks_dir(["x"]) == [tasks_dir(), "x"]
    assert _with_tasks_dir([tasks_dir()]) == [tasks_dir()]  # not twice

    class Manager:  # lm-eval's TaskManager signature: (verbosity, include_path, include_defaults, ...)
        def __init__(self, verbosity=None, include_path=None, include_defaults=True, **kwargs):
            self.seen = (include_path, include_defaults)

    patch_task_manager(type("module", (), {"TaskManager": Manager}))
    assert Manager(include_path=[]).seen == ([tasks_dir()], True)  # the built-in tasks stay included
    assert Manager(None, "mine").seen == ([tasks_dir(), "mine"], True)
    assert Manager(include_defaults=False).seen == (None, False)
    names = {p.stem for p in Path(tasks_dir()).glob("*.yaml")}
    assert {"latent_gsm8k", "latent_gsm_hard", "latent_multiarith", "latent_arith", "latent_math"} <= names
    assert not any(t.startswith("latent_") for t in TaskManager(include_defaults=False).all_tasks)


def test_package_import_is_light():
    code = "import sys, lm_eval_latenttts; assert 'torch' not in sys.modules; print(lm_eval_latenttts.__all__)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(), timeout=120)
    assert proc.returncode == 0, proc.stderr


# ----------------------------------------------------------------------------- single-process CLI run
def _expected_sample_metrics(sample, n=4):
    """The metrics of one logged question, recomputed by hand from its candidates, RM scores and gold answer."""
    from math import comb, exp

    from hf_modeling.answers import answers_equal

    payload = json.loads(sample["resps"][0][0])
    if payload.get("error"):
        return dict.fromkeys(["acc", "single_acc", "majority", "best_of_n", "weighted", "coverage",
                              "pass@1", "pass@2", "pass@4", "greedy", "rollouts", "latent_forwards"], 0.0)
    gold = sample["doc"]["answer"]
    answers = [c["answer"] for c in payload["candidates"]]
    scores = [c["score"] for c in payload["candidates"]]
    assert len(answers) == n
    right = [answers_equal(a, gold) for a in answers]
    c = sum(right)
    # majority: the most frequent answer, ties to the earliest; weighted: softmax(score) summed per answer
    groups = {}
    for i, a in enumerate(answers):
        key = next((k for k in groups if answers_equal(k, a)), a)
        groups.setdefault(key, []).append(i)
    valid = {k: v for k, v in groups.items() if k is not None}
    majority = max(valid, key=lambda k: (len(valid[k]), -valid[k][0])) if valid else None
    top = max(scores)
    weighted = max(valid, key=lambda k: (sum(exp(scores[i] - top) for i in valid[k]), -valid[k][0])) if valid else None
    best = scores.index(max(scores))
    return {
        "acc": float(right[best]),  # aggregate=best_of_n, the default with an RM
        "single_acc": c / n,
        "majority": float(answers_equal(majority, gold)),
        "best_of_n": float(right[best]),
        "weighted": float(answers_equal(weighted, gold)),
        "coverage": float(c > 0),
        **{f"pass@{k}": 1.0 - comb(n - c, k) / comb(n, k) for k in (1, 2, 4)},
        "greedy": float(answers_equal(payload["greedy"], gold)),
        "rollouts": n + 1.0,  # and the greedy decode
        "latent_forwards": (n + 1.0) * 6,  # CODI: 6 latent steps per rollout
    }


def test_metric_rows(single_run):
    proc, (results, samples, folder) = single_run
    res = results["results"]["latent_gsm8k"]
    rows = ["acc", "single_acc", "majority", "best_of_n", "weighted", "coverage", "pass@1", "pass@2", "pass@4",
            "greedy", "rollouts", "latent_forwards"]
    assert [s["doc_id"] for s in samples] == list(range(LIMIT))
    for name in rows:
        value = res[f"{name},none"]
        # each row is the mean of the per-question values that --log_samples recorded
        per_question = [float(s[name]) for s in samples]
        assert value == pytest.approx(sum(per_question) / LIMIT), (name, value, per_question)
        assert f"{name}_stderr,none" in res
        assert name in ("rollouts", "latent_forwards") or res["coverage,none"] >= value - 1e-9, (name, value)
        assert name in proc.stdout  # a row of the printed table
    assert "pass@8,none" not in res  # k only up to N = 4
    # and each per-question value follows from the candidates recorded for that question
    for s in samples:
        assert {name: s[name] for name in rows} == pytest.approx(_expected_sample_metrics(s)), s["doc_id"]
    # the rigged CODI answers "0" with sampling off; with dropout most rollouts still do
    assert res["coverage,none"] > 0
    assert res["sample_len"] == LIMIT


def test_model_info_and_output_folder(single_run, setup):
    _, (results, _, folder) = single_run
    info = results["config"]["latent_tts"]
    assert info["backbone"] == "codi" and info["backbone_class"] == "CODIGPT2"
    assert info["rm"] == str(setup["rm"]) and info["sampling"] == "dropout" and info["dropout_p"] == 0.3
    assert info["aggregate"] == "best_of_n"  # the default with an RM
    assert "tiny-codi" in folder.name  # output folder named after `pretrained`


def test_samples_and_gen_kwargs_override(single_run):
    _, (_, samples, _) = single_run
    assert [s["doc_id"] for s in samples] == list(range(LIMIT))  # --limit
    for s in samples[: LIMIT - 1]:
        payload = json.loads(s["resps"][0][0])
        assert payload["n"] == 4 and len(payload["candidates"]) == 4  # --gen_kwargs n=4 beats model_args n=2
        assert payload["has_rm"] and payload["aggregate"] == "best_of_n"
        for cand in payload["candidates"]:
            assert set(cand) >= {"answer", "score", "text"} and isinstance(cand["score"], float)
        chosen = payload["chosen"]
        scores = [c["score"] for c in payload["candidates"]]
        assert scores[chosen] == max(scores)
        assert payload["answer"] == payload["candidates"][chosen]["answer"]
        for key in ("acc", "coverage", "pass@4"):
            assert key in s
    tokens = json.loads(samples[LIMIT - 1]["resps"][0][0])  # the question holding control-token text
    assert "error" not in tokens and len(tokens["candidates"]) == 4


# ----------------------------------------------------------------------------- data parallel
def test_data_parallel_matches_single_process(single_run, parallel_run):
    single_proc, (single, single_samples, _) = single_run
    par_proc, (par, par_samples, _) = parallel_run
    # two processes really ran: lm-eval built each task's requests on rank 0 and on rank 1
    par_log, single_log = par_proc.stdout + par_proc.stderr, single_proc.stdout + single_proc.stderr
    for task in ("latent_gsm8k", "gsm8k_local"):
        assert f"Building contexts for {task} on rank 0" in par_log
        assert f"Building contexts for {task} on rank 1" in par_log, par_log[-3000:]
    assert "on rank 1" not in single_log
    assert [s["doc_id"] for s in par_samples] == [s["doc_id"] for s in single_samples]
    # each question's rollouts are seeded from (seed, question): same answers whatever the split
    for a, b in zip(single_samples, par_samples):
        pa, pb = json.loads(a["resps"][0][0]), json.loads(b["resps"][0][0])
        assert [c["answer"] for c in pa["candidates"]] == [c["answer"] for c in pb["candidates"]]
        assert pa["answer"] == pb["answer"]
    for key, value in single["results"]["latent_gsm8k"].items():
        if key.endswith(",none") and "stderr" not in key:
            assert par["results"]["latent_gsm8k"][key] == pytest.approx(value), key


# ----------------------------------------------------------------------------- errors
def test_bad_model_args_are_refused_naming_the_keys(setup):
    """What ``lm_eval --model_args pretrained=...,n=many,samplng=x`` stops with (lm-eval creates the model from the
    string with ``create_from_arg_string``)."""
    from lm_eval_latenttts.harness.arguments import LatentTTSArgumentError
    from lm_eval_latenttts.harness.model import LatentTTSModel

    with pytest.raises(LatentTTSArgumentError) as info:
        LatentTTSModel.create_from_arg_string(f"pretrained={setup['codi']},n=many,samplng=x",
                                              {"batch_size": 1, "device": "cuda:0"})
    err = str(info.value)
    assert "samplng" in err and "Valid keys" in err and "dropout_p" in err


def test_builtin_gsm8k_zero_shot_through_cli(single_run):
    _, (results, samples, _) = single_run
    res = results["results"]["gsm8k_local"]
    assert res["exact_match,strict-match"] == res["exact_match,flexible-extract"]
    # same questions, same seeds: the built-in task scores exactly the aggregated answers of latent_gsm8k
    expected = [float(s["acc"]) for s in samples[: N_DOCS - 2]]
    assert res["exact_match,flexible-extract"] == pytest.approx(sum(expected) / len(expected))
    for row in results["builtin_samples"]:
        assert row["resps"][0][0].startswith("#### ")
        assert row["arguments"]["gen_args_0"]["arg_0"].startswith("Question: ")


def test_bad_gold_answer_fails_the_run_naming_file_and_row(setup, tmp_path, monkeypatch, caplog):
    """A gold answer that is no number is refused (the run stops), never scored as a wrong answer; which file was
    read is said at INFO; with no --device (lm-eval's default cuda:0) on a machine without CUDA, no warning about a
    device nobody asked for, one line saying which was picked."""
    import logging

    from harness_runs import evaluate, load_task

    from lm_eval_latenttts.harness.model import LatentTTSModel

    data = tmp_path / "bad.json"
    data.write_text(json.dumps([{"question": "What is 2 plus 2?", "answer": "4"},
                                {"question": "How many legs has a spider?", "answer": "thirty-two"}]))
    monkeypatch.setenv("LATENT_TTS_DATA_GSM8K", str(data))
    caplog.set_level(logging.INFO, logger="lm_eval")
    with pytest.raises(ValueError) as info:
        evaluate(LatentTTSModel.create_from_arg_obj({"pretrained": str(setup["codi"])}, {"device": "cuda:0"}),
                 [load_task("latent_gsm8k")])
    err = str(info.value)
    assert str(data) in err and "row 1 (0-based)" in err and "'thirty-two' is not a number" in err
    assert f"latent_gsm8k: reading questions from {data} (LATENT_TTS_DATA_GSM8K)" in caplog.text
    if not torch.cuda.is_available():
        assert "CUDA is not available" not in caplog.text and "latent_tts: running on cpu" in caplog.text
