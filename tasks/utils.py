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
``question`` and a numeric gold ``answer`` in any layout that
:mod:`lm_eval_latenttts.data.questions` reads (GSM8K's ``... #### 18`` is reduced
to ``18``; ``input`` / ``target`` / ``final_ans`` are accepted too): e.g. the
checkpoints' JSON layout ``{"question", "answer", "steps"}``.  Point a task at
one with the environment variable above or with
``--metadata '{"latent_gsm8k_data": "/path/file.json"}'`` (key ``latent_<task>_data``);
the file read and the setting that chose it are logged at INFO (shown by
lm-eval's default log level).  Relative paths are resolved against the current
directory when the task loads; the shipped split is found from this file's
location, so the working directory never matters for it.

Rows with no question or a gold answer that is not a number (local or Hub)
stop the run with an error naming the file and row: scoring them would
report silent zeros.  To drop such rows instead (with a warning giving the
count), pass ``--metadata '{"latent_skip_bad_rows": true}'`` or set
``LATENT_TTS_SKIP_BAD_ROWS=1``.  Gold answers are kept as written
(``"1,234"``); numbers are compared as numbers when scoring.

``process_results`` reads the result that ``LatentTTSModel`` returns for
``latent_*`` tasks (``scaling.result.QuestionResult``) (every candidate's extracted answer, RM score, the chosen
one) and reports, per document: ``acc`` (the aggregated answer), ``single_acc``
(the mean accuracy of one rollout, c/N), ``majority``, ``best_of_n`` and
``weighted`` (only with an RM), ``greedy`` (the deterministic decode, unless
``greedy=false``), ``coverage`` (pass@N), ``pass@k`` for k = 1, 2, 4, ... <= N
(unbiased estimator), and the compute spent: ``rollouts`` (rollouts drawn,
the greedy decode included), ``latent_forwards`` (latent forward steps) and, for a selector with work of its
own per candidate (``aggregate=consistency``: the read-backs), ``extra_positions`` (its forward positions).
With adaptive sampling ``single_acc`` and ``pass@k`` use the first round only
(see ``lm_eval_latenttts.scaling.metrics``).
"""

import logging
import os

from lm_eval_latenttts.data import ARITH_TEST, HUB_SOURCES
from lm_eval_latenttts.data.questions import Question, read_questions, resolve_path, validate_rows

# under "lm_eval": the only logger hierarchy lm-eval's CLI prints at INFO
logger = logging.getLogger("lm_eval.latent_tts.tasks")

SHIPPED_ARITH = ARITH_TEST

SKIP_KEY = "latent_skip_bad_rows"
SKIP_ENV = "LATENT_TTS_SKIP_BAD_ROWS"
SKIP_OPTION = f"--metadata '{{\"{SKIP_KEY}\": true}}' or {SKIP_ENV}=1"
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


# --------------------------------------------------------------------------- data
def _skip_requested(metadata):
    """Whether to drop bad rows: ``--metadata latent_skip_bad_rows`` if given, else ``LATENT_TTS_SKIP_BAD_ROWS``."""
    for value, where in ((metadata.get(SKIP_KEY), f"--metadata {SKIP_KEY}"), (os.environ.get(SKIP_ENV), SKIP_ENV)):
        if value is None or value == "":
            continue
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE or text in _FALSE:
            return text in _TRUE
        raise ValueError(f"{where}={value!r}: expected true or false (1 or 0).")
    return False


def _as_dataset(questions: list[Question]):
    import datasets

    # lm-eval shows the question as is; surrounding whitespace is not part of it
    docs = [{"question": q.question.strip(), "answer": q.answer} for q in questions]
    features = datasets.Features({"question": datasets.Value("string"), "answer": datasets.Value("string")})
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(docs, features=features)})


def _data_file(name, metadata):
    """``(absolute path, the setting that chose it)`` of a local file to read, or None for the Hub dataset."""
    env = f"LATENT_TTS_DATA_{name.upper()}"
    for value, where in ((metadata.get(f"latent_{name}_data"), f"--metadata latent_{name}_data"),
                         (os.environ.get(env), env)):
        if value:
            return resolve_path(value), where
    if name == "arith":
        if not SHIPPED_ARITH.is_file():
            raise FileNotFoundError(
                f"The shipped arithmetic test split {SHIPPED_ARITH} is missing from the installation; "
                "reinstall lm-eval-latenttts or set LATENT_TTS_DATA_ARITH=/path/arith_test.json."
            )
        return SHIPPED_ARITH, "the shipped test split; LATENT_TTS_DATA_ARITH to change"
    return None


def _load(name, metadata):
    skip = _skip_requested(metadata)
    local = _data_file(name, metadata)
    if local:
        path, where = local
        logger.info("latent_%s: reading questions from %s (%s)", name, path, where)
        return _as_dataset(read_questions(path, skip_bad_rows=skip, skip_option=SKIP_OPTION))
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
    source = f"the Hub dataset {path} ({config + ', ' if config else ''}{split} split)"
    return _as_dataset(validate_rows(raw, source, skip_bad_rows=skip, skip_option=SKIP_OPTION))


def load_gsm8k(**metadata):
    return _load("gsm8k", metadata)


def load_gsm_hard(**metadata):
    return _load("gsm_hard", metadata)


def load_multiarith(**metadata):
    return _load("multiarith", metadata)


def load_arith(**metadata):
    return _load("arith", metadata)


# --------------------------------------------------------------------------- metrics
def process_results(doc, results):
    """The metric rows of one document (``scaling.metrics.question_metrics``, as the scaling report) from the
    typed result in the model's response (``scaling.result.QuestionResult.from_json``)."""
    from lm_eval_latenttts.scaling.metrics import question_metrics
    from lm_eval_latenttts.scaling.result import QuestionResult

    return question_metrics(doc.get("answer"), QuestionResult.from_json(results[0] if results else ""))
