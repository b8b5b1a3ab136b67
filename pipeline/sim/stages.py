"""Where an episode got to: task stages from the simulator's privileged state, and stall detection.

Stages, in order (an episode's *furthest* stage is the highest one whose condition held at some step):

- suite lift:        start -> reached -> grasped -> success
- suite stack/place: start -> reached -> grasped -> lifted -> above target -> success
- stock robosuite envs (their internals differ): start -> success

Conditions (``MtilTabletop``; positions in m):
- reached: the eef (between the fingertips) is within 2 cm of the object's centre in xy and within 3 cm
  of it in height: the fingers are around the object;
- grasped: both finger pads touch the object (robosuite's ``_check_grasp``);
- lifted: grasped, and the object is >= 2 cm above its resting height;
- above target: the object's centre is within 2 cm of the target's in xy and its bottom is above the
  target's top (held or falling: it is over the right place);
- success: the task predicate (``_check_success``).

A *stall*: the eef moved less than 5 mm over the last ``STALL_STEPS`` steps of a failed episode (the arm
sits still until the time limit; e.g. fingers open next to the object, never closing).
"""

from __future__ import annotations

import numpy as np

LIFT_STAGES = ("start", "reached", "grasped", "success")
TRANSPORT_STAGES = ("start", "reached", "grasped", "lifted", "above target", "success")
STAGE_ORDER = TRANSPORT_STAGES  # every stage any task reaches, in order (the report's columns)
STOCK_STAGES = ("start", "success")
STALL_STEPS = 30
STALL_MOVE = 0.005


def stages_of_kind(kind: str | None) -> tuple[str, ...]:
    """The stage names of a suite task kind (lift, stack, place); None: a stock robosuite env."""
    if kind is None:
        return STOCK_STAGES
    return LIFT_STAGES if kind == "lift" else TRANSPORT_STAGES


def stages_for(env) -> tuple[str, ...]:
    """The stage names for the env's current task (``env``: a robosuite env, e.g. ``SimEnv.raw``)."""
    spec = getattr(env, "task_spec", None)
    return stages_of_kind(spec.kind if spec is not None else None)


def stage_of(env, success: bool | None = None) -> int:
    """Index into ``stages_for(env)`` of the highest stage whose condition holds in the current state
    (``success``: the task predicate, when the caller has just computed it)."""
    names = stages_for(env)
    if env._check_success() if success is None else success:
        return len(names) - 1
    if names is STOCK_STAGES:
        return 0
    from mtil.pipeline.sim.scene import half_height

    t = env.task_spec
    spec = env.scene_spec.object(t.obj)
    obj = env.object_pos(t.obj)
    eef = np.array(env.sim.data.site_xpos[env.robots[0].eef_site_id["right"]])
    stage = 0
    if np.linalg.norm(eef[:2] - obj[:2]) < 0.02 and abs(eef[2] - obj[2]) < 0.03:
        stage = 1
    grasped = env.grasping(t.obj)
    if grasped:
        stage = 2
    if t.kind == "lift":
        return stage
    rest_z = env.table_top() + half_height(spec)
    if grasped and obj[2] > rest_z + 0.02:
        stage = 3
    tgt = env.object_pos(t.target)
    tgt_top = tgt[2] + half_height(env.scene_spec.object(t.target))
    if np.linalg.norm(obj[:2] - tgt[:2]) < 0.02 and obj[2] - half_height(spec) > tgt_top:
        stage = 4
    return stage


class StageTracker:
    """Follows one episode: call ``step(env)`` after every env step, then ``summary(success)``."""

    def __init__(self, env):
        self.names = stages_for(env)
        self.furthest = 0
        self.eef: list[np.ndarray] = []
        self._site = env.robots[0].eef_site_id["right"]

    def step(self, env, success: bool | None = None) -> None:
        self.furthest = max(self.furthest, stage_of(env, success))
        self.eef.append(np.array(env.sim.data.site_xpos[self._site]))
        del self.eef[:-STALL_STEPS]  # only the tail matters

    def summary(self, success: bool) -> dict:
        """{"stage": furthest stage name, "stalled": bool} for eval.json."""
        stage = self.names[-1] if success else self.names[min(self.furthest, len(self.names) - 2)]
        tail = np.asarray(self.eef)
        stalled = (not success and len(tail) >= STALL_STEPS
                   and float(np.max(np.linalg.norm(tail - tail[-1], axis=1))) < STALL_MOVE)
        return {"stage": stage, "stalled": bool(stalled)}
