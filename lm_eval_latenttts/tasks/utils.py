"""Data loading and per-document metrics of the ``latent_*`` lm-eval tasks.

Data sources (every task yields documents ``{"question": str, "answer": str}``):

=================  ==========================================  ==========================
task               default source                              local override
=================  ==========================================  ==========================
latent_gsm8k       Hub ``openai/gsm8k`` (main, test)           ``LATENT_TTS_DATA_GSM8K``
latent_gsm_hard    Hub ``reasoning-machines/gsm-hard`` (train)  ``LATENT_TTS_DATA_GSM_HARD``
latent_multiarith  Hub ``ChilleD/MultiArith`` (test)            ``LATENT_TTS_DATA_MULTIARITH``
latent_arith       shipped ``lm_eval_latenttts/data/arith_test.json`` (no download)
                                                               ``LATENT_TTS_DATA_ARITH``
=================  ==========================================  ==========================

A local file is a JSON list of objects (or JSONL, one object a line) with a
``question`` (or ``input``) and an ``answer`` (GSM8K's ``... #### 18`` is
reduced to ``18``; ``target`` / ``final_ans`` are accepted too): e.g. the
checkpoints' JSON layout ``{"question", "answer", "steps"}``.  Point a task at
one with the environment variable above or with
``--metadata '{"latent_gsm8k_data": "/path/file.json"}'`` (key ``<task>_data``).
Relative paths are resolved against the current directory when the task loads;
the shipped split is found from this file's location, so the working
directory never matters for it.

``process_results`` reads the JSON payload that ``LatentTTSModel`` returns for
``latent_*`` tasks (every candidate's extracted answer, RM score, the chosen
one) and reports, per document: ``acc`` (the aggregated answer), ``single_acc``
(the mean accuracy of one rollout, c/N), ``majority``, ``best_of_n`` and
``weighted`` (only with an RM), ``coverage`` (pass@N) and ``pass@k`` for
k = 1, 2, 4, ... <= N (unbiased estimator).
"""

import json
import logging
import os
from pathlib import Path

from lm_eval_latenttts import defaults

logger = logging.getLogger("lm_eval_latenttts.tasks")

SHIPPED_ARITH = defaults.ARITH_TEST

HUB_SOURCES = {
    "gsm8k": ("openai/gsm8k", "main", "test"),
    "gsm_hard": ("reasoning-machines/gsm-hard", None, "train"),
    "multiarith": ("ChilleD/MultiArith", None, "test"),
}


# --------------------------------------------------------------------------- data
def _format_number(value):
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def normalize_doc(raw):
    """A raw record (any of the supported layouts) -> ``{"question", "answer"}``."""
    question = raw.get("question", raw.get("input", raw.get("Question")))
    answer = None
    for key in ("answer", "target", "final_ans", "Answer", "label"):
        if key in raw and raw[key] is not None:
            answer = raw[key]
            break
    if isinstance(answer, (int, float)):
        answer = _format_number(answer)
    answer = "" if answer is None else str(answer)
    if "####" in answer:
        answer = answer.rsplit("####", 1)[1]
    answer = answer.strip().replace(",", "")
    return {"question": "" if question is None else str(question).strip(), "answer": answer}


def read_local(path):
    """Documents from a local JSON list / JSONL file."""
    path = Path(os.path.expanduser(os.fspath(path))).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"latent_tts task data file {path} does not exist.")
    text = path.read_text(encoding="utf-8")
    stripped = text.lstrip()
    if stripped.startswith("["):
        records = json.loads(text)
    elif stripped.startswith("{") and path.suffix != ".jsonl":
        try:
            obj = json.loads(text)
            records = obj.get("data") or obj.get("test") or [obj] if isinstance(obj, dict) else obj
        except json.JSONDecodeError:
            records = [json.loads(line) for line in text.splitlines() if line.strip()]
    else:
        records = [json.loads(line) for line in text.splitlines() if line.strip()]
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise ValueError(f"{path}: expected a JSON list of objects (or JSONL), each with a question and an answer.")
    return [normalize_doc(r) for r in records]


def _as_dataset(docs):
    import datasets

    features = datasets.Features({"question": datasets.Value("string"), "answer": datasets.Value("string")})
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(docs, features=features)})


def _local_override(name, metadata):
    env = f"LATENT_TTS_DATA_{name.upper()}"
    for value, where in ((metadata.get(f"latent_{name}_data"), f"--metadata latent_{name}_data"),
                         (os.environ.get(env), env)):
        if value:
            logger.info("latent_%s: reading documents from %s (%s)", name, value, where)
            return value
    return None


def _load(name, metadata):
    local = _local_override(name, metadata)
    if local:
        return _as_dataset(read_local(local))
    if name == "arith":
        if not SHIPPED_ARITH.is_file():
            raise FileNotFoundError(
                f"The shipped arithmetic test split {SHIPPED_ARITH} is missing from the installation; "
                "reinstall lm-eval-latenttts or set LATENT_TTS_DATA_ARITH=/path/arith_test.json."
            )
        return _as_dataset(read_local(SHIPPED_ARITH))
    import datasets

    path, config, split = HUB_SOURCES[name]
    try:
        raw = datasets.load_dataset(path, config, split=split)
    except Exception as err:
        raise RuntimeError(
            f"latent_{name}: could not load the Hub dataset {path} ({type(err).__name__}: {err}). Offline, "
            f"point the task at a local file: LATENT_TTS_DATA_{name.upper()}=/path/file.json (a JSON list of "
            "{\"question\", \"answer\"} objects) or --metadata '{\"latent_" + name + "_data\": \"/path/file.json\"}'."
        ) from err
    return _as_dataset([normalize_doc(r) for r in raw])


def load_gsm8k(**metadata):
    return _load("gsm8k", metadata)


def load_gsm_hard(**metadata):
    return _load("gsm_hard", metadata)


def load_multiarith(**metadata):
    return _load("multiarith", metadata)


def load_arith(**metadata):
    return _load("arith", metadata)


# --------------------------------------------------------------------------- metrics
def pass_ks(n):
    """k = 1, 2, 4, ... <= n."""
    ks, k = [], 1
    while k <= n:
        ks.append(k)
        k *= 2
    return ks


def parse_payload(response):
    """The model's JSON payload, or a one-candidate payload for any other text response."""
    from lm_eval_latenttts.aggregation import extract_answer

    if isinstance(response, (list, tuple)):
        response = response[0] if response else ""
    if isinstance(response, str):
        try:
            payload = json.loads(response)
        except (json.JSONDecodeError, ValueError):
            payload = None
        if isinstance(payload, dict) and "candidates" in payload:
            return payload
    text = "" if response is None else str(response)
    answer = extract_answer(text, "codi")  # last number in the text
    return {"answer": answer, "majority": answer, "candidates": [{"answer": answer, "score": None}], "n": 1}


def process_results(doc, results):
    from lm_eval_latenttts.aggregation import answers_equal, pass_at_k

    payload = parse_payload(results[0] if results else "")
    target = doc.get("answer")
    candidates = payload.get("candidates") or []
    n = len(candidates)
    correct = [answers_equal(c.get("answer"), target) for c in candidates]
    c = sum(correct)
    out = {
        "acc": float(answers_equal(payload.get("answer"), target)),
        "single_acc": c / n if n else 0.0,
        "majority": float(answers_equal(payload.get("majority"), target)),
    }
    if payload.get("has_rm"):
        out["best_of_n"] = float(answers_equal(payload.get("best_of_n"), target))
        out["weighted"] = float(answers_equal(payload.get("weighted"), target))
    out["coverage"] = float(c > 0)
    expected_n = int(payload.get("n") or n or 1)
    for k in pass_ks(expected_n):
        out[f"pass@{k}"] = pass_at_k(n, c, k) if n >= k else 0.0
    return out
