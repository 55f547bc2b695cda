"""The command line: --help lists every option; annotate and train-rm run end to end on a tiny model."""

import json
import os
import subprocess
import sys

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from lm_eval_latenttts import cli  # noqa: E402


def _options(name):
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[name]
    return [s for a in sub._actions for s in a.option_strings if s.startswith("--") and s != "--help"]


@pytest.mark.parametrize("name", ["annotate", "train-rm"])
def test_help_lists_every_option(name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([name, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    options = _options(name)
    assert len(options) > 10
    for option in options:
        assert option in text
    # every option has a description
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[name]
    assert all(a.help for a in sub._actions)


def test_top_level_help_lists_subcommands(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    assert "annotate" in out and "train-rm" in out


def test_single_command_entry_points(capsys):
    with pytest.raises(SystemExit):
        cli.annotate_main(["--help"])
    assert "--num-continuations" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli.train_rm_main(["--help"])
    assert "--lora-r" in capsys.readouterr().out


def test_errors_are_reported_cleanly(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code = cli.main(["train-rm", "--annotations", str(tmp_path / "empty"), "--output-dir", str(tmp_path / "o")])
    assert code == 2
    assert "no annotation shards" in capsys.readouterr().err


def test_smoke_annotate_then_train_rm_end_to_end(tmp_path, capsys):
    """``latent-tts annotate`` then ``latent-tts train-rm`` (in-process: ``cli.main``, what the console scripts and
    ``python -m lm_eval_latenttts`` call, as ``test_python_m_runs_the_cli`` checks)."""
    sys.path.insert(0, os.path.dirname(__file__))
    from tiny_models import make_checkpoint

    ck = make_checkpoint(tmp_path / "ck", "coconut", seed=3)
    data = tmp_path / "q.jsonl"
    data.write_text("".join(json.dumps({"question": f"{i}?", "answer": str(i)}) + "\n" for i in range(3)))
    capsys.readouterr()
    code = cli.main(["annotate", "--model", str(ck), "--data", str(data), "--output-dir", str(tmp_path / "ann"),
                     "-N", "2", "-M", "2", "--latent-length", "2", "--max-new-tokens", "3", "--keep-all", "--threads",
                     "1", "--no-progress"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert json.loads(out.out)["kept"] == 3
    code = cli.main(["train-rm", "--annotations", str(tmp_path / "ann"), "--output-dir", str(tmp_path / "rm"),
                     "--max-steps", "2", "--batch-size", "1", "--eval-fraction", "0.34", "--threads", "1",
                     "--no-progress"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert json.loads(out.out)["optimizer_steps"] == 2
    assert (tmp_path / "rm" / "README.md").is_file() and (tmp_path / "rm" / "model.safetensors").is_file()


def test_python_m_runs_the_cli():
    """``python -m lm_eval_latenttts`` is the CLI (its ``--help`` loads no torch)."""
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    out = subprocess.run([sys.executable, "-m", "lm_eval_latenttts", "--help"], capture_output=True, text=True,
                         env=env, timeout=120)
    assert out.returncode == 0 and "annotate" in out.stdout and "train-rm" in out.stdout, out.stderr
