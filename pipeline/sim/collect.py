"""Parallel scripted-expert collection into one robomimic-layout HDF5 file (``mtil collect``).

    from mtil.pipeline.sim.collect import CollectConfig, collect
    summary = collect(CollectConfig(tasks="all", demos_per_task=20, out="demos.hdf5", workers=2))

How it works
- Episode ``i`` of task ``t`` uses seed ``episode_seed(seed, t, i)``; task ``t`` runs episodes 0, 1, 2, ...
  and keeps its first ``demos_per_task`` successes in index order, so the file is a function of the
  config alone (not of worker timing). A failed episode (expert did not succeed within the horizon) or
  an unstable simulation is dropped, counted, and replaced by the task's next index.
- ``keep_failures``: failed episodes met on the way are written too, with attr ``success=False`` and
  listed in ``mask/failed`` (not in mask/train or mask/valid): hindsight-goal training data. With
  ``action_noise`` the expert's actions get Gaussian noise, which makes such episodes common.
- Worker processes (``spawn``) build one env per scene once and reuse it (``hard_reset=False``, reset
  ~0.1 s). Each worker has its own job queue, so when a worker dies its episode is known and re-queued
  on another worker (up to 3 tries, then counted as an error).
- The main process writes each episode as it arrives into a temp file beside ``out``
  (``mtil.datasets.atomic.AtomicPath``) and, when all are in, renames the groups to ``demo_0..`` in
  (task, index) order, writes masks and attrs, fsyncs and ``os.replace``s it onto ``out``. Any exception
  or Ctrl-C removes the temp file: ``out`` is either complete or untouched.

File layout: DESIGN.md section 3; per demo attrs ``num_samples``, ``language_instruction``, ``mtil_task``,
``seed``, ``model_file`` (unprocessed MJCF); datasets ``actions`` (T, 7) float64, ``states`` (T, 58|...)
flattened MuJoCo state before each action, ``rewards``/``dones`` (T,), ``obs/<key>`` and optionally
``next_obs/<key>``; images uint8 upright, stored contiguous and uncompressed (memory-mappable).
"""

from __future__ import annotations

import os
import time
import zlib
from dataclasses import dataclass, field

import numpy as np

from mtil.datasets.atomic import AtomicPath
from mtil.datasets.errors import UserError


def episode_seed(seed: int, task: str, index: int) -> int:
    """Seed of episode ``index`` of ``task`` in a run with ``--seed seed`` (stable across processes)."""
    ss = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, zlib.crc32(task.encode()), int(index)])
    return int(ss.generate_state(1)[0] & 0x7FFFFFFF)


@dataclass
class CollectConfig:
    """Collect scripted-expert demonstrations of simulated language tasks into one HDF5 file."""

    tasks: str = "all"
    """our suite: 'all' (training tasks), 'held_out', 'everything'; Meta-World: 'mt10', 'mt50', 'easy',
    'medium', 'hard', 'very_hard'; or comma-separated task names of one simulator (see `mtil tasks --suite`)"""
    demos_per_task: int = 10
    """successful demos kept per task"""
    out: str = "demos.hdf5"
    """output HDF5 file (written atomically)"""
    workers: int = 2
    """parallel simulator processes"""
    seed: int = 0
    """run seed; episode seeds derive from (seed, task, episode index)"""
    image_size: int = 84
    """camera height = width in pixels"""
    cameras: list[str] = field(default_factory=list)
    """cameras recorded as <name>_image (default: the simulator's, agentview robot0_eye_in_hand for our suite,
    corner2 for Meta-World). Our suite also has frontview, birdview, sideview, robot0_robotview and thirdview
    (ours: the table's far corner, close): a third view no policy trains on gives demo clips from a camera the
    policy never sees; `mtil train` uses every camera of its data unless --image-keys says otherwise"""
    next_obs: bool = False
    """store next_obs/<key> as real copies (the observation after each step, the last one from the env);
    without it next_obs/<key> are virtual datasets over obs/<key> shifted by one step (no extra bytes; the
    last step repeats its observation), which robomimic's default loader reads too"""
    render_quality: str = "fast"
    """fast (decimated meshes, no shadows, no MSAA) | default (robosuite's rendering)"""
    overwrite: bool = False
    """replace an existing output file"""
    valid_fraction: float = 0.1
    """share of each task's demos (rounded down) listed in mask/valid; the rest in mask/train"""
    horizon: int = 400
    """max steps per episode before it counts as a failure"""
    keep_failures: bool = False
    """also write the failed episodes met on the way (attr success=False, listed in mask/failed, not in
    mask/train): data for hindsight goal-conditioned training"""
    action_noise: float = 0.0
    """std of Gaussian noise on the expert's arm actions (0-2; the noisy action is executed and recorded):
    varied, partly failed, play-like episodes"""
    noise: float = 0.0
    """DART: std of Gaussian noise on the executed translation actions (0-1, 1 = 5 cm; 0.1-0.2 keep the expert
    successful); the expert's clean action for each visited state is the recorded label, the executed action
    is kept under executed_actions"""
    policy: str = ""
    """DAgger rollouts: this checkpoint acts, the expert labels every visited state, and every episode is kept
    and trains, successful or not (see also `mtil dagger`)"""
    beta: float = 0.0
    """with --policy: probability that a step executes the expert's action instead of the policy's"""
    dagger_round: int = -1
    """DAgger round this file belongs to (recorded in the data attrs; -1: not DAgger)"""
    max_failures: int = 0
    """stop with an error when a task fails this many episodes (0: 10 + 2 * demos_per_task, or
    10 + 20 * demos_per_task with keep_failures)"""
    progress: bool = True
    """show a progress bar; --no-progress turns it off"""
    task_names: list[str] = field(default_factory=list, init=False, repr=False)
    """the task names ``tasks`` resolves to (set in __post_init__)"""
    backend: str = field(default="", init=False, repr=False)
    """the simulator backend those tasks belong to (set in __post_init__)"""

    def __post_init__(self):
        from mtil.pipeline.sim.backends import resolve_tasks

        backend, self.task_names = resolve_tasks(self.tasks)
        self.backend = backend.name
        self.cameras = list(self.cameras or backend.cameras)
        if self.demos_per_task < 1:
            raise UserError(f"--demos-per-task must be >= 1, got {self.demos_per_task}")
        if not 1 <= self.workers <= 64:
            raise UserError(f"--workers must be between 1 and 64, got {self.workers}")
        if not 16 <= self.image_size <= 512:
            raise UserError(f"--image-size must be between 16 and 512, got {self.image_size}")
        bad = [c for c in self.cameras if c not in backend.valid_cameras]
        if bad or len(set(self.cameras)) != len(self.cameras):
            raise UserError(f"--cameras {' '.join(self.cameras)}: give distinct cameras among "
                            f"{', '.join(backend.valid_cameras)}")
        if self.render_quality not in ("fast", "default"):
            raise UserError(f"--render-quality must be 'fast' or 'default', got {self.render_quality!r}")
        if not 0.0 <= self.valid_fraction < 1.0:
            raise UserError(f"--valid-fraction must be in [0, 1), got {self.valid_fraction}")
        if not 0.0 <= self.action_noise <= 2.0:
            raise UserError(f"--action-noise must be in [0, 2], got {self.action_noise}")
        if not 0.0 <= self.noise <= 1.0:
            raise UserError(f"--noise must be in [0, 1] (std in action units, 1 = 5 cm per step), got {self.noise}")
        if self.noise > 0 and self.action_noise > 0:
            raise UserError("--noise (DART: clean labels) and --action-noise (noisy labels) exclude each other")
        if not 0.0 <= self.beta <= 1.0:
            raise UserError(f"--beta must be in [0, 1], got {self.beta}")
        if self.policy and not os.path.isfile(self.policy):
            raise UserError(f"--policy {self.policy}: no such checkpoint file")
        if self.policy and (self.noise > 0 or self.action_noise > 0):
            raise UserError("--policy (DAgger rollouts) takes no --noise/--action-noise")
        if not self.policy and (self.beta > 0 or self.dagger_round != -1):
            raise UserError("--beta and --dagger-round belong to DAgger rollouts: they need --policy CHECKPOINT")
        if self.max_failures < 0:
            raise UserError(f"--max-failures must be >= 0 (0: the default bound), got {self.max_failures}")
        if not 0 <= self.seed < 2**31:
            raise UserError(f"--seed must be in [0, 2^31), got {self.seed}")
        if self.dagger_round < -1:
            raise UserError(f"--dagger-round must be >= 0 (or -1: not DAgger), got {self.dagger_round}")
        if self.horizon < 10:
            raise UserError(f"--horizon must be >= 10, got {self.horizon}")
        out_dir = os.path.dirname(os.path.abspath(self.out))
        if os.path.isdir(self.out):
            raise UserError(f"--out {self.out}: is a directory, expected a file path")
        if os.path.exists(self.out) and not self.overwrite:
            raise UserError(f"--out {self.out}: file exists (use --overwrite to replace it)")
        if not os.path.isdir(out_dir):
            raise UserError(f"--out {self.out}: directory {out_dir} does not exist")
        if not os.access(out_dir, os.W_OK):
            raise UserError(f"--out {self.out}: directory {out_dir} is not writable")


# ---------------------------------------------------------------- worker side


def record_episode(env, task: str, seed: int, horizon: int, next_obs: bool, keep_failures: bool = False,
                   action_noise: float = 0.0, dart_noise: float = 0.0, policy=None, beta: float = 0.0,
                   backend=None) -> dict | None:
    """Run one episode, recording everything a demo stores (``success`` says how it ended); None if it did
    not succeed and ``keep_failures`` is off.

    Without ``policy`` the scripted expert acts (``action_noise``: play-like noise, recorded; ``dart_noise``:
    DART, the clean expert action recorded). With ``policy`` (DAgger) the policy acts, except that with
    probability ``beta`` a step executes the expert's action instead; every step is labelled with the
    expert's clean action for the visited state. ``executed_actions`` always holds what was executed.
    """
    from mtil.pipeline.sim.backends import BACKENDS, DEFAULT

    backend = backend or BACKENDS[DEFAULT]
    obs_list, states, actions, rewards, dones, executed = [], [], [], [], [], []

    def on_step(obs, state, action, reward, done, ex):
        for lst, x in zip((obs_list, states, actions, rewards, dones, executed),
                          (obs, state, action, reward, done, ex)):
            lst.append(x)

    driver = None
    if policy is not None:
        policy.reset()
        mix = np.random.default_rng([seed, 31337])
        instruction = env.instruction

        def driver(obs, clean):
            if beta > 0 and mix.random() < beta:
                policy.predict_action(obs, instruction)  # keep the policy's history in step with the episode
                return clean
            return np.clip(np.asarray(policy.predict_action(obs, instruction), dtype=np.float64), -1.0, 1.0)

    ok, _, final_obs = backend.run_expert_episode(env, task, seed, horizon=horizon, on_step=on_step,
                                                  action_noise=action_noise, dart_noise=dart_noise, driver=driver)
    if not ok and not keep_failures:
        return None
    ep = {
        "success": bool(ok),
        "actions": np.asarray(actions, np.float64),
        "executed_actions": np.asarray(executed, np.float64),
        "rewards": np.asarray(rewards, np.float64),
        "dones": np.asarray(dones, np.int64),
        "states": np.asarray(states, np.float64),
        "obs": {k: np.stack([o[k] for o in obs_list]) for k in obs_list[0]},
    }
    if next_obs:
        ep["next_obs"] = {k: np.stack([o[k] for o in obs_list[1:]] + [final_obs[k]]) for k in obs_list[0]}
    model_file = backend.model_file(env)
    if model_file is not None:
        ep["model_file"] = model_file
    return ep


def _collector(env_args: dict, horizon: int, next_obs: bool, opts: dict, policy_loader=None):
    """Worker side (pipeline/sim/pool.py): build an env per scene once; the handler runs one job
    ``(task, index, seed)`` and returns ``(status, episode or error message)``, status ok | fail | error.

    ``opts``: keep_failures, action_noise, dart_noise, beta. ``policy_loader``: a picklable callable that
    returns the policy acting in DAgger rollouts (this layer never imports checkpoints or policies)."""
    from mtil.pipeline.sim.backends import backend_for
    from mtil.pipeline.sim.envs import UnstableSimulation

    backend = backend_for(env_args)

    policy = None
    if policy_loader is not None:
        import torch

        torch.set_num_threads(1)  # workers share the cores
        policy = policy_loader()
    envs = {}

    def handle(job):
        task, index, seed = job
        try:
            key = backend.env_key(task)
            if key not in envs:
                envs[key] = backend.make_env(env_args, task=task)
            env = envs[key]
            backend.set_task(env, task)
            ep = record_episode(env, task, seed, horizon, next_obs, opts["keep_failures"], opts["action_noise"],
                                opts["dart_noise"], policy, opts["beta"], backend=backend)
            return ("ok" if ep is not None and (ep["success"] or policy is not None) else "fail"), ep
        except UnstableSimulation as e:
            return "error", str(e)
        except Exception as e:  # a renderer/sim fault: record it with the seed, keep running
            return "error", f"{type(e).__name__}: {e}"

    return handle


# ---------------------------------------------------------------- main side


@dataclass
class _Tally:
    """What a collection has gathered so far (main side)."""

    cfg: CollectConfig
    max_fail: int
    counts: dict = field(default_factory=dict)  # task -> {ok, fail, error}
    next_index: dict = field(default_factory=dict)  # task -> next episode index to try
    kept: dict = field(default_factory=dict)  # (task, index) -> temp group name
    errors: list = field(default_factory=list)
    retried: list = field(default_factory=list)  # episodes re-queued because their worker died

    def __post_init__(self):
        N = self.cfg.demos_per_task
        self.counts = {t: {"ok": 0, "fail": 0, "error": 0} for t in self.cfg.task_names}
        self.next_index = {t: N for t in self.cfg.task_names}

    def done(self) -> bool:
        return sum(c["ok"] for c in self.counts.values()) >= self.cfg.demos_per_task * len(self.counts)

    def account(self, status: str, task: str, index: int, payload, pool) -> None:
        """Count a result; a failure or error queues the task's next episode index."""
        c = self.counts[task]
        c[status] += 1
        if status == "error":
            self.errors.append(f"{task} episode {index} (seed {episode_seed(self.cfg.seed, task, index)}): {payload}")
        if status in ("fail", "error"):
            if c["fail"] + c["error"] > self.max_fail:
                raise RuntimeError(f"task {task}: {c['fail']} failed and {c['error']} errored episodes for "
                                   f"{c['ok']} successes; stopping")
            i = self.next_index[task]
            self.next_index[task] += 1
            pool.submit((task, i, 0), (task, i, episode_seed(self.cfg.seed, task, i)))


def collect(cfg: CollectConfig, policy_loader=None) -> dict:
    """Run the collection ``cfg`` describes; returns a summary dict (also printed by the CLI).
    ``policy_loader``: with ``cfg.policy`` (DAgger rollouts), a picklable callable returning the acting policy
    (``mtil.pipeline.checkpoint.rollout_policy_loader(path)``)."""
    import h5py

    from mtil.pipeline.sim.backends import backend_named
    from mtil.pipeline.sim.demo_file import finish_file, remove_stale_temps, write_demo
    from mtil.pipeline.sim.pool import Died, Progress, WorkerPool

    if cfg.policy and policy_loader is None:
        raise UserError("--policy: collect() needs policy_loader (mtil.pipeline.checkpoint.rollout_policy_loader)")
    tasks, N = cfg.task_names, cfg.demos_per_task
    tally = _Tally(cfg, cfg.max_failures or (10 + 20 * N if cfg.keep_failures else 10 + 2 * N))
    catalogue = backend_named(cfg.backend).tasks
    env_args = backend_named(cfg.backend).env_args(tasks, cfg.image_size, cfg.cameras, cfg.render_quality)
    remove_stale_temps(cfg.out)
    opts = {"keep_failures": cfg.keep_failures or bool(cfg.policy), "action_noise": cfg.action_noise,
            "dart_noise": cfg.noise, "beta": cfg.beta}
    t0 = time.time()
    target = AtomicPath(os.path.abspath(cfg.out))  # the temp file beside out: committed or discarded
    f = None
    bar = Progress(N * len(tasks), "collect", "demo", enabled=cfg.progress)
    pool = WorkerPool(_collector, (env_args, cfg.horizon, cfg.next_obs, opts, policy_loader),
                      workers=min(cfg.workers, N * len(tasks)), name="collect")
    try:
        f = h5py.File(target.tmp, "w")
        data = f.create_group("data")
        with pool:
            for i in range(N):  # interleave tasks so every task progresses from the start
                for t in tasks:
                    pool.submit((t, i, 0), (t, i, episode_seed(cfg.seed, t, i)))
            for (task, index, tries), res in pool.results():
                if isinstance(res, Died):  # re-queued on another worker, up to 3 tries
                    tally.retried.append(f"{task} episode {index}: {res}, re-queued")
                    if tries + 1 < 3:
                        pool.submit((task, index, tries + 1), (task, index, episode_seed(cfg.seed, task, index)),
                                    front=True)
                        continue
                    status, payload = "error", "its worker died 3 times"
                else:
                    status, payload = res if isinstance(res, tuple) else ("error", str(res))
                if status == "ok" or (status == "fail" and payload is not None):  # payload: a kept failure
                    name = f"tmp_{task}_{index}"
                    write_demo(data, name, payload, task, catalogue[task].instruction,
                               episode_seed(cfg.seed, task, index))
                    tally.kept[(task, index)] = name
                    bar.update(1 if status == "ok" else 0)
                tally.account(status, task, index, payload, pool)
                bar.set_postfix(failed=sum(c["fail"] for c in tally.counts.values()),
                                errors=sum(c["error"] for c in tally.counts.values()))
                if tally.done():
                    break
        bar.close()
        total, n_failed = finish_file(f, data, cfg, tally.kept, env_args)
        f.close()
        f = None
        target.commit()
    finally:
        _cleanup(bar, pool, f, target)
    elapsed = time.time() - t0
    return {"out": target.path, "demos": len(tally.kept) - n_failed, "failed_kept": n_failed, "steps": total,
            "seconds": round(elapsed, 1), "demos_per_s": round(len(tally.kept) / max(elapsed, 1e-9), 3),
            "per_task": tally.counts, "errors": tally.errors, "retried": tally.retried}


def _cleanup(bar, pool, f, target: AtomicPath | None) -> None:
    """Stop the workers and remove the temp file, whatever fails on the way (closing the HDF5 file on a full
    disk raises: the remove must still happen)."""
    try:
        bar.close()
        pool.close()
    finally:
        try:
            if f is not None:
                f.close()
        except Exception:  # noqa: BLE001 - the error that brought us here is the one to report
            pass
        finally:
            if target is not None:
                target.discard()
