"""Measure the scripted experts' success rate: N seeds per task, no cameras (physics only).

    python scripts/expert_success.py --seeds 50 [--tasks all|everything|NAME,...] [--workers 2]
        [--displace-steps 20] [--markdown-out table.md]

Episode seeds are the ones ``mtil collect --seed 0`` would use first (sim.collect.episode_seed), so the
measured rate is the rate collection sees. Prints a markdown table (task, instruction, successes/N, rate,
mean steps); ``--markdown-out`` also writes it to a file. ``--displace-steps K``: every episode starts
from a displaced state (K steps of a random push after the reset, see run_expert_episode).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import time


def _run(args: tuple[str, list[int], int]) -> tuple[str, list[tuple[bool, int]]]:
    from mtil.pipeline.sim.envs import make_env, suite_env_args
    from mtil.pipeline.sim.experts import run_expert_episode

    task, seeds, displace = args
    env = make_env(suite_env_args(), task=task, use_camera_obs=False)
    out = []
    for s in seeds:
        try:
            out.append(run_expert_episode(env, task, seed=s, displace_steps=displace)[:2])
        except Exception:  # unstable simulation counts as a failure here
            out.append((False, 0))
    env.close()
    return task, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=50, help="episodes per task")
    ap.add_argument("--tasks", default="everything", help="all (training), held_out, everything, or names")
    ap.add_argument("--workers", type=int, default=2, help="parallel processes")
    ap.add_argument("--collect-seed", type=int, default=0, help="the --seed of mtil collect to mirror")
    ap.add_argument("--displace-steps", type=int, default=0, help="start each episode from a displaced arm")
    ap.add_argument("--markdown-out", default=None, help="also write the table to this file")
    a = ap.parse_args()

    from mtil.pipeline.sim.collect import episode_seed
    from mtil.pipeline.sim.tasks import TASKS, resolve_tasks

    tasks = resolve_tasks(a.tasks)
    jobs = []
    for t in tasks:  # split each task in chunks so 2 workers stay busy
        seeds = [episode_seed(a.collect_seed, t, i) for i in range(a.seeds)]
        jobs += [(t, seeds[i:i + 10], a.displace_steps) for i in range(0, len(seeds), 10)]
    t0 = time.time()
    results: dict[str, list[tuple[bool, int]]] = {t: [] for t in tasks}
    with mp.get_context("spawn").Pool(a.workers) as pool:
        for task, out in pool.imap_unordered(_run, jobs):
            results[task] += out
    lines = ["| task | instruction | held out | success | rate | mean steps |", "|---|---|---|---|---|---|"]
    for t in tasks:
        r = results[t]
        k = sum(ok for ok, _ in r)
        steps = [n for ok, n in r if ok]
        mean = sum(steps) / len(steps) if steps else float("nan")
        lines.append(f"| {t} | {TASKS[t].instruction} | {'yes' if TASKS[t].held_out else ''} | {k}/{len(r)} "
                     f"| {100 * k / len(r):.0f}% | {mean:.0f} |")
    table = "\n".join(lines) + "\n"
    print(table)
    print(f"{sum(len(r) for r in results.values())} episodes in {time.time() - t0:.0f} s, {a.workers} workers")
    if a.markdown_out:
        with open(a.markdown_out, "w") as f:
            f.write(table)


if __name__ == "__main__":
    main()
