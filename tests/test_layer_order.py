"""The layer order of `docs/architecture.md`, checked on every `import` statement in `nima/`
(function-level imports too): each layer imports only from the layers below it."""

from __future__ import annotations

import ast
from pathlib import Path

NIMA = Path(__file__).resolve().parent.parent / "nima"

# the layer of every top-level module or package of nima
LAYER = {
    "kernels": "kernels",
    "_tensor": "core", "autograd": "core", "amp": "core", "random": "core", "creation": "core",
    "gradcheck": "core", "serialization": "core", "settings": "core", "allocator": "core",
    "ops": "ops", "functional": "ops",
    "runtime": "runtime",
    "nn": "nn",
    "models": "models",
    "optim": "optim",
    "data": "data",
    "generation": "generation",
    "distributed": "distributed",
    "training": "training",
    "export": "export",
    "cli": "cli", "__main__": "cli", "": "cli",  # "" is the package facade, nima/__init__.py
}
BELOW = {
    "kernels": set(),
    "core": {"kernels"},
    "ops": {"core", "kernels"},
    "runtime": {"core", "kernels"},
    "nn": {"ops", "core", "kernels"},
    "models": {"nn", "ops", "core", "kernels"},
    "optim": {"core", "kernels"},  # the tensor core only: no layer classes
    "data": {"core", "kernels"},
    "generation": {"models", "nn", "ops", "optim", "core", "kernels"},
    "distributed": {"models", "nn", "ops", "optim", "core", "kernels"},
    "training": {"generation", "distributed", "models", "nn", "ops", "optim", "data",
                 "runtime", "core", "kernels"},
    "export": {"training", "generation", "models", "nn", "ops", "optim", "data", "runtime",
               "core", "kernels"},
    "cli": set(LAYER.values()),
}
# Tensor's operators (`x + y`, `x.sum()`) are the ops themselves: `nima._tensor` binds them at
# its end, the one place the core names the layer above it
EXCEPTIONS = {("_tensor", "ops")}


def imported(path: Path) -> set[str]:
    """The top-level nima modules that `path` imports (`nima.ops.shape` -> `ops`)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            modules = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [f"{node.module}.{a.name}" if node.module == "nima" else node.module
                       for a in node.names]
        else:
            continue
        names |= {m.split(".")[1] for m in modules if m.startswith("nima.")}
    return names


def test_every_module_has_a_layer() -> None:
    tops = {p.stem if p.is_file() else p.name for p in NIMA.iterdir()
            if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").exists()}
    assert tops <= set(LAYER), f"give these a layer: {sorted(tops - set(LAYER))}"


def test_each_layer_imports_only_from_below() -> None:
    broken = []
    for path in sorted(NIMA.rglob("*.py")):
        parts = path.relative_to(NIMA).with_suffix("").parts
        top = "" if parts == ("__init__",) else parts[0]
        layer = LAYER[top]
        for name in sorted(imported(path)):
            other = LAYER[name]
            if other != layer and other not in BELOW[layer] and (top, name) not in EXCEPTIONS:
                broken.append(f"{path.relative_to(NIMA.parent)} ({layer}) imports nima.{name} "
                              f"({other})")
    assert not broken, "\n".join(broken)


def test_the_check_sees_a_violation(tmp_path) -> None:
    bad = tmp_path / "adam.py"
    bad.write_text("def f():\n    from nima.nn.embedding import Embedding\n")
    assert imported(bad) == {"nn"} and "nn" not in BELOW["optim"]
