"""Simulator tests: deterministic resets, expert success, gymnasium API, collected file layout, replay.

Kept cheap: experts run without cameras, images are 32 px, collection is 1 demo for 2 tasks on 1 worker.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("robosuite")

from mtil.datasets.schema import inspect_file  # noqa: E402
from mtil.pipeline.sim.tasks import TASKS, training_tasks  # noqa: E402


@pytest.fixture(scope="module")
def envs():
    from mtil.pipeline.sim.envs import make_env, suite_env_args

    args = suite_env_args(image_size=32)
    made = {"cubes": make_env(args, task="lift_red", use_camera_obs=False),
            "plates": make_env(args, task="place_block_on_orange", use_camera_obs=False)}
    yield made
    for e in made.values():
        e.close()


def _use(envs, task):
    env = envs[TASKS[task].scene]
    env.raw.set_task(task)
    env.task = task
    return env


@pytest.mark.parametrize("scene_task", ["lift_red", "place_block_on_orange"])
def test_reset_is_deterministic_per_seed(envs, scene_task):
    env = _use(envs, scene_task)
    a = env.reset(seed=11)
    s_a = env.get_state()
    env.step(np.r_[np.full(3, 0.5), np.zeros(3), 1.0])  # disturb the sim in between
    b = env.reset(seed=12)
    c = env.reset(seed=11)
    np.testing.assert_array_equal(a["object"], c["object"])
    np.testing.assert_array_equal(s_a, env.get_state())
    assert not np.allclose(a["object"], b["object"])
    assert a["object"].shape == (28,) and a["robot0_eef_pos"].shape == (3,)


@pytest.mark.parametrize("task", list(TASKS))
def test_expert_succeeds(envs, task):
    from mtil.pipeline.sim.collect import episode_seed
    from mtil.pipeline.sim.experts import run_expert_episode

    env = _use(envs, task)
    ok, steps, _ = run_expert_episode(env, task, seed=episode_seed(0, task, 0))
    assert ok, f"{task} expert failed"
    assert not env.is_success() or TASKS[task].kind != "lift" or steps < 200


@pytest.mark.filterwarnings("ignore:.*(infinity|too high|too low)")
def test_gymnasium_check_env():
    from gymnasium.utils.env_checker import check_env

    from mtil.pipeline.sim.gym import SimGymEnv

    env = SimGymEnv(task="stack_red_on_green", image_size=32)
    check_env(env, skip_render_check=True)
    obs, info = env.reset(seed=3)
    assert info["instruction"] == "stack the red cube on the green cube"
    assert obs["agentview_image"].shape == (32, 32, 3) and obs["agentview_image"].dtype == np.uint8
    env.close()


@pytest.fixture(scope="module")
def collected(tmp_path_factory):
    from mtil.pipeline.sim.collect import CollectConfig, collect

    out = str(tmp_path_factory.mktemp("collect") / "demos.hdf5")
    summary = collect(CollectConfig(tasks="lift_red,place_block_on_orange", demos_per_task=1, out=out,
                                    workers=1, image_size=32, next_obs=True, progress=False))
    return out, summary


def test_collected_file_layout(collected):
    import h5py

    out, summary = collected
    assert summary["demos"] == 2
    info = inspect_file(out)
    assert info.problems == []
    assert [d.instruction for d in info.demos] == ["lift the red cube", "put the yellow block on the orange plate"]
    assert info.obs["agentview_image"].shape == (32, 32, 3) and not info.obs["agentview_image"].compressed
    with h5py.File(out, "r") as f:
        env_args = json.loads(f["data"].attrs["env_args"])
        assert env_args["image_convention"] == "opencv" and env_args["render"]["quality"] == "fast"
        g = f["data/demo_0"]
        T = g.attrs["num_samples"]
        assert g["actions"].shape == (T, 7) and g["states"].shape[0] == T and g["next_obs/object"].shape == (T, 28)
        assert g.attrs["mtil_task"] == "lift_red" and "model_file" in g.attrs
        assert g["obs/agentview_image"].id.get_offset() is not None  # contiguous: memory-mappable
        np.testing.assert_array_equal(g["next_obs/object"][:-1], g["obs/object"][1:])
        # upright: the eye-in-hand camera sees its fingers (dark) at the bottom, the table (bright) on top;
        # the agentview camera sees the table (bright) at the bottom
        hand = g["obs/robot0_eye_in_hand_image"][0].mean(axis=(1, 2))
        assert hand[-4:].mean() < hand[:4].mean() - 30
        agent = g["obs/agentview_image"][0].mean(axis=(1, 2))
        assert agent[-6:].mean() > agent[:6].mean() + 30
        assert list(f["mask/train"][()]) == [b"demo_0", b"demo_1"]


def test_replay_reproduces_success(collected, tmp_path):
    from mtil.pipeline.sim.replay import ReplayConfig, replay

    out, _ = collected
    video = str(tmp_path / "demo.mp4")
    r = replay(ReplayConfig(out, demo="demo_1", out=video, size=64))
    assert r["success"] and r["max_state_error"] < 1e-6
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(video)
    meta = next(reader)
    frames = [np.frombuffer(b, np.uint8).reshape(64, 64, 3) for b in reader]
    assert meta["size"] == (64, 64) and len(frames) == r["steps"] + 1
    assert frames[-1].std() > 10  # a picture, not a blank frame


def test_training_tasks_in_two_scenes():
    assert {TASKS[t].scene for t in training_tasks()} == {"cubes", "plates"}


def test_stock_robosuite_env_from_robomimic_env_args():
    from mtil.pipeline.sim.envs import make_env

    old_style_controller = {"type": "OSC_POSE", "input_max": 1, "input_min": -1, "kp": 150, "damping": 1,
                            "output_max": [0.05, 0.05, 0.05, 0.5, 0.5, 0.5],
                            "output_min": [-0.05, -0.05, -0.05, -0.5, -0.5, -0.5], "control_delta": True,
                            "impedance_mode": "fixed", "uncouple_pos_ori": True, "interpolation": None}
    env_args = {"env_name": "Lift", "type": 1, "env_kwargs": {
        "robots": ["Panda"], "controller_configs": old_style_controller, "control_freq": 20,
        "use_object_obs": True, "has_renderer": False, "render_gpu_device_id": 0,
        "camera_names": ["agentview", "robot0_eye_in_hand"], "camera_heights": 32, "camera_widths": 32}}
    env = make_env(json.dumps(env_args), use_camera_obs=False)
    a, b = env.reset(seed=5), env.reset(seed=5)
    np.testing.assert_array_equal(a["object"], b["object"])
    obs, reward, done, info = env.step(np.zeros(7))
    assert obs["object"].shape == (10,) and not done and env.render_frame(size=32).shape == (32, 32, 3)
    env.close()


def _cube_pixels(img: np.ndarray) -> int:
    """Pixels of a saturated red, green or blue (the lift cubes) in an RGB image."""
    r, g, b = (img[..., i].astype(int) for i in range(3))
    return int(((r > 120) & (g < 60) & (b < 60)).sum() + ((g > 100) & (r < 60) & (b < 60)).sum()
               + ((b > 100) & (r < 60) & (g < 60)).sum())


def test_thirdview_shows_the_cubes_from_a_new_angle():
    """Our bystander camera: the cubes cover several times the pixels they do in frontview (where a cube is a
    pixel or two at 64 px, too small to tell which was lifted), and its image is not agentview's."""
    from mtil.pipeline.sim.envs import SimEnv, suite_env_args

    env = SimEnv(suite_env_args(image_size=64, cameras=("agentview", "frontview", "thirdview")), task="lift_red")
    try:
        third = front = 0
        for seed in range(3):
            obs = env.reset(seed=seed)
            third += _cube_pixels(obs["thirdview_image"])
            front += _cube_pixels(obs["frontview_image"])
            assert np.abs(obs["thirdview_image"].astype(int) - obs["agentview_image"]).mean() > 20
    finally:
        env.close()
    assert third >= 3 * front and third >= 60, (third, front)
