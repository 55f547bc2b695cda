"""The read-back consistency vote (``aggregate=consistency``, ``scaling.strategies.Consistency``): the selector
issue 23's phase 1 found on the shipped task, as one strategy of the registry.

It reproduces phase 1's research prototype (``benchmarks/selection_lib/selectors.consistency_vote`` on the
committed rollouts and read-backs of the test split), its responses do not depend on the batch size, it is
refused before any compute where it has no rule (CODI, CoLaR, another latent count, adaptive rounds), and it
runs through ``lm_eval.simple_evaluate`` with its compute counted (``extra_positions``)."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(REPO / "benchmarks"))

from hf_modeling import AutoLatentModel, load_latent_tokenizer  # noqa: E402
from hf_modeling.generation_config import SettingError  # noqa: E402
from lm_eval_latenttts.scaling.aggregation import consistency_vote  # noqa: E402
from lm_eval_latenttts.scaling.engine import Engine, Job  # noqa: E402
from lm_eval_latenttts.scaling.readback import read_back  # noqa: E402

SHIPPED = REPO / "lm_eval_latenttts" / "checkpoints" / "arith-coconut"
COMMITTED = REPO / "benchmarks" / "results" / "selection_test.npz"


@pytest.fixture(scope="module")
def shipped():
    model = AutoLatentModel.from_pretrained(SHIPPED).eval()
    return model, load_latent_tokenizer(SHIPPED, model.config)


@pytest.fixture(scope="module")
def questions():
    from lm_eval_latenttts.data import arith

    return arith.load_split("test")


def _config(model, tok, **kw):
    return model.latent_generation_config(**{"num_return_sequences": 16, "seed": 0, "aggregate": "consistency",
                                             "eos_token_id": tok.eos_token_id, "pad_token_id": tok.pad_token_id,
                                             **kw})


def _run(model, tok, examples, batch_size, **kw):
    engine = Engine(model, tok, None, batch_size=batch_size)
    plan = engine.plan(_config(model, tok, **kw))
    jobs = [Job(i, model.encode_prompt(tok, e["question"]), plan, question=e["question"])
            for i, e in enumerate(examples)]
    return engine, jobs


# ----------------------------------------------------------------------------- the rule, pure
def test_the_vote_is_phase_ones_prototype_ties_included():
    """``aggregation.consistency_vote`` chooses what the prototype chooses, on random answers with many ties."""
    from selection_lib.selectors import consistency_vote as prototype

    rng = np.random.default_rng(0)
    answers = rng.integers(-1, 4, size=(400, 8))  # few values: ties are common; -1 is no answer
    readbacks = np.where(rng.random((400, 8)) < 0.5, answers, rng.integers(-1, 4, size=(400, 8)))
    expected = prototype(answers, readbacks, 0.001)

    def text(code):
        return None if code < 0 else str(code)

    for row, want in zip(range(len(answers)), expected):
        got = consistency_vote([text(a) for a in answers[row]], [text(r) for r in readbacks[row]], 0.001)
        assert got == text(want), row
    # consistent candidates decide; with none the plain vote does; the earliest first occurrence breaks ties
    assert consistency_vote(["1", "2", "2", "2"], ["1", "3", "3", "3"], 0.001) == "1"
    assert consistency_vote(["1", "2", "2"], ["0", "0", "0"], 0.001) == "2"
    assert consistency_vote(["2", "1", "1", "2"], ["2", "1", "0", "0"], 0.001) == "2"
    assert consistency_vote([None, None], ["1", None], 0.001) is None


# ----------------------------------------------------------------------------- phase 1's selector, reproduced
@pytest.mark.skipif(not COMMITTED.exists(), reason="the committed selection arrays are absent")
def test_it_reproduces_phase_ones_selector_on_the_committed_rollouts(shipped, questions):
    """On the first test questions (seed 0, N=16): the engine's samples and read-backs are the committed ones
    (``benchmarks/results/selection_test.npz``) and its choice is the prototype's on them."""
    from selection_lib.rollouts import answer_code
    from selection_lib.selectors import consistency_vote as prototype

    model, tok = shipped
    q = 24
    engine, jobs = _run(model, tok, questions[:q], batch_size=8)
    drawn = engine.draws(jobs)
    results = engine.run(jobs)
    committed = np.load(COMMITTED)
    answers = np.array([[answer_code(a) for a in d.draw.answers] for d in drawn])
    readbacks = np.array([[answer_code(a) for a in d.work.values] for d in drawn])
    assert (answers == committed["answers"][0, :q]).all()
    assert (readbacks == committed["readback_answer"][0, :q]).all()
    expected = prototype(committed["answers"][0, :q].astype(np.int64),
                         committed["readback_answer"][0, :q].astype(np.int64), 0.001)
    assert [answer_code(r.selection.answer) for r in results] == expected.tolist()
    assert sum(r.selection.answer != r.selection.rows["majority"] for r in results) >= 1  # not the plain vote
    # its compute: the prompt pass, then per sample its latent and the tokens it decoded (EOS included)
    for d, r, job in zip(drawn, results, jobs):
        texts, positions = read_back(model, tok, [job.prompt], [_latents(engine, job)])[0]
        assert [model.extract_answer(t) for t in texts] == list(d.work.values)
        assert r.extra_positions == positions == d.work.positions
        assert len(job.prompt) + 16 * 2 <= positions <= len(job.prompt) + 16 * 25
        assert r.rollouts == 17 and r.latent_forwards == 34


def _latents(engine, job):
    """Latent 0 of the job's 16 samples, drawn again alone (sample j is a function of (seed, question, j))."""
    from lm_eval_latenttts.scaling.rollouts import Recorder, sample

    recorder = Recorder()
    sample(engine.model, engine.tokenizer, [job.prompt], job.plan.config, record=recorder.add)
    return recorder[0].latents[:, :1]


# ----------------------------------------------------------------------------- batch invariance
def test_responses_do_not_depend_on_the_batch_size(shipped, questions):
    """Every response (answers, read-back choice, compute) is byte-identical at batch sizes 1, 17 and 33; and the
    batched read-back gives each question what it gets alone."""
    model, tok = shipped
    examples = questions[100:140]
    seen = {}
    for batch_size in (1, 17, 33):
        engine, jobs = _run(model, tok, examples, batch_size, num_return_sequences=6)
        seen[batch_size] = [r.to_json() for r in engine.run(jobs)]
    assert seen[1] == seen[17] == seen[33]
    assert all(json.loads(s)["extra_positions"] > 0 for s in seen[1])
    by_length: dict = {}
    for e in examples:
        prompt = model.encode_prompt(tok, e["question"])
        by_length.setdefault(len(prompt), []).append(prompt)
    prompts = max(by_length.values(), key=len)[:12]  # one call holds prompts of one width (the engine's groups)
    assert len(prompts) > 1
    prefixes = [torch.randn(3, 1, model.config.n_embd, generator=torch.Generator().manual_seed(i))
                for i in range(len(prompts))]
    together = read_back(model, tok, prompts, prefixes)
    alone = [read_back(model, tok, [p], [x])[0] for p, x in zip(prompts, prefixes)]
    assert together == alone


# ----------------------------------------------------------------------------- refusals, before any compute
@pytest.mark.parametrize("kind", ["codi", "colar"])
def test_backbones_without_an_explicit_continuation_are_refused(tmp_path, kind):
    from tiny_models import make_checkpoint

    folder = make_checkpoint(tmp_path / kind, kind=kind)
    model = AutoLatentModel.from_pretrained(folder).eval()
    tok = load_latent_tokenizer(folder, model.config)
    calls = []
    model.rollout = lambda *a, **k: calls.append(a)
    with pytest.raises(SettingError, match="no explicit continuation mode"):
        Engine(model, tok).plan(_config(model, tok, latent_sampling="dropout", dropout_p=0.1))
    assert not calls


def test_a_latent_count_without_a_rule_and_adaptive_rounds_are_refused(shipped):
    from lm_eval_latenttts.harness.arguments import LatentTTSArgumentError
    from lm_eval_latenttts.harness.settings import Settings

    model, tok = shipped
    with pytest.raises(SettingError, match="has a rule for 2 latent steps .* this run takes 3"):
        Engine(model, tok).plan(_config(model, tok, latent_length=3))

    def settings(**overrides):
        return Settings(model, tok, False, model.generation_config, overrides, 0, lambda *a: None)

    with pytest.raises(LatentTTSArgumentError, match="latent_length=3|this run takes 3"):
        settings(aggregate="consistency", latent_length=3)
    with pytest.raises(LatentTTSArgumentError, match="adaptive=true cannot apply with aggregate=consistency"):
        settings(aggregate="consistency", adaptive=True)
    assert settings(aggregate="consistency").plan(settings(aggregate="consistency").run_config).mode.value == "samples"


# ----------------------------------------------------------------------------- through lm-eval
def test_it_runs_through_lm_eval_with_its_compute_counted(shipped):
    """``simple_evaluate`` with ``aggregate=consistency`` on the shipped task: ``acc`` is the consistency vote of the
    logged candidates and read-backs (the engine's), and ``extra_positions`` is reported."""
    from harness_runs import evaluate, samples_of

    from hf_modeling.answers import answers_equal

    out = evaluate("latent_tts", ["latent_arith"], model_args="aggregate=consistency,n=8,device=cpu", limit=10,
                   log_samples=True)
    model, tok = shipped
    engine, jobs = _run(model, tok, [s["doc"] for s in samples_of(out, "latent_arith")], 4, num_return_sequences=8)
    expected = engine.run(jobs)
    for s, want in zip(samples_of(out, "latent_arith"), expected):
        payload = json.loads(s["resps"][0][0])
        assert payload["aggregate"] == "consistency" and payload["answer"] == want.selection.answer
        assert payload["extra_positions"] == want.extra_positions == s["extra_positions"]
        assert s["acc"] == float(answers_equal(want.selection.answer, s["doc"]["answer"]))
    assert out["config"]["latent_tts"]["aggregate"] == "consistency"
    assert out["results"]["latent_arith"]["extra_positions,none"] > 0


def test_sampling_off_reads_its_one_rollout_back_once(shipped, questions):
    """With sampling off one rollout stands for all N: it is read back once, and its cost counted once."""
    model, tok = shipped
    engine, jobs = _run(model, tok, questions[:3], 2, latent_sampling=None, num_return_sequences=4)
    single, single_jobs = _run(model, tok, questions[:3], 2, latent_sampling=None, num_return_sequences=1)
    for four, one in zip(engine.run(jobs), single.run(single_jobs)):
        assert four.selection.answer == one.selection.answer == four.greedy
        assert four.extra_positions == one.extra_positions and four.rollouts == one.rollouts == 1
