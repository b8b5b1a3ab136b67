"""Recovery tools: reactive experts, stage diagnosis, DART labels, evaluation from the demos' initial states."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("robosuite")

from mtil.pipeline.sim.envs import make_env, suite_env_args  # noqa: E402
from mtil.pipeline.sim.experts import ScriptedExpert  # noqa: E402
from mtil.pipeline.sim.stages import StageTracker, stage_of, stages_for  # noqa: E402


@pytest.fixture(scope="module")
def envs():
    """get(task) -> the scene's env (one per scene, no cameras), switched to ``task``."""
    from mtil.pipeline.sim.tasks import TASKS

    made = {}

    def get(task):
        scene = TASKS[task].scene
        if scene not in made:
            made[scene] = make_env(suite_env_args(), task=task, use_camera_obs=False)
        env = made[scene]
        env.raw.set_task(task)
        env.task = task
        return env

    yield get
    for env in made.values():
        env.close()


def _teleport(env, name, pos):
    raw = env.raw
    raw.sim.data.set_joint_qpos(raw.objects[name].joints[0], np.r_[pos, 1.0, 0.0, 0.0, 0.0])
    raw.sim.data.set_joint_qvel(raw.objects[name].joints[0], np.zeros(6))
    raw.sim.forward()


def _stage(env) -> str:
    return stages_for(env.raw)[stage_of(env.raw)]


def _eef(env):
    return ScriptedExpert.eef_pos(env.raw)


def test_stages_on_hand_made_states(envs):
    env = envs("stack_red_on_green")
    env.reset(seed=5)
    top = env.raw.table_top() + 0.02
    _teleport(env, "green_cube", [0.1, 0.1, top])
    _teleport(env, "red_cube", [-0.1, -0.15, top])  # far from the gripper
    assert _stage(env) == "start"
    eef = _eef(env)
    _teleport(env, "red_cube", [eef[0], eef[1], eef[2] + 0.005])  # between the open fingers
    assert _stage(env) == "reached"
    _teleport(env, "red_cube", [0.1, 0.1, top + 0.09])  # over the green cube, in the air
    assert _stage(env) == "above target"
    _teleport(env, "red_cube", [0.1, 0.1, top + 0.04])  # resting on it
    for _ in range(5):
        env.step(np.zeros(7))
    assert _stage(env) == "success"


def test_stage_tracker_follows_an_expert_episode_and_detects_a_stall(envs):
    env = envs("lift_red")
    env.reset(seed=3)
    tracker = StageTracker(env.raw)
    expert = ScriptedExpert("lift_red", env.raw, np.random.default_rng(0))
    seen = []
    for _ in range(200):
        _, _, done, _ = env.step(expert.act(env.raw))
        tracker.step(env.raw)
        seen.append(tracker.furthest)
        if done:
            break
    assert done and seen == sorted(seen) and set(seen) >= {0, 1, 2, 3}  # start, reached, grasped, success
    assert tracker.summary(True) == {"stage": "success", "stalled": False}
    # the arm parked with the gripper open: a failed episode that ends stalled at "start"
    env.reset(seed=4)
    tracker = StageTracker(env.raw)
    for _ in range(40):
        env.step(np.r_[np.zeros(6), -1.0])
        tracker.step(env.raw)
    assert tracker.summary(False) == {"stage": "start", "stalled": True}


@pytest.mark.parametrize("task", ["lift_green", "stack_green_on_blue", "place_can_on_orange"])
def test_expert_recovers_from_displaced_starts_and_drops(envs, task):
    env = envs(task)
    for i in range(3):
        rng = np.random.default_rng(i)
        env.reset(seed=200 + i)
        push = np.r_[rng.uniform(-1, 1, 3), np.zeros(3), rng.choice([-1.0, 1.0])]
        for _ in range(20):  # the arm somewhere else, the gripper maybe closed: never an expert start
            env.step(push)
        expert = ScriptedExpert(task, env.raw, rng)
        held, dropped, decisions = 0, False, set()
        for _ in range(400):
            a = expert.act(env.raw)
            decisions.add(expert.decision)
            if not dropped and expert.decision in ("lift", "carry") and env.raw.object_pos(expert.task.obj)[2] > \
                    env.raw.table_top() + 0.05:
                a[6], dropped = -1.0, True  # let go once in mid-air: the expert must pick it up again
            _, _, _, info = env.step(a)
            held = held + 1 if info["success"] else 0
            if held >= 5:
                break
        assert held >= 5, f"{task} start {i}: no success; decisions {sorted(decisions)}"
        assert dropped


def test_expert_closes_as_soon_as_it_is_low_enough(envs):
    """The close label covers the band just above the grasp point: no creeping in with the gripper open."""
    env = envs("lift_blue")
    env.reset(seed=11)
    expert = ScriptedExpert("lift_blue", env.raw, np.random.default_rng(1))
    for _ in range(150):
        a = expert.act(env.raw)
        if expert.decision == "close":
            break
        env.step(a)
    dz = _eef(env)[2] - expert.grasp_point(env.raw)[2]
    assert expert.decision == "close" and a[6] == 1.0 and 0.0 < dz < 0.012 + 0.006  # one step of descent
    # the same eef height over the cube with the fingers open is labelled "close" every time
    assert expert.act(env.raw)[6] == 1.0


def test_two_envs_in_one_process_render_their_own_observations():
    """robosuite renders with whatever GL context is current: after a second env rendered a video frame,
    the first one's observations came out wrong (255 levels off) until SimEnv made its context current."""
    args = suite_env_args(image_size=32)
    a = make_env(args, task="lift_red")
    first = a.reset(seed=7)
    b = make_env(args, task="lift_blue")
    b.reset(seed=3)
    b.render_frame("agentview", 96)  # a video frame: resizes b's offscreen buffer
    again = a.reset(seed=7)
    a.render_frame("agentview", 96)
    b_obs = b.reset(seed=3)
    fresh = make_env(args, task="lift_blue")
    b_fresh = fresh.reset(seed=3)
    for k in first:
        if k.endswith("_image"):
            np.testing.assert_array_equal(first[k], again[k], err_msg=k)
            np.testing.assert_array_equal(b_obs[k], b_fresh[k], err_msg=k)
    for env in (a, b, fresh):
        env.close()


@pytest.mark.parametrize("task, obj, target", [("stack_red_on_green", "red_cube", "green_cube"),
                                                ("place_block_on_black", "yellow_block", "black_plate")])
def test_expert_lowers_while_centring_and_releases_only_low_and_centred(envs, task, obj, target):
    """The transport funnel: lowering starts up to 2 cm off the drop point (plates: 3 cm; the old rule
    waited for 8 mm, a precision a camera policy could not see, and stalled above the target); letting go
    only once low and within 12 mm (plates: 2.5 cm); the lowering command stays >= 0.1 down until the
    release (it aims 1 cm past the release height: the old aim crept down at ~0.04 over the deciding
    millimetres, where policies hovered); the task still succeeds."""
    from mtil.pipeline.sim import experts as E

    funnel, release_xy = ((E.PLATE_FUNNEL_XY, E.PLATE_RELEASE_XY) if task.startswith("place")
                          else (E.FUNNEL_XY, E.RELEASE_XY))
    env = envs(task)
    far_lower, releases, lower_z = 0, [], []
    for seed in (3, 4):
        env.reset(seed=seed)
        expert = ScriptedExpert(task, env.raw, np.random.default_rng(seed))
        held = 0
        for _ in range(400):
            raw = env.raw
            a = expert.act(raw)
            eef, o, tgt = _eef(env), raw.object_pos(obj), raw.object_pos(target)
            d = np.linalg.norm(tgt[:2] + expert.style.place_offset + (eef - o)[:2] - eef[:2])
            if expert.decision == "lower":
                assert d <= funnel + 1e-9 and a[6] == 1.0
                far_lower += d > 0.008
                lower_z.append(a[2])
            if expert.decision == "release":
                releases.append((d, o[2] - expert.release_z(raw)))
            _, _, _, info = env.step(a)
            held = held + 1 if info["success"] else 0
            if held >= 5:
                break
        assert held >= 5, f"seed {seed}: the {task} did not succeed"
    assert far_lower > 0  # lowered while still more than 8 mm off: impossible under the old rule
    assert releases and all(d <= release_xy + 1e-9 and dz <= 0.004 + 1e-9 for d, dz in releases)
    assert lower_z and max(lower_z) <= -0.1, f"lowering crept: {max(lower_z):.3f}"


def test_expert_descends_while_centring_on_the_grasp(envs):
    """The grasp funnel: within 2 cm of the grasp point the expert descends while it centres, from the
    approach height on (the old rule centred to 1 cm at the approach height first); the lift succeeds."""
    from mtil.pipeline.sim.experts import FUNNEL_XY

    env = envs("lift_green")
    early = 0
    for seed in (5, 6, 7):
        env.reset(seed=seed)
        expert = ScriptedExpert("lift_green", env.raw, np.random.default_rng(seed))
        held = 0
        for _ in range(300):
            a = expert.act(env.raw)
            g = expert.grasp_point(env.raw)
            d_xy, dz = np.linalg.norm(g[:2] - _eef(env)[:2]), _eef(env)[2] - g[2]
            if expert.decision == "descend":
                assert d_xy < FUNNEL_XY and a[6] == -1.0
                early += d_xy > 0.01 and dz > expert.style.approach_height + 0.01
            _, _, _, info = env.step(a)
            held = held + 1 if info["success"] else 0
            if held >= 5:
                break
        assert held >= 5, f"seed {seed}: no lift"
    assert early > 0  # descending high and > 1 cm off: the old rule never did


def test_expert_grasps_a_box_turned_against_the_fingers_without_turning(envs):
    """Issue 23: the expert used to turn the fingers to the box's faces in an episode's first steps and
    closed only within 0.1 rad of them; policies arrived 30 degrees off and waited. Now it never turns
    about z and closes at whatever yaw: a box 35 degrees off the fingers is lifted, with no yaw command."""
    env = envs("lift_red")
    env.reset(seed=21)
    expert = ScriptedExpert("lift_red", env.raw, np.random.default_rng(2))
    eef, yaw = _eef(env), expert.eef_yaw(env.raw) + 0.61  # 35 degrees: the worst of 0-45 seen in the probe
    raw = env.raw
    pose = np.r_[eef[0], eef[1], raw.table_top() + 0.02, np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)]
    raw.sim.data.set_joint_qpos(raw.objects["red_cube"].joints[0], pose)
    raw.sim.forward()
    decisions, held = [], 0
    for _ in range(150):
        a = expert.act(env.raw)
        decisions.append(expert.decision)
        assert abs(a[5]) < 0.05, f"yaw command {a[5]:.3f} at {expert.decision}"
        _, _, _, info = env.step(a)
        held = held + 1 if info["success"] else 0
        if held >= 5:
            break
    assert held >= 5 and "close" in decisions, decisions[-10:]
