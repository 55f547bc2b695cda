import math
from math import comb

import pytest

from hf_modeling.answers import answers_equal, extract_answer, normalize_number
from lm_eval_latenttts.scaling.aggregation import answer_weights, majority_vote, weighted_vote
from lm_eval_latenttts.scaling.metrics import coverage, pass_at_k
from lm_eval_latenttts.scaling.strategies import QuestionView, rows, strategy


def view(answers, scores=None, searched=None):
    return QuestionView(tuple(answers), None if scores is None else tuple(scores), searched=searched)


@pytest.mark.parametrize(
    "text,backbone,expected",
    [
        ("<<3*6=18>> ### 18", "coconut", "18"),
        ("a # b ### 1,234\nmore", "coconut", "1,234"),
        ("no marker here 12", "coconut", None),
        ("### ", "coconut", None),
        ("The answer is: 1,234.", "codi", "1234"),
        ("x = -3 and then 7.5", "codi", "7.5"),
        ("no digits", "codi", None),
        ("Answer: 42", "colar", "42"),
        ("3*4=12 Answer: -3\n###", "colar", "-3"),
        ("nothing", "colar", None),
        (None, "colar", None),
    ],
)
def test_extract_answer(text, backbone, expected):
    assert extract_answer(text, backbone) == expected


def test_extract_answer_unknown_backbone():
    with pytest.raises(ValueError, match="Unknown latent backbone"):
        extract_answer("### 1", "gpt4")


def test_numbers_compare_as_numbers():
    assert answers_equal("1,234", "1234.0")
    assert answers_equal("-3", "-3.00")
    assert answers_equal("$12", 12)
    assert answers_equal("0.5", "1/2")
    assert answers_equal("18.", "18")
    assert not answers_equal("18", "19")
    assert not answers_equal(None, None)
    assert not answers_equal(None, "1")
    assert not answers_equal("abc", "1")
    assert answers_equal("Yes ", "yes")
    assert normalize_number("1,234") == 1234
    assert normalize_number("twelve") is None
    assert normalize_number(float("nan")) is None


def test_majority_vote_tie_break_and_none():
    assert majority_vote(["1", "2", "2", "1"]) == "1"  # tie -> earliest first occurrence
    assert majority_vote(["2", "1", "1.0", "2", "1.00"]) == "1"
    assert majority_vote([None, None, "5"]) == "5"
    assert majority_vote([None, None]) is None
    assert majority_vote([]) is None
    assert majority_vote(["3", "03", "3.0", "4"]) == "3"


def test_best_of_n_row_is_the_top_scored_trajectorys_answer():
    def best(answers, scores):
        return rows(view(answers, scores))["best_of_n"]

    assert best(["1", "2", "3"], [0.1, 0.9, 0.5]) == "2"
    assert best(["1", "2"], [0.5, 0.5]) == "1"
    assert best([None, "2"], [1.0, 0.0]) is None  # best trajectory unparsable -> wrong
    assert best(["1", "2"], [float("nan"), -5.0]) == "2"
    with pytest.raises(ValueError, match="2 answers but 3 scores"):
        best(["1", "2"], [1, 2, 3])


def test_weighted_vote():
    # majority says 2, but 1's trajectory scores much higher
    assert weighted_vote(["1", "2", "2"], [5.0, 0.0, 0.0]) == "1"
    assert weighted_vote(["1", "2", "2"], [0.0, 0.0, 0.0]) == "2"
    # negative scores: softmax is shift invariant
    assert weighted_vote(["1", "2", "2"], [-95.0, -100.0, -100.0]) == "1"
    assert weighted_vote(["1", "2"], [1.0, 1.0]) == "1"
    assert weighted_vote([None, "2"], [10.0, -10.0]) == "2"
    assert weighted_vote([None], [1.0]) is None
    # softmax: exp(score - max) by hand; shift invariant, and extreme scores do not overflow
    assert answer_weights([1.0, 2.0, 3.0]) == pytest.approx([math.exp(-2.0), math.exp(-1.0), 1.0], rel=1e-12)
    assert answer_weights([101.0, 102.0, 103.0]) == pytest.approx(answer_weights([1.0, 2.0, 3.0]), rel=1e-12)
    assert answer_weights([-1e9, 0.0, 1e9]) == [0.0, 0.0, 1.0]
    assert answer_weights([float("nan"), 0.0]) == [0.0, 1.0]  # NaN counts as -inf
    assert answer_weights([float("nan"), float("-inf")]) == [1.0, 1.0]  # no finite score: one vote each


def test_coverage():
    assert coverage([False, True, False]) == 1.0
    assert coverage([False, False]) == 0.0


def test_strategies_choose_and_name_a_candidate():
    answers, scores = ["7", "3", "3", None], [0.1, -2.0, -1.0, 5.0]
    majority = strategy("majority").choose(view(answers, scores))
    assert (majority.answer, majority.index, rows(view(answers, scores))["majority"]) == ("3", 1, "3")
    best = strategy("best_of_n").choose(view(answers, scores))  # the top score's answer could not be extracted
    assert (best.answer, best.index, rows(view(answers, scores))["best_of_n"]) == (None, 3, None)
    weighted = strategy("weighted").choose(view(answers, scores))  # softmax mass: "7" e^0.1 > "3" e^-2 + e^-1
    assert (weighted.answer, weighted.index) == ("7", 0)
    assert strategy("beam").choose(view(answers, scores, searched=2)).answer == "3"
    assert rows(view(answers)) == {"majority": "3", "best_of_n": None, "weighted": None}  # no RM: no RM rows
    with pytest.raises(ValueError, match="aggregate='median' is not a registered selection strategy; registered: "
                                         "majority, best_of_n, weighted, beam"):
        strategy("median")


@pytest.mark.parametrize("n,c,k", [(10, 3, 1), (10, 3, 5), (64, 5, 8), (8, 0, 3), (8, 8, 8), (20, 15, 10), (5, 1, 5)])
def test_pass_at_k_matches_binomial(n, c, k):
    expected = 1.0 - comb(n - c, k) / comb(n, k)
    assert math.isclose(pass_at_k(n, c, k), expected, rel_tol=1e-12, abs_tol=1e-12)


def test_pass_at_k_large_and_errors():
    # 1 - C(9997, 5000) / C(10000, 5000) = 1 - (5000 * 4999 * 4998) / (10000 * 9999 * 9998), without overflow
    assert pass_at_k(10000, 3, 5000) == pytest.approx(1 - (5000 * 4999 * 4998) / (10000 * 9999 * 9998), rel=1e-12)
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    for bad in [(0, 0, 1), (5, 6, 1), (5, -1, 1), (5, 2, 0), (5, 2, 6)]:
        with pytest.raises(ValueError):
            pass_at_k(*bad)
