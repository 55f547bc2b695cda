"""The rollout hot path: a KV cache allocated once, GPT-2's lean one-token step, the fused tanh-GELU, the
in-place dropout masks -- each compared with what it replaces -- and the CUDA batch size's memory model, run
against a simulated byte budget on CPU."""

import json
import sys
from pathlib import Path

import pytest
import torch
from transformers import DynamicCache
from transformers.activations import NewGELUActivation

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tiny_models import make_checkpoint  # noqa: E402

from hf_modeling import AutoLatentModel, load_latent_tokenizer  # noqa: E402
from hf_modeling.fast_gpt2 import TanhGELU, gpt2_one_token, one_token_ready  # noqa: E402
from hf_modeling.latent_cache import LatentCache, PreallocatedLayer, map_cache  # noqa: E402
from hf_modeling.latent_sampling import keyed_dropout_scale, keyed_uniform  # noqa: E402


@pytest.fixture(scope="module")
def shipped():
    from lm_eval_latenttts.checkpoints import DEFAULT_MODEL_DIR, shipped_rm

    model = AutoLatentModel.from_pretrained(str(DEFAULT_MODEL_DIR)).eval()
    return model, load_latent_tokenizer(str(DEFAULT_MODEL_DIR), model.config), AutoLatentModel.from_pretrained(
        str(shipped_rm())).eval()


def _prompts(model, tok, count, start=0):
    from lm_eval_latenttts.data import arith

    return [model.format_prompt(e["question"]) for e in arith.load_split("test")[start:start + count]]


@torch.no_grad()
def test_preallocated_cache_holds_what_dynamic_cache_holds_bit_for_bit(shipped):
    """Prompt pass then one-token steps (padded rows among them): the same outputs, keys and values with the
    cache allocated at its final width as with transformers' growing DynamicCache; past its capacity it grows;
    a row selection leaves the original valid."""
    model, _, _ = shipped
    body = model.transformer
    ids = torch.randint(1, 60, (5, 9), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[1, :3] = 0
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    caches = {"dynamic": DynamicCache(config=model.config), "latent": LatentCache(model.config, 11)}
    outs = {}
    for name, cache in caches.items():
        hidden = [body(input_ids=ids, attention_mask=mask, position_ids=positions, cache=cache,
                       use_cache=True).last_hidden_state]
        step_mask, pos = mask, positions[:, -1] + 1
        for step in range(4):  # two past the capacity of 11
            x = torch.randn(5, 128, generator=torch.Generator().manual_seed(step))
            step_mask = torch.cat([step_mask, torch.ones(5, 1, dtype=mask.dtype)], dim=1)
            hidden.append(body(inputs_embeds=x[:, None], attention_mask=step_mask, position_ids=pos[:, None],
                               cache=cache, use_cache=True).last_hidden_state)
            pos = pos + 1
        outs[name] = hidden
    assert all(torch.equal(a, b) for a, b in zip(outs["dynamic"], outs["latent"]))
    for dyn, pre in zip(caches["dynamic"].layers, caches["latent"].layers):
        assert isinstance(pre, PreallocatedLayer) and pre.get_seq_length() == 13 and pre.key_storage.shape[2] >= 13
        assert torch.equal(dyn.keys, pre.keys) and torch.equal(dyn.values, pre.values)
    picked = map_cache(caches["latent"], lambda t: t[torch.tensor([2, 2, 0])])
    assert torch.equal(picked.layers[0].keys[1], caches["latent"].layers[0].keys[2])
    before = caches["latent"].layers[0].keys.clone()
    picked.layers[0].update(torch.zeros(3, 4, 1, 32), torch.zeros(3, 4, 1, 32))
    assert torch.equal(caches["latent"].layers[0].keys, before) and picked.get_seq_length(0) == 14


@torch.no_grad()
@pytest.mark.parametrize("padded", [False, True])
def test_lean_gpt2_step_equals_transformers_forward_bit_for_bit(shipped, padded):
    """``gpt2_one_token`` against ``GPT2Model.forward`` for one token: the same hidden state and cache, bit for
    bit, with dropout hooks on (a rollout's latent step) and with padded rows (transformers' SDPA mask)."""
    from hf_modeling import LatentGenerationConfig, LatentSampler

    model, _, _ = shipped
    body = model.transformer
    assert one_token_ready(body)
    rows = 17
    ids = torch.randint(1, 60, (rows, 7), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    if padded:
        mask[::3, :2] = 0
    sampler = LatentSampler(LatentGenerationConfig(latent_sampling="dropout", dropout_p=0.3).for_backbone("coconut"))
    keys = torch.arange(rows, dtype=torch.int64) * 7919
    got = []
    for lean in (False, True):
        cache = LatentCache(model.config, 9)
        body(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0), cache=cache,
             use_cache=True)
        x = torch.randn(rows, 128, generator=torch.Generator().manual_seed(2))
        step_mask = torch.cat([mask, torch.ones(rows, 1, dtype=mask.dtype)], dim=1)
        pos = mask.sum(-1)
        with sampler.attached(model), sampler.phase("latent"):
            sampler.at(keys, pos[:, None])
            if lean:
                hidden = gpt2_one_token(body, x, step_mask, pos, cache)
            else:
                hidden = body(inputs_embeds=x[:, None], attention_mask=step_mask, position_ids=pos[:, None],
                              cache=cache, use_cache=True).last_hidden_state[:, -1]
        got.append((hidden, cache.layers[-1].keys, cache.layers[-1].values))
    assert all(torch.equal(a, b) for a, b in zip(*got))


def test_a_hook_on_the_body_or_a_layer_gets_transformers_forward(shipped):
    """A forward hook the lean step would skip (on the body, a block, a linear layer) sends one-token steps
    through ``GPT2Model.forward``; hooks on dropout modules (the sampler's) keep the lean step."""
    model, _, _ = shipped
    body = model.transformer
    with torch.no_grad():
        assert one_token_ready(body)
        for module in (body, body.h[1], body.h[0].mlp.c_fc):
            handle = module.register_forward_pre_hook(lambda *a: None)
            assert not one_token_ready(body)
            handle.remove()
        handle = body.h[0].attn.resid_dropout.register_forward_hook(lambda *a: None)
        assert one_token_ready(body)
        handle.remove()


def test_fused_tanh_gelu_at_inference_and_gelu_new_with_gradients():
    """Inference runs the fused kernel (equal to gelu_new to float32 rounding); with gradients the module is
    transformers' gelu_new, bit for bit, and differentiable.  Loaded GPT-2 models use it."""
    act, reference = TanhGELU(), NewGELUActivation()
    x = torch.randn(64, 512) * 3
    with torch.no_grad():
        fused = act(x)
        assert torch.equal(fused, torch.nn.functional.gelu(x, approximate="tanh"))
        torch.testing.assert_close(fused, reference(x), rtol=1e-5, atol=1e-6)
    leaf = x.clone().requires_grad_(True)
    out = act(leaf)
    assert torch.equal(out, reference(x))
    out.sum().backward()
    assert leaf.grad is not None and torch.isfinite(leaf.grad).all()


def test_loaded_gpt2_backbones_and_rm_use_the_fused_gelu(shipped):
    model, _, rm = shipped
    assert {type(b.mlp.act) for b in model.transformer.h} == {TanhGELU}
    assert {type(b.mlp.act) for b in rm.transformer.h} == {TanhGELU}


def test_dropout_scale_from_integer_bits_equals_the_uniform_floats():
    keys = torch.randint(-2**63, 2**63 - 1, (6, 5), generator=torch.Generator().manual_seed(3))
    for p in (1e-9, 0.01, 0.1, 0.2, 0.123456789, 0.5, 0.99, 1 - 2**-25):
        for dtype in (torch.float32, torch.bfloat16, torch.float16):
            expected = (keyed_uniform(keys, 4, 96) >= p).to(dtype) / (1.0 - p)
            got = keyed_dropout_scale(keys, 4, 96, p, dtype)
            assert got.dtype == dtype and torch.equal(got, expected), (p, dtype)


@torch.no_grad()
def test_rollouts_and_rm_scores_are_the_same_bits_in_batches_of_1_17_and_33(shipped):
    """The shipped model and LatentRM, 40 questions at N=4 (dropout on the prompt and latents): latents,
    answers and RM step scores of every question are the same bits in calls of 1, 17 and 33 questions."""
    model, tok, rm = shipped
    prompts = _prompts(model, tok, 40)
    config = model.latent_generation_config(latent_sampling="dropout", dropout_p=0.2, num_return_sequences=4,
                                            seed=5, max_new_tokens=6)
    runs = {}
    for size in (1, 17, 33):
        latents, answers, scores = [], [], []
        for start in range(0, len(prompts), size):
            enc = tok(prompts[start:start + size], return_tensors="pt")
            out = model.rollout(enc["input_ids"], enc["attention_mask"], config)
            latents.append(out.latents)
            answers.append(torch.nn.functional.pad(out.answer_ids, (0, 6 - out.answer_ids.shape[1]),
                                                   value=tok.pad_token_id))  # a call ends when its rows do
            scores.append(rm.score_rollouts(out).step_scores)
        runs[size] = [torch.cat(latents), torch.cat(answers), torch.cat(scores)]
    for size in (17, 33):
        assert all(torch.equal(a, b) for a, b in zip(runs[1], runs[size])), size


# -- the memory model ---------------------------------------------------------------------------------------

def _setting_config(model, **kw):
    return model.latent_generation_config(seed=0, **kw)


def test_memory_model_counts_cache_activations_and_attention_scores(shipped):
    """Bytes grow with questions, width and N; the math kernel's attention scores make the prompt pass
    quadratic in the width where the fused kernel is not."""
    from lm_eval_latenttts.scaling.memory import Shape, call_bytes

    model, _, rm = shipped
    shape = Shape.of(model.config)
    assert (shape.layers, shape.hidden, shape.heads, shape.head_dim, shape.inner) == (4, 128, 4, 32, 512)
    assert shape.cache_bytes(3, 10, 4) == 4 * 2 * 3 * 4 * 32 * 10 * 4
    fused = shape.prompt_bytes(8, 200, 4, fused_attention=True, dropout=False)
    math_kernel = shape.prompt_bytes(8, 200, 4, fused_attention=False, dropout=False)
    assert math_kernel - fused == 3 * 8 * 4 * 200 * 200 * 4
    config = _setting_config(model, latent_sampling="dropout", dropout_p=0.2, num_return_sequences=16)
    sizes = [call_bytes(model, rm, config, q, 30) for q in (1, 2, 4, 8, 16)]
    assert sizes == sorted(sizes) and sizes[-1] > 8 * sizes[0]
    assert call_bytes(model, rm, config, 4, 60) > call_bytes(model, rm, config, 4, 30)
    n4 = _setting_config(model, latent_sampling="dropout", dropout_p=0.2, num_return_sequences=4)
    assert call_bytes(model, rm, n4, 4, 30) < sizes[2]


def test_fit_questions_is_the_largest_call_within_the_budget(shipped):
    from lm_eval_latenttts.scaling.memory import call_bytes, fit_questions

    model, _, rm = shipped
    config = _setting_config(model, latent_sampling="dropout", dropout_p=0.2, num_return_sequences=16)
    for q in (1, 5, 37, 200):
        budget = call_bytes(model, rm, config, q, 30)
        assert fit_questions(budget, model, rm, config, 30, 512) == q
        assert fit_questions(budget - 1, model, rm, config, 30, 512) == max(1, q - 1)
    assert fit_questions(10**15, model, rm, config, 30, 64) == 64
    assert fit_questions(1, model, rm, config, 30, 64) == 1


def _requests(questions):
    """Requests built by hand (no document: the context is the question, as ``harness.context`` takes it)."""
    class Req:
        def __init__(self, doc, i):
            self.args = (doc["question"], {"latent_tts_payload": True, "until": [], "do_sample": False})
            self.doc, self.doc_id, self.task_name = None, i, "latent_arith"

    return [Req(d, i) for i, d in enumerate(questions)]


def test_auto_batch_sized_by_the_memory_model_within_a_simulated_budget(monkeypatch):
    """``batch_size=auto`` with the memory model against a simulated budget (what ``free_bytes`` reports on a
    GPU): every call's predicted bytes fit the budget, the call sizes are the largest that do, and the logged
    responses are byte-identical to batch_size=1.  With a budget the model overestimates (a simulated device
    that runs out of memory below its prediction), OOM halving still gets every answer and the learned scale
    shrinks later calls."""
    from lm_eval_latenttts.data import arith
    from lm_eval_latenttts.harness.model import LatentTTSModel
    from lm_eval_latenttts.scaling import memory

    requests = _requests(arith.load_split("test")[:24])
    kw = dict(device="cpu", n=4, sampling="dropout", dropout_p=0.2, seed=3, max_new_tokens=6)
    reference = LatentTTSModel(batch_size=1, **kw).generate_until(requests, disable_tqdm=True)
    lm = LatentTTSModel(batch_size="auto", max_batch_size=64, **kw)
    budget = memory.call_bytes(lm.model, lm.rm, lm.run_config, 7, 30)
    monkeypatch.setattr(memory, "free_bytes", lambda device: budget)
    lm.engine.sizer = memory.memory_sizer(lm.model, lm.rm, lm.device)
    original, calls = lm.model.rollout, []

    def counted(input_ids, *args, **kwargs):
        calls.append(input_ids.shape[0])
        return original(input_ids, *args, **kwargs)

    monkeypatch.setattr(lm.model, "rollout", counted)
    assert lm.generate_until(requests, disable_tqdm=True) == reference
    # the sampled calls: the largest that fit; then the greedy decodes, one row each, in the same rows (7 x 4)
    assert calls == [7, 7, 7, 3, 24]
    assert memory.call_bytes(lm.model, lm.rm, lm.run_config, 7, 30) <= budget
    assert memory.call_bytes(lm.model, None, lm.run_config.greedy(), 24, 30) <= budget

    lm = LatentTTSModel(batch_size="auto", max_batch_size=64, **kw)
    monkeypatch.setattr(memory, "free_bytes", lambda device: budget)
    lm.engine.sizer = memory.memory_sizer(lm.model, lm.rm, lm.device)
    original, calls = lm.model.rollout, []

    def small_device(input_ids, *args, **kwargs):
        if input_ids.shape[0] > 3:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        calls.append(input_ids.shape[0])
        return original(input_ids, *args, **kwargs)

    monkeypatch.setattr(lm.model, "rollout", small_device)
    assert lm.generate_until(requests, disable_tqdm=True) == reference
    assert max(calls) <= 3 and lm.engine.fit_scale < 1.0


def test_cuda_runner_gets_the_memory_model_and_cpu_a_fixed_size(tmp_path):
    from lm_eval_latenttts.harness.model import LatentTTSModel

    lm = LatentTTSModel(device="cpu", n=4)
    assert lm.engine.sizer is None and lm.load_options["batch_size"] == 32
    folder = make_checkpoint(tmp_path / "codi", kind="codi")
    assert json.loads((folder / "config.json").read_text())["activation_function"] == "gelu_new"
