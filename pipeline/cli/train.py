"""`mtil train`."""

from __future__ import annotations

from mtil.pipeline.cli.argsfrom import add_config_command, dataclass_from_args


def register_train(sub, help_text: str) -> None:
    from mtil.pipeline.train_config import TrainConfig

    p = add_config_command(sub, "train", help_text, TrainConfig, "DDP: torchrun --nproc_per_node 2 -m "
                           "mtil.pipeline.cli.train --data ... --out RUN (gloo on CPU, nccl on GPU; only rank 0 "
                           "writes).", required=("data", "out"))

    def run(a) -> int:
        from mtil.pipeline.train import train

        train(dataclass_from_args(TrainConfig, a))
        return 0

    p.set_defaults(func=run)


def main(argv: list[str] | None = None) -> int:
    """Entry point for `torchrun -m mtil.pipeline.cli.train ...` (the options of `mtil train`)."""
    import argparse
    import sys

    from mtil.pipeline.cli.argsfrom import run_guarded

    parser = argparse.ArgumentParser(prog="mtil.pipeline.cli.train")
    register_train(parser.add_subparsers(dest="command"), "train")
    args = parser.parse_args(["train", *(sys.argv[1:] if argv is None else argv)])
    return run_guarded(args.func, args)


if __name__ == "__main__":
    raise SystemExit(main())
