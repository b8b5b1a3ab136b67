"""The `mtil` command line.

Conventions shared by every subcommand: exit 0 on success, 2 for user errors (one line naming the
file/demo/key and the problem, no traceback), 1 for internal errors (with the traceback, it is a bug).
Each subcommand lives in its own module and is wired here explicitly by a ``register(subparsers)``
function that adds its parser and sets ``func`` to a callable taking the parsed args and returning an
exit code. Modules are imported only when their subcommand runs, so `mtil --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from mtil.datasets.errors import DataError, UserError

# (subcommand, module that defines register(), one-line help). Order = order in --help.
SUBCOMMANDS = [
    ("tasks", "mtil.pipeline.cmd_sim", "list the simulated language tasks, scenes and held-out paraphrases"),
    ("collect", "mtil.pipeline.cmd_sim", "collect scripted-expert demonstrations in parallel into one HDF5 file"),
    ("replay", "mtil.pipeline.cmd_sim", "replay a recorded demo's actions in simulation and write an mp4"),
    ("ingest", "mtil.pipeline.cmd_data", "validate HDF5 demo files and write DIR/manifest.json + stats.json"),
    ("info", "mtil.pipeline.cmd_data", "print a summary table of HDF5 demo files or an ingest directory"),
    ("train", "mtil.pipeline.cmd_train", "train one multi-task policy by behavior cloning"),
    ("eval", "mtil.pipeline.cmd_eval", "evaluate a checkpoint by parallel rollouts; report, plot and videos"),
    ("quickstart", "mtil.pipeline.cmd_quickstart", "collect, train and evaluate a small suite end to end"),
]


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    pass


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mtil", formatter_class=HelpFormatter,
        description="mtil: multi-task imitation learning for robot manipulation.\n"
                    "Exit codes: 0 ok, 2 bad input (message names what and where), 1 internal error.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module, help_text in SUBCOMMANDS:
        if only is not None and name != only:
            sub.add_parser(name, help=help_text)
            continue
        getattr(importlib.import_module(module), f"register_{name}")(sub, help_text)
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
        return int(args.func(args) or 0)
    except DataError as e:
        for p in e.problems:
            print(f"error: {p}", file=sys.stderr)
        return 2
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
