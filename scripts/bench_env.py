"""Benchmark simulator throughput: env steps/s with two 84 px cameras, and collection demos/s.

    MUJOCO_GL=egl python scripts/bench_env.py [--steps 150] [--collect-demos 4] [--skip-collect]
        [--markdown-out bench.md]

Rows (all in this one process, same machine state, random actions in [-1, 1]):
- stock robosuite Lift, defaults (robosuite.make, shadows, MSAA, full meshes), cameras agentview +
  robot0_eye_in_hand at 84 px;
- the same Lift through our ``make_env`` with ``render=default`` and with ``render=fast``;
- our suite scenes (cubes, plates), fast and default;
- physics only (no cameras) for reference;
- collection: ``collect()`` of lift_red + stack_red_on_green demos with 1 and 2 workers (demos/s and
  env steps/s, including worker start-up).
The load average is printed too: other processes on a shared machine slow every row.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time

import numpy as np


def _time_steps(step, reset, n: int, warmup: int = 10) -> float:
    """Mean seconds per step over ``n`` steps after ``warmup`` steps (resets are not timed)."""
    rng = np.random.default_rng(0)
    reset()
    for _ in range(warmup):
        step(rng.uniform(-1, 1, 7))
    total = 0.0
    for i in range(n):
        t = time.perf_counter()
        step(rng.uniform(-1, 1, 7))
        total += time.perf_counter() - t
        if i % 60 == 59:  # keep the arm in its workspace (stock robosuite's hard reset reloads the model)
            reset()
    return total / n


def bench_envs(n: int) -> list[tuple[str, float]]:
    from mtil.pipeline.sim.envs import CAMERAS, make_env, suite_env_args
    from mtil.pipeline.sim.render import import_robosuite

    suite = import_robosuite()
    from robosuite.controllers import load_composite_controller_config

    rows = []
    cfg = load_composite_controller_config(controller="BASIC", robot="Panda")
    stock = suite.make("Lift", robots="Panda", controller_configs=cfg, has_renderer=False,
                       has_offscreen_renderer=True, use_camera_obs=True, camera_names=list(CAMERAS),
                       camera_heights=84, camera_widths=84, ignore_done=True)
    rows.append(("stock robosuite Lift (defaults)", _time_steps(stock.step, stock.reset, n)))
    stock.close()
    lift_args = {"env_name": "Lift", "type": 1,
                 "env_kwargs": {"robots": ["Panda"], "controller_configs": cfg, "camera_names": list(CAMERAS),
                                "camera_heights": 84, "camera_widths": 84}}
    for quality in ("default", "fast"):
        env = make_env(lift_args, render_quality=quality)
        rows.append((f"Lift via make_env, render={quality}", _time_steps(env.step, env.reset, n)))
        env.close()
    for task in ("lift_red", "place_block_on_orange"):
        for quality in ("fast", "default"):
            env = make_env(suite_env_args(84, quality), task=task)
            rows.append((f"suite scene {env.raw.scene_spec.name}, render={quality}",
                         _time_steps(env.step, env.reset, n)))
            env.close()
    env = make_env(suite_env_args(84), task="lift_red", use_camera_obs=False)
    rows.append(("suite scene cubes, physics only (no cameras)", _time_steps(env.step, env.reset, n)))
    env.close()
    return rows


def bench_collect(demos: int) -> list[tuple[str, float, float]]:
    from mtil.pipeline.sim.collect import CollectConfig, collect

    rows = []
    for workers in (1, 2):
        with tempfile.TemporaryDirectory() as d:
            s = collect(CollectConfig(tasks="lift_red,stack_red_on_green", demos_per_task=demos,
                                      out=os.path.join(d, "b.hdf5"), workers=workers, progress=False))
        rows.append((f"collect {2 * demos} demos, {workers} worker(s), 84 px fast", s["demos"] / s["seconds"],
                     s["steps"] / s["seconds"]))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=150, help="timed steps per env")
    ap.add_argument("--collect-demos", type=int, default=4, help="demos per task in the collection rows")
    ap.add_argument("--skip-collect", action="store_true", help="only the env rows")
    ap.add_argument("--markdown-out", default=None, help="also write the table to this file")
    a = ap.parse_args()

    load0 = os.getloadavg()[0]
    env_rows = bench_envs(a.steps)
    stock = env_rows[0][1]
    lines = [f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
             f"MUJOCO_GL={os.environ.get('MUJOCO_GL')}, load average at start {load0:.2f}", "",
             "| env (two 84 px cameras unless noted) | ms/step | steps/s | vs stock |", "|---|---|---|---|"]
    for name, sec in env_rows:
        lines.append(f"| {name} | {1000 * sec:.1f} | {1 / sec:.1f} | {stock / sec:.2f}x |")
    if not a.skip_collect:
        lines += ["", "| collection | demos/s | env steps/s |", "|---|---|---|"]
        for name, dps, sps in bench_collect(a.collect_demos):
            lines.append(f"| {name} | {dps:.3f} | {sps:.1f} |")
    lines.append(f"\nload average at end {os.getloadavg()[0]:.2f}")
    text = "\n".join(lines) + "\n"
    print(text)
    if a.markdown_out:
        with open(a.markdown_out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
