"""The package's shape, measured from its source with ``ast``: file and function lengths, package cycles, mixins.

``python tests/structure.py`` prints the report; ``tests/test_structure.py`` holds the limits:

- no file of the package (``hf_modeling/``, ``lm_eval_latenttts/``, ``tasks/``) over ``MAX_FILE_LINES`` lines;
- no function (method, nested function) over ``MAX_FUNCTION_LINES`` lines, from its ``def`` (or first
  decorator) to its last line;
- no cycle between packages: the nodes are ``hf_modeling``, ``tasks`` and each first-level part of
  ``lm_eval_latenttts`` (``scaling``, ``harness``, ``publishing``, ...; a top-level module such as ``cli`` is
  its own node), an edge is any import of one by another (module level or inside a function);
- the direct bases of every backbone and LatentRM class (``hf_modeling``), the mixin stack.

Pure Python (no import of the package): it reads the files.
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("hf_modeling", "lm_eval_latenttts", "tasks")
MAX_FILE_LINES = 400
MAX_FUNCTION_LINES = 60


def package_files(root: Path = ROOT) -> list[Path]:
    return sorted(path for package in PACKAGES for path in (root / package).rglob("*.py"))


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    if parts[0] == "tasks":  # installed as lm_eval_latenttts.tasks
        parts = ["lm_eval_latenttts", *parts]
    return ".".join(parts)


def node_of(module: str) -> str | None:
    """The package a module belongs to (see the module docstring), or None outside the project."""
    parts = module.split(".")
    if parts[0] == "hf_modeling":
        return "hf_modeling"
    if parts[0] != "lm_eval_latenttts":
        return None
    if len(parts) == 1:
        return "lm_eval_latenttts"
    return "tasks" if parts[1] == "tasks" else f"lm_eval_latenttts.{parts[1]}"


def imports_of(path: Path, root: Path = ROOT) -> set[str]:
    """Every module ``path`` imports (absolute names; relative imports resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    here = module_name(path, root).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def top_level(node: str | None) -> str | None:
    """The installed top-level part of a node: hf_modeling, lm_eval_latenttts or tasks (lm_eval_latenttts.tasks,
    a folder of its own in the repository)."""
    return node if node in (None, "tasks") else node.split(".")[0]


def package_graph(root: Path = ROOT, level=lambda node: node) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for path in package_files(root):
        source = level(node_of(module_name(path, root)))
        for name in imports_of(path, root):
            if node_of(name) == "lm_eval_latenttts" and name != "lm_eval_latenttts":
                continue  # "from lm_eval_latenttts import x" also lists "lm_eval_latenttts.x", its own node
            target = level(node_of(name))
            if target is not None and target != source:
                graph[source].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one package (Tarjan)."""
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(set(graph) | {w for ws in graph.values() for w in ws}):
        if v not in index:
            visit(v)
    return sorted(found)


def edges_in(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    return [f"{a} -> {b}" for a in component for b in sorted(graph.get(a, ())) if b in component]


def long_files(root: Path = ROOT, limit: int = MAX_FILE_LINES) -> list[tuple[str, int]]:
    sizes = [(str(p.relative_to(root)), len(p.read_text(encoding="utf-8").splitlines())) for p in package_files(root)]
    return sorted(((name, n) for name, n in sizes if n > limit), key=lambda x: -x[1])


def long_functions(root: Path = ROOT, limit: int = MAX_FUNCTION_LINES) -> list[tuple[str, int]]:
    found = []
    for path in package_files(root):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                length = node.end_lineno - start + 1
                if length > limit:
                    found.append((f"{path.relative_to(root)}:{node.lineno} {node.name}", length))
    return sorted(found, key=lambda x: -x[1])


def _classes(root: Path) -> dict[str, list[str]]:
    """Every class of hf_modeling: name -> its direct bases as written."""
    return {node.name: [ast.unparse(base) for base in node.bases]
            for path in sorted((root / "hf_modeling").glob("*.py"))
            for node in ast.parse(path.read_text(encoding="utf-8")).body if isinstance(node, ast.ClassDef)}


def project_ancestors(name: str, root: Path = ROOT) -> list[str]:
    """The hf_modeling classes a class inherits from (its mixin stack), in MRO-like order, without repeats."""
    classes, found, todo = _classes(root), [], list(_classes(root).get(name, []))
    while todo:
        base = todo.pop(0)
        if base in classes and base not in found:
            found.append(base)
            todo += classes[base]
    return found


def class_bases(root: Path = ROOT) -> dict[str, list[str]]:
    """The direct bases of every class in hf_modeling whose name says it is a model (backbones and RMs)."""
    found = {}
    for path in sorted((root / "hf_modeling").glob("*.py")):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.ClassDef) and any(k in node.name for k in ("GPT2", "Llama", "LatentRM")) \
                    and not node.name.endswith("Mixin"):
                found[f"{path.name}:{node.name}"] = [ast.unparse(base) for base in node.bases]
    return found


def report(root: Path = ROOT) -> str:
    files = package_files(root)
    lines = [f"{len(files)} files, {sum(len(p.read_text().splitlines()) for p in files)} lines in "
             f"{', '.join(PACKAGES)}"]
    big = long_files(root)
    lines.append(f"files over {MAX_FILE_LINES} lines: {len(big)}")
    lines += [f"  {n:5d}  {name}" for name, n in big]
    functions = long_functions(root)
    lines.append(f"functions over {MAX_FUNCTION_LINES} lines: {len(functions)}")
    lines += [f"  {n:5d}  {name}" for name, n in functions]
    graph = package_graph(root)
    top = package_graph(root, top_level)
    found = cycles(graph) + cycles(top)
    lines.append(f"package cycles: {len(found)}")
    for component in found:
        shown = graph if len(component[0].split(".")) > 1 else top
        lines.append(f"  {' <-> '.join(component)}: {'; '.join(edges_in(shown, component))}")
    lines.append("package imports:")
    lines += [f"  {a} -> {', '.join(sorted(b))}" for a, b in sorted(graph.items())]
    lines.append("model classes, their direct bases and the hf_modeling classes they stack:")
    lines += [f"  {name}({', '.join(bases)}): {len(project_ancestors(name.split(':')[1], root))} "
              f"[{', '.join(project_ancestors(name.split(':')[1], root))}]" for name, bases in class_bases(root).items()]
    return "\n".join(lines)


if __name__ == "__main__":
    print(report(Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else ROOT))
