"""The package's shape (``tests/structure.py``): files and functions short enough to read in one go, no cycles
between packages, shallow mixin stacks."""

from structure import (
    MAX_FILE_LINES,
    MAX_FUNCTION_LINES,
    class_bases,
    cycles,
    long_files,
    long_functions,
    package_graph,
    project_ancestors,
    top_level,
)


def test_no_file_over_the_limit():
    assert long_files() == [], f"files over {MAX_FILE_LINES} lines"


def test_no_function_over_the_limit():
    assert long_functions() == [], f"functions over {MAX_FUNCTION_LINES} lines"


def test_no_package_cycles():
    assert cycles(package_graph()) == [] and cycles(package_graph(level=top_level)) == []


def test_the_backbones_stack_one_base_and_the_rms_one_mixin():
    """A backbone class names one latent base (GPT-2's shared by COCONUT and CODI) and its transformers class; what
    the stacks hold: the backbone base, the Hub mixin shared with the RMs and generate (its own file)."""
    bases = {name.split(":")[1]: found for name, found in class_bases().items()}
    assert bases["COCONUTGPT2"] == bases["CODIGPT2"] == ["_GPT2LatentMixin", "GPT2LMHeadModel"]
    assert bases["ColarLlama"] == ["LatentBackboneMixin", "LlamaForCausalLM"]
    assert project_ancestors("ColarLlama") == ["LatentBackboneMixin", "LatentHubMixin", "LatentGenerationMixin"]
    assert len(project_ancestors("COCONUTGPT2")) == 4 and project_ancestors("COCONUTGPT2")[0] == "_GPT2LatentMixin"
    assert project_ancestors("COCONUTGPT2ForTokenClassification") == ["LatentRMMixin", "LatentHubMixin"]
