"""The referee evidence's pieces on hand-made inputs: read-out, compute accounting, AUROC, bootstrap (no training)."""

import json
import math
import os
import sys
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
if str(REPO / "benchmarks") not in sys.path:
    sys.path.insert(0, str(REPO / "benchmarks"))

import evidence_lib as ev  # noqa: E402  (benchmarks/evidence_lib)
EX = {"question": "Start at 47, plus 8, then times 3. Answer mod 100?", "steps": ["<<47+8=55>>", "<<55*3=65>>"],
      "answer": "65"}


# --------------------------------------------------------------------------- intermediates
def test_intermediates_and_answer_from_another_first_value():
    assert ev.intermediates(EX) == [55, 65]
    assert ev.answer_from_first(EX, 55) == 65
    assert ev.answer_from_first(EX, 40) == 20  # 40 * 3 = 120 -> 20 mod 100
    assert ev.answer_from_first(EX, ev.NO_NUMBER) is None
    minus = {"steps": ["<<12-5=7>>", "<<7-9=98>>"]}
    assert ev.intermediates(minus) == [7, 98]
    assert ev.answer_from_first(minus, 3) == 94
    with pytest.raises(ValueError):
        ev.intermediates({"steps": ["47 + 8 = 55"]})


# --------------------------------------------------------------------------- read-out
def _digit_vocab():
    """A toy LM head: tokens 0..9 are the digits '0'..'9' at ids 3..12; ids 0..2 are '+', '-', '*'."""
    vocab, d = 13, 13
    return torch.eye(vocab, d), list(range(3, 13))


def test_logit_lens_names_the_digit_a_hidden_state_points_at():
    w, digit_ids = _digit_vocab()
    h = torch.zeros(3, 13)
    h[0, 3 + 7] = 5.0  # points at digit 7
    h[1, 1] = 5.0  # points at '-': the top token is not a digit ...
    h[1, 3 + 2] = 1.0  # ... but among digits 2 is best
    h[2, 3 + 0] = 2.0
    h[2, 3 + 9] = 3.0
    is_digit, digit = ev.logit_lens_digit(h, w, digit_ids)
    assert is_digit.tolist() == [True, False, True]
    assert digit.tolist() == [7, 2, 9]


def _hand_probe(number=37, dim=4):
    """A linear probe whose logits are 10 * h[0] at class ``number`` and 10 * h[1] at class 5, 0 elsewhere."""
    probe = ev.LatentProbe(dim, 100, hidden=0)
    with torch.no_grad():
        probe.net.weight.zero_()
        probe.net.bias.zero_()
        probe.net.weight[number, 0] = 10.0
        probe.net.weight[5, 1] = 10.0
    return probe


def test_probe_decodes_the_chosen_number_and_no_number_below_threshold():
    probe = _hand_probe(37)
    h = torch.tensor([[1.0, 0, 0, 0],  # names 37 (p = e^10 / (e^10 + 99) ~ 0.9955)
                      [0, 1.0, 0, 0],  # names 5
                      [0, 0, 1.0, 0],  # flat: every class 1/100
                      [0.3, 0, 0, 0]])  # weakly 37: p = e^3 / (e^3 + 99) ~ 0.169
    values, top = probe.decode(h, threshold=0.0)
    assert values.tolist() == [37, 5, 0, 37]  # with no threshold the flat row falls to the first class
    assert top[2].item() == pytest.approx(0.01)
    assert top[3].item() == pytest.approx(math.exp(3) / (math.exp(3) + 99))
    values, _ = probe.decode(h, threshold=0.5)
    assert values.tolist() == [37, 5, ev.NO_NUMBER, ev.NO_NUMBER]
    values, _ = probe.decode(h, threshold=0.1)
    assert values.tolist() == [37, 5, ev.NO_NUMBER, 37]


def test_probe_standardises_its_input():
    probe = _hand_probe(42)
    probe.mean.copy_(torch.tensor([100.0, 0, 0, 0]))
    probe.std.copy_(torch.tensor([2.0, 1, 1, 1]))
    values, _ = probe.decode(torch.tensor([[102.0, 0, 0, 0], [100.0, 0, 0, 0]]), threshold=0.5)
    assert values.tolist() == [42, ev.NO_NUMBER]  # (102 - 100) / 2 = 1 -> 42; (100 - 100) / 2 = 0 -> flat


def test_fit_probe_learns_values_it_can_separate():
    torch.manual_seed(0)
    centres = torch.randn(5, 8) * 4
    y = torch.arange(5).repeat(40)
    z = centres[y] + 0.1 * torch.randn(len(y), 8)
    targets = torch.tensor([11, 22, 33, 44, 99])[y]
    for hidden in (0, 16):
        probe = ev.fit_probe(z, targets, hidden=hidden, epochs=30, batch_size=64, lr=1e-2)
        values, _ = probe.decode(centres)
        assert values.tolist() == [11, 22, 33, 44, 99]


def test_threshold_is_the_lower_empirical_quantile():
    top = torch.tensor([0.9, 0.1, 0.5, 0.3, 0.7, 0.2, 0.6, 0.4, 0.8, 1.0])
    assert ev.threshold_from_heldout(top, 0.2) == pytest.approx(0.3)  # 2 of 10 values lie below 0.3
    assert ev.threshold_from_heldout(top, 0.05) == pytest.approx(0.1)
    assert ev.threshold_from_heldout(top, 0.5) == pytest.approx(0.6)
    assert ev.threshold_from_heldout(top, 0.5, cap=0.5) == pytest.approx(0.5)
    assert ev.threshold_from_heldout(top, 0.2, cap=0.5) == pytest.approx(0.3)


def test_readout_metrics_by_hand():
    # 2 questions x 3 trajectories; true x1 = 55 and 7; greedy read-outs 55 and 8
    decoded = torch.tensor([[55, 55, 40], [7, ev.NO_NUMBER, 8]])
    true = torch.tensor([55, 7])
    greedy = torch.tensor([55, 8])
    final = torch.tensor([[True, False, False], [True, True, False]])
    m = ev.readout_metrics(decoded, true, greedy, final)
    assert m["decoded_accuracy"] == pytest.approx(3 / 6)
    assert m["differs_from_greedy"] == pytest.approx(3 / 6)  # 40, 7, NO_NUMBER
    assert m["p_final_right_given_right"] == pytest.approx(2 / 3)  # (T, F, T)
    assert m["p_final_right_given_wrong"] == pytest.approx(1 / 3)  # 40: F, NO_NUMBER: T, 8: F
    assert m["p_final_right_given_wrong_number"] == pytest.approx(0.0)  # 40: F, 8: F
    assert (m["n_right"], m["n_wrong"], m["n_wrong_number"]) == (3, 3, 2)
    assert m["unstructured"] == pytest.approx(1 / 6)


def test_follow_metrics_by_hand():
    # greedy read-out 55 (answer 65); trajectories read 40 -> answer 20 follows, 30 -> answer 65 stays,
    # 55 (unchanged, not counted), NO_NUMBER (not counted), 10 -> answer 99 neither
    decoded = torch.tensor([[40, 30, 55, ev.NO_NUMBER, 10]])
    answers = [["20", "65", "65", "20", "99"]]
    f = ev.follow_metrics([EX], decoded, torch.tensor([55]), answers, ["65"])
    assert f["changed_trajectories"] == 3
    assert f["follows"] == pytest.approx(1 / 3)
    assert f["keeps"] == pytest.approx(1 / 3)


def test_follow_metrics_on_ones_digits_by_hand():
    # x1 = 55, second step * 3; greedy ones digit 5 (answer 65); read-outs 4 -> 4*3 = 12: ones 2,
    # 9 -> 27: ones 7
    decoded = torch.tensor([[4, 4, 9, 5]])
    answers = [["12", "92", "65", "65"]]  # 12 and 92 both end in 2 (follow); 65 stays; the 5 is unchanged
    f = ev.follow_metrics([EX], decoded, torch.tensor([5]), answers, ["65"], ones_digit=True)
    assert f["changed_trajectories"] == 3
    assert f["follows"] == pytest.approx(2 / 3)
    assert f["keeps"] == pytest.approx(1 / 3)
    minus = {"steps": ["<<12-5=7>>", "<<7-9=98>>"]}
    f = ev.follow_metrics([minus], torch.tensor([[3]]), torch.tensor([7]), [["94"]], ["98"], ones_digit=True)
    assert f["follows"] == 1.0 and f["keeps"] == 0.0  # (3 - 9) mod 10 = 4
    # "* 5": digits 3 and 5 both give ones digit 5, so that change cannot tell following from staying: skipped
    times5 = {"steps": ["<<10+3=13>>", "<<13*5=65>>"]}
    f = ev.follow_metrics([times5], torch.tensor([[5, 2]]), torch.tensor([3]), [["65", "60"]], ["65"], ones_digit=True)
    assert f["changed_trajectories"] == 1 and f["follows"] == 1.0 and f["keeps"] == 0.0
    # the same for full values: 13 * 5 = 65 and 33 * 5 = 65
    f = ev.follow_metrics([times5], torch.tensor([[33, 14]]), torch.tensor([13]), [["65", "70"]], ["65"])
    assert f["changed_trajectories"] == 1 and f["follows"] == 1.0


def test_follow_metrics_on_ones_digits_compare_staying_by_ones_digit_too():
    # read-out 4 (greedy 5) implies ones digit 2; "75" keeps the greedy answer's ones digit (5): it stays, as
    # "65" does; "12" follows; with whole answers "75" would have counted as neither
    f = ev.follow_metrics([EX], torch.tensor([[4, 4, 4]]), torch.tensor([5]), [["75", "65", "12"]], ["65"],
                          ones_digit=True)
    assert f["changed_trajectories"] == 3
    assert f["keeps"] == pytest.approx(2 / 3) and f["follows"] == pytest.approx(1 / 3)


# --------------------------------------------------------------------------- compute accounting
def test_generated_lengths_count_up_to_the_first_eos():
    ids = torch.tensor([[5, 0, 0, 0], [5, 6, 7, 8], [0, 0, 0, 0], [5, 6, 0, 6]])
    assert ev.generated_lengths(ids, 0).tolist() == [2, 4, 1, 3]


def test_position_formulas_by_hand():
    # latent: prompt 30, 2 latent steps, answers of 3 and 4 tokens (EOS included)
    assert ev.latent_positions(30, 2, [3, 4], shared_prompt=False) == 30 + 30 + (2 + 3) + (2 + 4)
    assert ev.latent_positions(30, 2, [3, 4], shared_prompt=True) == 30 + (2 + 3) + (2 + 4)
    # CoT: prompt 31 once, chains of 25 and 20 tokens: their first 24 and 19 tokens are fed
    assert ev.cot_positions(31, [25, 20]) == 31 + 24 + 19
    # FLOPs: 2N per position + 2 * n_layer * context * d, + 2 d V per LM-head position
    assert ev.forward_flops(10, 1, 2, [1, 2]) == 2 * 10 * 2 + 2 * 1 * 2 * (1 + 2)
    assert ev.forward_flops(10, 1, 2, [1, 2], vocab=5, lm_head_positions=1) == 52 + 2 * 2 * 5


def test_flops_of_a_rollout_by_hand():
    shape = {"n_params_nonembedding": 10, "n_layer": 1, "d_model": 2, "vocab": 5}
    per = lambda c: 2 * 10 + 2 * 1 * c * 2  # noqa: E731
    # latent, prompt 2, 1 latent step, one sample of 2 tokens: positions 1, 2 (prompt), 3 (latent), 4 (end
    # marker), 5 (first token); LM head on the end marker and the first token
    own = sum(per(c) for c in (1, 2, 3, 4, 5)) + 2 * 2 * 5 * 2
    assert ev.latent_flops(shape, 2, 1, [2], shared_prompt=False) == own
    # two samples sharing the prompt: the prompt positions once
    shared = sum(per(c) for c in (1, 2)) + 2 * sum(per(c) for c in (3, 4, 5)) + 2 * 2 * 5 * 4
    assert ev.latent_flops(shape, 2, 1, [2, 2], shared_prompt=True) == shared
    # CoT, prompt 2, samples of 3 and 1 tokens: positions 1, 2 once, then 3, 4 for the first sample only;
    # LM head on position 2 and the 2 fed tokens
    assert ev.cot_flops(shape, 2, [3, 1]) == sum(per(c) for c in (1, 2, 3, 4)) + 2 * 2 * 5 * 3


def _count_positions(module):
    """A forward pre-hook that sums rows x length of every input a module is fed."""
    seen = []

    def hook(mod, args, kwargs):
        x = kwargs.get("input_ids")
        if x is None:
            x = kwargs.get("inputs_embeds")
        if x is None:
            x = args[0]
        seen.append(x.shape[0] * x.shape[1])

    return seen, module.register_forward_pre_hook(hook, with_kwargs=True)


@pytest.fixture(scope="module")
def tiny_arith_models():
    from lm_eval_latenttts.training.recipes import train_backbone as tb

    tok = tb.build_tokenizer()
    model = tb.build_model(tok, 1, 16, 2, 0.1, 0, latent_length=2).eval()  # the recipe's model is the latent one
    return tok, model, model


@pytest.mark.parametrize("sampling,shared", [({"latent_sampling": "dropout", "dropout_p": 0.2}, False),
                                             ({"latent_sampling": "noise", "noise_std": 0.5}, True)])
def test_latent_accounting_equals_what_the_forward_passes_process(tiny_arith_models, sampling, shared):
    from lm_eval_latenttts.data import arith

    tok, _, latent = tiny_arith_models
    qs = arith.load_split("test")[:8]  # 8 questions x N=2 = 16 rows: no ghost rows
    enc = tok([latent.format_prompt(q["question"]) for q in qs], return_tensors="pt", padding=True,
              add_special_tokens=False)
    seen, handle = _count_positions(latent.transformer)
    try:  # an EOS id that never occurs: every row decodes all 3 answer tokens
        out = latent.generate(**enc, num_return_sequences=2, seed=0, max_new_tokens=3, eos_token_id=-1,
                              return_dict_in_generate=True, **sampling)
    finally:
        handle.remove()
    gen = ev.generated_lengths(out.answer_ids, -1).view(8, 2)
    assert gen.eq(3).all()
    p = enc.input_ids.shape[1]
    expected = sum(ev.latent_positions(p, 2, gen[q].tolist(), shared_prompt=shared) for q in range(8))
    assert sum(seen) == expected
    assert expected == (8 * p if shared else 16 * p) + 16 * (2 + 3)


def test_greedy_rollouts_are_greedy_whatever_the_checkpoint_defaults():
    """The shipped model's generation_config samples by default (dropout p=0.2); the evidence's greedy
    trajectory must still be the greedy one: the recipe's greedy accuracy, and N=2 identical copies."""
    from hf_modeling import AutoLatentModel, load_latent_tokenizer
    from lm_eval_latenttts.checkpoints import DEFAULT_MODEL_DIR
    from lm_eval_latenttts.data import arith

    model = AutoLatentModel.from_pretrained(str(DEFAULT_MODEL_DIR)).eval()
    assert model.generation_config.latent_sampling == "dropout"  # the default this guards against
    tok = load_latent_tokenizer(str(DEFAULT_MODEL_DIR), model.config)
    qs = arith.load_split("test")[:100]
    greedy = ev.latent_rollouts(model, tok, None, qs, 2, ev.sampling_kwargs(None), 0)  # one draw, copied N times
    assert torch.equal(greedy["latents"][:, 0], greedy["latents"][:, 1])
    assert int(greedy["correct"][:, 0].sum()) == 75  # = tests/test_train_backbone_recipe.py's greedy count
    sampled = ev.latent_rollouts(model, tok, None, qs, 2, ev.sampling_kwargs("dropout", 0.2), 0)
    assert not torch.equal(sampled["latents"][:, 0], sampled["latents"][:, 1])


def test_cot_accounting_equals_what_the_forward_passes_process(tiny_arith_models):
    from lm_eval_latenttts.data import arith

    tok, base, _ = tiny_arith_models
    base.eval()
    qs = arith.load_split("test")[:3]
    seen, handle = _count_positions(base.transformer)
    try:
        roll = ev.cot_sample(base, tok, qs, 4, 1.0, 0, max_new_tokens=5)
    finally:
        handle.remove()
    gen = roll["generated"]
    assert gen.eq(5).all(), "this tiny random model emits no EOS in 5 tokens (fixed seeds)"
    p = roll["prompt_lengths"][0]
    expected = sum(ev.cot_positions(p, gen[q].tolist()) for q in range(3))
    assert sum(seen) == expected == 3 * p + 12 * 4


def test_cot_samples_depend_on_question_and_seed_not_on_batch(tiny_arith_models):
    from lm_eval_latenttts.data import arith

    tok, base, _ = tiny_arith_models
    qs = arith.load_split("test")[:3]
    together = ev.cot_sample(base, tok, qs, 4, 1.0, 7, max_new_tokens=6)
    alone = ev.cot_sample(base, tok, qs[2:], 4, 1.0, 7, max_new_tokens=6)
    other_seed = ev.cot_sample(base, tok, qs[2:], 4, 1.0, 8, max_new_tokens=6)
    assert together["answers"][2] == alone["answers"][0]
    assert torch.equal(together["generated"][2], alone["generated"][0])
    greedy = ev.cot_sample(base, tok, qs, 3, 0.0, 0, max_new_tokens=6)
    assert all(len(set(map(str, a))) == 1 for a in greedy["answers"])  # temperature 0: N copies
    assert other_seed["answers"] != alone["answers"] or not torch.equal(other_seed["generated"], alone["generated"])


# --------------------------------------------------------------------------- AUROC, vote share, bootstrap
def test_auroc_by_hand():
    assert ev.auroc([0.9, 0.8, 0.3, 0.1], [1, 0, 1, 0]) == pytest.approx(3 / 4)
    assert ev.auroc([0.1, 0.8, 0.3, 0.9], [1, 0, 1, 0]) == pytest.approx(0.0)  # inverted
    assert ev.auroc([0.5, 0.5, 0.2], [1, 0, 0]) == pytest.approx((0.5 + 1) / 2)  # a tie counts 1/2
    assert math.isnan(ev.auroc([0.1, 0.2], [1, 1]))


def test_within_question_auroc_mean_and_pooled_by_hand():
    scores = torch.tensor([[3.0, 2.0, 1.0, 0.0], [0.0, 1.0, 2.0, 3.0], [1.0, 2.0, 3.0, 4.0]])
    labels = torch.tensor([[1, 0, 0, 0],  # AUROC 1 over 3 pairs
                           [1, 1, 0, 1],  # positives 0, 1, 3 vs negative 2: 1 of 3 pairs -> 1/3
                           [1, 1, 1, 1]])  # one class only: not counted
    r = ev.within_question_auroc(scores, labels, resamples=200)
    assert r["questions"] == 2 and r["pairs"] == 6
    assert r["mean"] == pytest.approx((1 + 1 / 3) / 2)
    assert r["pooled"] == pytest.approx((3 + 1) / 6)


def test_vote_shares_by_hand():
    assert ev.vote_shares(["5", "5.0", "7", None]) == pytest.approx([0.5, 0.5, 0.25, 0.25])
    assert ev.vote_shares([None, None]) == pytest.approx([0.5, 0.5])  # no answer shares with nothing


def test_percentile_interval_by_hand():
    assert ev.percentile_interval(torch.arange(100.0)) == [2.0, 97.0]
    assert ev.percentile_interval(torch.arange(1000.0).flip(0)) == [25.0, 974.0]


def test_bootstrap_interval_matches_the_normal_approximation():
    values = [0.0] * 50 + [1.0] * 50  # mean 0.5, standard error 0.05
    lo, hi = ev.bootstrap_ci(values, resamples=4000, seed=0)
    assert 0.39 < lo < 0.41 and 0.59 < hi < 0.61
    assert ev.bootstrap_ci([0.7] * 20) == [pytest.approx(0.7), pytest.approx(0.7)]
    assert ev.bootstrap_ci(values, 500, seed=3) == ev.bootstrap_ci(values, 500, seed=3)


def test_interp_log_by_hand():
    assert ev.interp_log(math.sqrt(1000), [10, 100], [0.0, 1.0]) == pytest.approx(0.5)
    assert ev.interp_log(100, [10, 100, 1000], [0.2, 0.4, 0.9]) == pytest.approx(0.4)
    assert math.isnan(ev.interp_log(5, [10, 100], [0.0, 1.0]))
    assert math.isnan(ev.interp_log(101, [10, 100], [0.0, 1.0]))


def test_difference_at_equal_compute_by_hand():
    # "other" costs twice as much per N; ref's points at 10 and 20 positions: 10 lies below other's curve
    ref = {1: {"positions_per_question": 10.0, "majority_accuracy": 0.5, "per_question": [0.0, 1.0]},
           4: {"positions_per_question": 20.0, "majority_accuracy": 1.0, "per_question": [1.0, 1.0]}}
    other = {1: {"positions_per_question": 20.0, "majority_accuracy": 0.5, "per_question": [1.0, 0.0]},
             4: {"positions_per_question": 40.0, "majority_accuracy": 0.5, "per_question": [1.0, 0.0]}}
    below, at = ev.difference_at_equal_compute(ref, other, resamples=200)
    assert below == {"n": 1, "positions": 10.0, "other_accuracy": None, "difference": None, "ci95": None}
    assert at["other_accuracy"] == pytest.approx(0.5) and at["difference"] == pytest.approx(0.5)
    assert at["ci95"][0] <= 0.5 <= at["ci95"][1]
    assert ev.difference_at_equal_compute(other, other, resamples=50)[0]["ci95"] == [0.0, 0.0]  # paired: no spread


# --------------------------------------------------------------------------- the recipe's CoT-only mode
def test_recipe_chain_of_thought_only(tmp_path):
    from lm_eval_latenttts.training.recipes import train_backbone as tb

    out = tmp_path / "cot"
    tb.main(["--small", "--no-progress", "--n-eval", "4", "--out", str(out), "--stage-steps", "3600,0,0",
             "--max-steps", "5"])
    info = json.loads((out / "training_info.json").read_text())
    assert info["stage_steps"] == [5, 0, 0] and info["step"] == 5 and info["complete"]
    assert [h["stage"] for h in info["history"]] == [0]  # every step was chain of thought


def test_recipe_schedule_unchanged_and_bad_stage_steps_refused(tmp_path):
    from lm_eval_latenttts.training.recipes import train_backbone as tb

    out = tmp_path / "default"
    tb.main(["--small", "--no-progress", "--n-eval", "4", "--out", str(out), "--max-steps", "4"])
    assert json.loads((out / "training_info.json").read_text())["stage_steps"] == [1, 1, 2]
    for bad in ("0,0,10", "10,-1,5"):
        with pytest.raises(SystemExit):
            tb.main(["--small", "--no-progress", "--out", str(tmp_path / "bad"), "--stage-steps", bad])


def test_one_bootstrap_for_every_report():
    """The scaling and adaptive reports and the evidence use one bootstrap: the single-mean interval is the
    percentile interval of the means over the same draws the paired comparisons resample."""
    import adaptive
    import scaling

    assert scaling.bootstrap_ci is adaptive.bootstrap_ci is ev.bootstrap_ci
    values = [float(v) for v in torch.rand(37, generator=torch.Generator().manual_seed(1))]
    idx = ev.bootstrap_indices(len(values), 1000, 4)
    means = torch.tensor(values, dtype=torch.float64)[idx].mean(-1)
    assert ev.bootstrap_ci(values, 1000, 4) == pytest.approx(ev.percentile_interval(means), abs=1e-12)


# --------------------------------------------------------------------------- issue 18: follows/keeps, verdict, labels
def test_follows_and_keeps_are_exclusive():
    # greedy read-out digit 5 implies ones digit 5 (55 * 3 = 165), but greedy's answer is "62" (ones 2): a read-out
    # 4 implies 4 * 3 = 12 (ones 2) = greedy's answer: "12" would both follow and keep, so that change is ambiguous
    # and skipped; a read-out 9 implies 27 (ones 7): "27" follows, "62" keeps, "30" is other
    decoded = torch.tensor([[4, 4, 9, 9, 9]])
    answers = [["12", "62", "27", "62", "30"]]
    f = ev.follow_metrics([EX], decoded, torch.tensor([5]), answers, ["62"], ones_digit=True)
    assert (f["changed_trajectories"], f["ambiguous"]) == (3, 2)
    assert f["follows"] == pytest.approx(1 / 3) and f["keeps"] == pytest.approx(1 / 3)
    assert f["other"] == pytest.approx(1 / 3) and f["chance"] == 0.1
    assert f["follows"] + f["keeps"] + f["other"] == pytest.approx(1.0)


def test_follow_interval_resamples_questions():
    # question 0: 4 changed, all follow; question 1: 1 changed, it keeps; resampling questions keeps the ratio
    # of sums in [0, 1] and the point estimate (4/5) inside the interval
    decoded = torch.tensor([[9, 9, 9, 9], [9, 5, 5, 5]])
    f = ev.follow_metrics([EX, EX], decoded, torch.tensor([5, 5]), [["27"] * 4, ["65"] * 4], ["65", "65"],
                          ones_digit=True, resamples=200)
    assert f["changed_trajectories"] == 5 and f["follows"] == pytest.approx(0.8)
    lo, hi = f["follows_ci"]
    assert 0.0 <= lo <= 0.8 <= hi == 1.0
    assert ev.ratio_ci([(4, 4), (0, 1)], 200) == f["follows_ci"]
    assert all(math.isnan(x) for x in ev.ratio_ci([(0, 0)], 50))


def _setting(unstructured=0.0, changed=100, follows=0.5, keeps=0.2, ci=(0.4, 0.6), diff_ci=(0.1, 0.5), seen=0.3):
    return {"step2_x1_ones": {"unstructured": unstructured},
            "follow_step2_x1_ones": {"changed_trajectories": changed, "follows": follows, "keeps": keeps,
                                     "other": 1 - follows - keeps, "chance": 0.1, "follows_ci": list(ci),
                                     "follows_minus_keeps": follows - keeps, "follows_minus_keeps_ci": list(diff_ci)},
            "answer_changes_seen_by_step2_x1_ones": seen, "answer_changes": 1000}


def test_verdict_on_hand_made_settings():
    from evidence_readout import verdict

    assert verdict(_setting())["label"] == "distinct"
    v = verdict(_setting(seen=0.036))  # few changes seen, but where seen the answer follows: still distinct
    assert v["label"] == "distinct" and v["answer_changes_seen"] == 0.036 and "3.6%" in v["why"]
    # issue 24: above chance, but follows - keeps includes zero -> the data cannot tell
    assert verdict(_setting(follows=0.371, keeps=0.339, ci=(0.30, 0.45), diff_ci=(-0.03, 0.27)))["label"] == \
        "undetermined"
    assert verdict(_setting(follows=0.394, keeps=0.606, ci=(0.21, 0.57), diff_ci=(-0.48, 0.23)))["label"] == \
        "undetermined"
    assert verdict(_setting(ci=(0.05, 0.1), diff_ci=(-0.1, 0.2)))["label"] == "not distinct"  # at most chance
    assert verdict(_setting(follows=0.3, keeps=0.5, ci=(0.2, 0.4), diff_ci=(-0.3, -0.1)))["label"] == "not distinct"
    assert verdict(_setting(ci=(0.09, 0.3)))["label"] == "undetermined"  # not above chance, not at or below it
    assert verdict(_setting(changed=29))["label"] == "too few changes"
    assert verdict(_setting(unstructured=0.11))["label"] == "unreadable"
    assert verdict(_setting(unstructured=0.10))["label"] == "distinct"  # the limit is inclusive


def test_follow_metrics_pair_follows_and_keeps():
    # question 0: 4 changed, 3 follow 1 keeps; question 1: 2 changed, both keep: follows - keeps = (3 - 3) / 6
    decoded = torch.tensor([[9, 9, 9, 9], [9, 9, 5, 5]])
    f = ev.follow_metrics([EX, EX], decoded, torch.tensor([5, 5]), [["27", "27", "27", "65"], ["65"] * 4],
                          ["65", "65"], ones_digit=True, resamples=200)
    assert (f["follows"], f["keeps"], f["follows_minus_keeps"]) == (0.5, 0.5, 0.0)
    assert f["follows_minus_keeps_ci"] == ev.ratio_ci([(2, 4), (-2, 2)], 200)
    lo, hi = f["follows_minus_keeps_ci"]
    assert -1.0 <= lo <= 0.0 <= hi <= 1.0
    assert f["keeps_ci"] == ev.ratio_ci([(1, 4), (2, 2)], 200)


def test_rm_labels_by_hand():
    from evidence_readout import LABEL_NOISE_BELOW, section2_setting

    # 2 questions x 4 trajectories; EX's x1 = 55 (ones 5), x2 = 65
    ex2 = {"question": "q2", "steps": ["<<10+3=13>>", "<<13*5=65>>"], "answer": "65"}
    dec = {"step1_x1": torch.tensor([[55, 54, 1, 2], [13, 13, 13, 13]]),
           "step1_x1_ones": torch.tensor([[5, 5, 4, 5], [3, 3, 3, 0]]),
           "step2_x2": torch.tensor([[65, 0, 0, 0], [65, 65, 0, 1]]),
           "step2_x1": torch.tensor([[55, 55, 55, 55], [0, 0, 0, 0]])}
    correct = torch.tensor([[True, False, True, False], [True, True, False, False]])
    roll = {"answers": [["65", "1", "65", "2"], ["65", "65", "3", "4"]], "correct": correct,
            "step_scores": torch.tensor([[[4.0, 1.0], [3.0, 0.0], [2.0, 3.0], [1.0, 2.0]],
                                         [[1.0, 4.0], [2.0, 3.0], [3.0, 2.0], [4.0, 1.0]]])}
    out = section2_setting([EX, ex2], roll, dec, resamples=50)
    assert out["step1_x1"]["positive_rate"] == pytest.approx(5 / 8)  # read-out == true x1
    assert out["step1_x1_ones"]["positive_rate"] == pytest.approx(6 / 8)  # ones digits 5 / 3
    assert out["step2_x2"]["positive_rate"] == pytest.approx(3 / 8)
    assert out["step2_x1"]["positive_rate"] == pytest.approx(4 / 8)
    assert out["step2_final_answer"]["positive_rate"] == pytest.approx(4 / 8)
    assert out["step2_x2"]["label_noise"] is (3 / 8 < LABEL_NOISE_BELOW) is True
    assert out["step1_x1_ones"]["label_noise"] is False and "label_noise" not in out["step2_final_answer"]
    # step-1 scores for "x1 ones digit right": question 0 positives (4, 3, 1) vs negative 2 -> 2/3; question 1
    # positives (1, 2, 3) vs negative 4 -> 0: mean 1/3
    assert out["step1_x1_ones"]["rm_step_score"]["mean"] == pytest.approx((2 / 3 + 0) / 2)
    assert out["step2_final_answer"]["rm_step_score_across_questions"]["auroc"] == pytest.approx(
        ev.auroc([1.0, 0.0, 3.0, 2.0, 4.0, 3.0, 2.0, 1.0], correct.flatten().tolist()))  # step-2 scores


def test_across_question_auroc_by_hand():
    scores = torch.tensor([[0.9, 0.1], [0.8, 0.7]])
    labels = torch.tensor([[True, False], [False, True]])
    a = ev.across_question_auroc(scores, labels, resamples=100)
    assert a["auroc"] == pytest.approx(ev.auroc([0.9, 0.1, 0.8, 0.7], [1, 0, 0, 1]))
    lo, hi = a["ci"]
    assert 0.0 <= lo <= hi <= 1.0
    # a score that is right within each question and wrong across them: within 1.0, across below it
    scores = torch.tensor([[2.0, 1.0], [4.0, 3.0]])
    labels = torch.tensor([[True, False], [True, False]])
    assert ev.within_question_auroc(scores, labels, 20)["mean"] == 1.0
    assert ev.across_question_auroc(scores, labels, 20)["auroc"] == pytest.approx(3 / 4)


def test_cot_prompt_holds_the_question_and_no_answer(tiny_arith_models):
    from lm_eval_latenttts.data import arith

    tok, base, _ = tiny_arith_models
    qs = arith.load_split("test")[:3]
    fed = []
    handle = base.transformer.register_forward_pre_hook(
        lambda m, args, kwargs: fed.append(kwargs["input_ids"].clone()), with_kwargs=True)
    try:
        ev.cot_sample(base, tok, qs, 2, 1.0, 0, max_new_tokens=3)
    finally:
        handle.remove()
    prompts = fed[0]  # the prompt pass; later passes feed one sampled token per row
    assert prompts.shape[0] == len(qs) and all(f.shape[1] == 1 for f in fed[1:])
    for q, ids in zip(qs, prompts.tolist()):
        assert tok.decode(ids) == q["question"] + ev.COT_SUFFIX  # nothing else: no step, no "###", no answer
        assert not any(step in tok.decode(ids) for step in q["steps"]) and "###" not in tok.decode(ids)


def test_headroom_table_by_hand():
    from evidence_headroom import headroom

    ex2 = {"question": "q2", "steps": ["<<10+3=13>>", "<<13*5=65>>"], "answer": "7"}
    # question 0: answers 65 (right) x1, 1 x2, 2 x1 -> majority 1 (wrong), RM best = the 65, coverage 1
    # question 1: no right answer -> coverage 0
    roll = {"answers": [["65", "1", "1", "2"], ["3", "3", "4", "5"]],
            "correct": torch.tensor([[True, False, False, False], [False] * 4]),
            "scores": [[9.0, 1.0, 1.0, 0.0], [1.0, 2.0, 3.0, 4.0]],
            "generated": torch.full((2, 4), 2), "prompt_lengths": [10, 10]}
    t = headroom([roll], [EX, ex2], torch.tensor([True, False]), 2, [1, 4], resamples=50)
    n4 = t["by_n"][4]
    assert t["greedy"]["mean"] == 0.5
    assert n4["coverage"]["mean"] == 0.5 and n4["majority"]["mean"] == 0.0 and n4["best_of_n"]["mean"] == 0.5
    assert n4["single"]["mean"] == pytest.approx(1 / 8)
    assert n4["best_selector"] in ("best_of_n", "weighted") and n4["gap"]["mean"] == pytest.approx(0.0)
    assert t["by_n"][1]["coverage"]["mean"] == 0.5 and t["by_n"][1]["gap"]["mean"] == 0.0
    assert n4["positions_per_question"] == 4 * 10 + 4 * (2 + 2)  # a prompt pass per sample
    assert n4["positions_per_question_shared_prompt"] == 10 + 4 * (2 + 2)


# --------------------------------------------------------------------------- issue 24: stored data, causal, recompute
def test_answer_codes_keep_what_the_report_compares():
    from evidence_lib.store import NONE, answer_code, code_answer, exact_float32
    from hf_modeling.answers import answers_equal

    answers = ["65", "065", "65.0", None, "", "7", "-3", "abc", "abc ", "1/2", "0.5", "12345678901"]
    codes = [answer_code(a) for a in answers]
    assert codes[:4] == [65, 65, 65, NONE] and codes[4] == NONE and codes[6] == -3
    for a, ca in zip(answers, codes):
        for b, cb in zip(answers, codes):
            assert answers_equal(a, b) == (ca == cb and ca != NONE), (a, b)
            # decoded back, the codes compare like the answers did
            assert answers_equal(code_answer(ca), code_answer(cb)) == answers_equal(a, b), (a, b)
    assert exact_float32([0.5, -1.25]).dtype.name == "float32"
    with pytest.raises(ValueError):
        exact_float32([0.1])  # not a float32 value: stored as is would change it


def test_heldout_split_keeps_its_promises():
    from evidence_lib import heldout

    facts = heldout.heldout_facts()
    assert len(facts) == 104 and facts == heldout.heldout_facts()  # deterministic
    split = heldout.heldout_split(facts)
    sizes = heldout.check_split(split, facts)  # raises if a promise is broken
    assert sizes == {"train": 55097, "seen": 459, "unseen_step1": 500, "unseen_step2": 500}
    # every operand/operation/value of a held-out fact still occurs in training, only the fact does not
    trained = {f for ex in split["train"] for f in heldout.facts_of(ex)}
    assert not trained & facts
    assert {(op, c) for _, op, c in facts} <= {(op, c) for _, op, c in trained}
    assert {x for x, _, _ in facts} <= {x for x, _, _ in trained}


def test_causal_rollouts_redraw_the_samples_and_swap_their_parts(tiny_arith_models):
    from lm_eval_latenttts.data import arith
    from evidence_lib.causal import Donors, causal_rollouts, implied_ones
    from evidence_lib.store import answer_codes

    tok, _, model = tiny_arith_models
    train, qs = arith.make_splits(seed=0)["train"][:400], arith.load_split("test")[:6]
    z, _ = __import__("evidence_readout").greedy_latents(model, tok, train, max_new_tokens=1)
    y = torch.tensor([ev.intermediates(e)[0] % 10 for e in train])
    probe = ev.fit_probe(z[:, 1], y, classes=10)
    donors = Donors(train, z[:, 1], probe.decode(z[:, 1])[0])
    for sampling in (ev.sampling_kwargs("dropout", 0.3), ev.sampling_kwargs("noise", 1.0)):
        r = causal_rollouts(model, tok, qs, 4, sampling, 0, donors, (probe, 0.0), max_new_tokens=3)
        ref = ev.latent_rollouts(model, tok, None, qs, 4, sampling, 0, max_new_tokens=3)
        assert (r["full"] == answer_codes(ref["answers"])).all()  # the very samples of the report
        if sampling["latent_sampling"] == "noise":  # deterministic prompt: (a) is the sample, (b) is greedy
            greedy = answer_codes(ev.latent_rollouts(model, tok, None, qs, 1, ev.sampling_kwargs(None), 0,
                                                     max_new_tokens=3)["answers"])
            assert (r["latents_only"] == r["full"]).all() and (r["replay"] == r["full"]).all()
            assert (r["prompt_only"] == greedy).all()
        assert r["target"].shape == (6, 4) and ((r["target"] >= -1) & (r["target"] <= 9)).all()
        for q, e in enumerate(qs):  # a target never implies the row's own answer's ones digit
            for j in range(4):
                t = int(r["target"][q, j])
                if t >= 0 and r["replay"][q, j] >= 0:
                    assert implied_ones(e, t) != r["replay"][q, j] % 10
    g = causal_rollouts(model, tok, qs, 4, None, 0, donors, (probe, 0.0), greedy=True, max_new_tokens=3)
    assert (g["full"] == g["replay"]).all() and (g["full"] == g["full"][:, :1]).all()  # n copies of greedy


def test_difficulty_and_pair_types_by_hand():
    # question 0 easy (2 of 2 right... plus one wrong: 2/3 right), scores low; question 1 hard (1/3), scores high
    scores = torch.tensor([[0.0, 0.1, 0.2], [1.0, 1.1, 1.2]])
    correct = torch.tensor([[True, True, False], [True, False, False]])
    d = ev.score_by_difficulty(scores, correct, resamples=50)
    assert d["hard_questions"] == 1 and d["easy_questions"] == 1
    assert d["easy_minus_hard"] == pytest.approx(0.1 - 1.1)
    pt = ev.across_pair_types(scores, correct)
    # pairs: q0 right (0.0, 0.1) x q0 wrong (0.2): within, both lose; q1 right (1.0) x q1 wrong (1.1, 1.2): lose
    assert pt["within"]["share_of_pairs"] == pytest.approx(4 / 9) and pt["within"]["auroc"] == 0.0
    # easy right (0.0, 0.1) vs hard wrong (1.1, 1.2): 4 pairs, all lose; hard right 1.0 vs easy wrong 0.2: wins
    assert pt["right of easy vs wrong of hard"] == {"share_of_pairs": pytest.approx(4 / 9), "auroc": 0.0}
    assert pt["right of hard vs wrong of easy"] == {"share_of_pairs": pytest.approx(1 / 9), "auroc": 1.0}
    across = ev.across_question_auroc(scores, correct, 20)["auroc"]
    assert across == pytest.approx(1 / 9)
    # centred, the question offset is gone: only the within-question order is left
    assert ev.across_question_auroc(ev.centred(scores), correct, 20)["auroc"] < 0.5
    assert ev.spearman(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([3.0, 2.0, 1.0])) == pytest.approx(-1.0)
    p = ev.paired_within_difference(scores, -scores, correct, 20)
    assert p["questions"] == 2 and p["mean"] == pytest.approx(-1.0)  # AUROC 0 minus AUROC 1 in both questions


def test_truncated_chain_forces_the_answer_marker(tiny_arith_models):
    from evidence_cot import ANSWER_TOKENS, cot_truncated
    from lm_eval_latenttts.data import arith

    tok, base, _ = tiny_arith_models
    qs = arith.load_split("test")[:3]
    fed = []
    handle = base.transformer.register_forward_pre_hook(
        lambda m, args, kwargs: fed.append((kwargs.get("input_ids") if kwargs.get("input_ids") is not None
                                            else args[0])[0].tolist()), with_kwargs=True)
    try:
        answers, positions = cot_truncated(base, tok, qs, 0, max_new_tokens=3)
    finally:
        handle.remove()
    prompt = tok(qs[0]["question"] + ev.COT_SUFFIX, add_special_tokens=False)["input_ids"]
    forced = tok("### ", add_special_tokens=False)["input_ids"]
    digits = {tok.convert_tokens_to_ids(str(d)) for d in range(10)}
    stream = [t for call in fed for t in call]  # the first row's tokens, in the order they were fed (KV cache)
    assert stream[:len(prompt) + len(forced)] == prompt + forced  # no chain: the answer marker follows the prompt
    # then only digits, at most ANSWER_TOKENS generated; every token but the last generated one is fed
    answer_fed = stream[len(prompt) + len(forced):positions[0]]
    assert set(answer_fed) <= digits and len(answer_fed) <= ANSWER_TOKENS - 1
    assert answers[0] is None or answers[0].isdigit()
    # rows decoded together give what each gives alone
    alone = [cot_truncated(base, tok, [q], k, max_new_tokens=3) for q in qs for k in (0, 1)]
    together = {k: cot_truncated(base, tok, qs, k, max_new_tokens=3, batch_rows=2) for k in (0, 1)}
    for i in range(len(qs)):
        for j, k in enumerate((0, 1)):
            a, pos = alone[2 * i + j]
            assert (a[0], pos[0]) == (together[k][0][i], together[k][1][i])


def test_plots_draw_from_the_committed_json(tmp_path):
    from evidence_plots import plot_all

    report = json.loads((REPO / "benchmarks" / "results" / "evidence.json").read_text())
    plot_all(report, tmp_path)
    want = {"evidence_latent_readout.png", "evidence_rm_auroc.png"} | ({"evidence_cot_vs_latent.png"} if report["cot"] else set())
    assert {p.name for p in tmp_path.glob("*.png")} == want
    assert want == {p.name for p in (REPO / "docs" / "evidence").glob("*.png")}  # the report's own plots


def test_the_committed_report_is_recomputed_from_the_committed_data():
    """Every number of docs/evidence.md and benchmarks/results/evidence.json comes from the committed .npz files."""
    import evidence_recompute

    evidence_recompute.main(["--check", "--no-plots"])  # exits 1 if the page or the JSON differ


def test_selectors_on_codes_equal_the_scaling_code():
    """evidence_lib.selection recomputes the scaling report's selectors on answer codes for whole arrays: the
    same choices as lm_eval_latenttts.scaling's per-question functions, ties and float sums included."""
    from types import SimpleNamespace

    import numpy as np
    import scaling
    from evidence_lib import selection
    from evidence_lib.store import answer_codes, code_answers

    rng = np.random.default_rng(3)
    q, n = 60, 12
    pool = ["1", "2", "3", "07", "7", None, "x"]
    answers = [[pool[i] for i in rng.integers(0, len(pool), n)] for _ in range(q)]
    answers[0] = [None] * n  # no answer at all
    scores = rng.normal(size=(q, n)).round(1)  # coarse: ties between trajectories and between totals
    scores[1] = 0.0
    scores[2, 3] = np.nan
    gold = [{"answer": pool[i] or "5"} for i in rng.integers(0, 5, q)]
    codes = answer_codes(answers)
    for k in (1, 5, n):
        ref = scaling.metrics_at([SimpleNamespace(answers=a, scores=list(s)) for a, s in zip(answers, scores)],
                                 gold, k, True)
        got = selection.selector_correct(codes, answer_codes([[g["answer"]] for g in gold])[:, 0], scores, k)
        for m in ("coverage", "single", "majority", "weighted", "best_of_n"):
            assert got[m].tolist() == pytest.approx(ref[m]), (m, k)
    # and the decoded codes vote like the answers (same leader, same tie-break)
    from lm_eval_latenttts.scaling.aggregation import majority_vote
    from evidence_lib.store import answer_code

    for a, back, c, i in zip(answers, code_answers(codes), codes, selection.majority_index(codes)):
        want = answer_code(majority_vote(a))
        assert (c[i] if i >= 0 else answer_code(None)) == want
        assert (majority_vote(back) is None) == (want == answer_code(None))
    shares = selection.vote_shares(codes)
    assert shares[3].tolist() == pytest.approx(ev.vote_shares(answers[3]))


def test_vectorised_aurocs_equal_the_pairwise_definition():
    g = torch.Generator().manual_seed(5)
    scores = torch.randint(0, 6, (30, 8), generator=g).double()  # many ties
    labels = torch.rand(30, 8, generator=g) < 0.5
    labels[0] = True  # a question without negatives
    w = ev.within_question_auroc(scores, labels, 50)
    per_q = [ev.auroc(s, y) for s, y in zip(scores.tolist(), labels.tolist()) if any(y) and not all(y)]
    assert w["mean"] == pytest.approx(sum(per_q) / len(per_q)) and w["questions"] == len(per_q)
    a = ev.across_question_auroc(scores, labels, 50)
    assert a["auroc"] == pytest.approx(ev.auroc(scores.flatten().tolist(), labels.flatten().tolist()))
    ranks = ev.ranking._ranks(torch.tensor([3.0, 1.0, 3.0, 2.0]))
    assert ranks.tolist() == [3.5, 1.0, 3.5, 2.0]
