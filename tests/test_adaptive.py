"""Adaptive sampling (``scaling.adaptive``), the compute and greedy rows, and the GPU batch-size policy."""

import itertools
import json
import math
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lm_eval.api.instance import Instance  # noqa: E402

from hf_modeling.generation_config import LatentGenerationConfig  # noqa: E402
from lm_eval_latenttts.data import ARITH_TEST  # noqa: E402
from lm_eval_latenttts.data.questions import read_questions  # noqa: E402
from lm_eval_latenttts.harness.arguments import LatentTTSArgumentError, parse_model_args  # noqa: E402
from lm_eval_latenttts.harness.model import LatentTTSModel, _is_harness_default_batch_size  # noqa: E402
from lm_eval_latenttts.harness.setup import pick_batch_size  # noqa: E402
from lm_eval_latenttts.scaling.adaptive import (  # noqa: E402
    draw_in_rounds,
    exact_settled,
    leader_probability,
    regularized_beta,
    stop_reason,
    tally,
)
from lm_eval_latenttts.scaling.aggregation import majority_vote  # noqa: E402
from lm_eval_latenttts.scaling.plan import make_plan  # noqa: E402
from lm_eval_latenttts.scaling.rollouts import Candidate, QuestionDraw  # noqa: E402
from lm_eval_latenttts.tasks import utils as task_utils  # noqa: E402

# the shipped model's test questions: all of one token length (so they share batches) and answered diversely
QUESTIONS = [q.question for q in read_questions(ARITH_TEST)][:24]


def _candidates(answers, scores=None):
    return QuestionDraw([Candidate(a, None if scores is None else scores[i], str(a), 2) for i, a in enumerate(answers)],
                        drawn=len(answers), latent_forwards=2 * len(answers))


def _stop(draw, config):
    """The stopping rule of ``config``'s plan (majority vote) after ``draw``."""
    return stop_reason(draw, make_plan(config, has_rm=False).schedule, config)


# ----------------------------------------------------------------------------- the rules, pure
def test_exact_rule_stops_exactly_when_no_continuation_can_change_the_majority():
    """Every prefix of every answer sequence (4 answers and None, budget 6): the rule says "settled" if and only
    if the majority vote of all 6 is the prefix's majority vote whatever the remaining answers are."""
    alphabet, n = ("1", "2", "3", "4", None), 6
    settled_somewhere = 0
    for m in range(1, n):
        for prefix in itertools.product(alphabet, repeat=m):
            finals = {majority_vote(prefix + rest) for rest in itertools.product(alphabet, repeat=n - m)}
            safe = finals == {majority_vote(prefix)}
            assert exact_settled(tally(list(prefix)), n - m) == safe, (prefix, finals)
            settled_somewhere += safe
    assert settled_somewhere > 1000  # the rule does stop early, often


def test_regularized_beta_matches_the_binomial_form_and_the_beta_criterion():
    # I_x(a, b) = P(Binomial(a+b-1, x) >= a) for integer a, b
    for a, b, x in itertools.product(range(1, 9), range(1, 9), (0.1, 0.5, 0.73)):
        t = a + b - 1
        binomial = sum(math.comb(t, j) * x ** j * (1 - x) ** (t - j) for j in range(a, t + 1))
        assert regularized_beta(x, a, b) == pytest.approx(binomial, abs=1e-12), (a, b, x)
    assert leader_probability(3, 0) == pytest.approx(1 - 0.5 ** 4)  # 3 unanimous votes: 0.9375
    assert leader_probability(4, 4) == pytest.approx(0.5)
    assert leader_probability(2.5, 0.5) == pytest.approx(1 - regularized_beta(0.5, 3.5, 1.5))
    assert leader_probability(6, 1) > leader_probability(5, 1) > leader_probability(5, 2)


def test_weighted_votes_add_up_to_the_answered_rollouts():
    votes = tally(["7", "7", "8", None], scores=[0.0, 0.0, math.log(3.0), 5.0])
    # softmax weights 1, 1, 3 (the None rollout carries no vote), rescaled to the 3 answered rollouts
    assert [(round(v, 9), first, a) for v, first, a in votes] == [(1.8, 2, "8"), (1.2, 0, "7")]
    assert [v for v, _, _ in tally(["7", "7", "8"], scores=[1.0] * 3)] == [2.0, 1.0]  # a flat RM gives counts


def _copy(config, **changes):
    copy = LatentGenerationConfig.from_generation_config(config)
    copy.update(**changes)
    return copy


def test_stop_reasons():
    conf = LatentGenerationConfig(latent_sampling="dropout", dropout_p=0.2, num_return_sequences=16, adaptive=True,
                                  adaptive_rule="confidence", adaptive_threshold=0.9)
    assert _stop(_candidates(["5", "5"]), conf) is None  # P = 0.875
    assert _stop(_candidates(["5"] * 3), conf).startswith("confidence: P(leader '5'")
    assert _stop(_candidates(["5", "6"] * 8), conf) == "budget: all 16 rollouts drawn"
    esc = _copy(conf, adaptive_rule="esc", adaptive_round=2)
    assert _stop(_candidates(["4", "5", "5"]), esc).startswith("esc:")
    assert _stop(_candidates(["5", "4", "5"]), esc) is None
    fixed = _copy(conf, adaptive=False)
    assert _stop(_candidates(["5"]), fixed) == "fixed: all 16 rollouts"
    with pytest.raises(ValueError, match="adaptive_round >= 2"):
        _copy(esc, adaptive_round=1).validate()


def test_rounds_are_level_synchronous_and_fill_calls_up_to_the_row_budget():
    config = LatentGenerationConfig(latent_sampling="dropout", dropout_p=0.2, num_return_sequences=8, adaptive=True,
                                    adaptive_rule="exact", adaptive_round=2)
    # question q answers "q" at every sample but question 0, which alternates: it never settles early
    calls = []

    def draw(indices, offset, count):
        calls.append((tuple(indices), offset, count))
        return [_candidates([str(q) if q or (offset + j) % 2 else "x" for j in range(count)]) for q in indices]

    found = draw_in_rounds(5, make_plan(config, has_rm=False).schedule, config, draw, lambda: 6)
    assert [c.drawn for c in found] == [8, 4, 4, 4, 4]  # 4 unanimous votes of 8: no 4 others can overtake them
    assert calls == [((0, 1, 2), 0, 2), ((3, 4), 0, 2), ((0, 1, 2), 2, 2), ((3, 4), 2, 2), ((0,), 4, 2),
                     ((0,), 6, 2)]
    assert found[0].answers == ["x", "0"] * 4 and found[0].stopped == "budget: all 8 rollouts drawn"


# ----------------------------------------------------------------------------- the harness (the shipped model)
def _ask(lm, questions, **gen):
    reqs = [Instance("generate_until", {}, (q, {"latent_tts_payload": True, **gen}), 0) for q in questions]
    return [json.loads(r) for r in lm.generate_until(reqs, disable_tqdm=True)]


def _model(**kw):
    """The shipped model and LatentRM with their settings (dropout p=0.2) and the RM-weighted vote (adaptive rounds
    settle a vote; the backbone's recommended consistency vote refuses them), a budget of 8 drawn at once
    (requests turn adaptive sampling on)."""
    return LatentTTSModel(**{"device": "cpu", "n": 8, "seed": 5, "adaptive": False, "aggregate": "weighted", **kw})


def _rollouts(payload):
    return [(c["text"], c["score"], c["latent_steps"]) for c in payload["candidates"]]


def test_exact_rule_equals_majority_at_n_on_the_same_rollouts():
    lm = _model()
    fixed = _ask(lm, QUESTIONS)
    exact = _ask(lm, QUESTIONS, adaptive=True, adaptive_rule="exact", adaptive_round=1)
    drawn = [len(p["candidates"]) for p in exact]
    assert min(drawn) < 8 and len(set(drawn)) > 2  # it stopped early, after different numbers of rollouts ...
    for f, e in zip(fixed, exact):
        assert _rollouts(e) == _rollouts(f)[: len(e["candidates"])]  # ... on the fixed run's first rollouts
        assert e["majority"] == f["majority"]  # ... with majority@8's answer
        assert e["stopped"].startswith("exact:" if len(e["candidates"]) < 8 else "budget:")


def test_a_questions_rollouts_do_not_depend_on_when_other_questions_stop():
    """The same questions alone, in one batch, and with other batch sizes: byte-identical responses."""
    rule = dict(adaptive=True, adaptive_rule="confidence", adaptive_round=1, adaptive_threshold=0.95)
    together = _ask(_model(batch_size=1), QUESTIONS, **rule)
    assert len({p["rollouts"] for p in together}) > 2  # questions stop after different rounds
    assert together == _ask(_model(batch_size=3), QUESTIONS, **rule)
    lm = _model()
    for q in (0, 5, len(QUESTIONS) - 1):
        assert _ask(lm, [QUESTIONS[q]], **rule) == [together[q]]


def test_rollouts_latent_forwards_and_greedy_rows_by_hand():
    """The compute and greedy rows of one question, recounted from what the model did."""
    from hf_modeling import AutoLatentModel, load_latent_tokenizer
    from lm_eval_latenttts.checkpoints import shipped_model

    backbone = AutoLatentModel.from_pretrained(shipped_model())
    tok = load_latent_tokenizer(shipped_model(), backbone.config)
    steps = backbone.config.latent_length  # 2
    question = QUESTIONS[3]
    enc = tok([backbone.format_prompt(question)], return_tensors="pt")
    greedy_ids = backbone.generate(**enc, latent_sampling=None, num_return_sequences=1,
                                 return_dict_in_generate=True).answer_ids
    greedy = backbone.extract_answer(tok.decode(greedy_ids[0], skip_special_tokens=True))
    lm = _model()
    cases = {
        "fixed": ({}, 8 + 1),  # 8 rollouts and the greedy decode
        "no greedy": ({"greedy": False}, 8),
        "sampling off": ({"sampling": "none"}, 1),  # one rollout stands for all 8 and is the greedy decode
        "beam": ({"aggregate": "beam", "beams": 2, "candidates": 3}, 2 * 3 + 1),  # B*C candidates a step
        "adaptive": ({"adaptive": True, "adaptive_round": 3}, None),
    }
    for name, (gen, rollouts) in cases.items():
        payload = _ask(lm, [question], **gen)[0]
        if rollouts is None:  # the drawn rollouts and the greedy decode
            rollouts = len(payload["candidates"]) + 1
            assert payload["first_round"] == 3
        rows = task_utils.process_results({"answer": greedy}, [json.dumps(payload)])
        assert rows["rollouts"] == rollouts, name
        if name == "beam":  # B*C candidates feed their beam's latent at steps 2..L, B beams the last; greedy L
            assert rows["latent_forwards"] == 2 * 3 * (steps - 1) + 2 + steps
        else:
            assert rows["latent_forwards"] == rollouts * steps, name  # COCONUT: a fixed number of latent steps
        if name == "no greedy":
            assert "greedy" not in rows and "greedy" not in payload
        else:
            assert payload["greedy"] == greedy and rows["greedy"] == 1.0, name
        wrong = task_utils.process_results({"answer": "nothing"}, [json.dumps(payload)])
        assert wrong.get("greedy", 0.0) == 0.0
    adaptive = _ask(lm, [question], adaptive=True, adaptive_round=3)[0]
    assert {k for k in task_utils.process_results({"answer": "1"}, [json.dumps(adaptive)]) if k.startswith("pass@")} \
        == {"pass@1", "pass@2"}  # pass@k on the first round of 3 only


def test_adaptive_arguments():
    _, overrides = parse_model_args({"adaptive": "true", "adaptive_rule": "Exact", "adaptive_round": "2",
                                     "greedy": "off", "adaptive_threshold": "0.8"})
    assert overrides == {"adaptive": True, "adaptive_rule": "exact", "adaptive_round": 2, "greedy_baseline": False,
                         "adaptive_threshold": 0.8}
    assert parse_model_args({"adaptive": 1})[1]["adaptive"] is True
    with pytest.raises(LatentTTSArgumentError, match="adaptive_votes=rm weighs votes by a LatentRM"):
        LatentTTSModel(device="cpu", rm="none", adaptive=True, adaptive_votes="rm")
    for bad, words in (({"adaptive": "maybe"}, "adaptive must be True or False"),
                       ({"adaptive_rule": "vote"}, "'exact', 'confidence', 'esc'"),
                       ({"adaptive_threshold": 1}, "adaptive_threshold must be in (0.0, 1.0)"),
                       ({"adaptive_round": 0}, "adaptive_round must be an integer >= 1")):
        with pytest.raises(LatentTTSArgumentError, match="Valid keys") as info:
            parse_model_args(bad)
        assert words in str(info.value)


# ----------------------------------------------------------------------------- batch size on a GPU
def test_batch_size_policy():
    """Not measured here (no GPU): on CUDA with no batch_size, auto up to 512 questions per call (sized by the
    memory model); on CPU, about 128 rollouts per call."""
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert pick_batch_size(None, None, cuda) == ("auto", 512) == pick_batch_size(None, None, cuda, 16)
    assert pick_batch_size(None, None, cpu) == (64, 64) and pick_batch_size(None, None, cpu, 16) == (8, 64)
    assert pick_batch_size(None, None, cpu, 256) == (1, 64) and pick_batch_size(None, 4, cpu, 16) == (4, 4)
    assert pick_batch_size(8, None, cuda) == (8, 512) and pick_batch_size("auto", 32, cuda) == ("auto", 32)
    assert pick_batch_size("auto", None, cpu) == ("auto", 64)
    # lm-eval passes the int 1 when no --batch_size was given; a given --batch_size 1 is the str "1"
    assert _is_harness_default_batch_size(1) and not _is_harness_default_batch_size("1")
    assert not _is_harness_default_batch_size(True) and not _is_harness_default_batch_size(4)
