"""The one worker pool (pipeline/sim/pool.py) that collection, evaluation, DAgger rollouts and the env checks
share: results, a job's worker dying, a handler raising, workers that cannot start, shutdown, and the
robosuite banner. Handlers here are builtins wrapped in functools.partial, so the spawned workers import
nothing but the pool."""

from __future__ import annotations

import functools
import math
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from mtil.pipeline.sim.pool import Died, Failed, Progress, WorkerPool


def test_results_come_back_under_their_ids():
    with WorkerPool(functools.partial, (math.sqrt,), workers=2, name="test") as pool:
        for i in range(6):
            pool.submit(f"job{i}", float(i * i))
        got = dict(pool.results())
    assert got == {f"job{i}": float(i) for i in range(6)}


def test_a_raising_handler_is_a_failed_result_and_the_worker_goes_on():
    with WorkerPool(functools.partial, (math.sqrt,), workers=1, name="test") as pool:
        pool.submit("bad", -1.0)
        pool.submit("good", 4.0)
        got = dict(pool.results())
        pid = pool.workers[0].proc.pid
    assert isinstance(got["bad"], Failed) and "math domain error" in str(got["bad"])
    assert got["good"] == 2.0
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_a_killed_worker_gives_died_for_its_job_and_is_replaced():
    killed = []

    def kill_first(job_id, pid):
        if not killed:
            killed.append(job_id)
            os.kill(pid, signal.SIGKILL)

    with WorkerPool(functools.partial, (time.sleep,), workers=1, name="test", on_dispatch=kill_first) as pool:
        pool.submit("a", 2.0)
        pool.submit("b", 0.0)
        got = dict(pool.results())
    assert killed == ["a"]
    assert isinstance(got["a"], Died) and got["a"].exitcode == -signal.SIGKILL and "worker died" in str(got["a"])
    assert got["b"] is None  # time.sleep's result: the replacement worker ran it


def test_workers_that_die_at_start_give_up_with_a_message():
    with pytest.raises(RuntimeError, match="test workers keep dying"):
        with WorkerPool(os._exit, (3,), workers=1, name="test", max_restarts=2) as pool:
            pool.submit("a", None)
            list(pool.results())


def test_a_worker_whose_setup_raises_says_why():
    with pytest.raises(RuntimeError, match="could not start: ValueError"):
        with WorkerPool(int, ("not a number",), workers=1, name="test") as pool:
            pool.submit("a", None)
            list(pool.results())


def test_an_error_in_the_parent_stops_busy_workers():
    """Whatever ends the parent's loop (here an exception once both workers are busy; Ctrl-C likewise), the
    pool's exit stops its workers within seconds, long jobs and all."""
    pids = []

    def stop_when_both_busy(job_id, pid):
        pids.append(pid)
        if len(pids) == 2:
            raise KeyboardInterrupt

    t0 = time.time()
    with pytest.raises(KeyboardInterrupt):
        with WorkerPool(functools.partial, (time.sleep,), workers=2, name="test",
                        on_dispatch=stop_when_both_busy) as pool:
            pool.submit("long", 60.0)
            pool.submit("long2", 60.0)
            list(pool.results())
    assert time.time() - t0 < 30
    assert all(not psutil.pid_exists(p) or psutil.Process(p).status() == psutil.STATUS_ZOMBIE for p in pids)


def test_progress_in_a_log_is_one_line_per_update(capsys):
    bar = Progress(10, "collect", "demo", every=0.5)
    for _ in range(10):
        bar.update(1)
    bar.close()
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("collect:")]
    assert lines[0].startswith("collect: 5/10 demo") and lines[-1].startswith("collect: 10/10 demo")
    assert len(lines) == 2 and all("\r" not in ln for ln in lines)


def test_robosuite_banner_is_silenced_but_its_warnings_are_not():
    pytest.importorskip("robosuite")
    code = ("import logging; from mtil.pipeline.sim.pool import quiet_robosuite; quiet_robosuite(); "
            "import robosuite; logging.getLogger('robosuite_logs').warning('a real warning')")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "MUJOCO_GL": "egl"})
    assert "macro" not in p.stderr and "robosuite_models" not in p.stderr and "mink" not in p.stderr, p.stderr
    assert "a real warning" in p.stderr


class _SigintWhilePickled:
    """Sends this process a SIGINT while the pool pickles it for a starting worker (inside proc.start())."""

    def __reduce__(self):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.3)
        return (float, (0.0,))


def test_ctrl_c_while_a_worker_starts_is_not_lost():
    """A Ctrl-C that lands while a worker is being started is raised in the parent (it was once ignored in that
    window and the run went on), and the workers started so far are stopped."""
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    with pytest.raises(KeyboardInterrupt):
        with WorkerPool(functools.partial, (math.pow, _SigintWhilePickled()), workers=2, name="test"):
            time.sleep(2)
    time.sleep(0.5)
    left = [p for p in psutil.Process().children(recursive=True) if p.pid not in before and p.is_running()
            and p.status() != psutil.STATUS_ZOMBIE]
    assert left == []


def test_a_started_worker_ignores_sigint_and_does_not_block_it():
    """Workers start with SIGINT blocked (inherited) and worker_setup turns that into ignored + unblocked."""
    with WorkerPool(functools.partial, (math.sqrt,), workers=1, name="test") as pool:
        pool.submit("a", 4.0)
        assert dict(pool.results()) == {"a": 2.0}
        status = open(f"/proc/{pool.workers[0].proc.pid}/status").read()
    fields = dict(line.split(":\t") for line in status.splitlines() if line.startswith(("SigBlk", "SigIgn")))
    bit = 1 << (signal.SIGINT - 1)
    assert int(fields["SigIgn"], 16) & bit and not int(fields["SigBlk"], 16) & bit
