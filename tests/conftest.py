"""Shared fixtures: tiny real HDF5 files written by mtil.datasets.synthetic."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest
import torch

from mtil.datasets.synthetic import write_synthetic

# Test models are tiny: one thread each is fastest, and two OpenMP threads per process thrash badly when
# the 2 cores are shared (measured: 23 ms vs 850 ms per step under load). Subprocesses inherit this.
os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(1)

# Measured: when a MuJoCo EGL context already exists in the process, the first import of triton (pulled in
# lazily by torch during training) segfaults. Tests that simulate and train in one process would then
# crash depending on test order; importing it first, as `mtil train` alone always does, avoids that.
try:
    import triton.runtime  # noqa: F401
except ImportError:
    pass

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="session")
def script():
    """``script("stall_probe")``: scripts/stall_probe.py loaded as a module (registered in sys.modules under
    its name, where dataclasses look their module up)."""
    import importlib.util

    def load(name: str):
        spec = importlib.util.spec_from_file_location(name, os.path.join(REPO_ROOT, "scripts", f"{name}.py"))
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
        return mod

    return load


@pytest.fixture
def two_task_file(tmp_path):
    return write_synthetic(str(tmp_path / "two.hdf5"), demos_per_task=[3, 5], steps=(8, 14), seed=1)


@pytest.fixture
def libero_file(tmp_path):
    return write_synthetic(str(tmp_path / "libero.hdf5"), tasks=["open the drawer"], layout="libero", seed=2)


def _spawned_workers(pid: int) -> list[psutil.Process]:
    try:
        kids = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    return [k for k in kids if "spawn_main" in " ".join(k.cmdline())]


def _kill_parent_and_check_workers(argv: list[str], n_workers: int, timeout: float = 180) -> None:
    """Start ``mtil argv``; once ``n_workers`` spawned workers run, kill -9 the parent; they must be gone
    within a few seconds."""
    p = subprocess.Popen([sys.executable, "-c", "import sys; from mtil.pipeline.cli.main import main; "
                          f"sys.exit(main({argv!r}))"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + timeout
    workers: list[psutil.Process] = []
    while time.time() < deadline and p.poll() is None:
        workers = _spawned_workers(p.pid)
        if len(workers) >= n_workers:
            break
        time.sleep(0.2)
    assert len(workers) >= n_workers, f"workers never started (exit {p.poll()})"
    time.sleep(1.0)  # past their startup: they are running episodes
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    gone, alive = psutil.wait_procs(workers, timeout=10)
    for w in alive:
        w.kill()
    assert not alive, f"{len(alive)} worker(s) outlived their parent"


@pytest.fixture
def kill_parent_and_check_workers():
    return _kill_parent_and_check_workers


@pytest.fixture
def fails(capsys):
    """``fails(argv, *expect)``: `mtil argv` exits 2 with no traceback and a message holding every ``expect``;
    returns the message (stderr)."""
    from mtil.pipeline.cli.main import main

    def check(argv: list[str], *expect: str) -> str:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err
        for e in expect:
            assert e in err, err
        return err

    return check


@pytest.fixture(autouse=True)
def default_sigint():
    """Every test starts with SIGINT as a user's shell gives it to a fresh process: Python's default handler,
    not blocked. (In the full suite something earlier left the pytest process ignoring or blocking it, and
    the Ctrl-C tests, which inherit that state in their subprocesses, timed out; seen 2026-11-30.)"""
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    yield


def _bytes(size: str) -> int:
    units = {"k": 1024, "m": 1024 ** 2}
    return int(size[:-1]) * units[size[-1]] if size[-1] in units else int(size)


@pytest.fixture
def small_fs(tmp_path):
    """``small_fs("1m", leave_free="224k", read_only=False)``: a real tmpfs of that size mounted in tmp_path
    (a full disk or a read-only folder, as a user's would be), filled with a file ``filler`` until only
    ``leave_free`` bytes remain ("0": completely full); unmounted after the test. Needs root (mount): the
    test is skipped elsewhere, and CI here runs as root."""
    mounts: list[str] = []

    def make(size: str, leave_free: str | None = None, read_only: bool = False) -> str:
        where = str(tmp_path / f"fs{len(mounts)}")
        os.makedirs(where)
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", where], capture_output=True)
        if done.returncode:
            pytest.skip(f"needs a tmpfs mount (root): {done.stderr.decode().strip()}")
        mounts.append(where)
        if leave_free is not None:
            target = _bytes(leave_free)
            with open(os.path.join(where, "filler"), "wb") as f:
                try:
                    while os.statvfs(where).f_bavail * os.statvfs(where).f_frsize > target:
                        free = os.statvfs(where).f_bavail * os.statvfs(where).f_frsize
                        f.write(b"\0" * max(4096, min(1 << 20, free - target)))
                        f.flush()
                except OSError:  # the last block did not fit: full
                    pass
        if read_only:
            subprocess.run(["mount", "-o", "remount,ro", where], check=True)
        return where

    yield make
    for where in reversed(mounts):
        subprocess.run(["umount", "-l", where], capture_output=True)
