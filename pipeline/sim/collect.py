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

import json
import os
import queue
import time
import zlib
from collections import deque
from dataclasses import asdict, dataclass, field

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
    """'all' (training tasks), 'held_out', 'everything', or comma-separated task names (see `mtil tasks`)"""
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

    def __post_init__(self):
        from mtil.pipeline.sim.tasks import resolve_tasks

        self.task_names = resolve_tasks(self.tasks)
        if self.demos_per_task < 1:
            raise UserError(f"--demos-per-task must be >= 1, got {self.demos_per_task}")
        if not 1 <= self.workers <= 64:
            raise UserError(f"--workers must be between 1 and 64, got {self.workers}")
        if not 16 <= self.image_size <= 512:
            raise UserError(f"--image-size must be between 16 and 512, got {self.image_size}")
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
                   action_noise: float = 0.0, dart_noise: float = 0.0, policy=None, beta: float = 0.0) -> dict | None:
    """Run one episode, recording everything a demo stores (``success`` says how it ended); None if it did
    not succeed and ``keep_failures`` is off.

    Without ``policy`` the scripted expert acts (``action_noise``: play-like noise, recorded; ``dart_noise``:
    DART, the clean expert action recorded). With ``policy`` (DAgger) the policy acts, except that with
    probability ``beta`` a step executes the expert's action instead; every step is labelled with the
    expert's clean action for the visited state. ``executed_actions`` always holds what was executed.
    """
    from mtil.pipeline.sim.experts import run_expert_episode

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

    ok, _, final_obs = run_expert_episode(env, task, seed, horizon=horizon, on_step=on_step,
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
    ep["model_file"] = env.raw.raw_xml
    return ep


def _worker_main(jobs, results, env_args: dict, horizon: int, next_obs: bool, opts: dict) -> None:
    """Worker loop: build an env per scene once, run jobs ``(task, index, seed)`` until ``None``.

    ``opts``: keep_failures, action_noise, dart_noise, policy (checkpoint path or ""), beta.
    """
    from mtil.pipeline.sim.probe import worker_setup

    worker_setup()  # the parent handles Ctrl-C and stops us; we die with the parent
    from mtil.pipeline.sim.envs import UnstableSimulation, make_env
    from mtil.pipeline.sim.tasks import TASKS

    policy = None
    if opts.get("policy"):
        import torch

        from mtil.pipeline.checkpoint import load_policy

        torch.set_num_threads(1)  # workers share the cores
        policy, _ = load_policy(opts["policy"])
    envs = {}
    while True:
        job = jobs.get()
        if job is None:
            return
        task, index, seed = job
        try:
            scene = TASKS[task].scene
            if scene not in envs:
                envs[scene] = make_env(env_args, task=task)
            env = envs[scene]
            env.raw.set_task(task)
            env.task, env.instruction = task, TASKS[task].instruction
            ep = record_episode(env, task, seed, horizon, next_obs, opts["keep_failures"], opts["action_noise"],
                                opts["dart_noise"], policy, opts["beta"])
            results.put(("ok" if ep is not None and (ep["success"] or policy is not None) else "fail",
                         task, index, ep))
        except UnstableSimulation as e:
            results.put(("error", task, index, str(e)))
        except Exception as e:  # a renderer/sim fault: record it with the seed, keep running
            results.put(("error", task, index, f"{type(e).__name__}: {e}"))


# ---------------------------------------------------------------- main side


def link_next_obs(g) -> None:
    """``next_obs/<key>`` as HDF5 virtual datasets over ``obs/<key>`` shifted by one step (the last step
    repeats its observation): readers that want next_obs (robomimic's default config) get it, and the
    file grows by a few hundred bytes per key instead of doubling. Call after the group has its final
    name: the mapping stores the source's path."""
    import h5py

    nxt = g.create_group("next_obs")
    for k, ds in g["obs"].items():
        T = ds.shape[0]
        src = h5py.VirtualSource(".", ds.name, shape=ds.shape, dtype=ds.dtype)  # "." = this same file
        layout = h5py.VirtualLayout(shape=ds.shape, dtype=ds.dtype)
        if T > 1:
            layout[: T - 1] = src[1:T]
        layout[T - 1] = src[T - 1]
        nxt.create_virtual_dataset(k, layout)


def _write_demo(f, name: str, ep: dict, task: str, instruction: str, seed: int) -> None:
    g = f.create_group(name)
    T = len(ep["actions"])
    g.attrs.update(num_samples=T, language_instruction=instruction, mtil_task=task, seed=seed,
                   model_file=ep["model_file"], success=ep["success"])
    for k in ("actions", "executed_actions", "states", "rewards", "dones"):
        g.create_dataset(k, data=ep[k])  # contiguous, uncompressed: memory-mappable
    for grp in ("obs", "next_obs"):
        if grp in ep:
            sub = g.create_group(grp)
            for k, v in ep[grp].items():
                sub.create_dataset(k, data=v)


def collect(cfg: CollectConfig) -> dict:
    """Run the collection ``cfg`` describes; returns a summary dict (also printed by the CLI)."""
    import multiprocessing as mp

    import h5py
    from tqdm import tqdm

    from mtil.pipeline.sim.envs import suite_env_args
    from mtil.pipeline.sim.probe import ResultPipe, next_message, start_worker_process
    from mtil.pipeline.sim.tasks import TASKS

    tasks, N = cfg.task_names, cfg.demos_per_task
    max_fail = cfg.max_failures or (10 + 20 * N if cfg.keep_failures else 10 + 2 * N)
    env_args = suite_env_args(cfg.image_size, cfg.render_quality, tasks=tasks)
    out = os.path.abspath(cfg.out)
    target = None  # the temp file beside out; committed (fsync + rename) or discarded

    ctx = mp.get_context("spawn")
    readers: dict = {}  # each worker's own results pipe: a killed worker cannot block the others' results
    workers: list[dict] = []

    def start_worker(slot: int | None = None) -> None:
        jq = ctx.Queue()
        opts = {"keep_failures": cfg.keep_failures or bool(cfg.policy), "action_noise": cfg.action_noise,
                "dart_noise": cfg.noise, "policy": cfg.policy, "beta": cfg.beta}
        r, wr = ctx.Pipe(duplex=False)
        p = ctx.Process(target=_worker_main, args=(jq, ResultPipe(wr), env_args, cfg.horizon, cfg.next_obs, opts),
                        daemon=True)
        start_worker_process(p)
        wr.close()
        readers[r] = p
        w = {"proc": p, "jobs": jq, "job": None}
        if slot is None:
            workers.append(w)
        else:
            workers[slot] = w

    pending: deque = deque()
    next_index = {t: N for t in tasks}
    for i in range(N):  # interleave tasks so every task progresses from the start
        for t in tasks:
            pending.append((t, i, episode_seed(cfg.seed, t, i), 0))
    kept: dict[tuple[str, int], str] = {}  # (task, index) -> temp group name
    counts = {t: {"ok": 0, "fail": 0, "error": 0} for t in tasks}
    error_msgs: list[str] = []
    retried: list[str] = []  # episodes re-queued because their worker died
    finished: set[tuple[str, int]] = set()  # (task, index) with a result
    restarts = 0
    t0 = time.time()
    f = None
    bar = None
    try:
        target = AtomicPath(out)
        bar = tqdm(total=N * len(tasks), unit="demo", desc="collect", disable=not cfg.progress, dynamic_ncols=True)
        f = h5py.File(target.tmp, "w")
        data = f.create_group("data")
        for _ in range(min(cfg.workers, len(pending))):
            start_worker()
        while sum(c["ok"] for c in counts.values()) < N * len(tasks):
            for w in workers:  # hand out work to idle workers
                if w["job"] is None and pending and w["proc"].is_alive():
                    w["job"] = pending.popleft()
                    w["jobs"].put(w["job"][:3])
            for slot, w in enumerate(workers):  # a dead worker: re-queue its episode on another one
                if not w["proc"].is_alive():
                    job = w["job"]
                    restarts += 1
                    if restarts > 3 * cfg.workers + 3:
                        raise RuntimeError(f"simulator workers keep dying (last exit code {w['proc'].exitcode}); "
                                           "run one episode in the foreground to see why, e.g. "
                                           "`mtil collect --workers 1 --demos-per-task 1`")
                    start_worker(slot)
                    if job is not None and job[:2] not in finished:
                        retried.append(f"{job[0]} episode {job[1]}: worker {w['proc'].pid} died "
                                       f"(exit code {w['proc'].exitcode}), re-queued")
                        if job[3] + 1 < 3:
                            pending.appendleft((*job[:3], job[3] + 1))
                        else:
                            finished.add(job[:2])
                            _account("error", job[0], job[1], "its worker died 3 times", counts, error_msgs,
                                     pending, next_index, cfg, N, max_fail)
            try:
                status, task, index, payload = next_message(readers, timeout=1.0)
            except queue.Empty:
                continue
            for w in workers:
                if w["job"] is not None and w["job"][:2] == (task, index):
                    w["job"] = None
            if (task, index) in finished:  # a duplicate (its worker died after sending it)
                continue
            finished.add((task, index))
            if status == "ok" or (status == "fail" and payload is not None):  # payload: a kept failure
                name = f"tmp_{task}_{index}"
                _write_demo(data, name, payload, task, TASKS[task].instruction, episode_seed(cfg.seed, task, index))
                kept[(task, index)] = name
                bar.update(1 if status == "ok" else 0)
            _account(status, task, index, payload, counts, error_msgs, pending, next_index, cfg, N, max_fail)
            bar.set_postfix(failed=sum(c["fail"] for c in counts.values()),
                            errors=sum(c["error"] for c in counts.values()))
        bar.close()
        # final order: by task (as given), then episode index
        order = sorted(kept, key=lambda k: (tasks.index(k[0]), k[1]))
        names_by_task: dict[str, list[str]] = {t: [] for t in tasks}
        failed_names = []
        total = 0
        for i, key in enumerate(order):
            f.move(f"data/{kept[key]}", f"data/demo_{i}")
            if data[f"demo_{i}"].attrs["success"] or cfg.policy:  # DAgger: expert labels, every episode trains
                names_by_task[key[0]].append(f"demo_{i}")
            else:
                failed_names.append(f"demo_{i}")
            total += int(data[f"demo_{i}"].attrs["num_samples"])
            if not cfg.next_obs:
                link_next_obs(data[f"demo_{i}"])
        data.attrs["total"] = total
        data.attrs["env_args"] = json.dumps(env_args)
        data.attrs["mtil_collect"] = json.dumps({k: v for k, v in asdict(cfg).items() if k != "task_names"})
        data.attrs["mtil_source"] = ("dagger" if cfg.policy else "dart" if cfg.noise else
                                     "play" if cfg.action_noise else "expert")
        if cfg.policy:
            data.attrs["dagger_round"] = cfg.dagger_round
            data.attrs["dagger_policy"] = os.path.abspath(cfg.policy)
        train, valid = [], []
        for t in tasks:
            n_valid = int(cfg.valid_fraction * len(names_by_task[t]))
            train += names_by_task[t][: len(names_by_task[t]) - n_valid]
            valid += names_by_task[t][len(names_by_task[t]) - n_valid:]
        mask = f.create_group("mask")
        mask.create_dataset("train", data=np.array(train, dtype="S"))
        mask.create_dataset("valid", data=np.array(valid, dtype="S16"))
        if cfg.keep_failures:
            mask.create_dataset("failed", data=np.array(failed_names, dtype="S16"))
        f.flush()
        f.close()
        f = None
        target.commit()
    finally:
        _cleanup(bar, workers, f, target)
        for r in readers:
            r.close()
    elapsed = time.time() - t0
    return {"out": out, "demos": len(kept) - len(failed_names), "failed_kept": len(failed_names), "steps": total,
            "seconds": round(elapsed, 1),
            "demos_per_s": round(len(kept) / max(elapsed, 1e-9), 3), "per_task": counts, "errors": error_msgs,
            "retried": retried}


def _cleanup(bar, workers: list[dict], f, target: AtomicPath | None) -> None:
    """Stop the workers and remove the temp file, whatever fails on the way (closing the HDF5 file on a full
    disk raises: the remove must still happen)."""
    try:
        if bar is not None:
            bar.close()
        for w in workers:
            if w["proc"].is_alive():
                w["jobs"].put(None)
        for w in workers:
            w["proc"].join(timeout=5)
            if w["proc"].is_alive():
                w["proc"].terminate()
    finally:
        try:
            if f is not None:
                f.close()
        except Exception:  # noqa: BLE001 - the error that brought us here is the one to report
            pass
        finally:
            if target is not None:
                target.discard()


def _account(status, task, index, payload, counts, error_msgs, pending, next_index, cfg, N, max_fail) -> None:
    """Count a result; a failure or error queues the task's next episode index."""
    counts[task][status] += 1
    if status == "error":
        error_msgs.append(f"{task} episode {index} (seed {episode_seed(cfg.seed, task, index)}): {payload}")
    if status in ("fail", "error"):
        if counts[task]["fail"] + counts[task]["error"] > max_fail:
            raise RuntimeError(f"task {task}: {counts[task]['fail']} failed and {counts[task]['error']} "
                               f"errored episodes for {counts[task]['ok']} successes; stopping")
        i = next_index[task]
        next_index[task] += 1
        pending.append((task, i, episode_seed(cfg.seed, task, i), 0))
