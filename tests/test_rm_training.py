"""LatentRM losses and training on tiny random checkpoints (no Hub, no network)."""

import hashlib
import json
import math
import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(1)

from tiny_models import make_checkpoint  # noqa: E402

from lm_eval_latenttts.training import annotation_store as ann  # noqa: E402
from lm_eval_latenttts.training.rm_data import RMCollator, question_example, split_questions  # noqa: E402
from lm_eval_latenttts.training.rm_objective import (  # noqa: E402
    step_scores,
    stepwise_bce_loss,
    stepwise_contrastive_loss,
)
from lm_eval_latenttts.training.rm_training import TrainConfig, load_rm, train_rm  # noqa: E402

HIDDEN = 32


# ------------------------------------------------------------------------------ losses
def test_contrastive_loss_by_hand():
    scores = torch.tensor([[[1.0, 0.0], [2.0, -1.0], [0.0, 3.0]]])  # (Q=1, N=3, T=2)
    labels = torch.tensor([[[0.5, 1.0], [1.0, 0.0], [0.0, 0.25]]])
    expected = 0.0
    for t in range(2):
        col = [scores[0, n, t].item() for n in range(3)]
        z = math.log(sum(math.exp(c) for c in col))
        expected += -sum(labels[0, n, t].item() * (col[n] - z) for n in range(3))
    assert stepwise_contrastive_loss(scores, labels).item() == pytest.approx(expected, rel=1e-6)


def test_contrastive_loss_masks_and_averages_over_questions():
    scores = torch.tensor([[[1.0, 0.0], [2.0, -1.0], [50.0, 50.0]], [[0.3, 0.1], [0.2, 0.4], [0.0, 0.0]]])
    labels = torch.tensor([[[0.5, 1.0], [1.0, 0.0], [1.0, 1.0]], [[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]])
    mask = torch.ones(2, 3, 2, dtype=torch.bool)
    mask[0, 2] = False  # padded trajectory of question 0
    mask[1, 2] = False
    mask[1, :, 1] = False  # question 1 has a single step
    q0 = stepwise_contrastive_loss(scores[:1, :2], labels[:1, :2])
    q1 = stepwise_contrastive_loss(scores[1:, :2, :1], labels[1:, :2, :1])
    assert stepwise_contrastive_loss(scores, labels, mask).item() == pytest.approx(((q0 + q1) / 2).item(), rel=1e-6)


def test_contrastive_loss_needs_two_trajectories():
    with pytest.raises(ValueError, match="N >= 2"):
        stepwise_contrastive_loss(torch.zeros(2, 1, 3), torch.zeros(2, 1, 3))
    mask = torch.zeros(1, 3, 2, dtype=torch.bool)
    mask[0, 0] = True
    with pytest.raises(ValueError, match="N >= 2"):
        stepwise_contrastive_loss(torch.zeros(1, 3, 2), torch.zeros(1, 3, 2), mask)


def test_bce_loss_by_hand():
    scores = torch.tensor([[[0.0, 2.0], [-1.0, 1.0]]])
    labels = torch.tensor([[[0.5, 1.0], [0.0, 0.25]]])
    mask = torch.tensor([[[True, True], [True, False]]])
    sig = torch.sigmoid(scores)
    terms = -(labels * torch.log(sig) + (1 - labels) * torch.log(1 - sig))
    assert stepwise_bce_loss(scores, labels, mask).item() == pytest.approx(terms[mask].mean().item(), rel=1e-5)


# ------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def backbone_dir(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("ck") / "coconut", "coconut", seed=2, hidden=HIDDEN)


def _write_annotation(folder, backbone_dir, questions=8, n=4, steps=3, hidden=HIDDEN, seed=0, labels=None):
    """A synthetic annotation: trajectories whose latents carry their label (learnable).

    ``labels(q)``, if given, replaces the recorded correctness of question ``q``'s trajectories
    (the latents still carry the default pattern: right, wrong, right, ...).
    """
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(backbone_dir))
    start = tok.convert_tokens_to_ids("<|start-latent|>")
    g = torch.Generator().manual_seed(seed)
    direction = torch.randn(hidden, generator=g)
    rows = []
    for q in range(questions):
        correct = [i % 2 == 0 for i in range(n)]
        latents, values = [], []
        for i in range(n):
            v = torch.full((steps,), 0.9 if correct[i] else 0.1)
            z = torch.randn(steps, hidden, generator=g) * 0.5 + (1.0 if correct[i] else -1.0) * direction
            latents.append(z.tolist())
            values.append(v.tolist())
        recorded = list(labels(q)) if labels else correct
        rows.append({
            "question_id": q, "question": f"q{q}", "gold": "1",
            "prompt_ids": tok(f"q{q}")["input_ids"] + [start],
            "latents": latents, "step_values": values, "num_steps": [steps] * n, "correct": recorded,
            "answers": ["1" if c else "2" for c in recorded], "answer_texts": [""] * n, "num_continuations": 4,
        })
    folder.mkdir(parents=True, exist_ok=True)
    data = folder.parent / f"{folder.name}-questions.json"  # the data file an annotate run records, complete
    data.write_text(json.dumps([{"question": r["question"], "answer": r["gold"]} for r in rows]))
    (folder / ann.CONFIG_FILE).write_text(json.dumps({"model": str(backbone_dir), "num_trajectories": n,
                                                      "num_continuations": 4, "sampling": "dropout",
                                                      "dropout_p": 0.1, "data": str(data),
                                                      "data_sha256": hashlib.sha256(data.read_bytes()).hexdigest(),
                                                      "limit": None, "skip_bad_rows": False}))
    ann.write_shard(folder, 0, rows, list(range(questions)), [])
    return folder


# ------------------------------------------------------------------------------ training
def test_rm_from_backbone_has_fresh_one_output_head(backbone_dir):
    rm, tok, source = load_rm(str(backbone_dir))
    assert source == "backbone" and rm.config.num_labels == 1 and rm.classifier.out_features == 1
    assert rm.config.latent_id == tok.convert_tokens_to_ids("<|latent|>")


def test_few_steps_lower_the_loss(backbone_dir, tmp_path):
    folder = _write_annotation(tmp_path / "ann", backbone_dir, questions=4)
    ds = ann.load_annotations(folder)
    rm, _, _ = load_rm(str(backbone_dir))
    batch = RMCollator(rm.config.latent_id, rm.config.pad_token_id)([question_example(r) for r in ds])
    opt = torch.optim.AdamW(rm.parameters(), lr=1e-3)
    rm.train()
    losses = []
    for _ in range(15):
        loss = stepwise_contrastive_loss(step_scores(rm, batch), batch["values"], batch["mask"])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.1


def test_step_scores_match_score_rollouts(backbone_dir, tmp_path):
    """Training reads the RM outputs at the same positions as inference (score_rollouts)."""
    folder = _write_annotation(tmp_path / "ann", backbone_dir, questions=2)
    ds = ann.load_annotations(folder)
    rm, _, _ = load_rm(str(backbone_dir))
    rm.eval()
    ex = [question_example(r) for r in ds]
    batch = RMCollator(rm.config.latent_id, rm.config.pad_token_id)(ex)
    with torch.no_grad():
        train_view = step_scores(rm, batch)[0]  # (N, T)
    e = ex[0]
    out = _as_rollout(rm, e["prompt_ids"], e["latents"])
    assert torch.allclose(rm.score_rollouts(out).step_scores, train_view, atol=1e-4)


def _as_rollout(rm, prompt_ids, latents):
    """One annotated question as the output of ``generate`` (N rows sharing a prompt), for ``score_rollouts``."""
    from hf_modeling import LatentGenerateOutput

    latents = torch.as_tensor(latents, dtype=torch.float32)
    n, t = latents.shape[:2]
    prompt = torch.as_tensor(prompt_ids)[None].repeat(n, 1)
    seq = torch.cat([prompt, torch.full((n, t), rm.config.latent_id)], 1)
    return LatentGenerateOutput(sequences=seq, attention_mask=torch.ones_like(seq), latents=latents,
                                latent_lengths=torch.full((n,), t), prompt_length=prompt.shape[1],
                                num_return_sequences=n)


def _recall_at_1_by_hand(rm_dir, annotation_dir, question_ids):
    """Share of ``question_ids`` whose top trajectory (sum of the saved RM's step scores) is correct."""
    from hf_modeling import AutoLatentModel

    rm = AutoLatentModel.from_pretrained(str(rm_dir)).eval()
    rows = {r["question_id"]: r for r in ann.load_annotations(annotation_dir)}
    hits = []
    with torch.no_grad():
        for qid in question_ids:
            row = rows[qid]
            scores = rm.score_rollouts(_as_rollout(rm, row["prompt_ids"], row["latents"])).trajectory_scores
            hits.append(float(row["correct"][int(scores.argmax())]))
    return sum(hits) / len(hits)


def test_train_save_card_push_and_resume(backbone_dir, tmp_path, monkeypatch):
    folder = _write_annotation(tmp_path / "ann", backbone_dir, questions=10)
    out = tmp_path / "rm"
    cfg = TrainConfig(annotations=str(folder), output_dir=str(out), max_steps=4, batch_size=2, lr=1e-3,
                      eval_fraction=0.2, save_every=2, progress=False, extra={"recipe": "this test"})
    summary = train_rm(cfg)
    assert summary["optimizer_steps"] == 4 and summary["eval_questions"] == 2
    assert summary["extra"] == {"recipe": "this test"}  # recorded, e.g. the recipe that trained it
    # the held-out metrics, by hand: the final (saved) RM's top trajectory per held-out question
    held_out = split_questions(list(range(10)), 0.2, cfg.seed)[1]
    assert len(held_out) == 2
    assert summary["eval_after"]["eval_recall_at_1"] == pytest.approx(_recall_at_1_by_hand(out, folder, held_out))
    assert summary["eval_after"]["eval_random_pick"] == pytest.approx(0.5)  # 2 of the 4 trajectories are right
    files = set(os.listdir(out))
    assert {"config.json", "model.safetensors", "README.md", "training_summary.json", "tokenizer.json"} <= files
    assert {"modeling_latent_rm.py", "configuration_latent_rm.py"} <= files
    config = json.loads((out / "config.json").read_text())
    assert config["auto_map"]["AutoModelForTokenClassification"].endswith("COCONUTGPT2ForTokenClassification")
    assert config["architectures"] == ["COCONUTGPT2ForTokenClassification"]
    assert len(config.get("id2label", {"0": "LABEL_0"})) == 1
    card = (out / "README.md").read_text()
    assert "recall@1" in card and "contrastive" in card and "score_rollouts" in card and str(backbone_dir) in card
    from huggingface_hub import ModelCard

    meta = ModelCard.load(out / "README.md").data
    assert meta.library_name == "transformers" and meta.pipeline_tag == "token-classification"
    assert {"reward-model", "latent-reasoning"} <= set(meta.tags)
    assert meta.base_model is None  # initialised from a local folder that is no Hub repo: not guessed

    # the saved RM reloads (our loader and trust_remote_code) and continues training from it
    from hf_modeling import AutoLatentModel
    from transformers import AutoModelForTokenClassification

    assert type(AutoLatentModel.from_pretrained(str(out))).__name__ == "COCONUTGPT2ForTokenClassification"
    remote = AutoModelForTokenClassification.from_pretrained(str(out), trust_remote_code=True)
    assert remote.config.num_labels == 1

    # resume: drop the last checkpoint, rerun -> continues from step 2 and ends at step 4
    ckpts = sorted(p.name for p in (out / "checkpoints").glob("step-*"))
    assert ckpts == ["step-2", "step-4"]
    import shutil

    shutil.rmtree(out / "checkpoints" / "step-4")
    cfg.resume = True
    resumed = train_rm(cfg)
    assert resumed["optimizer_steps"] == 4
    assert [h["step"] for h in resumed["history"]] == [0, 1, 2, 3, 4]
    assert resumed["history"][:3] == summary["history"][:3]

    # push to hub: the HfApi calls are mocked, the folder is what gets uploaded
    calls = []

    class FakeApi:
        def __init__(self, token=None):
            pass

        def create_repo(self, repo_id, **kw):
            calls.append(("create", repo_id))

        def upload_folder(self, folder_path, repo_id, **kw):
            calls.append(("upload", repo_id, folder_path))
            assert os.path.isfile(os.path.join(folder_path, "README.md"))
            return "https://hub/commit"

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    cfg2 = TrainConfig(annotations=str(folder), output_dir=str(tmp_path / "rm2"), init=str(out), max_steps=1,
                       batch_size=4, eval_fraction=0.0, push_to_hub="me/latent-rm", progress=False, loss="bce",
                       base_model="me/tiny-rm", license="mit")
    pushed = train_rm(cfg2)
    assert pushed["init_kind"] == "rm"
    assert calls == [("create", "me/latent-rm"), ("upload", "me/latent-rm", str(tmp_path / "rm2"))]
    meta = ModelCard.load(tmp_path / "rm2" / "README.md").data
    assert (meta.base_model, meta.license, meta.base_model_relation) == ("me/tiny-rm", "mit", "finetune")
    assert 'AutoLatentModel.from_pretrained("me/latent-rm")' in (tmp_path / "rm2" / "README.md").read_text()


def test_eval_metrics_by_hand(backbone_dir, tmp_path):
    """recall@1 and the random-pick baseline on a separate held-out annotation, recomputed from the saved RM."""
    import random

    def mixed_labels(q):  # at least one right and one wrong trajectory, independent of the latents
        rng = random.Random(q)
        while True:
            labels = [rng.random() < 0.5 for _ in range(4)]
            if any(labels) and not all(labels):
                return labels

    train = _write_annotation(tmp_path / "train", backbone_dir, questions=4)
    held = _write_annotation(tmp_path / "held", backbone_dir, questions=8, seed=1, labels=mixed_labels)
    out = tmp_path / "rm"
    summary = train_rm(TrainConfig(annotations=str(train), eval_annotations=str(held), output_dir=str(out),
                                   max_steps=2, batch_size=2, lr=1e-3, progress=False))
    assert summary["eval_questions"] == 8
    recall = _recall_at_1_by_hand(out, held, range(8))
    # the case separates "the RM's top trajectory" from "any trajectory" and from "the first trajectory"
    assert recall not in (0.0, 1.0, sum(mixed_labels(q)[0] for q in range(8)) / 8), recall
    assert summary["eval_after"]["eval_recall_at_1"] == pytest.approx(recall)
    random_pick = sum(sum(mixed_labels(q)) / 4 for q in range(8)) / 8
    assert summary["eval_after"]["eval_random_pick"] == pytest.approx(random_pick)


def test_lora_training_saves_merged_rm(backbone_dir, tmp_path):
    folder = _write_annotation(tmp_path / "ann", backbone_dir, questions=4)
    out = tmp_path / "rm"
    train_rm(TrainConfig(annotations=str(folder), output_dir=str(out), max_steps=2, batch_size=2, lora_r=4,
                         eval_fraction=0.25, progress=False))
    from safetensors.torch import load_file

    saved, base = load_file(str(out / "model.safetensors")), load_file(str(Path(backbone_dir) / "model.safetensors"))
    assert not any("lora" in k for k in saved) and "classifier.weight" in saved
    # merged: the LoRA-adapted matrices moved away from the backbone's; frozen ones (LayerNorm) did not
    name = "transformer.h.0.attn.c_attn.weight"
    assert not torch.equal(saved[name], base[name])
    assert torch.equal(saved["transformer.h.0.ln_1.weight"], base["transformer.h.0.ln_1.weight"])


def test_bad_inputs(backbone_dir, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ann.AnnotationDataError):
        train_rm(TrainConfig(annotations=str(empty), output_dir=str(tmp_path / "o"), progress=False))
    one = _write_annotation(tmp_path / "one", backbone_dir, questions=3, n=1)
    with pytest.raises(ValueError, match="N >= 2"):
        train_rm(TrainConfig(annotations=str(one), output_dir=str(tmp_path / "o"), progress=False))
    wide = _write_annotation(tmp_path / "wide", backbone_dir, questions=3, hidden=HIDDEN + 8)
    with pytest.raises(ValueError, match="hidden size"):
        train_rm(TrainConfig(annotations=str(wide), output_dir=str(tmp_path / "o"), progress=False))
    with pytest.raises(ValueError, match="loss"):
        TrainConfig(annotations="x", output_dir="y", loss="mse").validate()


def test_no_dropout_training_is_the_eval_mode_gradient(backbone_dir, tmp_path):
    """--no-dropout (the reference's disable_dropout): the first step's loss is the eval-mode loss of the initial
    RM (no dropout mask at all), and the recorded setting refuses a resume with dropout."""
    from lm_eval_latenttts.training.rm_objective import compute_loss

    folder = _write_annotation(tmp_path / "ann", backbone_dir, questions=4)
    cfg = dict(annotations=str(folder), output_dir=str(tmp_path / "rm"), init=str(backbone_dir), max_steps=1,
               batch_size=4, eval_fraction=0.0, progress=False, seed=3)
    summary = train_rm(TrainConfig(**cfg, dropout=False))
    ds = ann.load_annotations(folder)
    torch.manual_seed(3)  # the head's init (set_seed(cfg.seed) in train_rm)
    rm, _, _ = load_rm(str(backbone_dir))
    rm.eval()
    batch = RMCollator(rm.config.latent_id, rm.config.pad_token_id)([question_example(r) for r in ds])
    with torch.no_grad():
        expected = compute_loss("contrastive", step_scores(rm, batch), batch["values"], batch["mask"])
    assert summary["first_loss"] == pytest.approx(float(expected), rel=1e-5)
    with_dropout = train_rm(TrainConfig(**{**cfg, "output_dir": str(tmp_path / "rm2")}))
    assert with_dropout["first_loss"] != pytest.approx(float(expected), rel=1e-5)
    with pytest.raises(ValueError):
        train_rm(TrainConfig(**cfg, resume=True))  # the run in rm/ was trained without dropout


def test_rm_reading_the_answer(backbone_dir, tmp_path):
    """--rm-input latents+answer: each row goes on with the end marker and the answer's tokens; one more step
    (the outcome) is scored at the answer's last token and labelled with the trajectory's correctness."""
    from transformers import AutoTokenizer

    from lm_eval_latenttts.training.rm_data import answer_tokenizer

    folder = _write_annotation(tmp_path / "ann", backbone_dir, questions=3, n=4, steps=2)
    ds = ann.load_annotations(folder)
    tok = AutoTokenizer.from_pretrained(str(backbone_dir))
    encode = answer_tokenizer(tok)
    rm, _, _ = load_rm(str(backbone_dir))
    end = rm.config.latent_end_id
    examples = [question_example(r, lambda text: encode("### 12" if text == "" else text)) for r in ds]
    plain = RMCollator(rm.config.latent_id, rm.config.pad_token_id)(examples)
    batch = RMCollator(rm.config.latent_id, rm.config.pad_token_id, end)(examples)
    q, n, t = plain["values"].shape
    assert batch["values"].shape == (q, n, t + 1) and batch["slot_index"].shape == (q * n, t + 1)
    assert torch.equal(batch["values"][..., :t], plain["values"])
    assert torch.equal(batch["values"][..., t], plain["correct"].float())
    answer = encode("### 12")
    for r in range(q * n):
        p = int(plain["attention_mask"][r].sum())
        assert batch["input_ids"][r, p:p + 1 + len(answer)].tolist() == [end] + answer
        assert int(batch["slot_index"][r, t]) == p + len(answer)  # the EOS of the answer
        assert torch.equal(batch["slot_index"][r, :t], plain["slot_index"][r])
    cfg = TrainConfig(annotations=str(folder), output_dir=str(tmp_path / "rm"), init=str(backbone_dir), max_steps=2,
                      batch_size=2, eval_fraction=0.0, progress=False, rm_input="latents+answer")
    train_rm(cfg)
    assert json.loads((tmp_path / "rm" / "config.json").read_text())["rm_input"] == "latents+answer"
    with pytest.raises(ValueError, match="rm-input"):
        TrainConfig(annotations="a", output_dir="o", rm_input="answer").validate()


def test_reinit_replaces_the_backbone_weights(backbone_dir, tmp_path):
    from lm_eval_latenttts.training.rm_training import reinitialise

    rm, _, _ = load_rm(str(backbone_dir))
    before = {k: v.clone() for k, v in rm.state_dict().items()}
    torch.manual_seed(0)
    reinitialise(rm)
    after = rm.state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert any(".mlp.c_fc.weight" in k for k in changed) and any("wte" in k for k in changed)
    assert float(after["transformer.h.0.mlp.c_fc.weight"].std()) == pytest.approx(0.02, rel=0.2)
    folder = _write_annotation(tmp_path / "ann", backbone_dir, questions=2)
    summary = train_rm(TrainConfig(annotations=str(folder), output_dir=str(tmp_path / "rm"), init=str(backbone_dir),
                                   max_steps=1, batch_size=2, eval_fraction=0.0, progress=False, reinit=True))
    assert summary["config"]["reinit"] is True


def test_an_incomplete_annotation_run_is_refused(backbone_dir, tmp_path, caplog):
    """Issue 21, item 8: train-rm trained on 1 of 16 shards without a word.  annotation_config.json records the
    data file and its sha256, so the questions the run must cover are known: fewer is refused unless asked for."""
    folder = _write_annotation(tmp_path / "ann", backbone_dir, questions=6)
    data = Path(json.loads((folder / ann.CONFIG_FILE).read_text())["data"])
    rows = json.loads(data.read_text())
    settings = dict(output_dir=str(tmp_path / "rm"), max_steps=1, batch_size=2, eval_fraction=0.0, progress=False)
    data.write_text(json.dumps(rows + [{"question": "q6", "answer": "1"}, {"question": "q7", "answer": "2"}]))
    config = json.loads((folder / ann.CONFIG_FILE).read_text())
    (folder / ann.CONFIG_FILE).write_text(json.dumps({**config, "data_sha256": hashlib.sha256(
        data.read_bytes()).hexdigest()}))  # as a run over 8 questions that wrote the shard of the first 6
    with pytest.raises(ValueError, match="6 of the 8 questions .* are annotated \\(2 missing, from question id 6\\)"):
        train_rm(TrainConfig(annotations=str(folder), **settings))
    assert not (tmp_path / "rm").exists()
    summary = train_rm(TrainConfig(annotations=str(folder), allow_incomplete_annotations=True, **settings))
    assert summary["optimizer_steps"] == 1 and "--allow-incomplete-annotations" in caplog.text
    data.write_text(json.dumps(rows))  # the data file changed since: the count cannot be known
    with pytest.raises(ValueError, match="changed since"):
        train_rm(TrainConfig(annotations=str(folder), **{**settings, "output_dir": str(tmp_path / "rm2")}))
    (folder / ann.CONFIG_FILE).write_text(json.dumps({k: v for k, v in config.items() if k != "data_sha256"}))
    with pytest.raises(ValueError, match="not written by annotate"):
        train_rm(TrainConfig(annotations=str(folder), **{**settings, "output_dir": str(tmp_path / "rm3")}))
    (folder / ann.CONFIG_FILE).write_text("{")
    with pytest.raises(ValueError, match="annotation_config.json is damaged"):
        train_rm(TrainConfig(annotations=str(folder), **{**settings, "output_dir": str(tmp_path / "rm4")}))


def test_an_error_in_the_held_out_loss_is_raised_not_dropped(backbone_dir, tmp_path, monkeypatch):
    """Sweep of issue 21 (an exception turned into a score): evaluate() dropped any ValueError of the held-out loss,
    so eval_loss silently averaged fewer batches; only a batch without two trajectories to compare has no loss."""
    from lm_eval_latenttts.training import rm_objective

    folder = _write_annotation(tmp_path / "ann", backbone_dir, questions=2)
    ds = ann.load_annotations(folder)
    rm, _, _ = load_rm(str(backbone_dir))
    batch = RMCollator(rm.config.latent_id, rm.config.pad_token_id)([question_example(r) for r in ds])
    assert rm_objective.evaluate(rm, [batch], "contrastive")["eval_loss"] > 0
    monkeypatch.setattr(rm_objective, "compute_loss", lambda *a, **k: (_ for _ in ()).throw(ValueError("shape bug")))
    with pytest.raises(ValueError, match="shape bug"):
        rm_objective.evaluate(rm, [batch], "contrastive")
    one, two = torch.ones(1, 1, 3, dtype=torch.bool), torch.ones(1, 2, 3, dtype=torch.bool)
    assert not rm_objective.comparable(one.float(), one) and rm_objective.comparable(two.float(), two)


def _saved_state(folder):
    from safetensors.torch import load_file

    return load_file(str(Path(folder) / "model.safetensors"))


def test_keep_best_installs_the_lowest_held_out_loss_and_patience_ends_the_run(backbone_dir, tmp_path, monkeypatch):
    """With scripted held-out losses: the installed weights are those of the lowest-loss evaluation after step 0,
    patience ends the run, and a run resumed from a checkpoint keeps the same best weights."""
    from lm_eval_latenttts.training import rm_loop

    folder = _write_annotation(tmp_path / "ann", backbone_dir, questions=10)
    losses = {0: 1.0, 1: 5.0, 2: 3.0, 3: 2.0, 4: 2.5, 5: 2.0, 6: 4.0, 7: 0.5, 8: 0.1}  # step 0 is never chosen
    states = {}

    def scripted(self):
        step = self.progress.step
        states[step] = {k: v.detach().clone() for k, v in self.acc.unwrap_model(self.model).state_dict().items()}
        return {"eval_loss": losses[step], "eval_recall_at_1": 0.5, "eval_random_pick": 0.5, "eval_questions": 2}

    monkeypatch.setattr(rm_loop.RMTrainingLoop, "evaluate", scripted)
    cfg = TrainConfig(annotations=str(folder), output_dir=str(tmp_path / "rm"), max_steps=8, batch_size=2, lr=1e-2,
                      eval_fraction=0.2, eval_every=1, save_every=1, keep_best=True, patience=3, progress=False)
    summary = train_rm(cfg)
    # best after step 0: step 3 (2.0; step 5 ties it later); 3 evaluations without a lower loss end the run
    assert summary["selected_step"] == 3 and summary["optimizer_steps"] == 6 and summary["stopped_early"]
    assert summary["eval_after"]["eval_loss"] == 2.0
    saved = _saved_state(tmp_path / "rm")
    assert all(torch.equal(saved[k], states[3][k]) for k in saved)
    assert not all(torch.equal(saved[k], states[6][k]) for k in saved)  # not the last step's
    card = (tmp_path / "rm" / "README.md").read_text()
    assert "the weights of step 3 (lowest held-out loss)" in card and "the kept weights: step 3" in card

    # resumed from the checkpoint of step 5 (the best's weights travel in it): the same run and the same RM
    import shutil

    shutil.rmtree(tmp_path / "rm" / "checkpoints" / "step-6")
    assert (tmp_path / "rm" / "checkpoints" / "step-5").is_dir()
    cfg.resume = True
    resumed = train_rm(cfg)
    assert resumed["history"] == summary["history"] and resumed["selected_step"] == 3
    assert all(torch.equal(v, saved[k]) for k, v in _saved_state(tmp_path / "rm").items())

    # without patience the run goes to the end and keeps step 8's weights (the lowest)
    cfg2 = TrainConfig(annotations=str(folder), output_dir=str(tmp_path / "rm2"), max_steps=8, batch_size=2,
                       lr=1e-2, eval_fraction=0.2, eval_every=1, keep_best=True, progress=False)
    whole = train_rm(cfg2)
    assert whole["optimizer_steps"] == 8 and whole["selected_step"] == 8 and "stopped_early" not in whole
    # they need held-out questions
    with pytest.raises(ValueError, match="--keep-best and --patience"):
        TrainConfig(annotations=str(folder), output_dir=str(tmp_path / "rm3"), eval_fraction=0.0,
                    keep_best=True).validate()
    with pytest.raises(ValueError, match="--patience must be"):
        TrainConfig(annotations=str(folder), output_dir=str(tmp_path / "rm3"), patience=-1).validate()


@pytest.mark.parametrize("layers", [1, 3])
def test_rm_layers_resizes_the_rm_and_it_loads_exactly(backbone_dir, tmp_path, layers):
    from hf_modeling import AutoLatentModel

    backbone, _, _ = load_rm(str(backbone_dir))
    assert backbone.config.n_layer == 2
    folder = _write_annotation(tmp_path / "ann", backbone_dir, questions=4)
    out = tmp_path / "rm"
    summary = train_rm(TrainConfig(annotations=str(folder), output_dir=str(out), max_steps=1, batch_size=2,
                                   lr=1e-12, eval_fraction=0.0, progress=False, rm_layers=layers))
    assert summary["config"]["rm_layers"] == layers
    rm = AutoLatentModel.from_pretrained(str(out))
    assert rm.config.n_layer == layers and len(rm.transformer.h) == layers
    saved = _saved_state(out)
    assert set(saved) <= set(rm.state_dict())
    assert all(torch.equal(rm.state_dict()[k], v) for k, v in saved.items())  # loads exactly
    # the blocks the backbone has are its own (lr ~ 0: unchanged by the one step); a new block is fresh
    base = backbone.state_dict()
    for i in range(min(layers, 2)):
        key = f"transformer.h.{i}.mlp.c_fc.weight"
        assert torch.allclose(saved[key], base[key], atol=1e-6)
    if layers > 2:
        new = saved["transformer.h.2.mlp.c_fc.weight"]
        assert not torch.allclose(new, base["transformer.h.1.mlp.c_fc.weight"])
        assert float(new.std()) == pytest.approx(0.02, rel=0.3)
        assert torch.equal(saved["transformer.h.2.ln_1.weight"], torch.ones_like(saved["transformer.h.2.ln_1.weight"]))
    with pytest.raises(ValueError, match="--rm-layers must be"):
        TrainConfig(annotations=str(folder), output_dir=str(out), rm_layers=0).validate()


def test_rm_layers_on_a_llama_rm(tmp_path):
    from lm_eval_latenttts.training.rm_model import resize_layers

    rm, _, _ = load_rm(str(make_checkpoint(tmp_path / "colar", "colar", seed=0)))
    ids = torch.tensor([[1, 2, 3, 4]])
    resize_layers(rm, 3)
    assert rm.config.num_hidden_layers == 3 and len(rm.model.layers) == 3
    assert rm.model.layers[2].self_attn.layer_idx == 2
    assert torch.equal(rm.model.layers[2].input_layernorm.weight, torch.ones_like(rm.model.layers[2].input_layernorm.weight))
    assert rm(input_ids=ids).logits.shape == (1, 4, 1)
    resize_layers(rm, 1)
    assert rm.config.num_hidden_layers == 1 and len(rm.model.layers) == 1
