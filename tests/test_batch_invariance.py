"""A result is a function of (seed, question, settings) only: not of batch size, neighbours, splits or padding.

The lm-eval runs go through the harness's own ``simple_evaluate`` with
``log_samples`` (what ``--log_samples`` writes), on the ``latent_gsm8k`` task
built from its YAML (``harness_runs``: no task index).
"""

import json
import sys
from contextlib import nullcontext
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_lm_eval_plugin import make_rm, rigged_checkpoint  # noqa: E402
from tiny_models import make_checkpoint  # noqa: E402

from hf_modeling import AutoLatentModel, load_latent_tokenizer  # noqa: E402
from hf_modeling.latent_sampling import fold, key_from_ints, mix64, token_key  # noqa: E402

# questions of several token lengths, so that batches mix lengths unless the model groups them
QUESTIONS = [f"Tom has {i} apples and buys {i * 7} more{', then ' + 'more ' * (i % 3) if i % 2 else ''}. How many?"
             for i in range(13)]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("invariance")
    data = root / "questions.json"
    data.write_text(json.dumps([{"question": q, "answer": str(i % 10)} for i, q in enumerate(QUESTIONS)]))
    return {"codi": rigged_checkpoint(root / "codi"), "rm": make_rm(root / "rm"),
            "colar": make_checkpoint(root / "colar", kind="colar"), "data": data}


def _responses(lm, data, monkeypatch, questions=QUESTIONS):
    """The logged responses of a full ``latent_gsm8k`` run on ``data`` (as ``--log_samples`` records them)."""
    from harness_runs import evaluate, samples_of

    monkeypatch.setenv("LATENT_TTS_DATA_GSM8K", str(data))
    samples = samples_of(evaluate(lm, ["latent_gsm8k"], log_samples=True, num_fewshot=0), "latent_gsm8k")
    assert len(samples) == len(questions)
    return [s["resps"][0][0] for s in samples]


SETTINGS = {
    "dropout+rm": dict(n=4, sampling="dropout", dropout_p=0.3, rm=True),
    "noise+rm, n=5": dict(n=5, sampling="noise", noise_std=1.0, rm=True),
    "beam": dict(sampling="dropout", dropout_p=0.3, rm=True, aggregate="beam", beams=2, candidates=2),
    "greedy": dict(n=1),
}


@pytest.mark.parametrize("name", list(SETTINGS))
def test_batch_size_does_not_change_logged_responses(models, monkeypatch, name):
    from lm_eval_latenttts.harness.model import LatentTTSModel

    settings = dict(SETTINGS[name])
    if settings.pop("rm", False):
        settings["rm"] = str(models["rm"])
    runs = {}
    for batch_size in (1, 3, 8):
        lm = LatentTTSModel(pretrained=str(models["codi"]), device="cpu", batch_size=batch_size, seed=11,
                            max_new_tokens=6, **settings)
        runs[batch_size] = _responses(lm, models["data"], monkeypatch)
    assert runs[1] == runs[3] == runs[8]  # byte-identical
    if name != "greedy":  # the runs sample: the questions' rollouts are not all alike
        assert len({tuple(c["text"] for c in json.loads(r)["candidates"]) for r in runs[1]}) > 1
    if name == "beam":  # and a question's beams are different paths (dropout: each candidate's own forward)
        assert all(len({c["score"] for c in json.loads(r)["candidates"]}) == 2 for r in runs[1])


def test_auto_batch_with_out_of_memory_halving_is_identical(models, monkeypatch):
    from lm_eval_latenttts.harness.model import LatentTTSModel

    kw = dict(pretrained=str(models["codi"]), rm=str(models["rm"]), device="cpu", n=4, sampling="dropout",
              dropout_p=0.3, seed=11, max_new_tokens=6)
    reference = _responses(LatentTTSModel(batch_size=1, **kw), models["data"], monkeypatch)
    lm = LatentTTSModel(batch_size="auto", max_batch_size=8, **kw)
    original, calls = lm.model.rollout, []

    def limited(*args, **kwargs):
        if args[0].shape[0] > 3:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        calls.append(args[0].shape[0])
        return original(*args, **kwargs)

    monkeypatch.setattr(lm.model, "rollout", limited)
    assert _responses(lm, models["data"], monkeypatch) == reference
    assert max(calls) <= 3 and lm.batch_sizes[0] <= 3


def test_rollouts_split_over_calls_equal_one_call(models):
    model = AutoLatentModel.from_pretrained(models["codi"])
    tok = load_latent_tokenizer(models["codi"], model.config)
    enc = tok([model.format_prompt(q) for q in QUESTIONS[:3]], return_tensors="pt", padding=True)
    kw = dict(latent_sampling="dropout", dropout_p=0.3, seed=2, max_new_tokens=4, return_dict_in_generate=True)
    whole = model.generate(**enc, num_return_sequences=6, **kw)
    first = model.generate(**enc, num_return_sequences=2, **kw)
    rest = model.generate(**enc, num_return_sequences=4, sample_offset=2, **kw)
    for q in range(3):
        torch.testing.assert_close(whole.latents[q * 6: q * 6 + 2], first.latents[q * 2: q * 2 + 2], rtol=0, atol=1e-6)
        torch.testing.assert_close(whole.latents[q * 6 + 2: q * 6 + 6], rest.latents[q * 4: q * 4 + 4], rtol=0,
                                   atol=1e-6)
        assert torch.equal(whole.answer_ids[q * 6 + 2: q * 6 + 6], rest.answer_ids[q * 4: q * 4 + 4])


@pytest.mark.parametrize("kind", ["codi", "colar"])
def test_a_question_alone_equals_it_in_a_padded_batch(models, kind):
    """Padding changes the last bits of attention, never the randomness: same answers, latents to float rounding."""
    model = AutoLatentModel.from_pretrained(models[kind])
    tok = load_latent_tokenizer(models[kind], model.config)
    kw = dict(latent_sampling="noise", noise_std=0.5, num_return_sequences=3, seed=4, max_new_tokens=4,
              return_dict_in_generate=True)
    batch = model.generate(**tok([model.format_prompt(q) for q in QUESTIONS[:4]], return_tensors="pt",
                                 padding=True), **kw)
    for q, question in enumerate(QUESTIONS[:4]):
        alone = model.generate(**tok([model.format_prompt(question)], return_tensors="pt"), **kw)
        rows = slice(q * 3, q * 3 + 3)
        steps = alone.latents.shape[1]
        torch.testing.assert_close(batch.latents[rows, :steps], alone.latents, rtol=1e-4, atol=1e-5)
        assert tok.batch_decode(batch.answer_ids[rows]) == tok.batch_decode(alone.answer_ids)


def test_counter_based_random_numbers_match_a_reference_implementation():
    """The int64 hash wraps as unsigned 64-bit arithmetic would: same bits on any platform and device."""
    mask = (1 << 64) - 1

    def ref_mix(x):
        x &= mask
        x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & mask
        x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & mask
        return x ^ (x >> 31)

    def signed(x):
        return x - (1 << 64) if x >= (1 << 63) else x

    values = [0, 1, -1, 2**62 + 12345, -(2**63), 2**63 - 1, 987654321987]
    got = mix64(torch.tensor(values, dtype=torch.int64)).tolist()
    assert got == [signed(ref_mix(v)) for v in values]
    # keys: different inputs, different keys; a fold is a function of its two inputs only
    keys = fold(torch.tensor([5, 5, 6]), torch.tensor([1, 2, 1])).tolist()
    assert len(set(keys)) == 3 and fold(torch.tensor([5]), 2).tolist() == keys[1:2]
    assert token_key(0, [1, 2, 3]) != token_key(0, [1, 2, 4]) != token_key(1, [1, 2, 3])
    assert key_from_ints(3, 4) == key_from_ints(3, 4) != key_from_ints(4, 3)


def test_dropout_masks_have_the_requested_rate_and_differ_by_row_and_site():
    from hf_modeling.latent_sampling import keyed_normal, keyed_uniform

    keys = fold(torch.arange(64)[:, None], torch.arange(8)[None, :])  # 64 rows x 8 positions
    u = keyed_uniform(keys, 0, 128)
    assert abs(float((u < 0.2).float().mean()) - 0.2) < 0.01
    assert not torch.equal(u[0], u[1]) and not torch.equal(u, keyed_uniform(keys, 1, 128))
    z = keyed_normal(keys, -1, 128)
    assert abs(float(z.mean())) < 0.02 and abs(float(z.std()) - 1.0) < 0.02


def test_answer_room_is_per_row_not_set_by_a_long_neighbour(models):
    model = AutoLatentModel.from_pretrained(models["codi"])
    tok = load_latent_tokenizer(models["codi"], model.config)
    short, long = "What is 1 plus 1?", "x" * (model.config.n_positions - 20)
    kw = dict(max_new_tokens=30, eos_token_id=[-1], return_dict_in_generate=True)  # no EOS: every row decodes 30
    alone = model.generate(**tok([model.format_prompt(short)], return_tensors="pt"), **kw)
    with pytest.warns(UserWarning, match="does not fit"):
        both = model.generate(**tok([model.format_prompt(short), model.format_prompt(long)], return_tensors="pt",
                                    padding=True), **kw)
    assert alone.answer_ids.shape[1] == 30
    assert torch.equal(both.answer_ids[0], alone.answer_ids[0])  # the short question keeps its 30 tokens
    room = model.config.n_positions - (both.attention_mask[1, : both.prompt_length].sum() + 6 + 1)
    assert int(both.attention_mask[1, both.answer_start:].sum()) == room  # the long one stops at the window


@pytest.mark.parametrize("sampling", [dict(latent_sampling=None), dict(latent_sampling="dropout", dropout_p=0.2),
                                      dict(latent_sampling="noise", noise_std=1.0)])
def test_ghost_rows_alone_equal_a_full_batch_bit_for_bit(sampling):
    """One question with N=1 runs with ghost questions (fewer than MIN_ROWS rows); the ghosts copy its prompt
    state instead of running the prompt again.  Its rollout equals the same question's in a batch of 20
    questions (no ghosts), bit for bit, and the shipped model's prompts all have one length (no padding)."""
    from hf_modeling.latent_state import MIN_ROWS
    from lm_eval_latenttts.checkpoints import DEFAULT_MODEL_DIR
    from lm_eval_latenttts.data import arith

    model = AutoLatentModel.from_pretrained(str(DEFAULT_MODEL_DIR)).eval()
    tok = load_latent_tokenizer(str(DEFAULT_MODEL_DIR), model.config)
    qs = [model.format_prompt(e["question"]) for e in arith.load_split("test")[:20]]
    assert len(qs) > MIN_ROWS
    kw = dict(num_return_sequences=1, seed=3, max_new_tokens=4, return_dict_in_generate=True, **sampling)
    batch = model.generate(**tok(qs, return_tensors="pt"), **kw)
    for q in (0, 7, 19):
        alone = model.generate(**tok(qs[q:q + 1], return_tensors="pt"), **kw)
        assert torch.equal(alone.latents, batch.latents[q:q + 1])
        assert torch.equal(alone.answer_ids, batch.answer_ids[q:q + 1])


@pytest.mark.parametrize("sampling", [dict(latent_sampling=None), dict(latent_sampling="noise", noise_std=1.0),
                                      dict(latent_sampling="dropout", dropout_p=0.2, dropout_scope="latent")])
def test_prompts_shorter_than_min_rows_alone_equal_a_full_batch_bit_for_bit(sampling):
    """A 3-token prompt whose pass is shared by its N=16 samples has fewer than MIN_ROWS token rows alone;
    the prompt pass then runs copies of it, so that its numbers match the same prompt's in a batch of 20."""
    from lm_eval_latenttts.checkpoints import DEFAULT_MODEL_DIR

    model = AutoLatentModel.from_pretrained(str(DEFAULT_MODEL_DIR)).eval()
    ids = torch.randint(1, 60, (20, 3), generator=torch.Generator().manual_seed(0))
    ids[:, -1] = model.config.latent_start_id
    mask = torch.ones_like(ids)
    kw = dict(num_return_sequences=16, seed=3, max_new_tokens=3, return_dict_in_generate=True, **sampling)
    with pytest.warns(UserWarning) if sampling["latent_sampling"] is None else nullcontext():
        batch = model.generate(ids, mask, **kw)
        for q in (0, 9, 19):
            alone = model.generate(ids[q:q + 1], mask[q:q + 1], **kw)
            assert torch.equal(alone.latents, batch.latents[q * 16:(q + 1) * 16])
            assert torch.equal(alone.answer_ids, batch.answer_ids[q * 16:(q + 1) * 16])


# GSM8K-like prompts: 24 questions of 24 different token lengths between about 80 and 220 (byte tokenizer), in
# buckets of 16 and 32 tokens (``scaling.rollouts.padded_length``), in an order that is not sorted by length
VARIED = [f"Ann has {i} pens. " + "She buys pencils. " * (1 + (i * 7) % 4)
          + "x" * ((i * 5) % 11) + f" How many pens does she have after {i % 5} days?" for i in range(24)]


@pytest.fixture(scope="module")
def varied(tmp_path_factory):
    root = tmp_path_factory.mktemp("varied")
    data = root / "questions.json"
    data.write_text(json.dumps([{"question": q, "answer": str(i % 10)} for i, q in enumerate(VARIED)]))
    return {"coconut": rigged_checkpoint(root / "coconut", kind="coconut"), "codi": rigged_checkpoint(root / "codi"),
            "colar": make_checkpoint(root / "colar", kind="colar"), "rm": make_rm(root / "rm"), "data": data}


VARIED_SETTINGS = {
    "noise n=4": dict(n=4, sampling="noise", noise_std=1.0),
    "adaptive": dict(n=6, sampling="dropout", dropout_p=0.3, adaptive=True, adaptive_rule="exact",
                     adaptive_round=2),
}


@pytest.mark.parametrize("kind", ["coconut", "codi", "colar"])
@pytest.mark.parametrize("name", list(VARIED_SETTINGS))
def test_varied_prompt_lengths_share_calls_and_keep_responses_byte_identical(varied, monkeypatch,
                                                                             kind, name):
    """Questions of different lengths are padded to their own bucket and share calls: at batch_size 64 the
    24 lengths take a few calls (greedy decodes included), not one per length, and the logged responses at
    batch sizes 1, 8 and 64 are byte-identical, for every backbone kind (coconut and codi: with an RM)."""
    from lm_eval_latenttts.harness.model import LatentTTSModel
    from lm_eval_latenttts.scaling.rollouts import padded_length

    # with an RM the log holds float scores, where a padding that depends on the neighbours shows (checked:
    # padding each call to its longest prompt fails the byte-identity below)
    settings = dict(VARIED_SETTINGS[name], **({"rm": str(varied["rm"])} if kind != "colar" else {}))
    lengths = set()
    runs, calls = {}, {}
    for batch_size in (1, 8, 64):
        lm = LatentTTSModel(pretrained=str(varied[kind]), device="cpu", batch_size=batch_size, seed=11,
                            max_new_tokens=5, **settings)
        original, seen = lm.model.rollout, []

        def counted(input_ids, *args, _original=original, _seen=seen, **kwargs):
            _seen.append(input_ids.shape)
            return _original(input_ids, *args, **kwargs)

        monkeypatch.setattr(lm.model, "rollout", counted)
        runs[batch_size] = _responses(lm, varied["data"], monkeypatch, VARIED)
        calls[batch_size] = seen
        lengths = {len(lm.model.encode_prompt(lm.tokenizer, q)) for q in VARIED}
    assert runs[1] == runs[8] == runs[64]  # byte-identical
    assert len({tuple(c["text"] for c in json.loads(r)["candidates"]) for r in runs[1]}) > 1
    buckets = {padded_length(n) for n in lengths}
    assert len(lengths) == len(VARIED) and 1 < len(buckets) <= 6 and min(lengths) > 64
    # every call's prompts have one canonical width; at batch 64 the first round and the greedy decodes take
    # one call per bucket (adaptive: later rounds only for undecided questions), not one per length
    assert {shape[1] for shape in calls[64]} == buckets
    first_rounds = len(buckets) * 2  # the sampled round and the greedy decodes
    assert len(calls[64]) <= (first_rounds if name != "adaptive" else first_rounds + 2 * len(buckets))
    assert len(calls[64]) < len(calls[1])


def test_cpu_prompt_pass_runs_the_fused_kernel_and_is_batch_and_thread_invariant(varied):
    """The CPU prompt pass uses SDPA's flash kernel (``attention_kernel``); a prompt's cache and last hidden state
    are the same bits alone, in batches of 3 and 16 of its bucket, and with 1 or 2 threads."""
    from torch.nn.attention import SDPBackend

    from hf_modeling.latent_state import attention_kernel
    from lm_eval_latenttts.scaling.rollouts import left_pad, padded_length

    assert attention_kernel("cpu", "prompt") == SDPBackend.FLASH_ATTENTION
    assert attention_kernel("cpu", "steps") == attention_kernel("cuda", "prompt") == SDPBackend.MATH
    model = AutoLatentModel.from_pretrained(varied["coconut"]).eval()
    tok = load_latent_tokenizer(varied["coconut"], model.config)
    prompts = [model.encode_prompt(tok, q) for q in VARIED]
    bucket = [p for p in prompts if padded_length(len(p)) == padded_length(len(prompts[0]))]
    assert len({len(p) for p in bucket}) > 1
    bucket = (bucket * 16)[:16]
    from hf_modeling import LatentGenerationConfig, LatentSampler

    sampler = LatentSampler(LatentGenerationConfig().for_backbone("coconut"))
    threads = torch.get_num_threads()
    got = []
    try:
        for n_threads in (1, 2):
            torch.set_num_threads(n_threads)
            for rows in (1, 3, 16):
                ids, mask = left_pad(bucket[:rows], tok.pad_token_id, "cpu")
                with torch.no_grad():
                    state = model.prefill(ids, mask, sampler, torch.zeros(rows, dtype=torch.int64))
                got.append((state.hidden[0], state.cache.layers[-1].keys[0], state.cache.layers[-1].values[0]))
    finally:
        torch.set_num_threads(threads)
    for other in got[1:]:
        assert all(torch.equal(a, b) for a, b in zip(got[0], other))


def test_shipped_rm_scores_are_bit_identical_at_batch_sizes_1_17_33_64():
    """Issue 21's setting (the shipped model, n=1, noise 1.0, the shipped LatentRM), as the harness draws a call:
    with 17 or 33 questions a question's rows came last in a call whose row count is not a multiple of 4, where
    the CPU matrix-vector kernel of the RM's one-output head rounded differently (doc 118 of latent_arith:
    -0.647509 at batch 1, -0.647508 at batch 17).  Every question's unrounded scores are now the same bits."""
    from hf_modeling import LatentGenerationConfig
    from lm_eval_latenttts.checkpoints import DEFAULT_MODEL_DIR, DEFAULT_RM_DIR
    from lm_eval_latenttts.data import arith
    from lm_eval_latenttts.scaling import rollouts

    model = AutoLatentModel.from_pretrained(str(DEFAULT_MODEL_DIR)).eval()
    rm = AutoLatentModel.from_pretrained(str(DEFAULT_RM_DIR)).eval()
    tok = load_latent_tokenizer(str(DEFAULT_MODEL_DIR), model.config)
    prompts = [model.encode_prompt(tok, e["question"]) for e in arith.load_split("test")[:64]]
    prompts = [p for p in prompts if len(p) == len(prompts[0])]  # one width: the calls of one harness group
    assert len(prompts) >= 34
    config = LatentGenerationConfig(latent_sampling="noise", noise_std=1.0, num_return_sequences=1, seed=0)
    runs = {}
    for batch_size in (1, 17, 33, 64):
        runs[batch_size] = [score for start in range(0, len(prompts), batch_size)
                            for c in rollouts.sample(model, tok, prompts[start:start + batch_size], config, rm)
                            for score in c.scores]
    assert runs[17] == runs[1] and runs[33] == runs[1] and runs[64] == runs[1]


@pytest.mark.parametrize("rows", [17, 33, 34, 35, 65])
def test_rm_head_is_row_invariant(models, rows):
    """Every row's RM step scores are the same bits in a call of ``rows`` rows as alone (with its ghost rows)."""
    rm = AutoLatentModel.from_pretrained(str(models["rm"])).eval()
    hidden = rm.latent_size
    gen = torch.Generator().manual_seed(rows)
    state_ids = torch.randint(1, 60, (rows, 5), generator=gen)
    latents = torch.randn(rows, 3, hidden, generator=gen)
    together = rm.rm_step(rm.rm_prefill(state_ids), latents)
    for row in range(rows):
        copies = torch.full((16,), row)
        alone = rm.rm_step(rm.rm_prefill(state_ids[copies]), latents[copies])
        assert torch.equal(alone[0], together[row]), row
