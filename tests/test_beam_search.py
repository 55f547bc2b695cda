import pytest
import torch

from hf_modeling import AutoLatentModel, load_latent_tokenizer
from hf_modeling.configuration_latent_rm import LatentRMGPT2Config, LatentRMLlamaConfig
from hf_modeling.modeling_latent_rm import COCONUTGPT2ForTokenClassification, LatentRMLlamaForTokenClassification
from lm_eval_latenttts.scaling import rollouts
from lm_eval_latenttts.scaling.strategies import QuestionView, strategy
from lm_eval_latenttts.scaling.beam import rm_beam_search
from tiny_models import make_checkpoint, make_tokenizer

QUESTIONS = ("1+2=?", "What is twelve times three, approximately?", "7-5")


def make_rm(backbone, seed=5, cls=COCONUTGPT2ForTokenClassification, config_cls=LatentRMGPT2Config, **extra):
    torch.manual_seed(seed)
    c = backbone.config
    if config_cls is LatentRMGPT2Config:
        config = config_cls(
            vocab_size=c.vocab_size, n_embd=c.n_embd, n_layer=2, n_head=2, n_positions=256,
            latent_id=c.latent_id, latent_start_id=c.latent_start_id, latent_end_id=c.latent_end_id, **extra,
        )
    else:
        config = config_cls(
            vocab_size=c.vocab_size, hidden_size=c.hidden_size, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256, latent_id=c.latent_id, **extra,
        )
    return cls(config).eval()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("beam")
    folder = make_checkpoint(root / "coconut", "coconut")
    backbone = AutoLatentModel.from_pretrained(folder).eval()
    tok = load_latent_tokenizer(folder, backbone.config)
    enc = tok([backbone.format_prompt(q) for q in QUESTIONS], return_tensors="pt", padding=True)
    return dict(backbone=backbone, rm=make_rm(backbone), tok=tok, enc=enc)


def test_b1_c1_no_sampling_equals_greedy(setup):
    backbone, rm, enc = setup["backbone"], setup["rm"], setup["enc"]
    greedy = backbone.generate(enc.input_ids, enc.attention_mask, max_new_tokens=6, return_dict_in_generate=True)
    res = rm_beam_search(
        backbone, rm, enc.input_ids, enc.attention_mask, latent_beams=1, latent_candidates=1,
        latent_sampling=None, max_new_tokens=6,
    )
    assert torch.equal(res.answer_ids, greedy.answer_ids)
    torch.testing.assert_close(res.beam_latents[:, 0], greedy.latents)
    # its scores are the RM's scores of the greedy rollout
    scores = rm.score_rollouts(greedy)
    torch.testing.assert_close(res.beam_step_scores[:, 0], scores.step_scores, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(res.beam_scores[:, 0], scores.trajectory_scores, atol=1e-4, rtol=1e-4)
    assert res.latent_forwards.tolist() == [6, 6, 6]  # one row per latent step


def test_beam_search_keeps_best_and_counts_compute(setup):
    backbone, rm, enc = setup["backbone"], setup["rm"], setup["enc"]
    B, C = 2, 3
    res = rm_beam_search(
        backbone, rm, enc.input_ids, enc.attention_mask, latent_beams=B, latent_candidates=C,
        latent_sampling="noise", noise_std=0.7, seed=0, max_new_tokens=5,
    )
    Q = len(QUESTIONS)
    assert res.beam_answer_ids.shape[:2] == (Q, B) and res.answer_ids.shape[0] == Q
    assert res.beam_step_scores.shape == (Q, B, 6) and res.beam_latents.shape == (Q, B, 6, 32)
    # B*C candidates feed their beam's latent at steps 2..6 (step 1's latent is the prompt's), then B rows feed the last
    assert res.latent_forwards.tolist() == [B * C * 5 + B] * Q
    # final choice is the best trajectory score; chosen answer is that beam's answer
    assert torch.equal(res.chosen, res.beam_scores.argmax(-1))
    for q in range(Q):
        assert torch.equal(res.answer_ids[q], res.beam_answer_ids[q, res.chosen[q]])
    torch.testing.assert_close(res.beam_scores, res.beam_step_scores.sum(-1))
    # beams are sorted by their last step score
    last = res.beam_step_scores[:, :, -1]
    assert bool((last[:, 0] >= last[:, 1]).all())
    # the kept beams' step scores are what the RM gives their latent paths from scratch
    state = rm.rm_prefill(enc.input_ids, enc.attention_mask).repeat_interleave(B)
    rescored = rm.rm_step(state, res.beam_latents.reshape(Q * B, 6, 32)).view(Q, B, 6)
    torch.testing.assert_close(rescored, res.beam_step_scores, atol=1e-4, rtol=1e-4)
    # each kept step is the best of the candidates: greedy selection beats a random pick on average
    same = rm_beam_search(
        backbone, rm, enc.input_ids, enc.attention_mask, latent_beams=B, latent_candidates=C,
        latent_sampling="noise", noise_std=0.7, seed=0, max_new_tokens=5,
    )
    assert torch.equal(same.answer_ids, res.answer_ids)  # seeded: reproducible


def test_beam_search_step_scores_beat_sampling(setup):
    backbone, rm, enc = setup["backbone"], setup["rm"], setup["enc"]
    kw = dict(latent_beams=1, latent_sampling="noise", noise_std=1.0, seed=1, max_new_tokens=2)
    best = rm_beam_search(backbone, rm, enc.input_ids, enc.attention_mask, latent_candidates=8, **kw)
    first = rm_beam_search(backbone, rm, enc.input_ids, enc.attention_mask, latent_candidates=1, **kw)
    # candidate k of a step is keyed by (question, step, k): with C=8 the kept step-1 latent is the best of
    # 8 candidates of which the C=1 search's only one is candidate 0, so its score can only be higher
    # (up to float rounding: 24 rows and 3 rows go through different matrix kernels)
    top, only = best.beam_step_scores[:, 0, 0], first.beam_step_scores[:, 0, 0]
    assert bool((top >= only - 1e-6).all()) and bool((top > only + 1e-3).any())


@pytest.mark.parametrize("scope", ["all", "latent"])
def test_dropout_candidates_draw_their_own_latents(setup, scope):
    """Under dropout a candidate's latent is the output of its own keyed forward: the beams differ.

    (The RM scored the latent its beam's previous forward had produced, so the C candidates of a beam
    were alike, ties kept one parent's children, and every question ended with one latent path.)
    """
    backbone, rm, enc = setup["backbone"], setup["rm"], setup["enc"]
    B, C, Q = 2, 3, len(QUESTIONS)
    kw = dict(latent_beams=B, latent_candidates=C, latent_sampling="dropout", dropout_p=0.3, dropout_scope=scope,
              seed=0, max_new_tokens=3)
    res = rm_beam_search(backbone, rm, enc.input_ids, enc.attention_mask, **kw)
    for q in range(Q):
        paths = res.beam_latents[q].reshape(B, -1)
        assert not torch.equal(paths[0], paths[1])  # B distinct latent paths
        assert len(set(res.beam_scores[q].tolist())) == B  # with different RM scores
    # the kept paths' scores are what the RM gives them from scratch
    state = rm.rm_prefill(enc.input_ids, enc.attention_mask).repeat_interleave(B)
    rescored = rm.rm_step(state, res.beam_latents.reshape(Q * B, 6, 32)).view(Q, B, 6)
    torch.testing.assert_close(rescored, res.beam_step_scores, atol=1e-4, rtol=1e-4)
    # the candidates of one step differ: with C=1 the kept first-step score can only be lower or equal
    one = rm_beam_search(backbone, rm, enc.input_ids, enc.attention_mask, **{**kw, "latent_beams": 1,
                                                                            "latent_candidates": 1})
    best = rm_beam_search(backbone, rm, enc.input_ids, enc.attention_mask, **{**kw, "latent_beams": 1,
                                                                             "latent_candidates": 6})
    first, one_first = best.beam_step_scores[:, 0, 0], one.beam_step_scores[:, 0, 0]
    if scope == "all":  # the first latent comes from each candidate's own prompt pass
        assert bool((first >= one_first).all()) and bool((first > one_first + 1e-4).any())
    else:  # no dropout on the prompt: the first latents are alike, the second ones are not
        assert torch.equal(first, one_first)
        assert not torch.equal(best.beam_step_scores[:, 0, 1], one.beam_step_scores[:, 0, 1])
    # a question alone gets the same search as in the batch
    alone = rm_beam_search(backbone, rm, enc.input_ids[1:2, -int(enc.attention_mask[1].sum()):], None, **kw)
    assert torch.equal(alone.beam_answer_ids[0], res.beam_answer_ids[1])
    torch.testing.assert_close(alone.beam_latents[0], res.beam_latents[1], rtol=1e-4, atol=1e-5)


def test_charged_latent_forwards_are_the_rows_fed(setup, monkeypatch):
    backbone, rm, enc = setup["backbone"], setup["rm"], setup["enc"]
    fed, original = [], backbone.feed_latent

    def counting(state, latent, active, sampler):
        fed.append(latent.shape[0])
        return original(state, latent, active, sampler)

    monkeypatch.setattr(backbone, "feed_latent", counting)
    res = rm_beam_search(backbone, rm, enc.input_ids, enc.attention_mask, latent_beams=2, latent_candidates=3,
                         latent_sampling="dropout", dropout_p=0.3, seed=0, max_new_tokens=2)
    questions = fed[-1] // 2  # the batch's questions, ghosts included: the last feed has B rows each
    assert len(fed) == 6 and sum(fed) % questions == 0
    assert res.latent_forwards.tolist() == [sum(fed) // questions] * len(QUESTIONS) == [2 * 3 * 5 + 2] * 3


def test_best_of_n_picks_highest_scoring(setup):
    backbone, rm, tok, enc = setup["backbone"], setup["rm"], setup["tok"], setup["enc"]
    n = 4
    config = backbone.latent_generation_config(latent_sampling="noise", noise_std=0.7, num_return_sequences=n,
                                               seed=0, max_new_tokens=4)
    found = rollouts.sample(backbone, tok, [backbone.encode_prompt(tok, q) for q in QUESTIONS], config, rm)
    out = backbone.generate(**enc, generation_config=config, return_dict_in_generate=True)  # the same rollouts
    scores = rm.score_rollouts(out).trajectory_scores.view(3, n)
    texts = tok.batch_decode(out.answer_ids, skip_special_tokens=True)
    for q, candidates in enumerate(found):
        assert candidates.scores == pytest.approx(scores[q].tolist(), abs=1e-6)
        chosen = strategy("best_of_n").choose(QuestionView(tuple(candidates.answers), tuple(candidates.scores))).index
        assert chosen == int(scores[q].argmax())
        assert candidates.texts[chosen] == texts[q * n + chosen].split(tok.eos_token)[0]


def test_dynamic_backbone_beam_search(tmp_path):
    tok = make_tokenizer(colar=True)
    tok.padding_side = "left"
    backbone = AutoLatentModel.from_pretrained(make_checkpoint(tmp_path / "colar", "colar", tokenizer=tok)).eval()
    # a random CoLaR never emits "###"; stop on a feature of the hidden state so that row lengths vary
    backbone.latent_should_stop = lambda h: h[:, 0] > 1.0
    rm = make_rm(backbone, cls=LatentRMLlamaForTokenClassification, config_cls=LatentRMLlamaConfig)
    enc = tok([backbone.format_prompt(q) for q in QUESTIONS[:2]], return_tensors="pt", padding=True)
    greedy = backbone.generate(enc.input_ids, enc.attention_mask, max_new_tokens=3, return_dict_in_generate=True)
    res = rm_beam_search(backbone, rm, enc.input_ids, enc.attention_mask, latent_beams=1, latent_candidates=1,
                         latent_sampling=None, max_new_tokens=3)
    assert torch.equal(res.answer_ids, greedy.answer_ids)
    assert torch.equal(res.beam_step_mask[:, 0].sum(-1), greedy.latent_lengths)
    torch.testing.assert_close(res.beam_scores[:, 0], rm.score_rollouts(greedy).trajectory_scores, atol=1e-4, rtol=1e-4)
    res = rm_beam_search(backbone, rm, enc.input_ids, enc.attention_mask, latent_beams=2, latent_candidates=2,
                         latent_sampling="noise", noise_std=2.0, seed=0, max_new_tokens=3)
    assert res.beam_scores.shape == (2, 2)
    assert bool((~res.beam_step_mask).any())  # some beams stopped early
    assert bool((res.beam_step_scores[~res.beam_step_mask] == 0).all())


def test_bad_arguments(setup, tmp_path):
    backbone, rm, enc = setup["backbone"], setup["rm"], setup["enc"]
    for kwargs, match in (
        (dict(latent_beams=0), "latent_beams must be an integer >= 1; got 0"),
        (dict(latent_candidates=0), "latent_candidates must be an integer >= 1; got 0"),
        (dict(latent_beams=1.5), "latent_beams must be an integer >= 1"),
        (dict(reduction="max"), "reduction must be one of"),
    ):
        with pytest.raises(ValueError, match=match):
            rm_beam_search(backbone, rm, enc.input_ids, enc.attention_mask, latent_sampling=None, **kwargs)
    small = COCONUTGPT2ForTokenClassification(
        LatentRMGPT2Config(vocab_size=backbone.config.vocab_size, n_embd=16, n_layer=1, n_head=2)
    )
    with pytest.raises(ValueError, match="hidden size 16 does not match .*latent size 32"):
        rm_beam_search(backbone, small, enc.input_ids, enc.attention_mask, latent_sampling=None)
    with pytest.raises(ValueError, match="hidden size 16 does not match"):
        rollouts.sample(backbone, setup["tok"], [[backbone.config.latent_start_id]], backbone.latent_generation_config(
            latent_sampling="noise", noise_std=0.5, num_return_sequences=2), small)
    wrong_ids = make_rm(backbone)
    wrong_ids.config.latent_end_id = backbone.config.latent_end_id + 1
    with pytest.raises(ValueError, match="latent_end_id=.* does not match the backbone"):
        rm_beam_search(backbone, wrong_ids, enc.input_ids, enc.attention_mask, latent_sampling=None)
