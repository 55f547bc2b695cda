"""Answer comparison edge cases: thousands commas, NaN / infinities, the Unicode minus, and task scoring on payloads."""

import json
from fractions import Fraction

import pytest

from hf_modeling.answers import answers_equal, extract_answer, normalize_number
from lm_eval_latenttts.scaling.aggregation import majority_vote, weighted_vote
from lm_eval_latenttts.tasks import utils as task_utils

MINUS = "\u2212"


# ----------------------------------------------------------------------------- commas
@pytest.mark.parametrize("text", ["1,2,3", "12,34", "1,2345", "1234,567", ",123", "1,,234", "1,234,56"])
def test_other_commas_are_not_numbers(text):
    assert normalize_number(text) is None


def test_comma_lists_do_not_equal_the_joined_number():
    assert not answers_equal("1,2,3", "123")
    assert not answers_equal("12,34", "1234")
    assert not answers_equal("123", "1,2,3")
    # a comma between thousands groups is still just a separator
    assert normalize_number("1,234") == 1234 and normalize_number("$12,000") == 12000
    assert normalize_number("1,234,567.5") == Fraction(2469135, 2)
    assert answers_equal("1,234", "1234") and answers_equal("-1,234,567.5", "-1234567.50")


def test_codi_extraction_reads_thousands_groups_only():
    assert extract_answer("The answer is 1,234,567.", "codi") == "1234567"
    assert extract_answer("the list 1,2,3", "codi") == "3"  # "1,2,3" is three numbers, not 123
    assert extract_answer("so 12,34", "codi") == "34"


# ----------------------------------------------------------------------------- spaces (issue 21, item 6)
@pytest.mark.parametrize("text", ["3 4", "1 2 3", "12 000", "2 3/2", "2 0/4", "- 3", "3\t4", "1/2 3"])
def test_separate_numbers_are_never_joined(text):
    """Spaces were deleted before parsing: "3 4" read as 34, "1 2 3" as 123, "2 3/2" as 23/2."""
    assert normalize_number(text) is None
    assert not answers_equal(text, text.replace(" ", "").replace("\t", ""))


def test_a_mixed_number_is_its_value():
    """A gold "2 1/2" read as 21/2 = 10.5, so the right answer 2.5 scored wrong."""
    assert normalize_number("2 1/2") == Fraction(5, 2) and normalize_number("-2 1/2") == Fraction(-5, 2)
    assert normalize_number("1,234 3/4") == Fraction(4939, 4)
    assert answers_equal("2.5", "2 1/2") and answers_equal("5/2", " 2  1/2 ") and not answers_equal("10.5", "2 1/2")
    assert normalize_number("$ 12") == 12 and normalize_number("12 %") == 12  # a sign beside one number


def test_model_outputs_and_gold_keys_with_spaces():
    from hf_modeling.answers import answer_key
    from lm_eval_latenttts.data.questions import QuestionFileError, gold_answer, validate_rows

    assert extract_answer("### 3 4", "coconut") == "3 4" and not answers_equal(extract_answer("### 3 4", "coconut"), 34)
    assert answer_key("1 2 3") != answer_key("123") and answer_key("1 2 3") == ("str", "1 2 3")
    assert majority_vote(["3 4", "34", "3 4"]) == "3 4"  # the two "3 4" agree, and are not 34
    assert gold_answer("#### 2 1/2") == "2 1/2"
    rows = [{"question": "How much?", "answer": "2 1/2"}]
    assert task_utils.process_results(validate_rows(rows, "t")[0].as_doc(), ["2.5"])["acc"] == 1.0
    with pytest.raises(QuestionFileError, match="'3 4' is not a number"):
        validate_rows([{"question": "q", "answer": "3 4"}], "t")  # a gold "3 4" was the number 34


# ----------------------------------------------------------------------------- NaN and infinities
NON_FINITE = ["nan", "NaN", "NAN", " nan ", "-nan", "inf", "-Inf", "+INF", "infinity", "-Infinity",
              MINUS + "inf", float("nan"), float("inf"), float("-inf")]


@pytest.mark.parametrize("value", NON_FINITE, ids=repr)
def test_non_finite_never_equals_anything(value):
    assert normalize_number(value) is None
    assert not answers_equal(value, value)
    assert not answers_equal(value, "nan") and not answers_equal("nan", value)
    assert not answers_equal(value, float("nan"))


def test_non_finite_answers_never_win_a_vote():
    assert majority_vote(["nan", "NaN", "nan", "3"]) == "3"
    assert majority_vote([float("nan"), float("nan")]) is None
    assert weighted_vote(["inf", "2"], [10.0, 0.0]) == "2"


# ----------------------------------------------------------------------------- the Unicode minus
def test_unicode_minus_reads_as_minus():
    assert normalize_number(MINUS + "5") == -5
    assert normalize_number(MINUS + "1,234.5") == Fraction(-2469, 2)
    assert answers_equal(MINUS + "5", "-5") and answers_equal(MINUS + "5", -5)
    assert not answers_equal(MINUS + "5", "5")


def test_codi_extraction_keeps_the_unicode_minus():
    got = extract_answer("so " + MINUS + "5", "codi")
    assert answers_equal(got, -5) and got == "-5"
    assert extract_answer("x = " + MINUS + ".5", "codi") == "-.5"
    assert answers_equal(extract_answer("Answer: " + MINUS + "7", "colar"), "-7")
    assert answers_equal(extract_answer("### " + MINUS + "7", "coconut"), -7)


# ----------------------------------------------------------------------------- task scoring on payloads
def _payload(answer, candidates, majority=None):
    return json.dumps({"answer": answer, "majority": answer if majority is None else majority,
                       "n": len(candidates), "has_rm": False, "candidates": [{"answer": a} for a in candidates]})


def test_process_results_scores_right_answers_right():
    # gold kept as written in the file ("1,234"); the model answers without the comma
    out = task_utils.process_results({"answer": "1,234"}, [_payload("1234", ["1234", "1,234.0", "1,2,34", None])])
    assert out["acc"] == 1.0 and out["majority"] == 1.0
    assert out["single_acc"] == 0.5 and out["coverage"] == 1.0
    assert out["pass@4"] == 1.0 and out["pass@1"] == pytest.approx(0.5)
    out = task_utils.process_results({"answer": MINUS + "5"}, [_payload("-5", ["-5", "5"])])
    assert out["acc"] == 1.0 and out["single_acc"] == 0.5
    assert task_utils.process_results({"answer": "-7"}, ["so it is " + MINUS + "7"])["acc"] == 1.0


def test_process_results_scores_wrong_answers_wrong():
    out = task_utils.process_results({"answer": "123"}, [_payload("1,2,3", ["1,2,3", "nan", "12,3"])])
    assert out["acc"] == 0.0 and out["majority"] == 0.0 and out["coverage"] == 0.0 and out["single_acc"] == 0.0


def test_gold_from_a_file_scores_the_same_as_its_plain_form(tmp_path, monkeypatch):
    path = tmp_path / "d.json"
    path.write_text(json.dumps([{"question": "q", "answer": "So.\n#### 1,234"}, {"question": "r", "answer": MINUS + "3"},
                                {"question": "s", "answer": -2.0}]))
    monkeypatch.setenv("LATENT_TTS_DATA_GSM8K", str(path))
    docs = list(task_utils.load_gsm8k()["test"])
    right = ("1234", "-3", "-2")
    assert [task_utils.process_results(doc, [_payload(a, [a])])["acc"] for doc, a in zip(docs, right)] == [1.0] * 3


@pytest.mark.parametrize("gold,text", [(0.1, "0.1"), (2.3, "2.3"), (-1.25, "-1.25"), (1e20, "100000000000000000000")])
def test_float_golds_compare_by_their_decimal_value(gold, text):
    # a JSON gold such as 2.3 is the float 2.29999..., whose exact binary value no model output can equal
    assert answers_equal(gold, text) and answers_equal(text, gold)
    assert not answers_equal(gold, "2.4")


@pytest.mark.parametrize("number, text", [
    (10**30, "1" + "0" * 30), (Fraction(1, 8), "0.125"), (Fraction(-1, 8), "-0.125"), (Fraction(3, 1000), "0.003"),
    (Fraction(1, 3), "1/3"), (Fraction(-5, 2), "-2.5"), (-7, "-7"),
    (Fraction(123456789012345678901, 100), "1234567890123456789.01"),
])
def test_number_text_is_exact(number, text):
    from hf_modeling.answers import number_text

    assert number_text(number) == text
    assert normalize_number(text) == number  # it reads back as the same number
