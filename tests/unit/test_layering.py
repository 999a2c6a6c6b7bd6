"""The house rules, read from the code's own imports (every import, lazy ones inside functions too):

    nodes/      -> may import everything below (and ComfyUI, lazily)
    training/   -> models/, retrieval/, common/
    retrieval/  -> models/, common/
    models/     -> common/
    common/     -> nothing of ours

The library (common/, models/, retrieval/, training/) never imports ComfyUI or nodes/; no module imports
another module's private (_underscore) names; no import cycles."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from common.standalone import PACK_ROOT

LAYERS = {"common": set(), "models": {"common"}, "retrieval": {"models", "common"},
          "training": {"models", "retrieval", "common"}, "nodes": {"models", "retrieval", "training", "common"}}
COMFYUI = {"comfy", "comfy_extras", "comfy_execution", "comfy_api", "folder_paths", "server", "execution",
           "latent_preview", "node_helpers"}


def _modules() -> dict[str, Path]:
    out = {}
    for top in LAYERS:
        for path in sorted((PACK_ROOT / top).rglob("*.py")):
            parts = list(path.relative_to(PACK_ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


MODULES = _modules()


def _imports(name: str, path: Path):
    """(imported module, [names], line) for every import of `name`, relative ones resolved within the pack;
    absolute imports of pack modules (a command line's `from common.standalone import ...`) count too."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, [], node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
                if not node.module:         # from . import x: each name is a module or a name of the package
                    for alias in node.names:
                        sub = f"{target}.{alias.name}" if target else alias.name
                        yield (sub, [], node.lineno) if sub in MODULES else (target, [alias.name], node.lineno)
                    continue
            else:
                target = node.module or ""
            yield target, [a.name for a in node.names], node.lineno


def _rel(path: Path) -> str:
    try:
        return path.relative_to(PACK_ROOT).as_posix()
    except ValueError:
        return path.as_posix()


def _ours(target: str) -> str | None:
    """The pack module a dotted name refers to (the longest prefix that is one), or None."""
    parts = target.split(".")
    while parts:
        if ".".join(parts) in MODULES:
            return ".".join(parts)
        parts.pop()
    return None


def test_the_pack_has_the_layers_the_readme_names():
    assert {"common", "models", "retrieval", "nodes"} <= {m.split(".")[0] for m in MODULES}


@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_each_layer_imports_only_what_it_may(layer):
    bad = []
    for name, path in MODULES.items():
        if name.split(".")[0] != layer:
            continue
        for target, _names, line in _imports(name, path):
            top = target.split(".")[0]
            ours = _ours(target)
            if ours is not None:
                other = ours.split(".")[0]
                if other != layer and other not in LAYERS[layer]:
                    bad.append(f"{_rel(path)}:{line} imports {ours}")
            elif layer != "nodes" and top in COMFYUI:
                bad.append(f"{_rel(path)}:{line} imports ComfyUI's {target}")
    assert not bad, "\n".join(bad)


def test_no_module_imports_another_modules_private_names():
    bad = []
    for name, path in MODULES.items():
        for target, names, line in _imports(name, path):
            if _ours(target) is None or _ours(target) == name:
                continue
            bad += [f"{_rel(path)}:{line} imports {target}.{n}" for n in names
                    if n.startswith("_") and not n.startswith("__")]
    assert not bad, "\n".join(bad)


def test_no_module_reaches_into_another_modules_private_names():
    # `from . import writer` then `writer._move_into_place(...)`: the same breach as importing the name
    bad = []
    for name, path in MODULES.items():
        aliases = {}
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for target, names, _line in _imports(name, path):
            for sub in names or [None]:
                module = target if sub is None else f"{target}.{sub}"
                if module in MODULES and module != name:
                    aliases[module.rsplit(".", 1)[-1]] = module
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                for alias in node.names:
                    if alias.asname and alias.name in aliases:
                        aliases[alias.asname] = aliases[alias.name]
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                    and node.attr.startswith("_") and not node.attr.startswith("__")):
                bad.append(f"{_rel(path)}:{node.lineno} uses {aliases[node.value.id]}.{node.attr}")
    assert not bad, "\n".join(bad)


def test_no_import_cycles():
    graph = {name: set() for name in MODULES}
    for name, path in MODULES.items():
        for target, names, _line in _imports(name, path):
            ours = _ours(target)
            if ours and ours != name and not MODULES[ours].name == "__init__.py":
                graph[name].add(ours)
    seen, stack, cycles = set(), [], []

    def visit(v, on_stack):
        seen.add(v)
        on_stack.add(v)
        stack.append(v)
        for w in graph[v]:
            if w in on_stack:
                cycles.append(" -> ".join(stack[stack.index(w):] + [w]))
            elif w not in seen:
                visit(w, on_stack)
        on_stack.discard(v)
        stack.pop()

    for v in graph:
        if v not in seen:
            visit(v, set())
    assert not cycles, "\n".join(cycles)


def test_the_checks_see_a_violation(tmp_path, monkeypatch):
    # The rules above must be able to fail: a library module importing nodes/ is reported.
    bad = tmp_path / "models" / "bad.py"
    bad.parent.mkdir()
    bad.write_text("from ..nodes import comfy_env\nimport folder_paths\n")
    monkeypatch.setitem(MODULES, "models.bad", bad)
    found = list(_imports("models.bad", bad))
    assert ("nodes", ["comfy_env"], 1) in found and ("folder_paths", [], 2) in found
    with pytest.raises(AssertionError, match="imports nodes|imports ComfyUI"):
        test_each_layer_imports_only_what_it_may("models")
    bad.write_text("from ..retrieval import writer\nfrom .i2v import runtime as rt\nwriter._move_into_place(1)\n"
                   "rt._stamp(2)\n")
    with pytest.raises(AssertionError, match=r"(?s)retrieval\.writer\._move_into_place.*models\.i2v\.runtime\._stamp"):
        test_no_module_reaches_into_another_modules_private_names()
