"""Where a policy stalls, what would the expert do? Roll a checkpoint out on suite tasks and label every
visited state with the reactive expert (its decision, xy/height/yaw error to the grasp point, finger gap;
while a stack/place object is held, the distance to the drop point and the height above the release), then
summarize the steps at which the policy is stalled (eef moved < 5 mm over the last 10 steps).

    python scripts/stall_probe.py RUN/last.pt --tasks lift_red stack_red_on_green --episodes 4 --out probe.json

Prints, per task, the expert's decisions over stalled steps and, for each decision, the median errors to the
grasp point, finger gap and commands, and how often the sign of the policy's gripper command agreed with the
expert's. For diagnosis (docs/results.md section 14).
"""

from __future__ import annotations

import argparse
import collections
import json
import sys

import numpy as np


def face_yaw_error(env, expert, task: str) -> float:
    """|yaw| (rad, 0..pi/4) between the fingers and the nearest face of the task's object (0 for a cylinder)."""
    from robosuite.utils import transform_utils as T

    from mtil.pipeline.sim.experts import wrap
    from mtil.pipeline.sim.tasks import TASKS

    obj = TASKS[task].obj
    if env.scene_spec.object(obj).shape != "box":
        return 0.0
    R = T.quat2mat(T.convert_quat(np.asarray(env.object_quat_wxyz(obj), dtype=np.float64), to="xyzw"))
    return abs(wrap(float(np.arctan2(R[1, 0], R[0, 0])) - expert.eef_yaw(env), np.pi / 2))


def transport_errors(env, expert) -> tuple[float | None, float | None]:
    """While a stack/place object is held: (eef xy distance to where the expert would let go, object height
    above its release height), in m; (None, None) otherwise (lifts, nothing held)."""
    t = expert.task
    if t.kind == "lift" or not expert.held(env):
        return None, None
    eef, obj = expert.eef_pos(env), env.object_pos(t.obj)
    aim = env.object_pos(t.target)[:2] + expert.style.place_offset + (eef - obj)[:2]
    return float(np.linalg.norm(aim - eef[:2])), float(obj[2] - expert.release_z(env))


def probe_episode(policy, env, task: str, task_id: int, seed: int, max_steps: int) -> list[dict]:
    from mtil.pipeline.sim.experts import ALIGN_XY, CLOSE_DZ, ScriptedExpert
    from mtil.pipeline.sim.stages import StageTracker

    policy.reset()
    obs = env.reset(seed=seed)
    expert = ScriptedExpert(task, env.raw, np.random.default_rng([seed, 7919]))
    tracker = StageTracker(env.raw)
    rows, path = [], []
    for step in range(max_steps):
        label = expert.act(env.raw)
        eef = expert.eef_pos(env.raw)
        gp = expert.grasp_point(env.raw)
        d_xy, dz = float(np.linalg.norm(gp[:2] - eef[:2])), float(eef[2] - gp[2])
        drop_xy, over_release = transport_errors(env.raw, expert)
        action = np.asarray(policy.predict_action(obs, task_id), dtype=np.float64)
        path.append(eef.copy())
        rows.append({"step": step, "decision": expert.decision, "d_xy": d_xy, "dz": dz,
                     "yaw_err": face_yaw_error(env.raw, expert, task), "gap": expert.finger_gap(env.raw)[0],
                     "expert_grip": float(label[6]), "policy_grip": float(action[6]),
                     "policy_move": float(np.linalg.norm(action[:3])), "expert_move": float(np.linalg.norm(label[:3])),
                     "stalled": len(path) > 10 and float(np.linalg.norm(path[-1] - path[-11])) < 0.005,
                     "close_ok_xy": d_xy < ALIGN_XY, "close_ok_dz": dz < CLOSE_DZ,
                     "drop_xy": drop_xy, "over_release": over_release})
        obs, _, done, _ = env.step(action)
        tracker.step(env.raw, success=done)
        if done:
            break
    summary = tracker.summary(bool(done))
    for r in rows:
        r["episode_success"] = bool(done)
        r["furthest"] = summary["stage"]
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint")
    ap.add_argument("--tasks", nargs="+", required=True)
    ap.add_argument("--episodes", type=int, default=4)
    ap.add_argument("--seed", type=int, default=1000, help="first episode seed (as mtil eval)")
    ap.add_argument("--max-steps", type=int, default=250)
    ap.add_argument("--out", default="")
    a = ap.parse_args(argv)
    import torch

    from mtil.pipeline.checkpoint import load_policy
    from mtil.pipeline.sim.envs import make_env
    from mtil.pipeline.sim.tasks import TASKS

    torch.set_num_threads(1)
    policy, ckpt = load_policy(a.checkpoint)
    out = {}
    for task in a.tasks:
        env = make_env(ckpt.env_args, task=task)
        rows, task_id = [], policy.cfg.tasks.index(TASKS[task].instruction)
        for e in range(a.episodes):
            ep = probe_episode(policy, env, task, task_id, a.seed + e, a.max_steps)
            for r in ep:
                r["episode"] = e
            rows += ep
            print(f"{task} episode {e}: success={ep[-1]['episode_success']} furthest={ep[-1]['furthest']}",
                  file=sys.stderr)
        out[task] = rows
        stalled = [r for r in rows if r["stalled"] and not r["episode_success"]]
        dec = collections.Counter(r["decision"] for r in stalled)
        print(f"\n{task}: {len(stalled)} stalled steps in failed episodes; expert decisions there: {dict(dec)}")
        for d, n in dec.most_common():
            s = [r for r in stalled if r["decision"] == d]
            med = {k: round(float(np.median(v)), 4)
                   for k in ("d_xy", "dz", "yaw_err", "gap", "policy_grip", "policy_move", "expert_move",
                             "drop_xy", "over_release")
                   if (v := [r[k] for r in s if r[k] is not None])}
            agree = np.mean([np.sign(r["policy_grip"]) == np.sign(r["expert_grip"]) for r in s])
            print(f"  {d:9s} n={n:4d} gripper agrees {agree:4.0%} median {med}")
    if a.out:
        with open(a.out, "w") as f:
            json.dump(out, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
