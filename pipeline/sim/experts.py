"""Scripted experts: one waypoint state machine for every task of the suite.

Action convention (robosuite OSC_POSE, delta input, all in [-1, 1]): ``a[:3]`` eef translation
(1 = 5 cm), ``a[3:6]`` axis-angle rotation (1 = 0.5 rad) in the robot base frame, ``a[6]`` gripper
(-1 opens, +1 closes). Translation is a P-controller ``clip(gain * (target - eef))``; rotation keeps the
gripper pointing down and turns it about z to the nearest face-aligned yaw of the object (boxes have a
90 degree symmetry, cylinders none).

Phases: approach above the object -> descend -> close -> lift, and for stack/place -> carry above the
target -> lower -> open -> retreat. Each phase ends on reaching its waypoint (or a step budget, so a
stuck expert still terminates). Per-episode randomness (seeded by the episode seed, so demos vary but
are reproducible): a grasp/placement offset of a few mm, the approach height, the gain, and small
Gaussian action noise.

The expert reads privileged state (object poses) from the ``MtilTabletop`` env; the policy never does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mtil.pipeline.sim.scene import MtilTabletop, half_height
from mtil.pipeline.sim.tasks import TASKS


def _quat_wxyz_to_mat(q: np.ndarray) -> np.ndarray:
    w, x, y, z = q / np.linalg.norm(q)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def _rotvec(R: np.ndarray) -> np.ndarray:
    """Axis-angle vector (3,) of a rotation matrix."""
    angle = np.arccos(np.clip((np.trace(R) - 1) / 2, -1.0, 1.0))
    if angle < 1e-6:
        return np.zeros(3)
    axis = np.array([R[2, 1] - R[1, 2], R[0, 2] - R[2, 0], R[1, 0] - R[0, 1]])
    if np.pi - angle < 1e-4:  # near pi the formula above degenerates; use the diagonal
        axis = np.sqrt(np.clip((np.diag(R) + 1) / 2, 0, None))
        return axis / np.linalg.norm(axis) * angle
    return axis / np.linalg.norm(axis) * angle


def _rot_z(yaw: float) -> np.ndarray:
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _yaw_of(q_wxyz: np.ndarray) -> float:
    R = _quat_wxyz_to_mat(q_wxyz)
    return float(np.arctan2(R[1, 0], R[0, 0]))


@dataclass
class _Noise:
    grasp_offset: np.ndarray  # (3,) m, added to the grasp point
    place_offset: np.ndarray  # (2,) m, added to the placement point
    approach_height: float  # m above the object
    gain: float  # translation P gain
    action_std: float  # std of Gaussian noise on a[:3]


class ScriptedExpert:
    """``act(env) -> (7,) action`` for ``task``; create one per episode (it keeps its phase)."""

    def __init__(self, task: str, env: MtilTabletop, rng: np.random.Generator):
        self.task = TASKS[task]
        self.rng = rng
        self.noise = _Noise(grasp_offset=np.r_[rng.uniform(-0.004, 0.004, 2), rng.uniform(-0.003, 0.002)],
                            place_offset=rng.uniform(-0.004, 0.004, 2),
                            approach_height=float(rng.uniform(0.08, 0.12)), gain=float(rng.uniform(8.0, 12.0)),
                            action_std=0.03)
        self.R_down = self._eef_mat(env)  # the reset orientation: pointing down
        self.phase, self.t_phase = "approach", 0
        self.grasp_z = None
        self.yaw = 0.0

    # ------------------------------------------------------------ env reads

    @staticmethod
    def _eef_pos(env) -> np.ndarray:
        return np.array(env.sim.data.site_xpos[env.robots[0].eef_site_id["right"]])

    @staticmethod
    def _eef_mat(env) -> np.ndarray:
        return np.array(env.sim.data.site_xmat[env.robots[0].eef_site_id["right"]]).reshape(3, 3)

    def _grasp_yaw(self, env) -> float:
        """Yaw (relative to the reset orientation) that aligns the fingers with the object's faces."""
        spec = env.scene_spec.object(self.task.obj)
        if spec.shape != "box":
            return 0.0
        yaw = _yaw_of(env.object_quat_wxyz(self.task.obj))
        return float((yaw + np.pi / 4) % (np.pi / 2) - np.pi / 4)

    # ------------------------------------------------------------ control

    def _next(self, phase: str) -> None:
        self.phase, self.t_phase = phase, 0

    def act(self, env: MtilTabletop) -> np.ndarray:
        t, n = self.task, self.noise
        eef = self._eef_pos(env)
        obj = env.object_pos(t.obj)
        obj_half = half_height(env.scene_spec.object(t.obj))
        grasp_pt = obj + n.grasp_offset
        if env.scene_spec.object(t.obj).shape == "cylinder":
            grasp_pt = grasp_pt + [0, 0, 0.01]  # hold a tall object above its centre of mass: it hangs, not tips
        gripper = -1.0
        self.t_phase += 1

        if self.phase == "approach":
            self.yaw = self._grasp_yaw(env)
            target = grasp_pt + [0, 0, n.approach_height]
            if (np.linalg.norm(target - eef) < 0.012 and self._yaw_err(env) < 0.08) or self.t_phase > 80:
                self._next("descend")
        elif self.phase == "descend":
            target = grasp_pt
            if np.linalg.norm(target - eef) < 0.007 or self.t_phase > 50:
                self._next("close")
        elif self.phase == "close":
            target, gripper = grasp_pt, 1.0
            if self.t_phase > 12:
                self.grasp_z = eef[2] - obj[2]  # eef height above the object's centre while held
                self._next("lift")
        elif self.phase == "lift":
            gripper = 1.0
            target = np.r_[eef[:2], env.table_top() + obj_half + 0.14]
            if t.kind != "lift" and (abs(target[2] - eef[2]) < 0.02 or self.t_phase > 40):
                self._next("carry")
        elif self.phase in ("carry", "lower"):
            gripper = 1.0
            tgt = env.object_pos(t.target)
            tgt_top = tgt[2] + half_height(env.scene_spec.object(t.target))
            release_z = tgt_top + obj_half + (0.006 if t.kind == "stack" else 0.004)  # object centre
            hold_xy = eef[:2] - obj[:2]  # the object may sit off-centre between the fingers
            xy = tgt[:2] + n.place_offset + hold_xy
            if self.phase == "carry":
                target = np.r_[xy, release_z + self.grasp_z + 0.06]
                if np.linalg.norm(target[:2] - eef[:2]) < 0.008 and abs(target[2] - eef[2]) < 0.02 \
                        or self.t_phase > 100:
                    self._next("lower")
            else:
                target = np.r_[xy, release_z + self.grasp_z]
                if abs(obj[2] - release_z) < 0.004 or self.t_phase > 60:
                    self._next("release")
        elif self.phase == "release":
            target = eef.copy()
            if self.t_phase > 10:
                self._next("retreat")
        else:  # retreat
            target = np.r_[eef[:2], eef[2] + 0.05]

        a = np.zeros(7)
        a[:3] = np.clip(n.gain * (target - eef) + self.rng.normal(0.0, n.action_std, 3), -1.0, 1.0)
        a[3:6] = np.clip(self._rot_err(env), -1.0, 1.0)
        a[6] = gripper
        return a

    def _rot_err(self, env) -> np.ndarray:
        R_target = _rot_z(self.yaw) @ self.R_down
        R_cur = self._eef_mat(env)
        return 1.0 * _rotvec(R_target @ R_cur.T)  # a[3:6] = err * 1.0 -> 0.5 * err rad per step

    def _yaw_err(self, env) -> float:
        return float(np.linalg.norm(self._rot_err(env)))


def run_expert_episode(env, task: str, seed: int, horizon: int = 400, hold: int = 5,
                       on_step=None, action_noise: float = 0.0) -> tuple[bool, int, dict]:
    """Run the expert on a ``SimEnv`` (reset with ``seed``) until success held ``hold`` steps or ``horizon``.

    ``action_noise``: std of extra Gaussian noise on the arm's six action dims (seeded by ``seed``; the
    noisy action is the one executed and recorded): varied, partly unsuccessful, play-like episodes.

    ``on_step(obs, state, action, reward, done)`` is called for each step (for recording); ``state`` is
    the flattened MuJoCo state before the action. Returns (success, steps, observation after the last step).
    """
    obs = env.reset(seed=seed)
    expert = ScriptedExpert(task, env.raw, np.random.default_rng([seed, 7919]))
    noise_rng = np.random.default_rng([seed, 104729])
    held = 0
    for step in range(horizon):
        a = expert.act(env.raw)
        if action_noise > 0:
            a = a.copy()
            a[:6] = np.clip(a[:6] + noise_rng.normal(0.0, action_noise, 6), -1.0, 1.0)
        state = env.get_state() if on_step is not None else None
        obs_next, reward, _, info = env.step(a)
        held = held + 1 if info["success"] else 0
        done = held >= hold
        if on_step is not None:
            on_step(obs, state, a, reward, done)
        obs = obs_next
        if done:
            return True, step + 1, obs
    return False, horizon, obs
