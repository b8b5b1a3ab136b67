"""The windowed dataset: windows and padding against raw HDF5 reads, identical samples in every image
storage mode, LIBERO images upright, hindsight goals, and a multi-worker DataLoader."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mtil.datasets.errors import UserError
from mtil.datasets.manifest import build_manifest
from mtil.datasets.sampler import StratifiedTaskBatchSampler
from mtil.datasets.synthetic import write_synthetic
from mtil.datasets.windowed import GoalSampling, WindowedDataset, make_loader


def raw_demo(manifest, demo):
    with h5py.File(manifest.files[demo.file].path) as f:
        g = f["data"][demo.name]
        return g["actions"][()], g["obs/agentview_image"][()], g["obs/robot0_eef_pos"][()]


def test_windows_and_padding_match_raw(two_task_file):
    m, _ = build_manifest([two_task_file], valid_fraction=0.0)
    ds = WindowedDataset(m, obs_horizon=3, action_horizon=5)
    assert len(ds) == sum(d.length for d in m.demos)
    for i, demo in enumerate(ds.demos):
        acts, imgs, eef = raw_demo(m, demo)
        T = len(acts)
        for t in (0, 1, T // 2, T - 2, T - 1):
            s = ds[int(ds.starts[i]) + t]
            ot = [max(0, t - 2 + j) for j in range(3)]
            at = [min(T - 1, t + j) for j in range(5)]
            assert torch.equal(s["obs"]["agentview_image"], torch.from_numpy(imgs[ot]))
            assert s["obs"]["agentview_image"].dtype == torch.uint8
            np.testing.assert_allclose(s["obs"]["robot0_eef_pos"].numpy(), eef[ot])
            np.testing.assert_allclose(s["actions"].numpy(), acts[at].astype(np.float32))
            assert s["obs_pad"].tolist() == [t - 2 + j < 0 for j in range(3)]
            assert s["action_pad"].tolist() == [t + j > T - 1 for j in range(5)]
            assert int(s["task"]) == demo.task


def test_all_image_modes_identical(tmp_path):
    plain = write_synthetic(str(tmp_path / "p.hdf5"), seed=4)
    gz = write_synthetic(str(tmp_path / "g.hdf5"), seed=4, compression="gzip")
    mp, _ = build_manifest([plain], valid_fraction=0)
    mg, _ = build_manifest([gz], valid_fraction=0)
    dsets = {"mmap": WindowedDataset(mp, obs_horizon=2, image_mode="mmap"),
             "auto-plain": WindowedDataset(mp, obs_horizon=2),
             "ram": WindowedDataset(mg, obs_horizon=2, image_mode="ram"),
             "h5py": WindowedDataset(mg, obs_horizon=2, image_mode="h5py"),
             "auto-gz-small-budget": WindowedDataset(mg, obs_horizon=2, ram_budget=10)}
    assert dsets["auto-plain"].image_mode == "mmap"
    assert dsets["auto-gz-small-budget"].image_mode == "h5py"
    assert "memory-mapped" in dsets["mmap"].describe() and "RAM" in dsets["ram"].describe()
    ref = dsets["mmap"]
    keys = [0, 5, 17, len(ref) - 1]
    for name, ds in dsets.items():  # batched fetch == single fetches, in every mode
        batch = ds.__getitems__(keys)
        for j, k in enumerate(keys):
            assert torch.equal(batch["obs"]["agentview_image"][j], ref[k]["obs"]["agentview_image"]), name
            assert torch.equal(batch["actions"][j], ref[k]["actions"]), name
    for i in range(0, len(ref), 7):
        for name, ds in dsets.items():
            assert torch.equal(ds[i]["obs"]["agentview_image"], ref[i]["obs"]["agentview_image"]), name
    with pytest.raises(UserError, match="mmap"):
        WindowedDataset(mg, image_mode="mmap")


def test_libero_images_upright(libero_file, tmp_path):
    m, _ = build_manifest([libero_file], valid_fraction=0)
    ds = WindowedDataset(m)
    img = ds[0]["obs"]["agentview_image"][0]
    ram = WindowedDataset(m, image_mode="ram")
    assert torch.equal(ram.__getitems__([0, 5])["obs"]["agentview_image"][0, 0], img)
    # write_synthetic darkens the bottom two rows before LIBERO's upside-down storage
    assert int(img[-2:].max()) == 0 and int(img[:2].max()) > 0
    with h5py.File(libero_file) as f:
        assert int(f["data/demo_0/obs/agentview_rgb"][0, :2].max()) == 0  # stored flipped


@settings(max_examples=25, deadline=None)
@given(max_offset=st.one_of(st.none(), st.integers(1, 6)), seed=st.integers(0, 100), draw=st.integers(0, 5))
def test_goals_from_same_demo_future(tmp_path_factory, max_offset, seed, draw):
    path = str(tmp_path_factory.mktemp("g") / "g.hdf5")
    write_synthetic(path, demos_per_task=[2, 2], steps=(7, 12), seed=seed)
    m, _ = build_manifest([path], valid_fraction=0)
    ds = WindowedDataset(m, goal=GoalSampling(max_offset=max_offset, seed=seed))
    for idx in range(len(ds)):
        i = int(np.searchsorted(ds.starts, idx, side="right") - 1)
        t, T = idx - int(ds.starts[i]), int(ds.lengths[i])
        g = ds.goal_step(idx, draw)
        if t == T - 1:
            assert g == T - 1
        else:
            assert t < g <= T - 1
            if max_offset is not None:
                assert g - t <= max_offset
        assert g == ds.goal_step(idx, draw)  # deterministic
    s = ds[3 + len(ds) * draw]
    acts, imgs, _ = raw_demo(m, ds.demos[0])
    assert torch.equal(s["goal"]["agentview_image"], torch.from_numpy(imgs[int(s["goal_step"])]))


def test_goal_draws_vary_and_final_option(two_task_file):
    m, _ = build_manifest([two_task_file], valid_fraction=0)
    ds = WindowedDataset(m, goal=GoalSampling(seed=0))
    assert len({ds.goal_step(0, d) for d in range(30)}) > 3  # fresh goal per visit
    final = WindowedDataset(m, goal=GoalSampling(final=True))
    assert all(final.goal_step(i) == int(final.lengths[0]) - 1 for i in range(int(final.lengths[0])))
    with pytest.raises(UserError, match="max offset"):
        WindowedDataset(m, goal=GoalSampling(max_offset=1000))


def test_dataloader_two_workers_stratified(tmp_path):
    path = write_synthetic(str(tmp_path / "w.hdf5"), demos_per_task=[1, 6], steps=10, compression="gzip")
    m, _ = build_manifest([path], valid_fraction=0)
    ds = WindowedDataset(m, obs_horizon=2, action_horizon=4, image_mode="h5py")
    sampler = StratifiedTaskBatchSampler(ds.task_indices(), 8, seed=3)
    loader = make_loader(ds, sampler, num_workers=2)
    batches = list(loader)
    assert len(batches) == len(sampler) == 70 // 8
    for b, idx in zip(batches, StratifiedTaskBatchSampler(ds.task_indices(), 8, seed=3)):
        assert b["obs"]["agentview_image"].shape == (8, 2, 16, 16, 3)
        assert b["obs"]["agentview_image"].dtype == torch.uint8
        assert b["task"].tolist().count(0) == 4 and b["task"].tolist().count(1) == 4
        assert b["index"].tolist() == idx
