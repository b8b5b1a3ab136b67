"""Writing collected episodes into a robomimic-layout HDF5 file (``mtil collect``, DAgger rollouts): one
group per episode as it arrives, then the final names, masks and attrs (layout: pipeline/sim/collect.py)."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict

import numpy as np


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


def write_demo(f, name: str, ep: dict, task: str, instruction: str, seed: int) -> None:
    g = f.create_group(name)
    T = len(ep["actions"])
    g.attrs.update(num_samples=T, language_instruction=instruction, mtil_task=task, seed=seed, success=ep["success"])
    if "model_file" in ep:  # robosuite: the MJCF replay rebuilds the scene from
        g.attrs["model_file"] = ep["model_file"]
    for k in ("actions", "executed_actions", "states", "rewards", "dones"):
        g.create_dataset(k, data=ep[k])  # contiguous, uncompressed: memory-mappable
    for grp in ("obs", "next_obs"):
        if grp in ep:
            sub = g.create_group(grp)
            for k, v in ep[grp].items():
                sub.create_dataset(k, data=v)


def remove_stale_temps(out: str) -> None:
    """Temp files of earlier collections into this very ``out`` that a kill -9 left behind."""
    from mtil.datasets.atomic import remove_stale_temps_beside

    for name in remove_stale_temps_beside(out, directory=False):
        path = os.path.join(os.path.dirname(os.path.abspath(out)), name)
        print(f"note: removed {path}, left by an interrupted collection", file=sys.stderr)


def finish_file(f, data, cfg, kept: dict, env_args: dict) -> tuple[int, int]:
    """Rename the kept episodes to demo_0.. in (task, index) order, write masks and attrs; returns
    (total steps, failed episodes kept). ``cfg``: the CollectConfig; ``kept``: {(task, index): temp group name}."""
    tasks = cfg.task_names
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
    return total, len(failed_names)
