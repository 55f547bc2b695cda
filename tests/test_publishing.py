"""From a run to the Hub: push a saved folder, lm-eval's own Hub logging, and ``export-results``.

One real ``lm_eval --model latent_tts`` run (the shipped model, copied into a folder, with its LatentRM) on 20
local arithmetic questions -- the whole file, no ``--limit`` -- with ``--hf_hub_log_args`` and the Hub replaced
by a folder (``fake_hub_lm_eval.py``); then ``export-results`` of its results file into the model folder.
"""

import copy
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from huggingface_hub import ModelCard, parse_eval_result_entries
from tiny_models import make_checkpoint

from lm_eval_latenttts import cli
from lm_eval_latenttts.checkpoints import shipped_model, shipped_rm
from lm_eval_latenttts.data import ARITH_TEST
from lm_eval_latenttts.publishing.eval_results import Benchmark, ExportError, export_results
from lm_eval_latenttts.publishing.hub import push_to_hub
from lm_eval_latenttts.publishing.identity import hub_commit, hub_repo_id, weights_sha256

QUESTIONS = 20
RM_TAG = "rm" + weights_sha256(shipped_rm())[:8]  # the slug names the LatentRM by its weights
HUB_ARGS = ("hub_results_org=me,details_repo_name=latent-details,results_repo_name=latent-results,"
            "push_results_to_hub=True,push_samples_to_hub=True,public_repo=False")


class FakeApi:
    calls = []

    def __init__(self, token=None):
        pass

    def create_repo(self, repo_id, **kw):
        self.calls.append(("create", repo_id, kw.get("private")))

    def upload_folder(self, folder_path, repo_id, **kw):
        self.calls.append(("upload", repo_id, sorted(os.listdir(folder_path)), kw.get("ignore_patterns")))
        return f"https://huggingface.co/{repo_id}/commit/1"


def test_push_a_saved_backbone(tiny_checkpoints, tmp_path, monkeypatch):
    import huggingface_hub

    from hf_modeling import AutoLatentModel

    model = AutoLatentModel.from_pretrained(tiny_checkpoints["codi"])
    card = model.model_card("me/codi", base_model="openai-community/gpt2", datasets=["openai/gsm8k"], license="mit")
    model.save_pretrained(tmp_path / "codi", model_card=card)
    meta = ModelCard.load(tmp_path / "codi" / "README.md").data
    assert (meta.base_model, meta.datasets, meta.license, meta.library_name) == (
        "openai-community/gpt2", ["openai/gsm8k"], "mit", "transformers")
    assert 'AutoModelForCausalLM.from_pretrained("me/codi", trust_remote_code=True)' in card
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    FakeApi.calls = []
    assert cli.main(["push-to-hub", str(tmp_path / "codi"), "me/codi", "--private"]) == 0
    (create, upload) = FakeApi.calls
    assert create == ("create", "me/codi", True)
    assert upload[1] == "me/codi" and {"README.md", "config.json", "model.safetensors", "modeling_latent.py"} <= set(
        upload[2]) and "checkpoints/*" in upload[3]
    with pytest.raises(FileNotFoundError, match="not a saved checkpoint"):
        push_to_hub(tmp_path, "me/nothing")


def test_hub_identity_of_cache_folders(tmp_path):
    snapshot = tmp_path / "hub" / "models--org--name" / "snapshots" / ("a" * 40)
    snapshot.mkdir(parents=True)
    assert (hub_repo_id(snapshot), hub_commit(snapshot)) == ("org/name", "a" * 40)
    assert (hub_repo_id(tmp_path), hub_commit(tmp_path)) == (None, "")
    assert hub_repo_id("ModalityDance/latent-tts-coconut") == "ModalityDance/latent-tts-coconut"


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """The lm_eval run: (results dict, results file, model folder, fake Hub folder, process)."""
    root = tmp_path_factory.mktemp("publish")
    model = root / "arith-coconut"
    shutil.copytree(shipped_model(), model)
    data = root / "arith20.json"
    data.write_text(json.dumps(json.loads(ARITH_TEST.read_text())[:QUESTIONS]))
    hub = root / "hub"
    hub.mkdir()
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore",
               HF_TOKEN="fake-token", FAKE_HUB_DIR=str(hub), LATENT_TTS_DATA_ARITH=str(data))
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("fake_hub_lm_eval.py")), "--model", "latent_tts",
         "--model_args", f"pretrained={model},rm={shipped_rm()}", "--tasks", "latent_arith", "--log_samples",
         "--output_path", str(root / "results"), "--hf_hub_log_args", HUB_ARGS],
        capture_output=True, text=True, env=env, cwd=root, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    files = list((root / "results").rglob("results_*.json"))
    assert len(files) == 1, files
    return json.loads(files[0].read_text()), files[0], model, hub, proc


def test_the_main_jobs_table(evaluated):
    """The main job (the shipped model and LatentRM, their own settings, ``latent_arith``) through the real CLI: the
    printed table holds every metric row of the results file, with its value."""
    results, _, _, _, proc = evaluated
    rows = {key.partition(",")[0]: value for key, value in results["results"]["latent_arith"].items()
            if key.endswith(",none") and "_stderr" not in key}
    assert {"acc", "single_acc", "majority", "best_of_n", "weighted", "greedy", "coverage", "pass@16", "rollouts",
            "latent_forwards"} <= set(rows)
    table = [line for line in proc.stdout.splitlines() if line.startswith("|")]
    for name, value in rows.items():
        assert any(f"|{name}|" in line.replace(" ", "") and f"|{value:.4f}|" in line.replace(" ", "")
                   for line in table), (name, value)


def test_results_carry_the_model_info_leaderboards_read(evaluated):
    from hf_modeling import AutoLatentModel
    from lm_eval_latenttts.publishing.identity import weights_sha256

    results, _, model, _, _ = evaluated
    config = results["config"]
    backbone, rm = AutoLatentModel.from_pretrained(model), AutoLatentModel.from_pretrained(shipped_rm())
    assert config["model_num_parameters"] == sum(p.numel() for p in backbone.parameters())
    assert config["rm_num_parameters"] == sum(p.numel() for p in rm.parameters())
    assert config["model_dtype"] == config["rm_dtype"] == "torch.float32"
    assert config["model_revision"] == config["rm_revision"] == "main"
    assert config["model_sha"] == config["rm_sha"] == ""  # local folders: no Hub commit (as lm-eval's HFLM)
    info = config["latent_tts"]
    assert info["weights_sha256"] == weights_sha256(model) and info["rm_weights_sha256"] == weights_sha256(shipped_rm())
    assert info["tasks"]["latent_arith"]["n"] == 16 and info["data_files"]["LATENT_TTS_DATA_ARITH"].endswith(".json")
    assert results["n-samples"]["latent_arith"] == {"original": QUESTIONS, "effective": QUESTIONS}


def test_hf_hub_log_args_uploads_results_and_details(evaluated):
    results, _, _, hub, proc = evaluated
    log = proc.stdout + proc.stderr
    assert "Could not save" not in log and "Successfully pushed aggregated results" in log
    calls = [json.loads(line) for line in (hub / "calls.jsonl").read_text().splitlines()]
    assert ["create_repo", "me/latent-results-private", "dataset", True] in calls
    assert ["create_repo", "me/latent-details-private", "dataset", True] in calls
    uploaded = [p for p in (hub / "me" / "latent-results-private").rglob("results_*.json")]
    assert len(uploaded) == 1
    assert json.loads(uploaded[0].read_text())["config"]["latent_tts"] == results["config"]["latent_tts"]
    assert list((hub / "me" / "latent-details-private").rglob("samples_latent_arith_*.jsonl"))
    assert any(c[0] == "upload_file" and c[3] == "README.md" for c in calls)  # the details dataset card


def test_export_results_writes_eval_results_and_model_index(evaluated, tmp_path):
    results, file, model, _, _ = evaluated
    folder = tmp_path / "model"
    shutil.copytree(model, folder)  # a copy holds the same weights: it is the evaluated model
    ModelCard("---\nlicense: mit\n---\n\n# My model\n\nHand-written text.\n").save(folder / "README.md")
    with pytest.raises(ExportError, match="local file .*--benchmark latent_arith="):
        export_results(file.parent.parent, folder)
    assert not (folder / ".eval_results").exists()  # refused before writing anything

    code = cli.main(["export-results", str(file.parent.parent), "--model-dir", str(folder), "--benchmark",
                     "latent_arith=me/arith:arith_test", "--repo-id", "me/arith-coconut"])
    assert code == 0
    scores = {k.split(",")[0]: v for k, v in results["results"]["latent_arith"].items()
              if k.endswith(",none") and "_stderr" not in k and isinstance(v, float)}
    costs = {k: scores.pop(k) for k in ("rollouts", "latent_forwards", "extra_positions")}  # costs: in the notes
    assert (costs["rollouts"], costs["latent_forwards"]) == (17.0, 34.0) and costs["extra_positions"] > 0
    files = sorted((folder / ".eval_results").glob("*.yaml"))
    assert len(files) == len(scores) == 12  # acc, single_acc, majority, best_of_n, weighted, coverage, greedy, pass@1..16
    seen = {}
    for path in files:
        raw = yaml.safe_load(path.read_text())
        (entry,) = parse_eval_result_entries(raw)  # the Hub's own parser of the format
        assert set(raw[0]) == {"dataset", "value", "date", "source", "notes"}
        assert (entry.dataset_id, entry.task_id) == ("me/arith", "arith_test")
        assert entry.source_url == "https://huggingface.co/me/arith-coconut" and entry.date.endswith("Z")
        assert "N=16" in entry.notes and "dropout p=0.2" in entry.notes and "arith-rm" in entry.notes
        assert "aggregation consistency" in entry.notes and path.stem.endswith(f"dropout0.2-n16-consistency-{RM_TAG}")
        assert "17 rollouts, 34 latent forward steps, " in entry.notes and "(read-backs)" in entry.notes
        metric = path.stem[len("latent_arith_"):-len(f"_dropout0.2-n16-consistency-{RM_TAG}")].replace("-at-", "@")
        seen[metric] = entry.value
    assert seen == scores

    card = ModelCard.load(folder / "README.md")
    assert card.data.license == "mit" and "Hand-written text." in card.text  # the rest of the card is kept
    index = {r.metric_type: r for r in card.data.eval_results}
    assert {k: r.metric_value for k, r in index.items()} == scores
    assert {(r.dataset_type, r.task_name, r.metric_config) for r in index.values()} == {
        ("me/arith", "latent_arith", f"dropout0.2-n16-consistency-{RM_TAG}")}
    assert index["majority"].metric_args["n"] == 16 and index["majority"].metric_args["aggregate"] == "consistency"
    assert card.data.model_name == "me/arith-coconut"
    # exporting again replaces, never duplicates
    export_results(file, folder, benchmarks={"latent_arith": Benchmark("me/arith", "arith_test")},
                   repo_id="me/arith-coconut")
    assert len(ModelCard.load(folder / "README.md").data.eval_results) == len(scores)
    assert len(list((folder / ".eval_results").glob("*.yaml"))) == len(scores)


@pytest.mark.parametrize("change, message", [
    (lambda r: r["config"].update(limit=5), "--limit 5"),
    (lambda r: r["n-samples"]["latent_arith"].update(effective=5), "scored 5 of its 20 documents"),
    (lambda r: r["config"]["latent_tts"].update(weights_sha256="0" * 64), "holds other weights"),
    (lambda r: r["config"].update(model="hf"), "not produced by `lm_eval --model latent_tts`"),
    # issue 21, item 10: an older seed=none run (a seed per batch) overwrote the seed-0 entries
    (lambda r: r["config"]["latent_tts"]["tasks"]["latent_arith"].update(seed=None), "seed=none run of an older"),
])
def test_export_refuses_other_models_and_partial_runs(evaluated, tmp_path, change, message):
    results, _, model, _, _ = evaluated
    changed = copy.deepcopy(results)
    change(changed)
    path = tmp_path / "results_2026-01-01T00-00-00.json"
    path.write_text(json.dumps(changed))
    folder = tmp_path / "model"
    shutil.copytree(model, folder)
    with pytest.raises(ExportError, match=message):
        export_results(path, folder, benchmarks={})
    assert not (folder / ".eval_results").exists() and not (folder / "README.md").exists()


def test_export_refuses_a_run_with_failed_documents_or_says_so(evaluated, tmp_path):
    """Issue 21, item 7: documents that could not run (too long for the context window) are scored wrong; such a
    run's scores were exported as the benchmark's.  The results count them; the export refuses them, or with
    --allow-failed-documents writes the count into every entry's notes."""
    results, _, model, _, _ = evaluated
    assert results["config"]["latent_tts"]["failed_documents"] == {"latent_arith": 0}
    folder = tmp_path / "model"
    shutil.copytree(model, folder)
    for recorded, message in (({"latent_arith": 3}, "3 of 20 documents of task latent_arith could not run"),
                              (None, "does not record how many documents")):
        changed = copy.deepcopy(results)
        changed["config"]["latent_tts"]["failed_documents"] = recorded
        path = tmp_path / "results_2026-01-01T00-00-00.json"
        path.write_text(json.dumps(changed))
        with pytest.raises(ExportError, match=message):
            export_results(path, folder, benchmarks={"latent_arith": Benchmark("me/arith", "arith")})
        assert not (folder / ".eval_results").exists()
    changed["config"]["latent_tts"]["failed_documents"] = {"latent_arith": 3}
    path.write_text(json.dumps(changed))
    assert cli.main(["export-results", str(path), "--model-dir", str(folder), "--benchmark", "latent_arith=me/arith",
                     "--allow-failed-documents"]) == 0
    entries = [parse_eval_result_entries(yaml.safe_load(p.read_text()))[0] for p in (folder / ".eval_results").glob("*")]
    assert entries and all("3 of 20 documents could not run" in e.notes for e in entries)


@pytest.mark.parametrize("args, message", [
    (["--benchmark", "latent_arith=../../etc/x:../../../y"], "is not a Hugging Face Hub repo id"),
    (["--benchmark", "latent_arith=me/arith:../../y"], "is not a task id"),
    (["--benchmark", "latent_arith=me/arith", "--benchmark", "latent_gsm8k=me/gsm8k"], "which .* has no scores"),
    (["--benchmark", "latent_arith=me/arith", "--repo-id", "you/bad name../$(id)"], "--repo-id .* not a Hugging Face"),
])
def test_export_refuses_what_the_hub_would_refuse(evaluated, tmp_path, args, message, capsys):
    """Minor item of issue 21: --benchmark path components and a --repo-id the Hub refuses were written into
    .eval_results/ unchecked; a --benchmark of a task the results do not have was ignored."""
    _, file, model, _, _ = evaluated
    folder = tmp_path / "model"
    shutil.copytree(model, folder)
    assert cli.main(["export-results", str(file), "--model-dir", str(folder), *args]) == 2
    assert re.search(message, capsys.readouterr().err)
    assert not (folder / ".eval_results").exists() and not (folder / "README.md").exists()


def test_a_damaged_checkpoint_config_stops_the_export(evaluated, tmp_path):
    """Sweep of issue 21 (an exception turned into a default): an unreadable generation_config.json of the model
    folder was read as {}, so the slug was made against the library's defaults, not the checkpoint's."""
    _, file, model, _, _ = evaluated
    folder = tmp_path / "model"
    shutil.copytree(model, folder)
    (folder / "generation_config.json").write_text("{")
    with pytest.raises(ExportError, match="generation_config.json is damaged"):
        export_results(file, folder, benchmarks={"latent_arith": Benchmark("me/arith", "arith")})
    assert not (folder / ".eval_results").exists()


def test_hub_ids_are_checked_before_any_upload_or_training(tmp_path):
    from lm_eval_latenttts.training.rm_training import TrainConfig

    with pytest.raises(ValueError, match="not a Hugging Face Hub repo id"):
        push_to_hub(tmp_path, "you/bad name../$(id)")
    for flag in ("push_to_hub", "base_model"):
        with pytest.raises(ValueError, match=f"--{flag.replace('_', '-')} .* not a Hugging Face Hub repo id"):
            TrainConfig(annotations="a", output_dir="o", **{flag: "../x/y"}).validate()


def test_export_refuses_a_folder_with_another_model(evaluated, tmp_path):
    _, file, _, _, _ = evaluated
    other = make_checkpoint(tmp_path / "other", "coconut")
    code = cli.main(["export-results", str(file), "--model-dir", str(other), "--benchmark", "latent_arith=me/a"])
    assert code == 2


def test_settings_slug_tells_apart_every_setting_that_changes_scores(tmp_path):
    from hf_modeling.generation_config import ADAPTIVE_DEFAULTS, INHERITED_DEFAULTS, LATENT_DEFAULTS
    from lm_eval_latenttts.publishing.eval_results import SLUG_EXTRAS, settings_slug, slug_defaults

    library = {**LATENT_DEFAULTS, **ADAPTIVE_DEFAULTS, **INHERITED_DEFAULTS, "dtype": "float32"}
    assert slug_defaults() == {k: library[k] for k in SLUG_EXTRAS}  # no checkpoint: the library's defaults
    base = {"sampling": "dropout", "dropout_p": 0.2, "dropout_scope": "all", "n": 16, "aggregate": "weighted",
            "max_new_tokens": 32, "seed": 0}
    rm = "1a2b3c4d" + "0" * 56
    assert settings_slug(base, rm) == "dropout0.2-n16-weighted-rm1a2b3c4d"  # the default settings: the short slug
    assert settings_slug({"sampling": "none", "n": 1, "aggregate": "majority", "max_new_tokens": 32}, None) == "greedy"
    slugs = {settings_slug(base, rm)}
    for change in ({"dropout_scope": "latent"}, {"max_new_tokens": 16}, {"latent_length": 4}, {"dtype": "bfloat16"}):
        slugs.add(settings_slug({**base, **change}, rm))
    slugs.add(settings_slug(base, "9" * 64))  # another LatentRM
    slugs.add(settings_slug({**base, "seed": None}, rm))  # seed=none is not seed 0 (issue 21, item 10)
    slugs.add(settings_slug({**base, "seed": 123}, rm))  # a seed=none run's drawn seed
    assert len(slugs) == 8
    assert settings_slug({**base, "dtype": "float32"}, rm) == settings_slug(base, rm)  # the default dtype
    adaptive = {**base, "adaptive_rule": "confidence", "adaptive_round": 3, "adaptive_threshold": 0.9,
                "adaptive_votes": "count"}
    assert settings_slug(adaptive, rm) != settings_slug({**adaptive, "adaptive_votes": "rm"}, rm)
    # the defaults are the checkpoint's own settings (a run without model_args): its max_new_tokens keeps the short slug
    (tmp_path / "generation_config.json").write_text(json.dumps({"max_new_tokens": 8, "dropout_scope": "all"}))
    defaults = slug_defaults(tmp_path)
    assert settings_slug({**base, "max_new_tokens": 8}, rm, defaults) == "dropout0.2-n16-weighted-rm1a2b3c4d"
    assert settings_slug(base, rm, defaults) == "dropout0.2-n16-weighted-rm1a2b3c4d-tok32"
    (tmp_path / "config.json").write_text(json.dumps({"dtype": "bfloat16"}))  # the checkpoint's dtype is the default
    assert settings_slug({**base, "max_new_tokens": 8, "dtype": "bfloat16"}, rm, slug_defaults(tmp_path)) == \
        "dropout0.2-n16-weighted-rm1a2b3c4d"
    assert settings_slug({**base, "max_new_tokens": 8, "dtype": "float32"}, rm, slug_defaults(tmp_path)) == \
        "dropout0.2-n16-weighted-rm1a2b3c4d-float32"


@pytest.fixture(scope="module")
def small_runs(tmp_path_factory):
    """``lm_eval --model latent_tts`` runs (N=2) of one model folder on 20 questions that differ in one thing, in-process
    as the CLI runs them (``harness_runs.evaluate_into``: simple_evaluate and lm-eval's EvaluationTracker writing the
    results file): {"base", "other_rm" (another LatentRM folder), "bf16" (dtype), "predict_only"} -> (results file,
    model folder)."""
    from harness_runs import evaluate_into

    from hf_modeling import AutoLatentModel

    root = tmp_path_factory.mktemp("small_runs")
    model = root / "arith-coconut"
    shutil.copytree(shipped_model(), model)
    other_rm = root / "other-rm"
    rm = AutoLatentModel.from_pretrained(shipped_rm())
    with torch_no_grad():
        for p in rm.parameters():
            p.add_(0.01)
    rm.save_pretrained(other_rm)
    data = root / "arith20.json"
    data.write_text(json.dumps(json.loads(ARITH_TEST.read_text())[:QUESTIONS]))
    base = f"pretrained={model},n=2,aggregate=weighted"
    runs = {"base": (f"{base},rm={shipped_rm()}", {}), "other_rm": (f"{base},rm={other_rm}", {}),
            "bf16": (f"{base},rm={shipped_rm()},dtype=bfloat16", {}),
            "predict_only": (f"{base},rm={shipped_rm()}", {"predict_only": True})}
    found, previous = {}, os.environ.get("LATENT_TTS_DATA_ARITH")
    os.environ["LATENT_TTS_DATA_ARITH"] = str(data)
    try:
        for name, (model_args, extra) in runs.items():
            found[name] = evaluate_into(root / name, "latent_tts", ["latent_arith"], model_args=model_args, **extra)
    finally:
        if previous is None:
            os.environ.pop("LATENT_TTS_DATA_ARITH")
        else:
            os.environ["LATENT_TTS_DATA_ARITH"] = previous
    return found, model


def torch_no_grad():
    import torch

    return torch.no_grad()


def _export(file, folder):
    """``latent-tts export-results`` in-process: (exit code, stderr)."""
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = cli.main(["export-results", str(file), "--model-dir", str(folder), "--benchmark", "latent_arith=me/arith"])
    return code, err.getvalue()


def test_export_refuses_a_predict_only_run(small_runs, tmp_path):
    runs, model = small_runs
    assert "bypass,none" in json.loads(runs["predict_only"].read_text())["results"]["latent_arith"]
    folder = tmp_path / "model"
    shutil.copytree(model, folder)
    code, err = _export(runs["predict_only"], folder)
    assert code == 2 and "--predict_only" in err and "bypass" in err
    assert not (folder / ".eval_results").exists() and not (folder / "README.md").exists()


@pytest.mark.parametrize("other", ["other_rm", "bf16"])
def test_runs_that_differ_only_in_the_rm_or_dtype_keep_their_own_entries(small_runs, tmp_path, other):
    runs, model = small_runs
    folder = tmp_path / "model"
    shutil.copytree(model, folder)
    assert _export(runs["base"], folder)[0] == 0
    first = {p.name: p.read_text() for p in (folder / ".eval_results").glob("*.yaml")}
    first_index = ModelCard.load(folder / "README.md").data.eval_results
    assert _export(runs[other], folder)[0] == 0
    after = {p.name: p.read_text() for p in (folder / ".eval_results").glob("*.yaml")}
    assert len(after) == 2 * len(first) and all(after[name] == text for name, text in first.items())
    index = ModelCard.load(folder / "README.md").data.eval_results
    assert len(index) == 2 * len(first_index)
    assert {(r.metric_type, r.metric_config, r.metric_value) for r in first_index} <= \
        {(r.metric_type, r.metric_config, r.metric_value) for r in index}  # the first run's entries are all kept
    configs = {r.metric_config for r in index}
    assert len(configs) == 2
    if other == "bf16":
        assert any(c.endswith("-bfloat16") for c in configs)
        assert all(r.metric_args["dtype"] in ("float32", "bfloat16") for r in index)


def test_export_into_a_card_with_an_invalid_model_index_writes_nothing(small_runs, tmp_path):
    runs, model = small_runs
    folder = tmp_path / "model"
    shutil.copytree(model, folder)
    card = "---\nlicense: mit\nmodel-index:\n- name: x\n  results:\n  - task: {type: t}\n    metrics: 3\n---\n\n# Mine\n"
    (folder / "README.md").write_text(card)
    code, err = _export(runs["base"], folder)
    assert code == 2
    assert str(folder / "README.md") in err and "model-index" in err and "nothing was written" in err
    assert "ignore_metadata_errors" not in err  # a Python argument the CLI does not have
    assert not (folder / ".eval_results").exists() and (folder / "README.md").read_text() == card
    (folder / "README.md").write_text("---\nmodel-index: [1\n---\n\n# Mine\n")  # YAML that does not parse
    code, err = _export(runs["base"], folder)
    assert code == 2 and str(folder / "README.md") in err and not (folder / ".eval_results").exists()
