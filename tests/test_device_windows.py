"""Batches built on the training device (``--device-data``) are the CPU path's batches, and training on
them is the same training; mixed precision and the option checks."""

from __future__ import annotations

import pytest
import torch

from mtil.datasets.device_windows import DeviceWindows, device_bytes
from mtil.datasets.errors import UserError
from mtil.datasets.manifest import build_manifest
from mtil.datasets.sampler import StratifiedTaskBatchSampler
from mtil.datasets.synthetic import write_synthetic
from mtil.datasets.windowed import GoalSampling, WindowedDataset
from mtil.pipeline.checkpoint import load_checkpoint
from mtil.pipeline.training.loop import TrainConfig, train

TASKS = ["lift the red cube", "open the drawer", "push the button"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("devwin")
    return write_synthetic(str(d / "three.hdf5"), tasks=TASKS, demos_per_task=[3, 2, 2], steps=9, image_size=12,
                           seed=1)


def test_device_batches_equal_cpu_batches(data):
    manifest, _ = build_manifest([data], valid_fraction=0)
    ds = WindowedDataset(manifest, obs_horizon=3, action_horizon=4)  # windows cross demo starts and ends
    dw = DeviceWindows(ds, torch.device("cpu"))
    assert device_bytes(ds) >= ds.image_bytes > 0
    sampler = StratifiedTaskBatchSampler(ds.task_indices(), 6, seed=0)
    rows = list(sampler)
    got = list(dw.stream(iter(rows), rows_per_upload=4))  # blocks of 4 uploads, the last one partial
    assert len(got) == len(rows)
    edges = 0
    for idx, b in zip(rows, got):
        ref = ds.__getitems__(idx)
        assert b["obs"].keys() == ref["obs"].keys()
        for k in ref["obs"]:
            assert b["obs"][k].dtype == ref["obs"][k].dtype
            assert torch.equal(b["obs"][k], ref["obs"][k]), k
        for k in ("obs_pad", "actions", "action_pad", "task", "index"):
            assert torch.equal(b[k], ref[k]), k
        edges += int(ref["obs_pad"].any()) + int(ref["action_pad"].any())
    assert edges > 0  # padded windows were compared, not only interior ones


def test_stream_keeps_order_across_batch_sizes(data):
    manifest, _ = build_manifest([data], valid_fraction=0)
    ds = WindowedDataset(manifest)
    dw = DeviceWindows(ds, torch.device("cpu"))
    rows = [[0, 1, 2], [3, 4, 5], [6, 7], [8, 9], [10, 11, 12]]
    assert [b["index"].tolist() for b in dw.stream(iter(rows), rows_per_upload=8)] == rows


def test_goal_windows_stay_on_the_cpu(data):
    manifest, _ = build_manifest([data], valid_fraction=0)
    ds = WindowedDataset(manifest, goal=GoalSampling())
    with pytest.raises(ValueError, match="goal"):
        DeviceWindows(ds, torch.device("cpu"))


def _weights(path):
    return load_checkpoint(path).weights(ema=True)


def test_training_on_device_windows_is_the_same_training(tmp_path, data):
    """--device-data on (here the device is the CPU) builds the same batches in the same order: the
    trained weights are bit-identical to the CPU batch path's."""
    common = dict(data=[data], steps=8, batch_size=6, conditioning="onehot", action_horizon=4, exec_steps=2,
                  warmup_steps=2, cond_dim=8, device="cpu", skip_env_check=True)
    a = train(TrainConfig(out=str(tmp_path / "off"), device_data="off", **common))
    b = train(TrainConfig(out=str(tmp_path / "on"), device_data="on", **common))
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    fresh = train(TrainConfig(out=str(tmp_path / "other"), device_data="on", **{**common, "seed": 1}))
    assert not all(torch.equal(wa[k], _weights(fresh)[k]) for k in wa)  # the comparison can fail


def test_bf16_autocast_trains(tmp_path, data):
    out = train(TrainConfig(data=[data], out=str(tmp_path / "bf16"), steps=4, batch_size=6, conditioning="onehot",
                            action_horizon=4, exec_steps=2, warmup_steps=1, cond_dim=8, device="cpu", amp="bf16",
                            skip_env_check=True))
    w = _weights(out)
    assert all(v.dtype != torch.bfloat16 and torch.isfinite(v.float()).all() for v in w.values())


def test_option_checks(tmp_path, data):
    with pytest.raises(UserError, match="--amp"):
        TrainConfig(data=[data], out=str(tmp_path), amp="fp8")
    with pytest.raises(UserError, match="--compile"):
        TrainConfig(data=[data], out=str(tmp_path), compile="max")
    with pytest.raises(UserError, match="--device-data on: goal_image"):
        train(TrainConfig(data=[data], out=str(tmp_path / "g"), steps=2, batch_size=6, conditioning="goal_image",
                          device="cpu", device_data="on", skip_env_check=True))
    assert not (tmp_path / "g" / "last.pt").exists()
