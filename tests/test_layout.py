"""The package layout: no import cycle among mtil modules, and training does not depend on the simulator.

Imports are read from the source (module level and inside functions alike: a lazy import still ties two
modules together), so the test needs no simulator and runs in well under a second.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

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
    assert "mtil.pipeline.sim.demo_file" in g["mtil.pipeline.sim.collect"]  # a function-level import
    assert "mtil.pipeline.cli.data" in g["mtil.pipeline.cli.main"]  # `from mtil.pipeline.cli import data`


def test_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_sim_is_a_leaf_layer():
    """pipeline/sim imports nothing from training, evaluation, checkpoints or policies (a policy reaches a
    rollout as a callable): nothing of mtil.pipeline outside sim/ (but the mp4 writer, which depends on
    nothing of ours), at module level or lazily."""
    g = import_graph()
    allowed = {"mtil.pipeline.mp4"}
    bad = {m: sorted(n for n in deps if n.startswith("mtil.pipeline.") and not n.startswith("mtil.pipeline.sim")
                     and n not in allowed)
           for m, deps in g.items() if m.startswith("mtil.pipeline.sim")}
    assert not {m: d for m, d in bad.items() if d}, bad


def test_one_module_starts_processes():
    """Every worker process is started by pipeline/sim/pool.py (collection, evaluation, DAgger, env checks)."""
    starters = set()
    for mod, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr == "Process":
                starters.add(mod)
    assert starters == {"mtil.pipeline.sim.pool"}, starters


def test_importing_training_loads_no_simulator():
    """The training loop and the CLI import neither robosuite nor mujoco (the env check and rollouts run
    them in worker processes)."""
    import subprocess
    import sys

    code = ("import sys, mtil.pipeline.training.loop, mtil.pipeline.cli.main, mtil.pipeline.evaluation.run; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('robosuite', 'mujoco')))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd="/")
    assert p.returncode == 0 and p.stdout.strip() == "[]", p.stdout + p.stderr


def test_one_cache_root(monkeypatch, tmp_path):
    """MTIL_CACHE_DIR names the cache folder; the older MTIL_CACHE is still honoured when it is the only one."""
    from mtil.datasets.cache import cache_root
    from mtil.encoders.language import default_cache_dir

    monkeypatch.delenv("MTIL_CACHE_DIR", raising=False)
    monkeypatch.setenv("MTIL_CACHE", str(tmp_path / "old"))
    assert cache_root() == tmp_path / "old"
    monkeypatch.setenv("MTIL_CACHE_DIR", str(tmp_path / "new"))
    assert cache_root() == tmp_path / "new" and default_cache_dir() == tmp_path / "new" / "text_embeddings"


def test_pipeline_is_laid_out_by_role():
    """No flat module named for its room (issue 35): training, evaluation, policy and recipes are folders,
    and every folder with an __init__.py is a package pyproject installs."""
    import tomllib

    flat = sorted(p.name for p in (ROOT / "pipeline").glob("*.py"))
    rooms = ("eval", "train", "policy", "normalizer", "quickstart", "dagger", "video_fit")
    assert not [n for n in flat if n.startswith(rooms)], flat
    for room in ("policy", "policy/heads", "policy/trunks", "training", "evaluation", "recipes", "sim", "cli"):
        assert (ROOT / "pipeline" / room / "__init__.py").is_file(), room
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join([PACKAGES[folder], *init.parent.relative_to(ROOT / folder).parts])
             for folder in PACKAGES for init in (ROOT / folder).rglob("__init__.py")}
    assert listed == found, (sorted(found - listed), sorted(listed - found))


OLD_PATHS = [
    ("from mtil.pipeline.train import train, TrainConfig", "mtil.pipeline.training.loop"),
    ("from mtil.pipeline.evaluate import evaluate, EvalConfig", "mtil.pipeline.evaluation.run"),
    ("from mtil.pipeline.eval_report import headline", "mtil.pipeline.evaluation.report"),
    ("from mtil.pipeline.quickstart import quickstart", "mtil.pipeline.recipes.quickstart"),
    ("from mtil.pipeline.video_fit import fit_video", "mtil.pipeline.recipes.fit_video"),
    ("from mtil.pipeline.heads.l1 import L1Head", "mtil.pipeline.policy.heads.l1"),
]


@pytest.mark.parametrize("line, new", OLD_PATHS)
def test_old_import_paths_still_work_and_name_the_new_one(line, new):
    """A user's script with a pre-issue-35 import runs, warned once with the new path; the module it gets
    is the new one itself (no second copy of its classes)."""
    import subprocess
    import sys

    old = line.split()[1]
    code = (f"import warnings, sys; warnings.simplefilter('always')\n{line}\n"
            f"import {new} as new_mod\nassert sys.modules[{old!r}] is new_mod\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd="/")
    assert p.returncode == 0, p.stderr[-2000:]
    assert f"FutureWarning: {old} moved to {new}: import it from there" in p.stderr, p.stderr[-2000:]


def test_the_policy_package_still_hands_out_the_model():
    from mtil.pipeline.policy import MultiTaskPolicy, PolicyConfig
    from mtil.pipeline.policy.model import MultiTaskPolicy as M
    from mtil.pipeline.policy.model import PolicyConfig as C

    assert MultiTaskPolicy is M and PolicyConfig is C
    with pytest.raises(ImportError):
        from mtil.pipeline.policy import NoSuchThing  # noqa: F401


def test_a_name_that_never_existed_is_still_an_error():
    from mtil.pipeline.moved import new_name

    assert new_name("mtil.pipeline.training_loop") is None and new_name("mtil.pipeline.sim.envs") is None
    with pytest.raises(ModuleNotFoundError):
        import mtil.pipeline.trainer  # noqa: F401


def test_no_backend_name_is_compared_outside_the_backends():
    """Issue 36: collection, evaluation, DAgger, replay and reports ask the backend of a file's env_args; no
    module outside pipeline/sim/backends/ and our suite's own modules imports the suite's env name or
    compares a value with a backend's or env's name."""
    own = {"backends", "tasks.py", "envs.py", "scene.py", "experts.py", "stages.py", "render.py"}
    names = {"robosuite", "metaworld", "MetaWorld", "MtilTabletop"}
    bad = []
    for path in _modules().values():
        rel = path.relative_to(ROOT)
        if rel.parts[:2] == ("pipeline", "sim") and (rel.parts[2] in own):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and any(a.name == "SUITE_ENV_NAME" for a in node.names):
                bad.append(f"{rel}:{node.lineno} imports SUITE_ENV_NAME")
            if isinstance(node, ast.Compare):
                consts = [c.value for c in [node.left, *node.comparators] if isinstance(c, ast.Constant)]
                if names & {c for c in consts if isinstance(c, str)}:
                    bad.append(f"{rel}:{node.lineno} compares with a backend name")
    assert not bad, bad
