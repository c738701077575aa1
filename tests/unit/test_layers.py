"""Layers only look down: read from the source's imports (every `import`, at the top of a module
or inside a function), not from what a run happens to load."""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in (SRC / "autan").rglob("*.py") if "migrations" not in p.parts}


def imports(name: str) -> set[str]:
    """The autan modules `name` imports: `from autan.x import y` counts autan.x.y where that is
    a module, else autan.x (a package's own `__init__` is not counted for its submodules)."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            found |= {f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names}
    return {m for m in found if m in MODULES and m != name}


GRAPH = {name: imports(name) for name in MODULES}


def part(module: str) -> str:
    """The top-level part of autan a module belongs to: autan.model.cache -> model."""
    return module.split(".")[1] if "." in module else "autan"


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one node (Tarjan's algorithm)."""
    index, low, stack, on, found = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_circle_of_imports_between_modules_or_parts():
    assert cycles(GRAPH) == []
    parts: dict[str, set[str]] = {}
    for module, targets in GRAPH.items():
        parts.setdefault(part(module), set()).update(part(t) for t in targets if part(t) != part(module))
    assert cycles(parts) == []


LOWER = ("config", "kernels", "model", "weights", "tokenizer", "engine", "eval", "finetune", "files", "batches")
LOWER += ("store", "guard")  # below the server, the app and the commands


@pytest.mark.parametrize(
    "lower, upper",
    [
        ("model", "weights"),  # the model is structure; the loader fills it
        ("kernels", "model"),  # kernels sit below the model that holds them
        ("kernels", "weights"),
        ("eval", "server"),
        ("guard", "http"),  # the rails refuse with autan.errors; the HTTP layer words the refusal
        *((low, high) for low in LOWER for high in ("server", "web", "cli", "chat")),
    ],
)  # fmt: skip
def test_a_lower_part_imports_nothing_above_it(lower, upper):
    offending = sorted(
        f"{m} imports {t}" for m, targets in GRAPH.items() if part(m) == lower for t in targets if part(t) == upper
    )
    assert offending == []


def test_the_reader_finds_what_it_should():
    """The scan itself, on imports known to be there (so an empty graph cannot pass the tests above)."""
    assert "autan.model.cache" in GRAPH["autan.model.transformer"]
    assert "autan.finetune.train" in GRAPH["autan.finetune.jobs"]
    assert "autan.weights.gguf_reader" in GRAPH["autan.eval.run"]  # inside a function
