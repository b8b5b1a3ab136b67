"""Property tests of StratifiedTaskBatchSampler (hypothesis)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mtil.datasets.errors import UserError
from mtil.datasets.sampler import StratifiedTaskBatchSampler, apportion


def make_tasks(sizes: list[int]) -> list[np.ndarray]:
    """Disjoint index ranges, task k owning sizes[k] indices (shuffled so order carries no signal)."""
    starts = np.cumsum([0] + sizes)
    return [np.arange(starts[k], starts[k + 1])[::-1].copy() for k in range(len(sizes))]


def task_of(tasks: list[np.ndarray]) -> dict[int, int]:
    return {int(i): k for k, idx in enumerate(tasks) for i in idx}


sizes_st = st.lists(st.integers(1, 40), min_size=1, max_size=6)


@settings(max_examples=60, deadline=None)
@given(sizes=sizes_st, per_task=st.integers(1, 5), seed=st.integers(0, 2**31 - 1), epochs=st.integers(1, 3))
def test_exact_counts_and_cycles(sizes, per_task, seed, epochs):
    tasks = make_tasks(sizes)
    K = len(sizes)
    s = StratifiedTaskBatchSampler(tasks, batch_size=per_task * K, seed=seed, batches_per_epoch=7)
    owner = task_of(tasks)
    for _ in range(epochs):
        drawn: dict[int, list[int]] = {k: [] for k in range(K)}
        for batch in s:
            counts = Counter(owner[i] for i in batch)
            assert all(counts[k] == per_task for k in range(K)), counts
            for i in batch:
                drawn[owner[i]].append(i)
        # without replacement within each task cycle: every full cycle is a permutation of the task
        for k in range(K):
            n = sizes[k]
            seq = drawn[k]
            for c in range(len(seq) // n):
                assert sorted(seq[c * n:(c + 1) * n]) == sorted(tasks[k].tolist())
            tail = seq[(len(seq) // n) * n:]
            assert len(set(tail)) == len(tail)


@settings(max_examples=40, deadline=None)
@given(sizes=sizes_st, batch=st.integers(1, 50), seed=st.integers(0, 1000))
def test_size_mode_and_weights_counts(sizes, batch, seed):
    tasks = make_tasks(sizes)
    owner = task_of(tasks)
    s = StratifiedTaskBatchSampler(tasks, batch_size=batch, mode="size", seed=seed, batches_per_epoch=20)
    totals = Counter()
    for b in s:
        assert len(b) == batch
        totals.update(owner[i] for i in b)
    # cumulative counts track the proportional quota within one sample per task
    expected = np.array(sizes) / sum(sizes) * batch * 20
    for k in range(len(sizes)):
        assert abs(totals[k] - expected[k]) <= 1.0 + 1e-9


@settings(max_examples=40, deadline=None)
@given(sizes=sizes_st, per_task=st.integers(1, 4), seed=st.integers(0, 10**6))
def test_same_seed_same_stream_other_seed_differs(sizes, per_task, seed):
    tasks = make_tasks(sizes)
    mk = lambda sd: StratifiedTaskBatchSampler(tasks, per_task * len(sizes), seed=sd, batches_per_epoch=5)  # noqa
    a, b = list(mk(seed)), list(mk(seed))
    assert a == b
    if sum(sizes) > 10 and max(sizes) > 3:
        assert list(mk(seed + 1)) != a


@settings(max_examples=40, deadline=None)
@given(sizes=st.lists(st.integers(4, 40), min_size=1, max_size=5), world=st.integers(2, 4),
       seed=st.integers(0, 1000))
def test_ranks_disjoint_and_stratified(sizes, world, seed):
    tasks = make_tasks(sizes)
    owner = task_of(tasks)
    K = len(sizes)
    per = 1
    streams = [list(StratifiedTaskBatchSampler(tasks, per * K, seed=seed, rank=r, world_size=world,
                                               batches_per_epoch=3)) for r in range(world)]
    for b in range(3):
        seen: list[int] = []
        for r in range(world):
            batch = streams[r][b]
            assert Counter(owner[i] for i in batch) == Counter({k: per for k in range(K)})
            seen.extend(batch)
        # tasks with at least `world` samples never hand the same sample to two ranks in one step
        assert len(seen) == len(set(seen))


@settings(max_examples=40, deadline=None)
@given(sizes=sizes_st, per_task=st.integers(1, 3), seed=st.integers(0, 1000), stop=st.integers(0, 12))
def test_resume_from_state_continues_identically(sizes, per_task, seed, stop):
    tasks = make_tasks(sizes)
    B = per_task * len(sizes)
    full = StratifiedTaskBatchSampler(tasks, B, seed=seed, batches_per_epoch=5)
    stream = [b for _ in range(3) for b in full]  # three epochs
    first = StratifiedTaskBatchSampler(tasks, B, seed=seed, batches_per_epoch=5)
    got: list[list[int]] = []
    it = iter(first)
    for _ in range(stop):
        try:
            got.append(next(it))
        except StopIteration:
            it = iter(first)
            got.append(next(it))
    state = first.state_dict()
    resumed = StratifiedTaskBatchSampler(tasks, B, seed=seed, batches_per_epoch=5)
    resumed.load_state_dict(state)
    while len(got) < 15:
        got.extend(resumed)
    assert got[:15] == stream


def test_tag_draws_unique_per_visit():
    tasks = make_tasks([3, 5])
    s = StratifiedTaskBatchSampler(tasks, 4, seed=0, tag_draws=True, dataset_len=8, batches_per_epoch=10)
    keys = [k for b in s for k in b]
    assert len(keys) == len(set(keys))  # every visit of a sample has its own key
    assert {k % 8 for k in keys} == set(range(8))


def test_bad_arguments():
    tasks = make_tasks([3, 3, 3])
    with pytest.raises(UserError, match="smaller than the number of tasks"):
        StratifiedTaskBatchSampler(tasks, 2)
    with pytest.raises(UserError, match="mode"):
        StratifiedTaskBatchSampler(tasks, 6, mode="banana")
    with pytest.raises(UserError, match="weights"):
        StratifiedTaskBatchSampler(tasks, 6, mode=[1, -1, 1])
    s = StratifiedTaskBatchSampler(tasks, 6, seed=1)
    with pytest.raises(UserError, match="seed"):
        StratifiedTaskBatchSampler(tasks, 6, seed=2).load_state_dict(s.state_dict())


def test_apportion_largest_remainder():
    counts, carry = apportion(10, np.array([0.5, 0.3, 0.2]), np.zeros(3))
    assert counts.tolist() == [5, 3, 2] and np.allclose(carry, 0)
    counts, _ = apportion(7, np.array([1 / 3] * 3), np.zeros(3), tiebreak_offset=0)
    assert sorted(counts.tolist()) == [2, 2, 3]


@pytest.mark.parametrize("alpha, want", [(0.0, [15, 15]), (0.5, [20, 10]), (1.0, [24, 6])])
def test_power_sampler_is_between_stratified_and_size(alpha, want):
    """--sampler power: p(task) ~ n_task^alpha; sizes 400 and 100 at alpha 0.5 give shares 20:10 (2:1)."""
    from types import SimpleNamespace

    from mtil.pipeline.training.data import sampler_mode

    idx = [np.arange(400), np.arange(400, 500)]
    mode = sampler_mode(SimpleNamespace(sampler="power", sampler_alpha=alpha), idx)
    s = StratifiedTaskBatchSampler(idx, 30, mode, seed=0)
    for batch in list(iter(s))[:3]:
        assert [int((np.asarray(batch) < 400).sum()), int((np.asarray(batch) >= 400).sum())] == want


def test_gripper_switch_windows_are_drawn_more_often(tmp_path, capsys):
    """--gripper-oversample F: windows within --gripper-window steps of a gripper switch come F times per cycle
    of their task, the others once; per-task counts per batch are unchanged."""
    import h5py

    from mtil.datasets.manifest import build_manifest
    from mtil.datasets.synthetic import write_synthetic
    from mtil.datasets.windowed import WindowedDataset
    from mtil.pipeline.training.data import near_gripper_switch, oversample_switches

    path = write_synthetic(str(tmp_path / "d.hdf5"), demos_per_task=2, steps=20)
    with h5py.File(path, "r+") as f:  # demo_0 closes at step 10; the others never switch
        for name in f["data"]:
            a = f[f"data/{name}/actions"]
            a[:, -1] = np.where((np.arange(20) >= 10) & (name == "demo_0"), 1.0, -1.0)
    manifest, _ = build_manifest([path], valid_fraction=0.0)
    ds = WindowedDataset(manifest, action_horizon=4)
    near = near_gripper_switch(ds, 2)
    first = [d.name for d in ds.demos].index("demo_0")
    s = int(ds.starts[first])
    assert np.flatnonzero(near).tolist() == list(range(s + 8, s + 13))
    idx = ds.task_indices()
    boosted = oversample_switches(ds, idx, 3, 2)
    assert "lie within 2 steps of a gripper switch; drawn 3x" in capsys.readouterr().err
    counts = Counter(np.concatenate(boosted).tolist())
    assert {i for i, c in counts.items() if c == 3} == set(range(s + 8, s + 13))
    assert sum(counts.values()) == len(ds) + 2 * 5
    sampler = StratifiedTaskBatchSampler(boosted, 8, seed=0)
    for batch in list(iter(sampler))[:5]:
        assert Counter(int(ds.step_task[i]) for i in batch) == {0: 4, 1: 4}


def test_stratified_run_notes_a_rare_task(tmp_path, capsys):
    """A task with at least 4x fewer training demos than the median gets a note under --sampler stratified (the study of
    docs/results.md section 22), naming it and its count; balanced data and --sampler size get none."""
    from mtil.datasets.synthetic import write_synthetic
    from mtil.pipeline.cli.main import main

    data = write_synthetic(str(tmp_path / "d.hdf5"), tasks=["lift a", "lift b", "lift c"], demos_per_task=[1, 5, 5],
                           steps=8, image_size=16)  # the file's last demo is its validation split: 1 / 5 / 4
    args = ["--steps", "1", "--batch-size", "6", "--conditioning", "onehot", "--cond-dim", "8",
            "--action-horizon", "4", "--skip-env-check"]
    for i, (extra, noted) in enumerate([([], True), (["--sampler", "size"], False),
                                        (["--demos-per-task", "1"], False)]):
        assert main(["train", "--data", data, "--out", str(tmp_path / f"r{i}"), *args, *extra]) == 0
        err = capsys.readouterr().err
        want = "1 task(s) have at least 4x fewer training demos than the median task (4): 'lift a' (1)"
        assert (want in err) is noted, err
