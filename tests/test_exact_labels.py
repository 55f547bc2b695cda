"""Exact (decoded) step labels: reading a latent prefix back, the label rule, and `annotate --labels decoded`."""

import json
import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(1)

from lm_eval_latenttts.training import exact_labels as ex  # noqa: E402
from lm_eval_latenttts.training.annotate import AnnotateConfig, annotate  # noqa: E402
from lm_eval_latenttts.training.annotation_store import load_annotations  # noqa: E402

N = 3


from test_annotate import backbone  # noqa: E402,F401  (the tiny backbone fixture: 3 latent steps)


def test_step_expression():
    assert ex.step_expression("<<55*3=65>>\n### 65") == "55*3"
    assert ex.step_expression("x << 1 + 2 = 3 >> <<4-1=3>>") == "1+2"
    assert ex.step_expression("### 65") is None and ex.step_expression(None) is None
    assert ex.gold_expressions(["<<47+8=55>>", "<<55*3=65>>"]) == ["47+8", "55*3"]


def test_label_rule(backbone, monkeypatch):
    """Step t < last: 1 iff the text read back from latents 0..t starts with gold step (t+1)//c's expression;
    the last step a row took: its final correctness; steps it did not take: NaN."""
    _, model, tok = backbone
    texts = {1: ["<<55*3=60>>", "<<45*3=35>>", "no step"], 2: ["<<65-1=64>>", "<<65-1=64>>"]}
    calls = []

    def fake_read_back(model_, tok_, prompt_ids, prefixes, max_new_tokens=ex.READ_BACK_TOKENS):
        calls.append(prefixes.shape[:2])
        return texts[prefixes.shape[1]][: prefixes.shape[0]]

    monkeypatch.setattr(ex, "read_back", fake_read_back)
    latents = torch.zeros(N, 3, model.config.n_embd)
    labels, _ = ex.decoded_step_labels(model, tok, [1, 2], latents, torch.tensor([3, 3, 1]),
                                       torch.tensor([True, False, True]), ["<<47+8=55>>", "<<55*3=65>>", "<<65-1=64>>"])
    assert calls == [(2, 1), (2, 2)]  # row 2 stopped after one step: its only step is its last
    assert labels[:, 0].tolist() == [1.0, 0.0, 1.0]
    assert labels[:2, 1].tolist() == [1.0, 1.0]
    assert labels[:2, 2].tolist() == [1.0, 0.0]  # last steps: final correctness
    assert torch.isnan(labels[2, 1:]).all()
    # two latents per step: latent 0 is mid-step, k = 0 -> compared with gold step 0
    calls.clear()
    labels2, _ = ex.decoded_step_labels(model, tok, [1, 2], latents[:2, :2], torch.tensor([2, 2]),
                                        torch.tensor([True, True]), ["<<55*3=60>>", "<<1+1=2>>"], latents_per_step=2)
    assert labels2[:, 0].tolist() == [1.0, 0.0]
    with pytest.raises(ValueError, match="gold steps"):
        ex.decoded_step_labels(model, tok, [1, 2], latents, torch.tensor([3] * 3), torch.ones(3, dtype=torch.bool), [])


def test_read_back_repeats_the_rollout(backbone):
    """Fed the whole latent trajectory of a noise rollout (deterministic prompt), the read-back writes the
    rollout's own answer: the prefix is fed exactly as the rollout fed it."""
    _, model, tok = backbone
    prompt = model.encode_prompt(tok, "3 plus 4?")
    out = model.generate(torch.tensor([prompt]), num_return_sequences=4, latent_sampling="noise", noise_std=0.5,
                         seed=0, max_new_tokens=6, return_dict_in_generate=True)
    texts = tok.batch_decode(out.answer_ids, skip_special_tokens=True)
    read = ex.read_back(model, tok, prompt, out.latents, max_new_tokens=6)
    eos = tok.eos_token_id
    cut = [tok.decode([t for t in row.tolist()][: next((i for i, t in enumerate(row.tolist()) if t == eos), 6)],
                      skip_special_tokens=True) for row in out.answer_ids]
    assert read == cut and len(texts) == 4


def _questions(tmp_path, steps=True):
    path = tmp_path / "q.json"
    rows = [{"question": f"{i} plus {i}?", "answer": str(2 * i),
             **({"steps": [f"<<{i}+{i}={2 * i}>>", f"<<{2 * i}+0={2 * i}>>", f"<<{2 * i}*1={2 * i}>>"]} if steps else {})}
            for i in range(4)]
    path.write_text(json.dumps(rows))
    return path


def _config(backbone, data, out, **kw):
    generation = {"num_return_sequences": N, "latent_sampling": "dropout", "dropout_p": 0.3, "max_new_tokens": 4,
                  "latent_length": 3}
    return AnnotateConfig(model=str(backbone[0]), data=str(data), output_dir=str(out), generation=generation,
                          labels="decoded", keep_all=True, shard_size=2, progress=False, **kw)


def test_annotate_decoded(backbone, tmp_path):
    stats = annotate(_config(backbone, _questions(tmp_path), tmp_path / "out"), model=backbone[1],
                     tokenizer=backbone[2])
    assert stats["kept"] == 4 and stats["continuations"] == 4 * (N + N * 2)  # rollouts + read-backs, no continuations
    ds = load_annotations(tmp_path / "out")
    assert json.loads((tmp_path / "out" / "annotation_config.json").read_text())["labels"] == "decoded"
    for row in ds:
        values = torch.tensor(row["step_values"])
        assert set(values.flatten().tolist()) <= {0.0, 1.0}
        assert values[:, -1].tolist() == [float(c) for c in row["correct"]]
        assert row["num_continuations"] == 0
    # the same trajectories as Monte Carlo annotation of the same settings (keyed by seed, question, sample)
    mc = AnnotateConfig(**{**_config(backbone, _questions(tmp_path), tmp_path / "mc").__dict__, "labels": "monte_carlo",
                           "num_continuations": 2})
    annotate(mc, model=backbone[1], tokenizer=backbone[2])
    for a, b in zip(ds, load_annotations(tmp_path / "mc")):
        assert a["latents"] == b["latents"] and a["correct"] == b["correct"]


def test_annotate_decoded_refuses_questions_without_steps(backbone, tmp_path):
    with pytest.raises(ValueError, match="gold reasoning steps"):
        annotate(_config(backbone, _questions(tmp_path, steps=False), tmp_path / "out"), model=backbone[1],
                 tokenizer=backbone[2])
    assert not list((tmp_path / "out").glob("shard-*"))
    with pytest.raises(ValueError, match="labels must be one of"):
        _config(backbone, _questions(tmp_path), tmp_path / "o2", ).__class__(
            model="m", data="d", output_dir=str(tmp_path / "o3"), labels="exact").validate()


def test_model_card_names_decoded_labels_and_the_answer_input():
    from lm_eval_latenttts.publishing.model_card import rm_model_card

    summary = {"annotation_config": {"labels": "decoded", "generation": {"latent_sampling": "dropout",
                                                                         "dropout_p": 0.2, "num_return_sequences": 8}},
               "config": {"loss": "bce", "rm_input": "latents+answer", "dropout": False}}
    card = rm_model_card(summary, None)
    assert "exact step labels, N = 8" in card and "Monte Carlo" not in card
    assert "the decoded answer" in card and "no dropout" in card and "against the step label" in card


def test_question_rows_keep_their_gold_steps(tmp_path):
    from lm_eval_latenttts.data.questions import read_questions

    path = tmp_path / "q.json"
    path.write_text(json.dumps([{"question": "a", "answer": "3", "steps": ["<<1+2=3>>"]},
                                {"question": "b", "answer": "4", "steps": "not a list"}, {"question": "c", "answer": 5}]))
    assert [q.steps for q in read_questions(path)] == [("<<1+2=3>>",), (), ()]
