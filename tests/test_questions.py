"""The one question reader (``lm_eval_latenttts.data.questions``) and its users: good layouts are read, bad data is refused.

Every error must name the file (absolute path), the first bad row (0-based) and
what to do; skipping happens only on request and is counted in a warning.
"""

import json
import logging
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from lm_eval_latenttts.training import annotate as ann  # noqa: E402
from lm_eval_latenttts import cli  # noqa: E402
from lm_eval_latenttts.data.questions import (  # noqa: E402
    Question,
    QuestionFileError,
    read_questions,
    validate_rows,
)
from lm_eval_latenttts.tasks import utils as task_utils  # noqa: E402

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
GOOD = [{"question": "a?", "answer": "1"}, {"question": "b?", "answer": "2"}]


def _write(path, rows):
    path.write_text(json.dumps(rows))
    return path


# ----------------------------------------------------------------------------- good files
@pytest.mark.parametrize("layout", ["list", "jsonl", "data", "test", "single", "bom"])
def test_layouts(tmp_path, layout):
    path = tmp_path / "q.json"
    if layout == "list":
        path.write_text(json.dumps(GOOD))
    elif layout == "jsonl":
        path.write_text("\n" + "\n\n".join(json.dumps(r) for r in GOOD) + "\n")
    elif layout in ("data", "test"):
        path.write_text(json.dumps({"version": 1, layout: GOOD}))
    elif layout == "single":  # JSON lines holding one row
        path.write_text(json.dumps(GOOD[0]))
    else:
        path.write_bytes(b"\xef\xbb\xbf" + json.dumps(GOOD).encode())
    expected = GOOD[:1] if layout == "single" else GOOD
    assert [q.as_doc() for q in read_questions(path)] == expected
    assert [q.index for q in read_questions(path)] == list(range(len(expected)))


def test_fields_and_gold_forms(tmp_path):
    rows = [
        {"question": "a", "answer": "So 8*9=72.\n#### 72", "steps": ["<<8*9=72>>"]},  # raw GSM8K
        {"input": "b", "target": 5.0},  # GSM-Hard: float target
        {"Question": "c", "final_ans": 7},
        {"question": "d", "Answer": " 1,234 "},  # gold text kept as written (comparison normalises)
        {"question": "e", "answer": None, "label": "0.25"},  # first non-null alias wins
        {"question": "f", "answer": 0.1},
        {"question": "g", "answer": "\u22125"},  # Unicode minus
    ]
    questions = read_questions(_write(tmp_path / "q.json", rows))
    assert [q.answer for q in questions] == ["72", "5", "7", "1,234", "0.25", "0.1", "\u22125"]
    assert [q.question for q in questions] == list("abcdefg")
    assert questions[0] == Question(index=0, question="a", answer="72")


def test_relative_path_is_resolved_against_cwd(tmp_path, monkeypatch):
    _write(tmp_path / "q.json", GOOD)
    monkeypatch.chdir(tmp_path)
    assert len(read_questions("q.json")) == 2
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "nope.json")):
        read_questions("nope.json")


# ----------------------------------------------------------------------------- bad rows
BAD_ROWS = [
    ({"question": "x"}, "no gold answer"),
    ({"question": "x", "answer": None}, "gold answer is null"),
    ({"question": "x", "answer": ""}, "gold answer is empty"),
    ({"question": "x", "answer": "   "}, "gold answer is empty"),
    ({"question": "x", "answer": "Because.\n#### "}, "empty after '####'"),
    ({"question": "x", "answer": "thirty-two"}, "'thirty-two' is not a number"),
    ({"question": "x", "answer": "nan"}, "'nan' is not a number"),
    ({"question": "x", "answer": "1,2,3"}, "'1,2,3' is not a number"),
    ({"question": "x", "answer": True}, "boolean"),
    ({"question": "x", "answer": [1]}, "not a number (list)"),
    ({"answer": "1"}, "no question"),
    ({"question": None, "answer": "1"}, "question is null"),
    ({"question": "", "answer": "1"}, "question is empty"),
    ({"question": "  \n", "answer": "1"}, "question is empty"),
    ({"question": 5, "answer": "1"}, "question is not text (int)"),
    ([1, 2], "not an object"),
    ("just text", "not an object"),
]


@pytest.mark.parametrize("row,reason", BAD_ROWS)
def test_bad_row_names_file_row_and_remedy(tmp_path, row, reason):
    path = _write(tmp_path / "q.json", GOOD + [row] + [{"question": "later bad", "answer": "x"}])
    with pytest.raises(QuestionFileError) as info:
        read_questions(path)
    msg = str(info.value)
    assert msg.startswith(str(path.resolve()) + ": row 2 (0-based)")  # the first bad row, not the later one
    assert reason in msg
    assert json.dumps(row)[:20] in msg  # the row itself, briefly
    assert "Correct or remove the row" in msg and "skip_bad_rows=True" in msg


def test_nan_and_infinite_numbers_are_not_gold(tmp_path):
    path = tmp_path / "q.json"
    path.write_text('[{"question": "a", "answer": NaN}, {"question": "b", "answer": Infinity}]')
    with pytest.raises(QuestionFileError, match="row 0 .*not a finite number"):
        read_questions(path)
    with pytest.raises(QuestionFileError, match="row 1 .*not a finite number"):
        validate_rows([GOOD[0], {"question": "b", "answer": float("inf")}], "src")


def test_long_rows_are_shown_briefly(tmp_path):
    path = _write(tmp_path / "q.json", [{"question": "word " * 1000, "answer": "many"}])
    msg = str(pytest.raises(QuestionFileError, read_questions, path).value)
    assert "'many' is not a number" in msg and len(msg) < 800 and "..." in msg


# ----------------------------------------------------------------------------- bad files
BAD_FILES = [
    ("", "is empty"),
    ("  \n\n", "is empty"),
    ("[]", "holds no rows"),
    ('{"data": []}', "holds no rows"),
    ('{"data": 5}', "member 'data' is a JSON int"),
    ("42", "holds a JSON int"),
    ('"questions"', "holds a JSON str"),
    ("question,answer\na,1\n", "line 1: not valid JSON"),
    ('[{"question": "a", "answer": "1"},', "is not valid JSON"),
    ('{"question": "a", "answer": "1"}\n{"question": "b", "answer": 2\n', "line 2: not valid JSON"),
]


@pytest.mark.parametrize("text,reason", BAD_FILES)
def test_bad_file_names_file_and_problem(tmp_path, text, reason):
    path = tmp_path / "q.json"
    path.write_text(text)
    with pytest.raises(QuestionFileError) as info:
        read_questions(path)
    msg = str(info.value)
    assert msg.startswith(str(path.resolve())) and reason in msg
    assert "JSON list of {question, answer} objects" in msg  # what is expected instead


def test_not_utf8(tmp_path):
    path = tmp_path / "q.json"
    path.write_bytes(b'[{"question": "\xff", "answer": "1"}]')
    with pytest.raises(QuestionFileError, match="not UTF-8"):
        read_questions(path)


# ----------------------------------------------------------------------------- skipping
def test_skip_bad_rows_skips_and_counts(tmp_path, caplog):
    path = _write(tmp_path / "q.json", [GOOD[0], {"question": "x", "answer": "thirty-two"}, {"answer": "3"}, GOOD[1]])
    with caplog.at_level(logging.WARNING, logger="lm_eval_latenttts.data.questions"):
        questions = read_questions(path, skip_bad_rows=True)
    assert [(q.index, q.answer) for q in questions] == [(0, "1"), (3, "2")]  # indexes stay the file's
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert str(path.resolve()) in warnings[0] and "skipped 2 of 4 rows" in warnings[0] and "kept 2" in warnings[0]


def test_all_rows_bad_is_an_error_even_when_skipping(tmp_path):
    path = _write(tmp_path / "q.json", [{"question": "x", "answer": "?"}, {"question": "", "answer": "1"}])
    with pytest.raises(QuestionFileError, match=r"all 2 rows are unusable .*row 0: the gold answer '\?'"):
        read_questions(path, skip_bad_rows=True)


def test_hub_rows_are_validated_by_the_same_rules(caplog):
    with pytest.raises(QuestionFileError, match=r"^the Hub dataset org/x: row 1 \(0-based\).*not a number.*--flag"):
        validate_rows([GOOD[0], {"input": "q", "target": "n/a"}], "the Hub dataset org/x", skip_option="--flag")
    assert [q.answer for q in validate_rows([{"input": "q", "target": 3.0}], "hub")] == ["3"]


# ----------------------------------------------------------------------------- the lm-eval tasks
def test_task_refuses_bad_file_naming_it(tmp_path, monkeypatch):
    path = _write(tmp_path / "bad.json", GOOD + [{"question": "legs?", "answer": "thirty-two"}])
    monkeypatch.setenv("LATENT_TTS_DATA_ARITH", str(path))
    monkeypatch.delenv("LATENT_TTS_SKIP_BAD_ROWS", raising=False)
    with pytest.raises(QuestionFileError) as info:
        task_utils.load_arith()
    msg = str(info.value)
    assert str(path) in msg and "row 2" in msg and "thirty-two" in msg
    assert '--metadata \'{"latent_skip_bad_rows": true}\'' in msg and "LATENT_TTS_SKIP_BAD_ROWS=1" in msg


def test_task_skip_option_by_metadata_and_env(tmp_path, monkeypatch, caplog):
    path = _write(tmp_path / "bad.json", GOOD + [{"question": "legs?", "answer": "thirty-two"}])
    monkeypatch.delenv("LATENT_TTS_SKIP_BAD_ROWS", raising=False)
    with caplog.at_level(logging.WARNING, logger="lm_eval_latenttts.data.questions"):
        docs = task_utils.load_gsm8k(latent_gsm8k_data=str(path), latent_skip_bad_rows=True)["test"]
    assert list(docs) == GOOD
    assert any("skipped 1 of 3 rows" in r.getMessage() and str(path) in r.getMessage() for r in caplog.records)
    monkeypatch.setenv("LATENT_TTS_SKIP_BAD_ROWS", "1")
    assert len(task_utils.load_gsm8k(latent_gsm8k_data=str(path))["test"]) == 2
    with pytest.raises(QuestionFileError):  # --metadata wins over the environment
        task_utils.load_gsm8k(latent_gsm8k_data=str(path), latent_skip_bad_rows=False)
    monkeypatch.setenv("LATENT_TTS_SKIP_BAD_ROWS", "maybe")
    with pytest.raises(ValueError, match="LATENT_TTS_SKIP_BAD_ROWS='maybe': expected true or false"):
        task_utils.load_gsm8k(latent_gsm8k_data=str(path))


def test_task_refuses_bad_hub_rows(monkeypatch):
    import datasets

    monkeypatch.delenv("LATENT_TTS_DATA_GSM_HARD", raising=False)
    monkeypatch.delenv("LATENT_TTS_SKIP_BAD_ROWS", raising=False)
    rows = [{"input": "q1", "target": 2.0}, {"input": "q2", "target": None}]
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: rows)
    with pytest.raises(QuestionFileError, match=r"the Hub dataset reasoning-machines/gsm-hard \(train split\): row 1"):
        task_utils.load_gsm_hard()
    assert list(task_utils.load_gsm_hard(latent_skip_bad_rows="true")["test"]) == [{"question": "q1", "answer": "2"}]


def test_task_logs_which_file_at_info_under_lm_eval(tmp_path, monkeypatch, caplog):
    _write(tmp_path / "d.json", GOOD)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LATENT_TTS_DATA_MULTIARITH", "d.json")
    # lm-eval's CLI prints only the "lm_eval" hierarchy at INFO; it also stops that hierarchy propagating to the
    # root logger, where caplog listens
    monkeypatch.setattr(logging.getLogger("lm_eval"), "propagate", True)
    with caplog.at_level(logging.INFO, logger="lm_eval"):
        task_utils.load_multiarith()
        task_utils.load_arith()
    lines = [(r.name, r.levelno, r.getMessage()) for r in caplog.records if r.name.startswith("lm_eval.")]
    assert ("lm_eval.latent_tts.tasks", logging.INFO,
            f"latent_multiarith: reading questions from {tmp_path.resolve() / 'd.json'} (LATENT_TTS_DATA_MULTIARITH)"
            ) in lines
    if task_utils.SHIPPED_ARITH.is_file():
        assert any(m.startswith(f"latent_arith: reading questions from {task_utils.SHIPPED_ARITH} (the shipped")
                   for _, _, m in lines)


def test_task_docs_keep_gold_text(tmp_path, monkeypatch):
    monkeypatch.setenv("LATENT_TTS_DATA_GSM8K", str(_write(tmp_path / "d.json", [
        {"question": "  padded?  ", "answer": "So.\n#### 1,234"}])))
    assert list(task_utils.load_gsm8k()["test"]) == [{"question": "padded?", "answer": "1,234"}]


# ----------------------------------------------------------------------------- annotate and its CLI
def test_annotate_load_questions(tmp_path, caplog):
    path = _write(tmp_path / "q.json", [GOOD[0], {"question": "x", "answer": "thirty-two"}, GOOD[1]])
    with pytest.raises(QuestionFileError, match=r"row 1 .*thirty-two.*--skip-bad-rows"):
        ann.load_questions(path)
    got = ann.load_questions(path, skip_bad_rows=True)
    assert got == [{"question_id": 0, "question": "a?", "gold": "1"}, {"question_id": 2, "question": "b?", "gold": "2"}]
    assert ann.load_questions(path, limit=1, skip_bad_rows=True) == got[:1]


def test_annotate_skip_option_is_recorded_and_on_the_cli(tmp_path):
    data = _write(tmp_path / "q.json", GOOD)
    from hf_modeling import LatentGenerationConfig

    config = ann.AnnotateConfig(model="m", data=str(data), output_dir=str(tmp_path / "o"), skip_bad_rows=True)
    assert config.recorded(LatentGenerationConfig())["skip_bad_rows"] is True
    base = ["annotate", "--model", "m", "--data", str(data), "--output-dir", "o"]
    assert cli.build_parser().parse_args(base + ["--skip-bad-rows"]).skip_bad_rows is True
    assert cli.build_parser().parse_args(base).skip_bad_rows is False


def test_annotate_cli_reports_bad_file(tmp_path, capsys):
    bad = _write(tmp_path / "q.json", [GOOD[0], {"question": "x", "answer": "thirty-two"}])
    code = cli.main(["annotate", "--model", str(tmp_path / "no-model"), "--data", str(bad),
                     "--output-dir", str(tmp_path / "o"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and str(bad) in err and "row 1" in err and "--skip-bad-rows" in err


# ----------------------------------------------------------------------------- shipped and shared data
def test_shipped_arith_splits_pass_validation():
    from lm_eval_latenttts.data import ARITH_TEST, ARITH_VALID

    for path in (ARITH_TEST, ARITH_VALID):
        if not path.is_file():
            pytest.skip(f"{path.name} not built")
        assert len(read_questions(path)) == 500


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="../shared/data is absent (development checkout only)")
@pytest.mark.parametrize("name,count", [("gsm_test.json", 1319), ("gsm_valid.json", 500), ("gsm_hard.json", 1318),
                                        ("multiarith.json", 580)])
def test_shared_data_passes_validation(name, count):
    questions = read_questions(SHARED_DATA / name)  # no skipping: every row must be usable
    assert len(questions) == count


def test_float_golds_are_exact_decimals(tmp_path):
    """JSON numbers are read as decimals: 1e30 was str(int(1e30)) = '1000000000000000019884624838656'."""
    path = tmp_path / "f.json"
    path.write_text('[{"question": "a", "answer": 1e30}, {"question": "b", "answer": 1e23}, '
                    '{"question": "c", "answer": 12345678901234567890.5}, {"question": "d", "answer": -2.50}, '
                    '{"question": "e", "answer": 1.5e-7}, {"question": "f", "answer": 5.0}]')
    expected = ["1" + "0" * 30, "1" + "0" * 23, "12345678901234567890.5", "-2.5", "0.00000015", "5"]
    assert [q.answer for q in read_questions(path)] == expected
    lines = tmp_path / "f.jsonl"
    lines.write_text('{"question": "a", "answer": 1e30}\n{"question": "b", "answer": 0.1}\n')
    assert [q.answer for q in read_questions(lines)] == ["1" + "0" * 30, "0.1"]
    # rows that arrive as Python floats (the Hub's datasets) by their shortest decimal text
    assert [q.answer for q in validate_rows([{"question": "a", "answer": 1e23}, {"question": "b", "answer": 0.1}],
                                            "rows")] == ["1" + "0" * 23, "0.1"]


def test_right_answer_to_a_float_gold_scores(tmp_path, monkeypatch):
    path = tmp_path / "f.json"
    path.write_text('[{"question": "a", "answer": 1e30}, {"question": "b", "answer": 1e23}]')
    monkeypatch.setenv("LATENT_TTS_DATA_GSM8K", str(path))
    docs = list(task_utils.load_gsm8k()["test"])
    for doc, said in zip(docs, ["1" + "0" * 30, "100,000,000,000,000,000,000,000"]):
        assert task_utils.process_results(doc, [f"#### {said}"])["acc"] == 1
