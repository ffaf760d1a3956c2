"""The plugin's layers point one way (docs/architecture.md): every import of every module, those inside
functions included, read from the source, checked against what each layer may import; and no cycle
between subpackages."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PLUGIN = Path(__file__).resolve().parent.parent / "plugin"

# What each layer may import of the plugin (itself always). Top-level modules: `config_hooks` is what
# config.yaml names, `release` loads the plugin for the installed LiteLLM release (`entry`, which wires
# everything, or `unsupported`, which refuses what it cannot serve), `sections` is a leaf.
MAY_IMPORT: dict[str, set[str]] = {
    "cohere": set(),
    "sections": set(),
    "limits": {"sections"},
    "host": {"cohere", "limits", "sections"},
    "auth": {"host", "limits", "cohere", "sections"},
    "routes": {"auth", "host", "limits", "cohere", "sections"},
    "unsupported": {"cohere"},
    "entry": {"auth", "host", "limits", "routes", "cohere", "sections"},
    "release": {"entry", "auth", "unsupported"},
    "config_hooks": {"release"},
}


def layer_of(path: Path) -> str:
    parts = path.relative_to(PLUGIN).with_suffix("").parts
    return parts[0]


def imported_layers(path: Path, root: Path = PLUGIN.parent) -> set[str]:
    """The plugin's layers `path` (under `root`/plugin) imports, relative or absolute, at any depth."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = path.relative_to(root).with_suffix("").parts[:-1]  # ("plugin", "auth")
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                target = [*base, *(node.module.split(".") if node.module else [])]
                names = [[*target, alias.name] for alias in node.names] if not node.module else [target]
            else:
                names = [(node.module or "").split(".")]
            for name in names:
                if name[:1] == ["plugin"] and len(name) > 1:
                    found.add(name[1] if name[1] in MAY_IMPORT else "__init__")  # `from .. import __version__`
        elif isinstance(node, ast.Import):
            for alias in node.names:
                name = alias.name.split(".")
                if name[:1] == ["plugin"] and len(name) > 1:
                    found.add(name[1])
    return found


MODULES = sorted(path for path in PLUGIN.rglob("*.py") if "__pycache__" not in path.parts)


def test_every_layer_is_known() -> None:
    assert {layer_of(path) for path in MODULES} - {"__init__"} == set(MAY_IMPORT)


@pytest.mark.parametrize("path", MODULES, ids=lambda path: str(path.relative_to(PLUGIN)))
def test_a_module_imports_only_what_its_layer_may(path: Path) -> None:
    layer = layer_of(path)
    if layer == "__init__":
        return
    upward = imported_layers(path) - MAY_IMPORT[layer] - {layer, "__init__"}  # the root holds the version only
    assert not upward, f"{path.relative_to(PLUGIN)} ({layer}) imports {sorted(upward)}"


def test_no_cycle_between_layers() -> None:
    graph: dict[str, set[str]] = {}
    for path in MODULES:
        layer = layer_of(path)
        graph.setdefault(layer, set()).update(imported_layers(path) - {layer, "__init__"})
    seen: dict[str, str] = {}

    def visit(node: str, trail: tuple[str, ...]) -> None:
        if seen.get(node) == "done":
            return
        assert seen.get(node) != "open", f"a cycle: {' -> '.join((*trail, node))}"
        seen[node] = "open"
        for target in sorted(graph.get(node, ())):
            visit(target, (*trail, node))
        seen[node] = "done"

    for node in sorted(graph):
        visit(node, ())


def test_the_check_sees_imports_inside_functions(tmp_path: Path) -> None:
    """The lazy import that once dodged the host <-> auth cycle would be caught."""
    probe = tmp_path / "plugin" / "host"
    probe.mkdir(parents=True)
    fake = probe / "calls.py"
    fake.write_text((PLUGIN / "host" / "calls.py").read_text()
                    + "\n\ndef later():\n    from ..auth.hook import mpilot_auth\n    return mpilot_auth\n")
    assert "auth" not in imported_layers(PLUGIN / "host" / "calls.py")
    assert "auth" in imported_layers(fake, root=tmp_path)
