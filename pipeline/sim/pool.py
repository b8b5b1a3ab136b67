"""One pool of worker processes: the only place mtil starts processes (collection, evaluation, DAgger
rollouts and the environment checks all run their simulators through it).

    pool = WorkerPool(make_handler, (env_args, ...), workers=2, name="eval")
    with pool:
        for job_id, job in jobs:
            pool.submit(job_id, job)
        for job_id, result in pool.results():   # a job whose worker died yields Died(...)
            ...

- ``make_handler(*args)`` runs once in each worker (build simulators, load a policy) and returns
  ``handle(job) -> result``; results are pickled back. An exception in ``handle`` comes back as
  ``Failed(message)``; the worker goes on with its next job.
- Each worker has its own duplex pipe: a worker killed mid-send blocks nobody else (a shared
  ``multiprocessing.Queue`` has one write lock, which a killed writer can hold forever). A worker gets a job
  only once it has said it is ready, and one job at a time, so the parent always knows which job a dead
  worker held: that job comes back as ``Died``; the caller decides whether to retry it.
- Deaths are bounded: a worker that dies is replaced, but ``max_restarts`` deaths in a row without a single
  result in between raise ``RuntimeError`` (a worker that cannot start: say why instead of looping).
- Workers ignore Ctrl-C (the parent handles it; ``close()`` stops them) and get SIGKILL when the parent
  dies (Linux ``PR_SET_PDEATHSIG``), so ``kill -9`` of a command leaves no worker running. robosuite's
  import-time warning banner is silenced in every worker (its real warnings and errors still show).
- Processes are spawned (never forked), so no MuJoCo/EGL context or torch thread pool is inherited.
"""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import wait

PR_SET_PDEATHSIG = 1


@dataclass
class Died:
    """The result of a job whose worker process died while it held the job."""

    exitcode: int | None
    pid: int

    def __str__(self) -> str:
        return f"worker died (exit code {self.exitcode})"


@dataclass
class Failed:
    """The result of a job whose handler raised (the worker lives on)."""

    message: str

    def __str__(self) -> str:
        return self.message


BANNER = ("private macro file", "setup_macros.py", "robosuite_models", "mink-based whole-body IK",
          "but the robot does not have this component")
"""robosuite's banner lines: at import, and per env its default controller config naming parts (base, legs,
torso, head) a Panda lacks. By what each says, not by level: its real warnings stay."""


def quiet_robosuite() -> None:
    """Silence robosuite's import-time banner (no private macro file, robosuite_models, mink IK: five WARNING
    lines per process) and its INFO lines (one per env built); its other warnings and errors still show.
    Call before robosuite is imported."""
    import logging

    logger = logging.getLogger("robosuite_logs")
    if not any(getattr(f, "mtil_banner", False) for f in logger.filters):
        def drop_banner(record: logging.LogRecord) -> bool:
            return record.levelno >= logging.WARNING and not any(b in str(record.msg) for b in BANNER)

        drop_banner.mtil_banner = True
        logger.addFilter(drop_banner)


def worker_setup() -> None:
    """First call in every worker: ignore SIGINT (it arrives blocked, ``WorkerPool._start``: a Ctrl-C during
    the imports waits, then is dropped here), get SIGKILL when the parent dies, quiet robosuite."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    os.environ.setdefault("MUJOCO_GL", "egl")
    quiet_robosuite()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the closed pipe still ends us at the next recv
        return
    parent = mp.parent_process()
    if parent is not None and os.getppid() != parent.pid:  # the parent died before prctl took effect
        os._exit(1)


def _serve(make_handler: Callable, args: tuple, conn) -> None:
    """Worker process: set up, build the handler, then answer jobs until ``None`` or the pipe closes."""
    worker_setup()
    try:
        handle = make_handler(*args)
    except Exception as e:  # noqa: BLE001 - the parent reports why the worker could not start
        conn.send(("init_error", None, f"{type(e).__name__}: {e}"[:600]))
        return
    conn.send(("ready", None, None))
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        job_id, job = msg
        try:
            result = handle(job)
        except Exception as e:  # noqa: BLE001 - a job's fault is its result, not the worker's end
            result = Failed(f"{type(e).__name__}: {e}"[:600])
        conn.send(("result", job_id, result))


@dataclass
class _Worker:
    proc: mp.Process
    conn: object  # the parent's end of the worker's duplex pipe
    ready: bool = False
    job: Hashable | None = None  # id of the job it holds
    busy: bool = False


class WorkerPool:
    """``workers`` spawned processes running ``make_handler(*args)``'s handler on submitted jobs."""

    def __init__(self, make_handler: Callable, args: tuple = (), workers: int = 1, name: str = "worker",
                 max_restarts: int | None = None, on_dispatch: Callable[[Hashable, int], None] | None = None):
        self.make_handler, self.args, self.n, self.name = make_handler, args, workers, name
        self.max_restarts = 3 * workers + 3 if max_restarts is None else max_restarts
        self.on_dispatch = on_dispatch  # (job_id, worker pid), called when a worker is handed a job
        self.ctx = mp.get_context("spawn")
        self.workers: list[_Worker] = []
        self.pending: deque = deque()
        self.deaths_in_a_row = 0

    # ---------------------------------------------------------------- lifecycle
    def __enter__(self) -> WorkerPool:
        try:
            for _ in range(self.n):
                self._start()
        except BaseException:  # Ctrl-C while starting: stop the workers already started
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _start(self) -> None:
        mine, theirs = self.ctx.Pipe(duplex=True)
        proc = self.ctx.Process(target=_serve, args=(self.make_handler, self.args, theirs), daemon=True,
                                name=f"mtil-{self.name}")
        # SIGINT blocked while it starts: the spawned interpreter inherits the mask, so a Ctrl-C during its
        # imports prints no traceback in it (worker_setup ignores SIGINT, then unblocks it). Blocked, not
        # ignored: a Ctrl-C in this window stays pending here and is raised once it is unblocked (an ignored
        # one was lost, and the evaluation went on: seen under load in CI, 2026-11-30).
        import threading

        main = threading.current_thread() is threading.main_thread()
        if main:
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            try:
                proc.start()
            finally:
                if proc.pid is not None:  # started: close() must be able to stop it
                    self.workers.append(_Worker(proc, mine))
                theirs.close()  # only the child holds it now: its death closes the pipe
        finally:
            if main:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})

    def close(self) -> None:
        """Stop every worker: ask, wait up to 5 s, then kill. Safe to call twice."""
        for w in self.workers:
            try:
                w.conn.send(None)
            except (OSError, ValueError):
                pass
        deadline = time.monotonic() + 5
        for w in self.workers:
            w.proc.join(timeout=max(0.0, deadline - time.monotonic()))
            if w.proc.is_alive():
                w.proc.kill()
                w.proc.join(timeout=5)
            w.conn.close()
        self.workers = []

    # ---------------------------------------------------------------- jobs
    def submit(self, job_id: Hashable, job, front: bool = False) -> None:
        """Queue ``job``; its result comes back from ``results()`` under ``job_id``."""
        (self.pending.appendleft if front else self.pending.append)((job_id, job))

    @property
    def in_flight(self) -> int:
        return sum(w.busy for w in self.workers)

    def _dispatch(self) -> None:
        for w in self.workers:
            if w.ready and not w.busy and self.pending:
                job_id, job = self.pending.popleft()
                try:
                    w.conn.send((job_id, job))
                except (OSError, ValueError):  # it died just now: the job goes back, the death is seen below
                    self.pending.appendleft((job_id, job))
                    continue
                w.job, w.busy = job_id, True
                if self.on_dispatch is not None:
                    self.on_dispatch(job_id, w.proc.pid)

    def _died(self, w: _Worker) -> tuple[Hashable, Died] | None:
        """Replace a dead worker; returns its job's ``Died`` result if it held one."""
        w.proc.join(timeout=5)
        self.workers.remove(w)
        w.conn.close()
        self.deaths_in_a_row += 1
        if self.deaths_in_a_row > self.max_restarts:
            raise RuntimeError(f"{self.name} workers keep dying ({self.deaths_in_a_row} in a row, last exit code "
                               f"{w.proc.exitcode}); run one job in the foreground to see why (--workers 1)")
        if self.pending or self.in_flight or w.busy:
            self._start()
        return (w.job, Died(w.proc.exitcode, w.proc.pid)) if w.busy else None

    def results(self, poll: float = 1.0, idle_timeout: float | None = None) -> Iterator[tuple[Hashable, object]]:
        """``(job_id, result)`` as jobs finish, until no job is queued or running (jobs may be submitted while
        iterating). ``idle_timeout``: raise ``TimeoutError`` when no worker answers for that long."""
        last = time.monotonic()
        while self.pending or self.in_flight:
            self._dispatch()
            ready = wait([w.conn for w in self.workers], timeout=poll)
            if not ready:
                if idle_timeout is not None and time.monotonic() - last > idle_timeout:
                    raise TimeoutError(f"no answer from the {self.name} workers for {idle_timeout:.0f} s")
                for w in [w for w in self.workers if not w.proc.is_alive()]:
                    if (d := self._died(w)) is not None:
                        yield d
                continue
            last = time.monotonic()
            for conn in ready:
                w = next(x for x in self.workers if x.conn is conn)
                try:
                    kind, job_id, payload = conn.recv()
                except (EOFError, OSError):  # its process is gone (the pipe closed with it)
                    if (d := self._died(w)) is not None:
                        yield d
                    continue
                if kind == "init_error":
                    raise RuntimeError(f"a {self.name} worker could not start: {payload}")
                if kind == "ready":
                    w.ready = True
                    continue
                w.job, w.busy = None, False
                self.deaths_in_a_row = 0
                yield job_id, payload


class Progress:
    """A progress display: tqdm on a terminal; in a log file (stderr not a terminal) one plain line per
    ``every`` of the total or per minute, whichever comes first, instead of carriage-return redraws."""

    def __init__(self, total: int, desc: str, unit: str, enabled: bool = True, every: float = 0.1):
        from tqdm import tqdm

        self.total, self.desc, self.unit, self.n, self.post = total, desc, unit, 0, {}
        self.tty = enabled and sys.stderr.isatty()
        self.enabled, self.every = enabled, max(1, int(total * every))
        self.t0 = self.last_print = time.time()
        self.bar = tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True, disable=not self.tty)

    def update(self, n: int = 1) -> None:
        self.n += n
        self.bar.update(n)
        now = time.time()
        if not self.tty and self.enabled and n and (self.n % self.every == 0 or self.n == self.total
                                                    or now - self.last_print > 60):
            self.last_print = now
            post = "".join(f", {k} {v}" for k, v in self.post.items())
            print(f"{self.desc}: {self.n}/{self.total} {self.unit}{post}, {now - self.t0:.0f} s",
                  file=sys.stderr, flush=True)

    def set_postfix(self, **kw) -> None:
        self.post = kw
        self.bar.set_postfix(**kw)

    def close(self) -> None:
        self.bar.close()
