"""Selection strategies as plug-ins (``scaling.strategies``), the plan that decides a request's mode once
(``scaling.plan``) and the engine that runs it (``scaling.engine``), tested without lm-eval; then docs/design.md's
worked example: a selector of one class and one registration, run through lm-eval."""

import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_lm_eval_plugin import make_rm, rigged_checkpoint  # noqa: E402

from hf_modeling import AutoLatentModel, LatentGenerationConfig, load_latent_tokenizer  # noqa: E402
from hf_modeling.generation_config import SettingError  # noqa: E402
from lm_eval_latenttts.scaling.engine import DocError, Engine, Job, groups  # noqa: E402
from lm_eval_latenttts.scaling.plan import make_plan  # noqa: E402
from lm_eval_latenttts.scaling.result import canonical_answer  # noqa: E402
from lm_eval_latenttts.scaling.rollouts import Recorder, sample  # noqa: E402
from lm_eval_latenttts.scaling.strategies import (  # noqa: E402
    STRATEGIES,
    Choice,
    DrawMode,
    QuestionView,
    Strategy,
    register_strategy,
    strategy,
)

QUESTIONS = [f"Tom has {i} apples and buys {i * 3} more. How many?" for i in range(5)]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("strategies")
    folder = rigged_checkpoint(root / "codi")
    model = AutoLatentModel.from_pretrained(folder).eval()
    tok = load_latent_tokenizer(folder, model.config)
    rm = AutoLatentModel.from_pretrained(make_rm(root / "rm")).eval()
    return model, tok, rm


@pytest.fixture
def registered():
    """Register toy strategies for one test; the registry is as it was afterwards."""
    before = dict(STRATEGIES)
    yield register_strategy
    STRATEGIES.clear()
    STRATEGIES.update(before)


def _config(model, **kw):
    return model.latent_generation_config(**{"latent_sampling": "dropout", "dropout_p": 0.3, "num_return_sequences": 4,
                                             "seed": 3, "max_new_tokens": 4, **kw})


def _jobs(model, tok, plan, questions=QUESTIONS):
    return [Job(i, model.encode_prompt(tok, q), plan, question=q) for i, q in enumerate(questions)]


# ----------------------------------------------------------------------------- the plan: one mode, decided once
def test_the_plan_decides_the_mode_the_greedy_decode_and_the_reported_n(models):
    model, _, _ = models
    cases = {
        "one": (dict(latent_sampling=None, dropout_p=None), True, DrawMode.ONE, 4, None, False),  # the rollout is the greedy decode
        "samples": ({}, True, DrawMode.SAMPLES, 4, None, True),
        "rounds": (dict(adaptive=True, adaptive_round=3), True, DrawMode.ROUNDS, 4, 3, True),
        "search": (dict(aggregate="beam", latent_beams=2), True, DrawMode.SEARCH, 2, None, True),
        "no payload": ({}, False, DrawMode.SAMPLES, 4, None, False),  # "#### <answer>": no greedy row
        "no greedy": (dict(greedy_baseline=False), True, DrawMode.SAMPLES, 4, None, False),
    }
    for name, (kw, payload, mode, n, first, greedy) in cases.items():
        plan = make_plan(_config(model, **kw), has_rm=True, payload=payload)
        assert (plan.mode, plan.n, plan.first_round, plan.greedy is not None) == (mode, n, first, greedy), name
        assert plan.schedule.splittable == (mode in (DrawMode.SAMPLES, DrawMode.ROUNDS)), name
    assert make_plan(_config(model), has_rm=True).strategy.name == "best_of_n"  # the default with an RM
    assert make_plan(_config(model), has_rm=False).strategy.name == "majority"
    search = make_plan(_config(model, aggregate="beam"), has_rm=True).settings()
    sampled = make_plan(_config(model, adaptive=True), has_rm=True).settings()
    assert search["beams"] == 4 and search["adaptive_rule"] is None  # what the results record of the mode
    assert sampled["beams"] is None and sampled["adaptive_rule"] == "confidence"


def test_settings_the_strategy_cannot_run_are_refused_before_any_compute(models):
    model, _, _ = models
    with pytest.raises(SettingError, match="aggregate='weighted' needs a LatentRM"):
        make_plan(_config(model, aggregate="weighted"), has_rm=False)
    with pytest.raises(SettingError, match="adaptive_votes='rm' weighs votes by a LatentRM"):
        make_plan(_config(model, adaptive=True, adaptive_votes="rm"), has_rm=False)
    with pytest.raises(SettingError, match="aggregate='median' is not a registered selection strategy; registered: "
                                           "majority, best_of_n, weighted, beam"):
        make_plan(_config(model, aggregate="median"), has_rm=True)
    with pytest.raises(ValueError, match="aggregate must be a name"):
        LatentGenerationConfig(aggregate="Best of N").validate()  # the config checks the name's form only
    with pytest.raises(ValueError, match="must be a lowercase identifier"):
        register_strategy(type("Bad", (Strategy,), {"name": "Bad Name"}))
    with pytest.raises(TypeError, match="takes a Strategy subclass"):
        register_strategy(object)


def test_a_package_registers_strategies_through_its_entry_points(registered, monkeypatch):
    """An unknown ``aggregate=`` name loads the ``lm_eval_latenttts.strategies`` entry points once (how a selector of
    another package reaches the ``lm_eval`` command), then is refused if still unknown."""
    import importlib.metadata

    from lm_eval_latenttts.scaling import strategies

    loaded = []

    class Point:
        def load(self):
            loaded.append(1)
            registered(type("FromPackage", (Strategy,), {"name": "from_package", "choose": lambda self, v: None}))

    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: [Point()] if group == strategies.ENTRY_POINTS
                        else [])
    monkeypatch.setattr(strategies, "_loaded_entry_points", [])
    assert strategy("from_package").name == "from_package" and loaded == [1]
    with pytest.raises(SettingError, match="not a registered selection strategy"):
        strategy("still_unknown")
    assert loaded == [1]  # the group is loaded once


def test_the_view_counts_votes_and_shares():
    view = QuestionView(("3", "4", "3.0", None, "4", "3"))
    assert view.votes[0][2] == "3" and view.shares == {"3": 0.6, "4": 0.4}
    assert view.first_giving("3.00") == 0 and view.first_giving("7") is None
    with pytest.raises(ValueError, match="2 answers but 1 scores"):
        QuestionView(("1", "2"), (0.5,))


# ----------------------------------------------------------------------------- the engine, without lm-eval
def test_groups_are_lm_evals_collator_order():
    """Grouped by (plan, padded width, first sample) in order of first appearance, longest first within a group:
    the order lm-eval's Collator gave the harness (kept so that out-of-memory budgets evolve as before)."""
    import random

    from lm_eval.models.utils import Collator

    from lm_eval_latenttts.scaling.rollouts import padded_length

    rng = random.Random(0)
    plans = [object(), object()]
    jobs = [Job(i, [1] * rng.choice([5, 9, 70, 75, 80, 130]), rng.choice(plans), rng.choice([0, 4]))
            for i in range(60)]
    collator = Collator(jobs, sort_fn=lambda job: (-len(job.prompt), job.index), group_by="gen_kwargs",
                        group_fn=lambda job: {"setting": id(job.plan), "width": padded_length(len(job.prompt)),
                                              "sample_offset": job.sample_offset})
    expected = [[job.index for job in group] for group in collator.get_batched(n=0, batch_fn=lambda _, w: len(w))]
    assert [[job.index for job in group] for group in groups(jobs)] == expected


def test_named_failures_are_answered_as_failed_and_the_rest_run(models, caplog):
    model, tok, rm = models
    engine = Engine(model, tok, rm)
    plan = engine.plan(_config(model))
    jobs = _jobs(model, tok, plan, ["What is 1 plus 1?", "  ", "word " * 400])
    assert set(engine.failures(jobs)) == {1, 2}
    with pytest.raises(DocError, match="no room for an answer"):
        engine.check(jobs[2])
    answered, empty, long = engine.run(jobs)
    assert len(answered.candidates) == 4 and answered.error is None and answered.has_greedy
    assert empty.error == "the question is empty" and "context window" in long.error
    assert empty.n == answered.n and empty.stopped == "failed" and empty.candidates == []
    assert "scored as wrong" in caplog.text


def test_the_engine_draws_what_the_rollouts_draw_and_records_traces_on_request(models):
    """Through the engine (groups, one call per group) a question gets the candidates ``rollouts.sample`` gives it
    alone; the recorder keeps each question's latents, answer tokens and step scores (research), in sample
    order, also when out-of-memory splits a question's samples over calls."""
    model, tok, rm = models
    engine = Engine(model, tok, rm, batch_size="auto", max_batch_size=8)
    plan = engine.plan(_config(model), payload=False)
    jobs = _jobs(model, tok, plan)
    recorder = Recorder()
    original, calls = model.rollout, []

    def limited(*args, **kwargs):
        if args[3] > 2:
            calls.append("out of memory")
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        calls.append(args[3])
        return original(*args, **kwargs)

    model.rollout = limited
    try:
        draws = engine.draws(jobs, recorder)
    finally:
        del model.rollout
    assert "out of memory" in calls and {c for c in calls if c != "out of memory"} == {2}  # pieces of 2 samples
    for job, (draw, greedy, steps, _) in zip(jobs, draws):
        trace = {}
        (alone,) = sample(model, tok, [job.prompt], plan.config, rm, record=lambda q, t: trace.setdefault(q, t))
        assert draw.answers == alone.answers and draw.scores == alone.scores and greedy is None and steps is None
        recorded = recorder[job.index]
        assert recorded.latents.shape == trace[0].latents.shape and torch.equal(recorded.latents, trace[0].latents)
        assert recorded.answer_tokens == trace[0].answer_tokens and recorded.step_scores == trace[0].step_scores


def test_a_strategy_gets_the_greedy_decode_and_step_scores_when_it_asks(models, registered):
    """A selector that abstains to the greedy decode when the votes are split, and one that reads the RM's per-step
    scores: the engine draws the greedy decode for the first even when the run does not report it, and records
    step scores for the second only."""
    model, tok, rm = models
    seen = {}

    @registered
    class AbstainToGreedy(Strategy):
        name = "abstain_to_greedy"
        needs_greedy = True

        def choose(self, view):
            seen.setdefault("greedy", []).append((view.has_greedy, view.greedy))
            share, answer = max(((s, a) for a, s in view.shares.items()), default=(0.0, None))
            return Choice(answer, view.first_giving(answer)) if share > 0.5 else Choice(view.greedy, None)

    @registered
    class LastStep(Strategy):
        name = "last_step"
        needs_rm = needs_step_scores = True

        def choose(self, view):
            seen.setdefault("steps", []).append(view.step_scores)
            best = max(range(len(view.answers)), key=lambda i: view.step_scores[i][-1])
            return Choice(view.answers[best], best)

    engine = Engine(model, tok, rm)
    greedy_config = _config(model).greedy()
    (expected_greedy,) = sample(model, tok, [model.encode_prompt(tok, QUESTIONS[0])], greedy_config)
    plan = engine.plan(_config(model, aggregate="abstain_to_greedy", greedy_baseline=False))
    assert plan.greedy is not None and not plan.reports_greedy
    (result,) = engine.run(_jobs(model, tok, plan, QUESTIONS[:1]))
    assert seen["greedy"] == [(True, canonical_answer(expected_greedy.answers[0]))] and not result.has_greedy
    assert result.rollouts == 4 + 1  # the greedy decode was drawn for the strategy
    plan = engine.plan(_config(model, aggregate="last_step"), payload=False)
    (result,) = engine.run(_jobs(model, tok, plan, QUESTIONS[:1]))
    trace = {}
    sample(model, tok, [model.encode_prompt(tok, QUESTIONS[0])], plan.config, rm,
           record=lambda q, t: trace.setdefault(q, t))
    (steps,) = seen["steps"]
    assert [list(s) for s in steps] == trace[0].step_scores and len(steps) == 4
    assert result.selection.answer == result.answers[max(range(4), key=lambda i: steps[i][-1])]


# ----------------------------------------------------------------------------- docs/design.md's worked example
def test_a_selector_of_one_class_and_one_registration_runs_through_lm_eval(registered, monkeypatch):
    """docs/design.md's example (Adding a selector; tests/test_readme.py checks that it is this class): ``Consensus``
    (the answer more than half of the candidates give, else none), registered, then ``lm_eval --model latent_tts
    --model_args aggregate=consensus`` on the shipped task: ``acc`` is its answer."""
    from harness_runs import evaluate, samples_of

    from hf_modeling.answers import answers_equal

    @registered
    class Consensus(Strategy):
        name = "consensus"

        def choose(self, view):
            share, answer = max(((s, a) for a, s in view.shares.items()), default=(0.0, None))
            return Choice(answer, view.first_giving(answer)) if share > 0.5 else Choice(None, None)

    out = evaluate("latent_tts", ["latent_arith"], model_args="aggregate=consensus,n=6,device=cpu", limit=12,
                   log_samples=True)
    samples = samples_of(out, "latent_arith")
    abstained = 0
    for s in samples:
        payload = json.loads(s["resps"][0][0])
        answers = [c["answer"] for c in payload["candidates"]]
        top = max(set(answers) - {None}, key=answers.count, default=None)
        expected = top if top is not None and answers.count(top) > len(answers) / 2 else None
        abstained += expected is None
        assert payload["aggregate"] == "consensus" and payload["answer"] == expected
        assert s["acc"] == float(answers_equal(expected, s["doc"]["answer"]))
        assert {"majority", "best_of_n", "weighted", "greedy"} <= set(s)  # the other rows are still reported
    assert out["config"]["latent_tts"]["aggregate"] == "consensus" and 0 < abstained < len(samples)
