"""Replay a recorded demo's actions in simulation and write an mp4 (``mtil replay``).

    from mtil.pipeline.sim.replay import ReplayConfig, replay
    result = replay(ReplayConfig("demos.hdf5", demo="demo_3", out="demo_3.mp4"))
    result["success"], result["max_state_error"]

The env is rebuilt from the file's ``env_args`` (task from the demo's ``mtil_task`` attr, or from its
instruction), reset with the demo's seed, set to the recorded initial state ``states[0]`` (optionally
after reloading the demo's ``model_file`` MJCF), and driven by the recorded actions. Reports whether the
task still succeeds and how far the replayed MuJoCo state drifts from the recorded ``states``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np

from mtil.datasets.errors import UserError
from mtil.pipeline.mp4 import write_mp4


@dataclass
class ReplayConfig:
    """Replay one demo of an HDF5 file in simulation; report success; optionally write an mp4."""

    file: str
    """HDF5 demo file (robomimic layout with env_args)"""
    demo: str = "demo_0"
    """demo group name under data/"""
    out: str | None = None
    """mp4 to write (omit: no video)"""
    camera: str = "agentview"
    """camera rendered into the video"""
    size: int = 256
    """video frame height = width (px)"""
    fps: int = 20
    """video frame rate (the control rate is 20 Hz)"""
    use_model_file: bool = False
    """reload the demo's recorded MJCF (model_file) before restoring the state"""
    overwrite: bool = False
    """replace an existing --out video"""

    def __post_init__(self):
        if not os.path.isfile(self.file):
            raise UserError(f"{self.file}: file does not exist")
        if self.out is not None:
            if os.path.exists(self.out) and not self.overwrite:
                raise UserError(f"--out {self.out}: file exists (use --overwrite to replace it)")
            out_dir = os.path.dirname(os.path.abspath(self.out))
            if not os.path.isdir(out_dir) or not os.access(out_dir, os.W_OK):
                raise UserError(f"--out {self.out}: directory {out_dir} does not exist or is not writable")
            if not self.out.lower().endswith(".mp4"):
                raise UserError(f"--out {self.out}: expected an .mp4 path")
        if not 16 <= self.size <= 1024:
            raise UserError(f"--size must be between 16 and 1024, got {self.size}")


def _read_demo(cfg: ReplayConfig) -> tuple[dict, dict, np.ndarray, np.ndarray]:
    import h5py

    from mtil.datasets.schema import demo_sort_key

    if not h5py.is_hdf5(cfg.file):
        raise UserError(f"{cfg.file}: is not an HDF5 file")
    with h5py.File(cfg.file, "r") as f:
        if "data" not in f or "env_args" not in f["data"].attrs:
            raise UserError(f"{cfg.file}: data.attrs['env_args'] missing: cannot rebuild the environment")
        if cfg.demo not in f["data"]:
            names = sorted(f["data"].keys(), key=demo_sort_key)
            shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
            raise UserError(f"{cfg.file}: no demo {cfg.demo!r} under data/ (has {shown})")
        g = f["data"][cfg.demo]
        if "states" not in g or "actions" not in g:
            raise UserError(f"{cfg.file}: data/{cfg.demo} needs 'states' and 'actions' to be replayed")
        env_args = json.loads(f["data"].attrs["env_args"])
        attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in g.attrs.items()}
        return env_args, attrs, g["states"][()], g["actions"][()]


def replay(cfg: ReplayConfig) -> dict:
    """Replay ``cfg.demo``; returns {demo, task, steps, success, success_step, max_state_error, video}."""
    from mtil.pipeline.sim.backends import backend_for, is_catalogue_env
    from mtil.pipeline.sim.envs import make_env

    env_args, attrs, states, actions = _read_demo(cfg)
    if not backend_for(env_args).replays_demos:  # the replay below reads robosuite's MJCF and state layout
        raise UserError(f"{cfg.file}: `mtil replay` rebuilds robosuite scenes from their MJCF and states; demos of "
                        f"{env_args.get('env_name')} are not supported yet")
    task = attrs.get("mtil_task")
    if task is None and is_catalogue_env(env_args):
        task = backend_for(env_args).task_for_instruction(str(attrs.get("language_instruction", "")))
        if task is None:
            raise UserError(f"{cfg.file}: data/{cfg.demo} has no mtil_task attr and an unknown instruction")
    try:
        env = make_env(env_args, task=task, use_camera_obs=False)
    except ValueError as e:
        raise UserError(f"{cfg.file}: cannot rebuild the environment from env_args: {e}") from e
    if cfg.use_model_file and attrs.get("model_file"):
        env.raw.reset_from_xml_string(attrs["model_file"])
    env.reset(seed=int(attrs.get("seed", 0)))
    env.reset_to_state(states[0])

    frames, errors, success_step = [], [], None
    nq = env.raw.sim.model.nq
    for t, a in enumerate(actions):
        if cfg.out:
            frames.append(env.render_frame(cfg.camera, cfg.size))
        if t > 0:
            errors.append(float(np.abs(env.get_state()[1:1 + nq] - states[t][1:1 + nq]).max()))
        _, _, success, _ = env.step(a)
        if success and success_step is None:
            success_step = t + 1
    if cfg.out:
        frames.append(env.render_frame(cfg.camera, cfg.size))
        write_mp4(cfg.out, frames, cfg.fps, crf=10)
    final_success = bool(env.is_success())
    env.close()
    return {"demo": cfg.demo, "task": task, "instruction": attrs.get("language_instruction"),
            "steps": int(len(actions)), "success": success_step is not None, "success_step": success_step,
            "final_success": final_success,
            "max_state_error": max(errors) if errors else 0.0, "video": os.path.abspath(cfg.out) if cfg.out else None}
