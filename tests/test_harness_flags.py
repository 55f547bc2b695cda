"""lm-eval's own features with ``--model latent_tts`` on the shipped model, through ``simple_evaluate`` (what the
``lm_eval`` CLI calls, in-process and without the task index: ``harness_runs``).

``repeats`` (each copy of a request its own samples), task templates that wrap
the question, float gold answers, and the flags that are refused with a clear
message: few-shot contexts, ``--system_instruction``, ``--use_cache``, a chat
template and a seed out of range.  Local task YAMLs include the shipped ``latent_arith``.
"""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness_runs import evaluate, load_task, samples_of  # noqa: E402

TASKS_DIR = Path(__file__).resolve().parents[1] / "tasks"
LIMIT = 3
FLOAT_GOLDS = [1e30, 1e23, 0.1, 5.0]


def _yaml(folder: Path, name: str, body: str) -> None:
    (folder / f"{name}.yaml").write_text(f"include: {TASKS_DIR / 'latent_arith.yaml'}\ntask: {name}\n{body}")


@pytest.fixture(scope="module")
def tasks(tmp_path_factory):
    root = tmp_path_factory.mktemp("harness_flags")
    folder = root / "tasks"
    folder.mkdir()
    # repeats with lm-eval's majority vote over "#### <answer>" responses (self-consistency, as gsm8k-cot-self-consistency)
    _yaml(folder, "arith_rep", """doc_to_text: "Question: {{question}}\\nAnswer:"
generation_kwargs: {until: [], do_sample: false}
repeats: 4
process_results: null
filter_list:
  - name: maj
    filter:
      - {function: regex, regex_pattern: "#### (\\\\-?[0-9\\\\.\\\\,]+)"}
      - {function: majority_vote}
      - {function: take_first}
metric_list:
  - {metric: exact_match, aggregation: mean, higher_is_better: true}
""")
    _yaml(folder, "arith_n4", "generation_kwargs: {latent_tts_payload: true, until: [], n: 4}\n")
    _yaml(folder, "arith_rep_n2", "generation_kwargs: {latent_tts_payload: true, until: [], n: 2}\nrepeats: 2\n")
    _yaml(folder, "arith_qa", 'doc_to_text: "Q: {{question}}\\nA:"\n')
    _yaml(folder, "arith_shot", 'doc_to_target: "#### {{answer}}"\nfewshot_split: test\nnum_fewshot: 1\n')
    _yaml(folder, "arith_qa_shot", 'doc_to_text: "Q: {{question}}\\nA:"\ndoc_to_target: " {{answer}}"\n'
          "fewshot_split: test\nnum_fewshot: 1\n")
    floats = root / "floats.json"
    floats.write_text("[" + ", ".join(f'{{"question": "Start at {i}, plus 1. Answer?", "answer": {g!r}}}'
                                      for i, g in enumerate(FLOAT_GOLDS)) + "]")
    return {"root": root, "tasks": folder, "floats": floats}


def _run(tasks, names, monkeypatch=None, model_args="device=cpu", **kwargs):
    """``lm_eval --model latent_tts --include_path <tasks> --limit 3 --tasks <names>`` in-process."""
    prepared = [load_task(tasks["tasks"] / f"{name}.yaml" if (tasks["tasks"] / f"{name}.yaml").is_file() else name)
                for name in names]
    return evaluate("latent_tts", prepared, model_args=model_args, limit=LIMIT, **kwargs)


@pytest.fixture(scope="module")
def noise_run(tasks):
    patch = pytest.MonkeyPatch()
    patch.setenv("LATENT_TTS_DATA_GSM8K", str(tasks["floats"]))
    try:
        return _run(tasks, ["latent_arith", "arith_rep", "arith_n4", "arith_rep_n2", "arith_qa", "latent_gsm8k"],
                    model_args="sampling=noise,noise_std=1.0,n=1,device=cpu", log_samples=True)
    finally:
        patch.undo()


def _samples(results: dict, task: str) -> list[dict]:
    return samples_of(results, task)


def _answers(response: str) -> list:
    return [c["answer"] for c in json.loads(response)["candidates"]]


def test_repeat_r_draws_its_own_samples(noise_run):
    """repeats: 4 at n=1: copy r is sample r, i.e. the r-th candidate of the same question at n=4."""
    reps, n4 = _samples(noise_run, "arith_rep"), _samples(noise_run, "arith_n4")
    assert [r["doc_id"] for r in reps] == [r["doc_id"] for r in n4] == list(range(LIMIT))
    distinct = 0
    for rep, full in zip(reps, n4):
        responses = rep["resps"][0]
        assert len(responses) == 4
        assert responses == [f"#### {a}" for a in _answers(full["resps"][0][0])]
        distinct += len(set(responses)) > 1
    assert distinct >= 1  # noise_std=1.0 makes the samples of some question disagree


def test_repeats_with_n_rollouts_are_disjoint_blocks(noise_run):
    """Repeat r of a request with N rollouts draws samples r*N .. r*N+N-1."""
    for rep, full in zip(_samples(noise_run, "arith_rep_n2"), _samples(noise_run, "arith_n4")):
        four = _answers(full["resps"][0][0])
        assert [_answers(r) for r in rep["resps"][0]] == [four[:2], four[2:]]


def test_template_labels_around_the_question_are_dropped(noise_run):
    """A 'Q: ...\\nA:' template gets the same answers as the bare question (it was sent whole and scored 0)."""
    for wrapped, bare in zip(_samples(noise_run, "arith_qa"), _samples(noise_run, "latent_arith")):
        assert wrapped["arguments"]["gen_args_0"]["arg_0"].startswith("Q: ")
        assert wrapped["resps"] == bare["resps"]


def test_float_gold_answers_are_exact(noise_run):
    """JSON ``1e30`` is the gold 10**30 (it was 1000000000000000019884624838656), ``0.1`` stays 0.1."""
    targets = [r["target"] for r in _samples(noise_run, "latent_gsm8k")]
    assert targets == ["1" + "0" * 30, "1" + "0" * 23, "0.1"]


@pytest.mark.parametrize("case", ["fewshot", "fewshot_qa", "system_instruction", "use_cache", "seed", "chat_template"])
def test_refused_before_any_score(tasks, case, tmp_path):
    """Each is refused before any document is scored (the CLI then exits with the message and no table)."""
    from lm_eval_latenttts.harness.arguments import LatentTTSArgumentError

    names, kwargs, error = {
        "fewshot": (["arith_shot"], {}, LatentTTSArgumentError),
        "fewshot_qa": (["arith_qa_shot"], {}, LatentTTSArgumentError),
        "system_instruction": (["latent_arith"], {"system_instruction": "You are a careful calculator."},
                               LatentTTSArgumentError),
        "use_cache": (["latent_arith"], {"use_cache": str(tmp_path / "cache")}, LatentTTSArgumentError),
        "seed": (["latent_arith"], {"model_args": f"device=cpu,seed={2**127}"}, LatentTTSArgumentError),
        "chat_template": (["latent_arith"], {"apply_chat_template": True}, NotImplementedError),
    }[case]
    expected = {
        "fewshot": ["holds 1 few-shot example(s)", "--num_fewshot"],
        "fewshot_qa": ["holds 1 few-shot example(s)", "--num_fewshot"],
        "system_instruction": ["system instruction 'You are a careful calculator.'", "--system_instruction"],
        "use_cache": ["does not support --use_cache", "seed, n, sampling"],
        "seed": [f"seed={2**127}", "[-2**127, 2**127 - 1]"],
        "chat_template": ["does not use chat templates", "without --apply_chat_template"],
    }[case]
    with pytest.raises(error) as info:
        _run(tasks, names, **kwargs)
    for text in expected:
        assert text in str(info.value), str(info.value)


# ----------------------------------------------------------------------------- the rules, without the CLI
DOCS = [{"question": "Start at 3, plus 1?", "answer": "4"}, {"question": " Start at 5, plus 2? ", "answer": "7"}]


def task_requests(docs=DOCS, build=None, **config):
    """The requests lm-eval's own ``ConfigurableTask`` builds for ``docs`` under a task ``config`` (a task YAML's
    keys) and ``build_all_requests`` options, without the task index."""
    import datasets
    from lm_eval.api.task import ConfigurableTask

    import lm_eval_latenttts.harness.model  # noqa: F401  (the model is created before tasks build requests)

    base = dict(task="t", dataset_path="json", test_split="test", output_type="generate_until",
                doc_to_text="{{question}}", doc_to_target="{{answer}}", generation_kwargs={"until": []},
                metric_list=[{"metric": "exact_match", "aggregation": "mean", "higher_is_better": True}],
                num_fewshot=0, fewshot_split="test")
    base.update(config, custom_dataset=lambda **_: datasets.DatasetDict({"test": datasets.Dataset.from_list(docs)}))
    task = ConfigurableTask(config=base)
    task.build_all_requests(limit=len(docs), **(build or {}))
    return task.instances


def _question(instance):
    from lm_eval_latenttts.harness.context import bare_question

    return bare_question(instance.args[0], instance.doc, f"document {instance.doc_id} of task {instance.task_name}")


@pytest.mark.parametrize("config, docs", [
    ({}, DOCS),
    ({"doc_to_text": "Question: {{question}}\nAnswer:"}, DOCS),
    ({"doc_to_text": "Q: {{question}}\nA:"}, DOCS),
    ({"doc_to_text": "{{question}}", "gen_prefix": "Answer:"}, DOCS),
    ({"doc_to_text": "question"}, DOCS),  # a field name
    ({"doc_to_text": lambda doc: doc["question"].strip()}, DOCS),  # a function
    # a field that is not called question: its label was passed to the model
    ({"doc_to_text": "Problem: {{problem}}"}, [{"problem": d["question"], "answer": d["answer"]} for d in DOCS]),
])
def test_bare_question_is_the_documents_field(config, docs):
    """lm-eval's context is exactly the rendered doc_to_text: one field of the document, wrapped at most in labels."""
    assert [_question(i) for i in task_requests(docs, **config)] == ["Start at 3, plus 1?", "Start at 5, plus 2?"]


def gsm8k_requests(docs=DOCS, num_fewshot=0):
    """The requests of lm-eval's own gsm8k task ("Question: {{question}}\nAnswer:", its generation_kwargs and
    filters) on ``docs``, with ``--num_fewshot``."""
    import importlib.util

    import yaml

    folder = Path(importlib.util.find_spec("lm_eval").submodule_search_locations[0]) / "tasks" / "gsm8k"
    config = yaml.safe_load((folder / "gsm8k.yaml").read_text())
    assert config["doc_to_text"] == "Question: {{question}}\nAnswer:"
    config = {k: v for k, v in config.items() if k not in ("dataset_path", "dataset_name", "tag", "metadata")}
    config.update(num_fewshot=num_fewshot, test_split="test", fewshot_split="test")
    return task_requests(docs, **config)


def test_builtin_gsm8k_zero_shot_is_its_question():
    questions = [_question(i) for i in gsm8k_requests()]
    assert questions == ["Start at 3, plus 1?", "Start at 5, plus 2?"]


@pytest.mark.parametrize("config, build, words", [
    # each of these reached the model dropped or glued to the question (issue 21, item 4)
    ({}, {"system_instruction": "Solve:"}, ["system instruction 'Solve:'", "--system_instruction"]),
    ({"description": "Be brief:"}, {}, ["description 'Be brief:'"]),
    ({"doc_to_text": "Problem: {{problem}}", "description": "Be brief: "}, {}, ["description"]),
    ({"doc_to_text": "Answer with a number: {{question}}"}, {}, ["'Answer with a number:' besides", "'question'"]),
    ({"doc_to_text": "{{question}} Think step by step."}, {}, ["'Think step by step.'"]),
    ({"doc_to_text": "{{question}} {{answer}}"}, {}, ["besides the document's 'question'"]),
    ({"num_fewshot": 1, "fewshot_delimiter": " "}, {}, ["1 few-shot example", "--num_fewshot"]),
    ({"num_fewshot": 1, "doc_to_text": "Q: {{question}}\nA:", "doc_to_target": " {{answer}}"}, {},
     ["few-shot"]),
    ({"doc_to_text": "What is it?"}, {}, ["holds no field of its document"]),
])
def test_more_than_the_question_is_refused(config, build, words):
    from lm_eval_latenttts.harness.arguments import LatentTTSArgumentError

    docs = DOCS
    if "problem" in str(config.get("doc_to_text")):
        docs = [{"problem": d["question"], "answer": d["answer"]} for d in DOCS]
    for instance in task_requests(docs, build, **config):
        with pytest.raises(LatentTTSArgumentError, match="zero-shot") as info:
            _question(instance)
        for word in words:
            assert word in str(info.value), (word, str(info.value))


def test_a_context_that_does_not_say_what_lm_eval_added_is_refused():
    """A document's request whose context carries no parts (not built by ConfigurableTask.fewshot_context here) is
    refused; a request without a document (built by hand) is its own question."""
    from lm_eval_latenttts.harness.arguments import LatentTTSArgumentError
    from lm_eval_latenttts.harness.context import bare_question

    with pytest.raises(LatentTTSArgumentError, match="cannot tell what lm-eval added"):
        bare_question("Question: Start at 3?\nAnswer:", {"question": "Start at 3?"})
    assert bare_question(" Start at 3? ", {}) == bare_question(" Start at 3? ", None) == "Start at 3?"
    (instance,) = task_requests(DOCS[:1])
    import pickle

    assert _question(pickle.loads(pickle.dumps(instance))) == "Start at 3, plus 1?"  # --cache_requests


def test_repeat_indices_count_copies_of_one_request():
    from lm_eval_latenttts.harness.model import repeat_indices

    a, b = object(), object()
    assert repeat_indices([a, a, a, b, b, a]) == [0, 1, 2, 0, 1, 3]


def test_seed_flag_and_sampling_gen_kwargs_are_said_to_change_nothing(tasks, monkeypatch, caplog):
    """``--seed 5`` does not change latent_tts's samples (model_args seed does), ``do_sample=True`` is ignored:
    both said in a warning (do_sample=True passed silently, as True == 1.0).  The CLI's ``--seed 5`` is
    simple_evaluate's torch seed 5, with ``--seed`` on the command line."""
    monkeypatch.setattr(sys, "argv", ["lm_eval", "--model", "latent_tts", "--seed", "5"])
    _run(tasks, ["latent_arith"], random_seed=5, numpy_random_seed=5, torch_random_seed=5,
         fewshot_random_seed=5, gen_kwargs={"do_sample": True, "temperature": 0.7})
    out = caplog.text
    assert "--seed set torch's seed to 5" in out and "Pass --model_args seed=5" in out
    for key in ("do_sample", "temperature"):
        assert f"latent_tts ignores the generation setting '{key}'" in out
