"""The README and docs/ say what the code does: the table of keys is the code's, the examples run, the links resolve.

The table of ``--model_args`` / ``gen_kwargs`` keys is generated from ``lm_eval_latenttts.keys.KEYS`` by
``docs/keys_table.py``; the selector example of ``docs/design.md`` is the class that ``tests/test_strategies.py`` runs
through lm-eval; the README's Python example runs on the shipped checkpoints (the released Hub ids swapped for them).
"""

from __future__ import annotations

import ast
import re
import runpy
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
# pages that other open issues write (their branches merge beside this one): linked from the README already
def _keys_table():
    return runpy.run_path(str(DOCS / "keys_table.py"))


def _fenced(text: str, lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```$", text, flags=re.S | re.M)


def _section(text: str, heading: str) -> str:
    start = text.index(f"\n{heading}\n")
    end = text.find("\n## ", start + len(heading) + 2)
    return text[start:end if end > 0 else len(text)]


def test_the_readme_table_of_keys_is_the_codes():
    tool = _keys_table()
    text = README.read_text(encoding="utf-8")
    assert tool["readme_block"](text) == tool["block"](), "run `python docs/keys_table.py --write`"
    assert tool["main"](["--check"]) == 0


def test_the_table_has_one_row_per_key_with_its_default():
    from hf_modeling.generation_config import LatentGenerationConfig
    from lm_eval_latenttts.keys import KEYS

    rows = [line for line in _keys_table()["table"]().splitlines() if line.startswith("| `")]
    assert [row.split("`")[1] for row in rows] == [key.name for key in KEYS]
    config = LatentGenerationConfig()
    by_name = {row.split("`")[1]: [cell.strip() for cell in row.split(" | ")] for row in rows}
    assert by_name["n"][2] == str(config.num_return_sequences) and by_name["seed"][2] == str(config.seed)
    assert by_name["greedy"][2] == "true" and by_name["sampling"][2] == "none"
    assert by_name["pretrained"][-1] == "no |" and by_name["n"][-1] == "yes |"


def test_the_table_says_what_the_shipped_checkpoints_override(tmp_path, monkeypatch):
    """The shipped generation_config.json values that differ from the defaults are listed; a change to them changes
    the table (so the README check catches it)."""
    import json

    import lm_eval_latenttts.checkpoints as checkpoints

    tool = _keys_table()
    line = next(line for line in tool["table"]().splitlines() if "generation_config.json` override" in line)
    saved = json.loads((checkpoints.DEFAULT_MODEL_DIR / "generation_config.json").read_text())
    assert f"`n={saved['num_return_sequences']}`" in line and "`seed=" not in line  # seed 0 is the default
    model = tmp_path / "model"
    model.mkdir()
    (model / "generation_config.json").write_text(json.dumps({**saved, "seed": 7}))
    monkeypatch.setattr(checkpoints, "DEFAULT_MODEL_DIR", model)
    assert "`seed=7`" in tool["table"]()


def test_the_check_fails_when_the_readme_drifts(tmp_path, monkeypatch):
    tool = _keys_table()
    text = README.read_text(encoding="utf-8")
    drifted = tmp_path / "README.md"
    drifted.write_text(text.replace("| `n` |", "| `num` |", 1), encoding="utf-8")
    main = tool["main"]
    monkeypatch.setitem(main.__globals__, "README", drifted)
    assert main(["--check"]) == 1
    assert main(["--write"]) == 0 and drifted.read_text(encoding="utf-8") == text


def _consensus_body(source: str) -> str:
    """The ``Consensus`` class of ``source`` without its decorator, dedented."""
    tree = ast.parse(textwrap.dedent(source))
    (cls,) = [node for node in ast.walk(tree) if isinstance(node, ast.ClassDef) and node.name == "Consensus"]
    return ast.unparse(ast.ClassDef(name=cls.name, bases=cls.bases, keywords=cls.keywords, body=cls.body,
                                    decorator_list=[], type_params=[]))


def test_the_selector_example_is_the_tested_one():
    design = (DOCS / "design.md").read_text(encoding="utf-8")
    (example,) = [block for block in _fenced(_section(design, "## Adding a selector"), "python")]
    assert "@register_strategy" in example and "import Choice, Strategy, register_strategy" in example
    test = (ROOT / "tests" / "test_strategies.py").read_text(encoding="utf-8")
    start = test.index("def test_a_selector_of_one_class_and_one_registration_runs_through_lm_eval")
    tested = test[start:test.index("\n    out = evaluate(", start)]
    assert _consensus_body(example) == _consensus_body(tested.split("@registered", 1)[1])
    assert "test_a_selector_of_one_class_and_one_registration_runs_through_lm_eval" in design


def test_the_python_example_runs_on_the_shipped_checkpoints():
    from lm_eval_latenttts.checkpoints import DEFAULT_MODEL_DIR, DEFAULT_RM_DIR

    text = README.read_text(encoding="utf-8")
    (code,) = _fenced(_section(text, "## Using the models from Python"), "python")
    code = code.replace('"ModalityDance/latent-tts-coconut"', repr(str(DEFAULT_MODEL_DIR)))
    code = code.replace('"ModalityDance/latent-tts-rm"', repr(str(DEFAULT_RM_DIR)))
    assert "ModalityDance" not in code
    scope: dict = {}
    exec(compile(code, "README.md (Using the models from Python)", "exec"), scope)  # noqa: S102
    assert scope["out"].sequences.shape[0] == 16 and len(scope["answers"]) == 16
    assert tuple(scope["scores"].trajectory_scores.shape) == (16,)


def _anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation but '-' and '_' dropped, spaces to '-'."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _links(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    text = re.sub(r"^```.*?^```$", "", text, flags=re.S | re.M)  # not inside code
    return re.findall(r"\]\(([^)\s]+)\)", text)


@pytest.mark.parametrize("page", ["README.md", *sorted(str(p.relative_to(ROOT)) for p in DOCS.glob("*.md"))])
def test_links_resolve(page):
    path = ROOT / page
    missing = []
    for link in _links(path):
        if re.match(r"[a-z]+://", link):
            continue
        target, _, anchor = link.partition("#")
        file = (path.parent / target).resolve() if target else path
        if not file.exists():
            missing.append(link)
            continue
        if anchor and file.suffix == ".md":
            headings = re.findall(r"^#+ (.+)$", re.sub(r"^```.*?^```$", "", file.read_text(encoding="utf-8"),
                                                      flags=re.S | re.M), flags=re.M)
            if anchor not in {_anchor(h) for h in headings}:
                missing.append(link)
    assert not missing, f"{page}: links that do not resolve: {missing}"
