"""The `mtil` command line.

Conventions shared by every subcommand: exit 0 on success, 2 for user errors (one line naming the
file/demo/key and the problem, no traceback), 1 for internal errors (with the traceback, it is a bug).
Each command group lives in its own module of this package and is wired here explicitly: its
``register_<name>(subparsers, help)`` adds the parser and sets ``func`` to a callable taking the parsed
args and returning an exit code. Those modules import heavy libraries (torch, robosuite) only inside the
command's function, so `mtil --help` stays fast.
"""

from __future__ import annotations

import argparse
import os
import sys

from mtil.pipeline.cli import data, quickstart, sim, train
from mtil.pipeline.cli import eval as eval_cmd
from mtil.pipeline.cli.argsfrom import HelpFormatter, run_guarded

# (subcommand, function that adds its parser, one-line help). Order = order in --help.
SUBCOMMANDS = [
    ("tasks", sim.register_tasks, "list the simulated language tasks, scenes and held-out paraphrases"),
    ("collect", sim.register_collect, "collect scripted-expert demonstrations in parallel into one HDF5 file"),
    ("replay", sim.register_replay, "replay a recorded demo's actions in simulation and write an mp4"),
    ("ingest", data.register_ingest, "validate HDF5 files or LeRobot v3.0 datasets; write DIR/manifest.json + stats"),
    ("info", data.register_info, "print a summary table of HDF5 demo files, an ingest directory or a LeRobot dataset"),
    ("export", data.register_export, "write demos as a LeRobot v3.0 dataset (parquet + mp4) that LeRobotDataset loads"),
    ("train", train.register_train, "train one multi-task policy by behavior cloning"),
    ("fit-video", train.register_fit_video, "fit a demo-video encoder onto a language policy's task space"),
    ("eval", eval_cmd.register_eval, "evaluate a checkpoint by parallel rollouts; report, plot and videos"),
    ("dagger", sim.register_dagger, "DAgger: policy rollouts labelled by the scripted expert, aggregated, retrained"),
    ("quickstart", quickstart.register_quickstart, "collect, train and evaluate a small suite end to end"),
]


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mtil", formatter_class=HelpFormatter,
        description="mtil: multi-task imitation learning for robot manipulation.\n"
                    "Exit codes: 0 ok, 2 bad input (message names what and where), 1 internal error.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, register, help_text in SUBCOMMANDS:
        if only is not None and name != only:
            sub.add_parser(name, help=help_text)
            continue
        register(sub, help_text)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if os.environ.get("DISPLAY") is None:
        os.environ.setdefault("MUJOCO_GL", "egl")  # headless rendering on CPU (Mesa llvmpipe)
    command = next((a for a in argv if not a.startswith("-")), None)
    known = {name for name, _, _ in SUBCOMMANDS}
    parser = build_parser(command if command in known else None)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0 if not argv or command is None else 2
    try:
        code = run_guarded(args.func, args)
        sys.stdout.flush()  # a closed pipe (`mtil tasks | head -3`) shows up here, not at exit
    except BrokenPipeError:
        _quiet_broken_pipe()
        return 0
    return code


def _quiet_broken_pipe() -> None:
    """The reader of our stdout went away (`| head`): end quietly, as `cat` does, with no traceback and no
    "Exception ignored" message from the interpreter's final flush."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # stdout is not a real file (captured by a test)
        pass


if __name__ == "__main__":
    sys.exit(main())
