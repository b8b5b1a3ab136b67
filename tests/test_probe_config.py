"""Defects an outside probe found in option checks and evaluation planning:

1-2. every numeric option of `mtil train` (TrainConfig and the policy options) is range-checked, NaN and inf
   included, and --device names a device this machine has: one message naming the option and the value,
   exit 2, before any data is read;
3. the same for every numeric option of `mtil eval`;
4. `--seeds-from` files without states, with states of another size than the env's, or recorded in another
   env: one message naming the file and the problem (exit 2, before any worker);
5. a policy trained on suite demos whose instruction was edited is evaluated in its task's env with its
   own instruction;
6. goal-image and video rows for checkpoints whose tasks come from different environments.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil

import h5py
import numpy as np
import pytest
import torch

from mtil.datasets.errors import UserError
from mtil.datasets.synthetic import write_synthetic
from mtil.pipeline.cli.main import main
from mtil.pipeline.evaluation.run import EvalConfig
from mtil.pipeline.training.config import TrainConfig

EDITED = "pick up the red block"  # lift_red's demos, their instruction edited (no suite instruction or paraphrase)


def _fails(argv: list[str], capsys, *expect: str) -> str:
    """``mtil argv`` exits 2 with one message (no traceback) holding every ``expect``."""
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("error:") == 1, err
    for e in expect:
        assert e in err, err
    return err


# ----------------------------------------------------------------------------------- 1-2: mtil train
# (option, a bad value): at least one per numeric field of TrainConfig and of the policy options
BAD_TRAIN = [
    ("lr", "nan"), ("lr", "-1"), ("lr", "inf"), ("lr", "0"), ("lr", "2"),
    ("weight_decay", "nan"), ("weight_decay", "-0.1"),
    ("grad_clip", "-1"), ("grad_clip", "0"), ("grad_clip", "nan"), ("grad_clip", "inf"),
    ("ema_decay", "2"), ("ema_decay", "1"), ("ema_decay", "-0.5"), ("ema_decay", "nan"),
    ("warmup_steps", "-1"), ("num_workers", "-5"), ("num_workers", "100000"),
    ("goal_prob", "nan"), ("goal_prob", "1.5"), ("goal_prob", "inf"),
    ("sampler_alpha", "-0.1"), ("sampler_alpha", "1.5"), ("sampler_alpha", "nan"),
    ("steps", "0"), ("seed", "-1"), ("batch_size", "0"), ("save_every", "0"), ("eval_every", "-1"),
    ("rollout_every", "-1"), ("rollout_episodes", "0"), ("cond_dim", "0"), ("goal_max_offset", "-1"),
    ("ensemble_decay", "nan"), ("ensemble_decay", "-1"), ("ensemble_decay", "inf"),
    ("align_weight", "nan"), ("align_weight", "-1"), ("align_weight", "inf"),
    ("obs_horizon", "0"), ("action_horizon", "0"), ("exec_steps", "0"), ("exec_steps", "9"),
    ("feature_dim", "0"), ("hidden_dim", "-3"), ("gmm_modes", "0"), ("shift_pad", "-1"),
    ("trunk_layers", "0"), ("trunk_heads", "0"), ("trunk_dropout", "1"), ("trunk_dropout", "nan"),
    ("flow_steps", "0"), ("gripper_oversample", "0"), ("gripper_oversample", "101"), ("gripper_window", "-1"),
]


def _numeric_fields(cls) -> list[str]:
    return [f.name for f in dataclasses.fields(cls) if f.init and f.type in ("int", "float", int, float)]


def test_every_numeric_train_option_has_a_bad_value_tested():
    assert sorted(set(_numeric_fields(TrainConfig)) - {name for name, _ in BAD_TRAIN}) == []


@pytest.mark.parametrize("name, value", BAD_TRAIN, ids=[f"{n}={v}" for n, v in BAD_TRAIN])
def test_bad_numeric_train_option_is_named_before_data_is_read(name, value, tmp_path, capsys):
    opt = "--" + name.replace("_", "-")
    missing = str(tmp_path / "missing.hdf5")  # never opened: the option is checked first
    err = _fails(["train", "--data", missing, "--out", str(tmp_path / "run"), opt, value], capsys, opt)
    assert "missing.hdf5" not in err and value.lstrip("-") in err.lower()
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("name", ["steps", "warmup_steps", "num_workers", "batch_size"])
def test_int_options_refuse_non_finite_values_from_python(name, tmp_path):
    with pytest.raises(UserError, match=f"--{name.replace('_', '-')} must be an integer.*got nan"):
        TrainConfig(data=["x.hdf5"], out=str(tmp_path), **{name: math.nan})


def test_documented_edge_values_are_accepted(tmp_path):
    cfg = TrainConfig(data=["x.hdf5"], out=str(tmp_path), num_workers=-1, warmup_steps=0, ema_decay=0.0,
                      ensemble_decay=0.0, weight_decay=0.0, goal_prob=1.0, lr=1.0, shift_pad=0, exec_steps=8,
                      eval_every=0, rollout_every=0, goal_max_offset=0, align_weight=0.0, device="cpu")
    assert cfg.num_workers == -1


@pytest.mark.parametrize("device", ["tpu", "cuda:x", "gpu"])
def test_unknown_device(device, tmp_path, capsys):
    _fails(["train", "--data", str(tmp_path / "missing.hdf5"), "--out", str(tmp_path / "run"), "--device", device],
           capsys, f"--device must be auto, cpu, cuda or cuda:N, got {device!r}")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA GPU")
@pytest.mark.parametrize("device", ["cuda", "cuda:0"])
def test_cuda_device_without_a_gpu(device, tmp_path, capsys):
    err = _fails(["train", "--data", str(tmp_path / "missing.hdf5"), "--out", str(tmp_path / "run"),
                  "--device", device], capsys, f"--device {device}: no CUDA GPU is available")
    assert "missing.hdf5" not in err


def test_cuda_device_index_beyond_the_gpus(tmp_path, capsys):
    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    _fails(["train", "--data", str(tmp_path / "missing.hdf5"), "--out", str(tmp_path / "run"),
            "--device", f"cuda:{n}"], capsys, f"--device cuda:{n}")


# ------------------------------------------------------------------------------------- 3: mtil eval
BAD_EVAL = [("video_size", "0"), ("video_size", "5000"), ("max_steps", "0"), ("seed", "-1"),
            ("episodes_per_task", "0"), ("workers", "0"), ("workers", "65"), ("video_episodes", "-1"),
            ("exec_steps", "-1"), ("ensemble_decay", "nan"), ("ensemble_decay", "-2"),
            ("clips", "-1")]


def test_every_numeric_eval_option_has_a_bad_value_tested():
    assert sorted(set(_numeric_fields(EvalConfig)) - {name for name, _ in BAD_EVAL}) == []


@pytest.mark.parametrize("name, value", BAD_EVAL, ids=[f"{n}={v}" for n, v in BAD_EVAL])
def test_bad_numeric_eval_option(name, value, tmp_path, capsys):
    opt = "--" + name.replace("_", "-")
    err = _fails(["eval", str(tmp_path / "missing.pt"), "--out", str(tmp_path / "ev"), opt, value], capsys,
                 f"{opt} must be a", f"got {value}")
    assert "missing.pt" not in err and not (tmp_path / "ev").exists()


def test_eval_int_option_refuses_nan():
    with pytest.raises(UserError, match="--max-steps must be an integer.*got nan"):
        EvalConfig("x.pt", "out", max_steps=math.nan)


# ------------------------------------------------------------ 4-5: a suite policy, its instruction edited
@pytest.fixture(scope="module")
def suite_runs(tmp_path_factory):
    """One collected lift_red demo (32 px), as collected ("plain") and with its instruction edited to EDITED
    ("edited"); a policy trained 2 steps on each (plain: one-hot; edited: language, the default)."""
    pytest.importorskip("robosuite")
    d = tmp_path_factory.mktemp("suite")
    plain = str(d / "plain.hdf5")
    assert main(["collect", "--tasks", "lift_red", "--demos-per-task", "1", "--workers", "1", "--out", plain,
                 "--image-size", "32", "--no-progress"]) == 0
    edited = str(d / "edited.hdf5")
    shutil.copyfile(plain, edited)
    with h5py.File(edited, "a") as f:
        for g in f["data"].values():
            assert g.attrs["mtil_task"] == "lift_red"
            g.attrs["language_instruction"] = EDITED
    runs = {}
    for name, data, more in (("plain", plain, ["--conditioning", "onehot", "--cond-dim", "8"]), ("edited", edited, [])):
        assert main(["train", "--data", data, "--out", str(d / name), "--steps", "2", "--batch-size", "4",
                     "--action-horizon", "4", "--exec-steps", "2", "--skip-env-check", *more]) == 0
        runs[name] = {"data": data, "ckpt": str(d / name / "last.pt")}
    return runs


@pytest.fixture(scope="module")
def edited(suite_runs):
    return suite_runs["edited"]


@pytest.fixture(scope="module")
def plain(suite_runs):
    return suite_runs["plain"]


def _rows(ckpt_path: str, **kw):
    from mtil.pipeline.checkpoint import load_checkpoint
    from mtil.pipeline.evaluation.run import plan_rows

    return plan_rows(EvalConfig(ckpt_path, "unused", **kw), load_checkpoint(ckpt_path))


def test_edited_instruction_is_evaluated_in_its_tasks_env_with_its_own_instruction(edited, tmp_path):
    rows, env_args = _rows(edited["ckpt"])
    assert [(r.task, r.condition, r.instruction, r.task_input) for r in rows] == [
        ("lift_red", "train instruction", EDITED, EDITED)]
    assert env_args["env_name"] == "MtilTabletop"
    rows, _ = _rows(edited["ckpt"], instructions="heldout", tasks=["lift_red"])
    held = [r.instruction for r in rows if r.task == "lift_red"]
    assert "lift the red cube" in held and EDITED not in held  # the canonical wording is held out for it
    # the training file gone: the checkpoint's env_args (mtil_tasks) still name the task
    moved = str(tmp_path / "elsewhere.hdf5")
    shutil.move(edited["data"], moved)
    try:
        rows, _ = _rows(edited["ckpt"])
        assert [(r.task, r.instruction) for r in rows] == [("lift_red", EDITED)]
    finally:
        shutil.move(moved, edited["data"])


def test_edited_instruction_runs_end_to_end_from_the_training_states(edited, tmp_path, capsys):
    out = tmp_path / "ev"
    capsys.readouterr()
    assert main(["eval", edited["ckpt"], "--out", str(out), "--episodes-per-task", "1", "--workers", "1",
                 "--max-steps", "2", "--video-episodes", "0", "--seeds-from", edited["data"]]) == 0, \
        capsys.readouterr().err
    report = json.loads((out / "eval.json").read_text())
    assert [(r["task"], r["instruction"]) for r in report["rows"]] == [("lift_red", EDITED)]
    assert report["errors"] == 0


def test_task_names_from_the_training_files(tmp_path):
    """Two edited instructions of one suite file: elimination cannot tell them apart; the training file's
    demo attrs (mtil_task) can."""
    from mtil.encoders.conditioning import ConditioningConfig
    from mtil.pipeline.checkpoint import Checkpoint
    from mtil.pipeline.evaluation.rows import suite_task_names
    from mtil.pipeline.policy.model import PolicyConfig

    texts = ["pick up the red block", "pick up the green block"]
    data = str(tmp_path / "d.hdf5")
    with h5py.File(data, "w") as f:
        for i, (text, task) in enumerate(zip(texts, ["lift_red", "lift_green"])):
            g = f.create_group(f"data/demo_{i}")
            g.attrs.update(language_instruction=text, mtil_task=task)
    suite = {"env_name": "MtilTabletop", "type": 1, "mtil_tasks": {"lift_red": "lift the red cube",
                                                                   "lift_green": "lift the green cube"}}
    pcfg = PolicyConfig(image_keys=["agentview_image"], lowdim_keys=[], lowdim_dims=[], image_size=[16, 16],
                        action_dim=7, conditioning=ConditioningConfig(kind="onehot", out_dim=8, num_tasks=2).to_dict(),
                        tasks=texts)
    ckpt = Checkpoint(step=0, policy_config=pcfg, stats={}, tasks=texts, model={}, env_args=suite,
                      train_config={"data": [data]})
    assert suite_task_names(ckpt) == {texts[0]: "lift_red", texts[1]: "lift_green"}
    ckpt.train_config = {"data": [str(tmp_path / "gone.hdf5")]}
    assert suite_task_names(ckpt) == {}  # ambiguous without the file: not guessed


def _copy_with(src: str, dst: str, edit) -> str:
    shutil.copyfile(src, dst)
    with h5py.File(dst, "a") as f:
        edit(f)
    return dst


def _replace_states(f, size: int) -> None:
    for g in f["data"].values():
        T = g["states"].shape[0]
        del g["states"]
        g["states"] = np.zeros((T, size))


def _stock_lift_file(path: str) -> str:
    """A robomimic-layout file of robosuite's stock Lift: its env_args, no language, states."""
    write_synthetic(path, tasks=["x"], demos_per_task=2, steps=6, per_demo_language=False)
    with h5py.File(path, "a") as f:
        del f["data"].attrs["problem_info"]
        f["data"].attrs["env_args"] = json.dumps({"env_name": "Lift", "type": 1, "env_kwargs": {"robots": ["Panda"]}})
    return path


@pytest.mark.parametrize("case", ["no_states", "stock_lift", "other_task", "nan_states"])
def test_seeds_from_file_problems_are_named_before_any_episode(plain, tmp_path, capsys, case):
    data = plain["data"]
    if case == "no_states":
        f = _copy_with(data, str(tmp_path / "s.hdf5"), lambda f: [g.__delitem__("states") for g in f["data"].values()])
        expect = [f"--seeds-from {f}: demo demo_0 (task 'lift_red') has no 'states' dataset"]
    elif case == "stock_lift":
        f = _stock_lift_file(str(tmp_path / "lift.hdf5"))
        expect = [f"--seeds-from {f}: its demos were recorded in the Lift env", "runs in the MtilTabletop env"]
    elif case == "other_task":
        f = _copy_with(data, str(tmp_path / "s.hdf5"), lambda f: [g.attrs.update(mtil_task="lift_green",
                                                                                language_instruction="x")
                                                                 for g in f["data"].values()])
        expect = [f"--seeds-from {f}: task 'lift_red' has 0 demo(s) in the file", "demos of: lift_green"]
    else:
        f = _copy_with(data, str(tmp_path / "s.hdf5"), lambda f: f["data/demo_0/states"].__setitem__(0, np.nan))
        expect = [f"--seeds-from {f}: data/demo_0/states contains NaN/inf at step 0"]
    out = tmp_path / "ev"
    err = _fails(["eval", plain["ckpt"], "--out", str(out), "--episodes-per-task", "1", "--workers", "1",
                  "--max-steps", "2", "--seeds-from", f], capsys, *expect)
    assert "no language instruction" not in err and "demos with states" not in err
    assert not out.exists()


def test_seeds_from_states_of_another_size_than_the_env(plain, tmp_path, capsys):
    f = _copy_with(plain["data"], str(tmp_path / "s.hdf5"), lambda f: _replace_states(f, 5))
    out = tmp_path / "ev"
    _fails(["eval", plain["ckpt"], "--out", str(out), "--episodes-per-task", "1", "--workers", "1",
            "--max-steps", "2", "--seeds-from", f], capsys,
           f"--seeds-from {f}: the demos' states of task 'lift_red' have 5 values, but its environment "
           "(MtilTabletop) has 58")
    assert not (out / "eval.json").exists()


# ------------------------------------------------ 6: goal-image and video rows, tasks from different envs
RED, CUBE = "lift the red cube", "lift the cube"
LIFT_ARGS = {"env_name": "Lift", "type": 1, "env_kwargs": {  # 16 px cameras, as the synthetic files
    "robots": ["Panda"], "camera_names": ["agentview", "robot0_eye_in_hand"], "camera_heights": 16,
    "camera_widths": 16, "use_camera_obs": True, "use_object_obs": True, "control_freq": 20,
    "reward_shaping": False, "has_renderer": False, "has_offscreen_renderer": True}}


@pytest.fixture(scope="module")
def multi_env(tmp_path_factory):
    """A suite file (lift_red) and a stock-Lift file: goal_image and video policies trained 1 step on both."""
    pytest.importorskip("robosuite")
    from mtil.pipeline.sim.envs import suite_env_args

    d = tmp_path_factory.mktemp("multi")
    suite = write_synthetic(str(d / "suite.hdf5"), tasks=[RED], demos_per_task=3, steps=10)
    lift = write_synthetic(str(d / "lift.hdf5"), tasks=[CUBE], demos_per_task=3, steps=10, seed=1)
    for path, args in ((suite, suite_env_args(16, tasks=["lift_red"])), (lift, LIFT_ARGS)):
        with h5py.File(path, "a") as f:
            f["data"].attrs["env_args"] = json.dumps(args)
    demos = write_synthetic(str(d / "shown.hdf5"), tasks=[RED, CUBE], demos_per_task=1, steps=12, seed=2)
    runs = {}
    for kind in ("goal_image", "video"):
        run = d / kind
        assert main(["train", "--data", suite, lift, "--out", str(run), "--steps", "1", "--batch-size", "4",
                     "--conditioning", kind, "--cond-dim", "8", "--action-horizon", "4", "--exec-steps", "2",
                     "--skip-env-check"]) == 0
        runs[kind] = str(run / "last.pt")
    return {"runs": runs, "demos": demos}


@pytest.mark.parametrize("kind, condition", [("goal_image", "goal_image"), ("video", "video")])
def test_demo_rows_in_each_tasks_own_env(multi_env, kind, condition):
    rows, _ = _rows(multi_env["runs"][kind], condition=condition, goal_source="demos", demos=multi_env["demos"])
    by_task = {r.task: r for r in rows}
    assert sorted(by_task) == ["Lift", "lift_red"]
    assert by_task["lift_red"].env_args["env_name"] == "MtilTabletop"
    assert by_task["Lift"].env_args["env_name"] == "Lift"
    assert by_task["lift_red"].instruction == RED and by_task["Lift"].instruction == CUBE
    if kind == "goal_image":
        assert all(r.condition == "goal image" and r.task_input.shape == (16, 16, 3) for r in rows)
    else:
        assert all(r.condition == "video" and r.task_input["video"].shape == (8, 16, 16, 3) for r in rows)


def test_expert_goals_for_suite_tasks_and_a_clear_error_for_stock_ones(multi_env, capsys):
    ckpt = multi_env["runs"]["goal_image"]
    rows, _ = _rows(ckpt, tasks=["lift_red"])  # goal_image checkpoint: expert goals by default
    assert [(r.task, r.condition, r.task_input, r.env_args["env_name"]) for r in rows] == [
        ("lift_red", "goal image", {"expert_goal": True}, "MtilTabletop")]
    with pytest.raises(UserError, match="--goal-source expert: task 'Lift' runs in robosuite's Lift env, which has "
                                        "no scripted expert; give goal frames with --goal-source demos"):
        _rows(ckpt)
    with pytest.raises(UserError, match="--tasks: .* has no task 'stack_red_on_green'"):
        _rows(ckpt, tasks=["stack_red_on_green"])


def test_goal_image_policy_runs_each_task_in_its_own_env(multi_env, tmp_path, capsys):
    out = tmp_path / "ev"
    capsys.readouterr()
    assert main(["eval", multi_env["runs"]["goal_image"], "--out", str(out), "--goal-source", "demos", "--demos",
                 multi_env["demos"], "--episodes-per-task", "1", "--workers", "1", "--max-steps", "2",
                 "--video-episodes", "0"]) == 0, capsys.readouterr().err
    report = json.loads((out / "eval.json").read_text())
    assert sorted((r["task"], r["condition"]) for r in report["rows"]) == [("Lift", "goal image"),
                                                                           ("lift_red", "goal image")]
    assert report["errors"] == 0 and report["complete"] is True
