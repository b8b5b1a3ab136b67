"""Check, before any long work starts, that the environment a dataset's ``env_args`` describe can be built
and produces the observation keys a policy reads (issue 14, defect 1).

``probe_env(env_args, task)`` builds the env once in a spawned child process (so no MuJoCo/EGL context is
ever created in a training process, see tests/conftest.py) and returns its ``observation_spec()``; a
construction failure (unknown env name, robot, controller) is a ``UserError`` naming the cause.
``check_policy_keys`` compares a policy's keys and sizes with such a spec. Results are cached per process,
so periodic rollouts during training probe once.

Worker processes call ``worker_setup()`` first: they ignore Ctrl-C (the parent handles it and stops them)
and die with their parent (Linux ``PR_SET_PDEATHSIG``), so a ``kill -9`` of `mtil collect` or `mtil eval`
leaves no worker running with episodes still queued.
"""

from __future__ import annotations

import json

from mtil.datasets.errors import UserError
from mtil.datasets.manifest_types import FileEntry
from mtil.pipeline.sim.backends import is_catalogue_env

_CACHE: dict[str, dict] = {}


def describes_simulator_env(env_args: dict | None) -> bool:
    """Whether ``env_args`` look like an env mtil can build: a backend's own (our suite, Meta-World) or a
    stock robosuite env with robots, judged without importing a simulator (a synthetic or foreign file's
    env_args do not)."""
    if not isinstance(env_args, dict) or "env_name" not in env_args:
        return False
    if is_catalogue_env(env_args):
        return True
    return int(env_args.get("type", 1)) == 1 and "robots" in (env_args.get("env_kwargs") or {})


class UnknownEnv(UserError):
    """The env name is neither the mtil suite nor a registered robosuite env."""


def _prober():
    """Worker side (pipeline/sim/pool.py): the handler builds the env a job ``(env_args, task)`` describes and
    returns ``("ok", spec)``, ``("unknown", "")`` or ``("error", cause)``."""
    from mtil.pipeline.sim.backends import make_env

    def handle(job):
        env_args, task = job
        if not is_catalogue_env(env_args):  # a stock env a dataset names: robosuite must know it
            from robosuite.environments.base import REGISTERED_ENVS

            if env_args.get("env_name") not in REGISTERED_ENVS:
                return "unknown", ""
        try:
            env = make_env(env_args, task=task)
            spec = {k: [list(shape), str(dtype)] for k, (shape, dtype) in env.observation_spec().items()}
            env.reset(seed=0)
            state_size = int(env.get_state().size)
            action_dim = env.action_dim
            env.close()
        except Exception as e:  # noqa: BLE001 - whatever the constructor raises is the user's cause
            return "error", f"{type(e).__name__}: {e}"[:400]
        return "ok", {"spec": spec, "state_size": state_size, "action_dim": action_dim}

    return handle


def probe_env(env_args: dict, task: str | None = None, where: str = "env_args", timeout: float = 300) -> dict:
    """``{key: [shape, dtype]}`` of the env ``env_args`` describe (suite envs: for ``task``), built in a worker
    process (so no MuJoCo/EGL context is ever created here); raises ``UserError`` naming ``where`` and the
    cause when it cannot be built."""
    return _probe(env_args, task, where, timeout)["spec"]


def env_state_size(env_args: dict, task: str | None = None, where: str = "env_args", timeout: float = 300) -> int:
    """Size of the flattened MuJoCo state of the env ``env_args`` describe (one probe with ``probe_env``)."""
    return _probe(env_args, task, where, timeout)["state_size"]


def _probe(env_args: dict, task: str | None, where: str, timeout: float) -> dict:
    from mtil.pipeline.sim.pool import WorkerPool

    cache_key = json.dumps([env_args, task], sort_keys=True, default=str)
    if cache_key in _CACHE:
        return _CACHE[cache_key]
    status, value = "error", "no answer from the environment"
    try:
        with WorkerPool(_prober, workers=1, name="env check", max_restarts=0) as pool:
            pool.submit(0, (env_args, task))
            for _, res in pool.results(idle_timeout=timeout):
                status, value = res if isinstance(res, tuple) else ("error", str(res))
    except (RuntimeError, TimeoutError) as e:
        status, value = "error", str(e)
    if status == "unknown":
        raise UnknownEnv(f"{where}: unknown environment {env_args.get('env_name')!r} (neither a simulator "
                         "backend's own env nor a registered robosuite env)")
    if status != "ok":
        name = env_args.get("env_name")
        robots = (env_args.get("env_kwargs") or {}).get("robots")
        raise UserError(f"{where}: cannot build environment {name!r} (robots {robots!r}): {value}")
    _CACHE[cache_key] = value
    return value


def check_policy_keys(spec: dict, keys: list[str], dims: dict[str, int] | None = None, where: str = "",
                      fix: str = "") -> None:
    """Raise ``UserError`` when the env's ``spec`` lacks one of ``keys`` or gives it another size."""
    import numpy as np

    missing = [k for k in keys if k not in spec]
    if missing:
        raise UserError(f"{where}: the policy reads observation key(s) {', '.join(missing)}, which the environment "
                        f"does not produce (it gives: {', '.join(sorted(spec))}){fix}")
    for k, d in (dims or {}).items():
        have = int(np.prod(spec[k][0]))
        if have != d:
            raise UserError(f"{where}: observation key {k} has {d} values in the data but {have} in the "
                            f"environment{fix}")


def check_env_for_policy(env_args: dict, task: str | None, pcfg, where: str,
                         fix: str = " (retrain with --lowdim-keys naming keys the environment produces)",
                         unknown_ok: bool = False) -> None:
    """The env ``env_args`` describe can be built and produces every key the policy config ``pcfg``
    reads, with the same sizes; else ``UserError`` naming the cause. ``unknown_ok``: an env name robosuite
    does not know is only noted on stderr (training data from elsewhere)."""
    import sys

    try:
        spec = probe_env(env_args, task, where=where)
    except UnknownEnv as e:
        if not unknown_ok:
            raise
        print(f"note: {e}: observation keys not checked against it", file=sys.stderr)
        return
    check_policy_keys(spec, pcfg.image_keys + pcfg.lowdim_keys, dict(zip(pcfg.lowdim_keys, pcfg.lowdim_dims)),
                      where=f"{where} ({env_args.get('env_name')})", fix=fix)
    takes = _probe(env_args, task, where, 300)["action_dim"]
    if takes != pcfg.action_dim:
        raise UserError(f"{where} ({env_args.get('env_name')}): the policy's actions have {pcfg.action_dim} values, "
                        f"the environment takes {takes} (the demos were recorded with another robot or controller "
                        "than this env_args describes)")


def check_rollout_envs(files: list[FileEntry], pcfg) -> None:
    """Before training: the environment of each data file's ``env_args`` (``files``: the manifest's
    ``FileEntry`` list; only those that describe a robosuite env robosuite knows; built in a worker
    process, so training never imports the simulator) produces every key the policy config ``pcfg`` reads,
    with the same sizes; else ``UserError`` naming the file and the key."""
    seen: set[str] = set()
    for f in files:
        args = f.env_args
        key = repr(args)
        if key in seen or not describes_simulator_env(args):
            continue
        seen.add(key)
        task = next(iter(args.get("mtil_tasks") or {}), None) if is_catalogue_env(args) else None
        check_env_for_policy(args, task, pcfg, f"{f.path}: env_args",
                             fix=" (choose keys with --lowdim-keys / --image-keys, or --skip-env-check)",
                             unknown_ok=True)
