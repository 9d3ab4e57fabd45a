"""The dependency direction, checked on the source (issue 13): no upward import, no import cycle, small modules.

    cli -> live/export -> session -> {render, player, devices, sensors, follower, history, latency} -> engine
        -> {tempo, clips} -> {kernels (-> _aot | _kernels), cues, profiles}
        -> ground floor (errors, safeyaml, levels, limits, _layout)

Every import counts, including those inside function bodies (hiding an import in a function does not change
which way the code depends).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("metronome", "cues", "profiles")
MAX_MODULE_LINES = 700

#: (module prefix, layer); the longest matching prefix wins.  A module may import its own layer or lower ones.
LAYERS = (
    ("metronome.errors", 0), ("metronome.safeyaml", 0), ("metronome.levels", 0), ("metronome.limits", 0),
    ("metronome.settings", 0), ("metronome.checks", 0), ("metronome.atomic", 0), ("metronome._jitcache", 0),
    ("metronome.mix", 2), ("metronome.outfiles", 4), ("metronome.parts", 4), ("metronome.entry", 7),
    ("metronome._kernels", 1), ("metronome._intrinsics", 0), ("metronome._layout", 0), ("metronome._aot", 1),
    ("metronome.kernels", 1), ("cues", 1), ("cues.anchors", 1), ("profiles", 1),
    ("metronome.tempo", 2),
    ("metronome.engine", 3),
    ("metronome.render", 4), ("metronome.encoder_thread", 4), ("metronome.player", 4), ("metronome.devices", 4), ("metronome.sensors", 4),
    ("metronome.follower", 4), ("metronome.course_plan", 4), ("metronome.follow_control", 4),
    ("metronome.follow_session", 5), ("metronome.follow_live", 5), ("metronome.history", 4), ("metronome.latency", 4),
    ("metronome.music", 4), ("metronome.music.beats", 4), ("metronome.music.stretch", 4), ("metronome.music.sync", 4),
    ("metronome.session", 5),
    ("metronome.live", 6), ("metronome.export", 6), ("metronome.export.split", 6),
    ("metronome.cli", 7), ("metronome.cli.travel", 7),
)


def _modules():
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            rel = path.relative_to(ROOT).with_suffix("")
            parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
            yield ".".join(parts), path


def _layer(module: str) -> int:
    if module in PACKAGES:
        return 0  # a package's __init__ (empty, or re-exports checked as its own module below)
    best, layer = -1, None
    for prefix, rank in LAYERS:
        if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
            best, layer = len(prefix), rank
    assert layer is not None, f"{module}: no layer declared in tests/test_architecture.py"
    return layer


def _imports(module: str, path: Path):
    """Project modules imported anywhere in ``path`` (relative imports resolved), with line numbers."""
    is_pkg = path.name == "__init__.py"
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[:len(base) - node.level + (1 if is_pkg else 0)]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module
            names = [stem] + [f"{stem}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            if name.split(".")[0] in PACKAGES:
                yield name, node.lineno


def _resolve(name: str, known: set[str]) -> str | None:
    """The project module a dotted import name refers to (``a.b.func`` -> ``a.b``)."""
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def _graph():
    mods = dict(_modules())
    known = set(mods)
    graph = {}
    for mod, path in mods.items():
        deps = {}
        for name, line in _imports(mod, path):
            target = _resolve(name, known)
            if target and target != mod:
                deps.setdefault(target, line)
        graph[mod] = deps
    return mods, graph


def test_no_upward_imports():
    mods, graph = _graph()
    bad = [f"{mods[m].relative_to(ROOT)}:{line}: {m} (layer {_layer(m)}) imports {t} (layer {_layer(t)})"
           for m, deps in graph.items() for t, line in deps.items()
           if _layer(t) > _layer(m) and not t.startswith(m + ".")]
    assert not bad, "upward imports:\n" + "\n".join(bad)


def test_no_import_cycles():
    """Zero file-level cycles (a package's ``__init__`` re-exporting its own modules is not a cycle)."""
    _, graph = _graph()
    edges = {m: {t for t in deps if not m.startswith(t + ".") and not t.startswith(m + ".")} | set()
             for m, deps in graph.items()}
    color, stack, cycles = {}, [], []

    def visit(m):
        color[m] = 1
        stack.append(m)
        for t in sorted(edges.get(m, ())):
            if color.get(t) == 1:
                cycles.append(stack[stack.index(t):] + [t])
            elif t not in color:
                visit(t)
        stack.pop()
        color[m] = 2

    for m in sorted(edges):
        if m not in color:
            visit(m)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_modules_are_small():
    big = [(str(p.relative_to(ROOT)), n) for _, p in _modules()
           if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES]
    assert not big, f"modules over {MAX_MODULE_LINES} lines: {big}"


@pytest.mark.parametrize("source, ok", [
    ("from metronome.cli import main\n", False),  # the ground floor importing the CLI
    ("from metronome.errors import InputError\n", True),
])
def test_the_direction_check_itself_catches_an_upward_import(tmp_path, source, ok):
    """The check must be able to fail: an errors-layer module importing the CLI is flagged."""
    fake = tmp_path / "metronome" / "errors.py"
    fake.parent.mkdir()
    fake.write_text(source)
    deps = {_resolve(n, {"metronome.cli", "metronome.errors"}) for n, _ in _imports("metronome.errors", fake)}
    upward = [t for t in deps if t and _layer(t) > _layer("metronome.errors")]
    assert (not upward) == ok


def test_no_cli_or_plotting_inside_cues_and_profiles():
    """cues/ and profiles/ are libraries: the command line and the plots that serve it live in metronome.cli."""
    bad = []
    for pkg in ("cues", "profiles"):
        for path in sorted((ROOT / pkg).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                         else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
                bad += [f"{path.relative_to(ROOT)}:{node.lineno}: {n}" for n in names
                        if n.split(".")[0] in ("click", "matplotlib", "rich")]
    assert not bad, "\n".join(bad)


def test_one_atomic_write_helper():
    """Files appear whole or not at all through metronome.atomic only (issue 13: it was written out seven times)."""
    bad = []
    for mod, path in _modules():
        if mod == "metronome.atomic":
            continue
        text = path.read_text(encoding="utf-8")
        if "os.replace(" in text or "mkstemp(" in text:
            bad.append(str(path.relative_to(ROOT)))
    assert not bad, bad
