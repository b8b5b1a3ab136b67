"""The package layout: no import cycle among mtil modules, and training does not depend on the simulator.

Imports are read from the source (module level and inside functions alike: a lazy import still ties two
modules together), so the test needs no simulator and runs in well under a second.
"""

from __future__ import annotations

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = {"datasets": "mtil.datasets", "encoders": "mtil.encoders", "pipeline": "mtil.pipeline"}


def _modules() -> dict[str, pathlib.Path]:
    mods = {}
    for folder, prefix in PACKAGES.items():
        for path in (ROOT / folder).rglob("*.py"):
            rel = path.relative_to(ROOT / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            mods[".".join([prefix, *parts])] = path
    return mods


def import_graph() -> dict[str, set[str]]:
    mods = _modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                # `from pkg import sub` imports the submodule sub when it is one
                names = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in mods else node.module
                         for a in node.names]
            for name in names:
                if name in mods and name != mod:
                    graph[mod].add(name)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                return stack[stack.index(n):] + [n]
            if n not in state and (c := visit(n)):
                return c
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (c := visit(m)):
            return c
    return None


def test_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_graph_sees_lazy_and_from_imports():
    g = import_graph()
    assert "mtil.pipeline.sim.experts" in g["mtil.pipeline.sim.collect"]  # a function-level import
    assert "mtil.pipeline.cli.data" in g["mtil.pipeline.cli.main"]  # `from mtil.pipeline.cli import data`


def test_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_training_does_not_import_the_simulator():
    g = import_graph()
    seen, todo = set(), ["mtil.pipeline.train"]
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            # periodic rollouts evaluate lazily, and the env check at start builds the env in a spawned
            # process (sim.probe), by choice
            todo += g[m] - {"mtil.pipeline.evaluate", "mtil.pipeline.sim.probe"}
    assert not {m for m in seen if m.startswith("mtil.pipeline.sim")}, sorted(seen)


def test_one_cache_root(monkeypatch, tmp_path):
    """MTIL_CACHE_DIR names the cache folder; the older MTIL_CACHE is still honoured when it is the only one."""
    from mtil.datasets.cache import cache_root
    from mtil.encoders.language import default_cache_dir

    monkeypatch.delenv("MTIL_CACHE_DIR", raising=False)
    monkeypatch.setenv("MTIL_CACHE", str(tmp_path / "old"))
    assert cache_root() == tmp_path / "old"
    monkeypatch.setenv("MTIL_CACHE_DIR", str(tmp_path / "new"))
    assert cache_root() == tmp_path / "new" and default_cache_dir() == tmp_path / "new" / "text_embeddings"
