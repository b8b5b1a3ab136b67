"""``MtilTabletop``: the robosuite environment behind every task of the suite (see sim.tasks.py).

One class, one MuJoCo model per scene: the ``scene`` kwarg picks the objects, the ``task`` kwarg (or
``set_task``) picks the success predicate, so all tasks of a scene share a model and differ only by
instruction. Subclassing robosuite's env registers it under the name ``MtilTabletop``, so
``robosuite.make("MtilTabletop", scene="cubes", task="lift_red", ...)`` works once this module is imported.

Object placement is rejection-sampled from ``self.rng`` (robosuite's per-env generator), so reseeding that
generator before ``reset()`` (see sim.envs.SimEnv.reset) makes the layout a function of the seed.
"""

from __future__ import annotations

import numpy as np

from mtil.pipeline.sim.render import FastRenderMixin, import_robosuite
from mtil.pipeline.sim.tasks import MAX_OBJECTS, OBJECT_DIM, SCENES, TASKS, THIRDVIEW, ObjectSpec, TaskSpec

import_robosuite()
from robosuite.environments.manipulation.manipulation_env import ManipulationEnv  # noqa: E402
from robosuite.models.arenas import TableArena  # noqa: E402
from robosuite.models.objects import BoxObject, CylinderObject  # noqa: E402
from robosuite.models.tasks import ManipulationTask  # noqa: E402

PLACEMENT_GAP = 0.04  # free space between objects' bounding circles at reset (room for open fingers)


# THIRDVIEW (tasks.py) is a bystander's camera at the table's far left corner, about agentview's distance from
# the objects but 45 degrees around from it: no policy trains on it; a clip from it is our analogue of a person's
# video. (Straight from the robot's left, (0.15, 0.7, 1.25), the fingers hid the lifted cube: 15/27 held-out
# clips identified.)
THIRDVIEW_POS = np.array((0.4, 0.4, 1.35))
THIRDVIEW_TARGET = np.array((0.0, 0.0, 0.82))


def look_at_quat(pos: np.ndarray, target: np.ndarray) -> np.ndarray:
    """(w, x, y, z) of a MuJoCo camera at ``pos`` looking at ``target`` with the world's z up in the image
    (a MuJoCo camera looks along its -z axis, its y axis is the image's up)."""
    fwd = (target - pos) / np.linalg.norm(target - pos)
    right = np.cross(fwd, (0.0, 0.0, 1.0))
    right /= np.linalg.norm(right)
    rot = np.stack([right, np.cross(right, fwd), -fwd], axis=1)  # columns: camera x, y, z in the world
    w = np.sqrt(max(1e-12, 1.0 + np.trace(rot))) / 2.0
    return np.array([w, (rot[2, 1] - rot[1, 2]) / (4 * w), (rot[0, 2] - rot[2, 0]) / (4 * w),
                     (rot[1, 0] - rot[0, 1]) / (4 * w)])


def _yaw_quat_wxyz(yaw: float) -> np.ndarray:
    return np.array([np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)])


def _make_object(spec: ObjectSpec):
    density = 1000 if spec.graspable else 3000  # plates heavy so a brush does not move them
    if spec.shape == "box":
        return BoxObject(name=spec.name, size=list(spec.size), rgba=list(spec.rgba), density=density)
    if spec.shape == "cylinder":
        return CylinderObject(name=spec.name, size=list(spec.size), rgba=list(spec.rgba), density=density,
                              friction=(1.0, 0.005, 0.0001))
    raise ValueError(f"unknown object shape {spec.shape!r}")


def horizontal_radius(spec: ObjectSpec) -> float:
    return float(np.hypot(spec.size[0], spec.size[1])) if spec.shape == "box" else float(spec.size[0])


def half_height(spec: ObjectSpec) -> float:
    return float(spec.size[2] if spec.shape == "box" else spec.size[1])


class MtilTabletop(FastRenderMixin, ManipulationEnv):
    """A Panda at a table with the objects of ``SCENES[scene]``; success as ``TASKS[task]`` defines.

    Args (beyond robosuite's ManipulationEnv ones, all passed through):
        scene: key of ``sim.tasks.SCENES``.
        task: key of ``sim.tasks.TASKS`` in that scene, or None (then success is always False).
    """

    def __init__(self, robots="Panda", scene: str = "cubes", task: str | None = None,
                 table_full_size=(0.8, 0.8, 0.05), table_friction=(1.0, 5e-3, 1e-4), use_object_obs=True,
                 reward_scale: float = 1.0, **kwargs):
        if scene not in SCENES:
            raise ValueError(f"unknown scene {scene!r}; known: {', '.join(SCENES)}")
        self.scene_spec = SCENES[scene]
        self.task_spec: TaskSpec | None = None
        self.table_full_size = table_full_size
        self.table_friction = table_friction
        self.table_offset = np.array((0.0, 0.0, 0.8))
        self.use_object_obs = use_object_obs
        self.reward_scale = reward_scale
        self.set_task(task)
        super().__init__(robots=robots, **kwargs)

    # ------------------------------------------------------------ task

    def set_task(self, task: str | None) -> None:
        """Switch the success predicate to another task of the same scene (no model rebuild)."""
        if task is None:
            self.task_spec = None
            return
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}")
        if TASKS[task].scene != self.scene_spec.name:
            raise ValueError(f"task {task!r} is in scene {TASKS[task].scene!r}, not {self.scene_spec.name!r}")
        self.task_spec = TASKS[task]

    # ------------------------------------------------------------ model

    def _load_model(self):
        super()._load_model()
        xpos = self.robots[0].robot_model.base_xpos_offset["table"](self.table_full_size[0])
        self.robots[0].robot_model.set_base_xpos(xpos)
        arena = TableArena(table_full_size=self.table_full_size, table_friction=self.table_friction,
                           table_offset=self.table_offset)
        arena.set_origin([0, 0, 0])
        arena.set_camera(THIRDVIEW, pos=THIRDVIEW_POS, quat=look_at_quat(THIRDVIEW_POS, THIRDVIEW_TARGET))
        self.objects = {o.name: _make_object(o) for o in self.scene_spec.objects}
        self.model = ManipulationTask(mujoco_arena=arena, mujoco_robots=[r.robot_model for r in self.robots],
                                      mujoco_objects=list(self.objects.values()))

    def _setup_references(self):
        super()._setup_references()
        self.obj_body_id = {n: self.sim.model.body_name2id(o.root_body) for n, o in self.objects.items()}

    def _sample_placement(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Rejection-sample non-overlapping (pos, quat wxyz) per object from ``self.rng``."""
        spec = self.scene_spec
        for _ in range(1000):
            placed: dict[str, tuple[np.ndarray, np.ndarray]] = {}
            ok = True
            for o in spec.objects:
                r = horizontal_radius(o)
                for _try in range(200):
                    xy = np.array([self.rng.uniform(*spec.x_range), self.rng.uniform(*spec.y_range)])
                    if all(np.linalg.norm(xy - p[:2]) >= r + horizontal_radius(spec.object(n)) + PLACEMENT_GAP
                           for n, (p, _q) in placed.items()):
                        break
                else:
                    ok = False
                    break
                yaw = self.rng.uniform(-np.pi, np.pi) if o.shape == "box" and o.graspable else 0.0
                z = self.table_offset[2] + half_height(o) + 0.001
                placed[o.name] = (np.array([xy[0] + self.table_offset[0], xy[1] + self.table_offset[1], z]),
                                  _yaw_quat_wxyz(yaw))
            if ok:
                return placed
        raise RuntimeError(f"could not place the objects of scene {spec.name!r}")

    def _reset_internal(self):
        super()._reset_internal()
        if not self.deterministic_reset:
            for name, (pos, quat) in self._sample_placement().items():
                self.sim.data.set_joint_qpos(self.objects[name].joints[0], np.concatenate([pos, quat]))

    # ------------------------------------------------------------ state queries

    def object_pos(self, name: str) -> np.ndarray:
        return np.array(self.sim.data.body_xpos[self.obj_body_id[name]])

    def object_quat_wxyz(self, name: str) -> np.ndarray:
        return np.array(self.sim.data.body_xquat[self.obj_body_id[name]])

    def object_state(self) -> np.ndarray:
        """(OBJECT_DIM,) float64: per scene object pos (3) + quat xyzw (4), zero-padded to MAX_OBJECTS."""
        out = np.zeros(OBJECT_DIM)
        for i, o in enumerate(self.scene_spec.objects[:MAX_OBJECTS]):
            q = self.object_quat_wxyz(o.name)
            out[7 * i: 7 * i + 7] = np.concatenate([self.object_pos(o.name), q[[1, 2, 3, 0]]])
        return out

    def grasping(self, name: str) -> bool:
        return bool(self._check_grasp(gripper=self.robots[0].gripper, object_geoms=self.objects[name]))

    def table_top(self) -> float:
        return float(self.table_offset[2])

    # ------------------------------------------------------------ success

    def _check_success(self) -> bool:
        t = self.task_spec
        if t is None:
            return False
        spec = self.scene_spec.object(t.obj)
        pos = self.object_pos(t.obj)
        rest_z = self.table_top() + half_height(spec)
        if t.kind == "lift":
            return bool(pos[2] > rest_z + 0.04)
        tgt_spec = self.scene_spec.object(t.target)
        tgt = self.object_pos(t.target)
        if self.grasping(t.obj):
            return False
        if t.kind == "stack":
            return bool(np.linalg.norm(pos[:2] - tgt[:2]) < 0.02
                        and abs(pos[2] - tgt[2] - half_height(spec) - half_height(tgt_spec)) < 0.01
                        and self.check_contact(self.objects[t.obj], self.objects[t.target]))
        if t.kind == "place":
            plate_top = tgt[2] + half_height(tgt_spec)
            inside = np.abs(pos[:2] - tgt[:2]) < np.asarray(tgt_spec.size[:2]) - 0.01  # plates are not rotated
            return bool(inside.all() and abs(pos[2] - half_height(spec) - plate_top) < 0.01)
        raise ValueError(f"unknown task kind {t.kind!r}")

    def reward(self, action=None) -> float:
        return float(self.reward_scale) if self._check_success() else 0.0
