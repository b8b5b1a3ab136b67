"""`mtil train`."""

from __future__ import annotations

from mtil.pipeline.cli.argsfrom import add_config_command, checking_cache, dataclass_from_args


def register_train(sub, help_text: str) -> None:
    from mtil.pipeline.training.config import TrainConfig

    p = add_config_command(sub, "train", help_text, TrainConfig, "DDP: torchrun --nproc_per_node 2 -m "
                           "mtil.pipeline.cli.train --data ... --out RUN (gloo on CPU, nccl on GPU; only rank 0 "
                           "writes).", required=("data", "out"))

    def run(a) -> int:
        from mtil.pipeline.training.loop import train

        train(dataclass_from_args(TrainConfig, a))
        return 0

    p.set_defaults(func=checking_cache(run))


def register_fit_video(sub, help_text: str) -> None:
    from mtil.pipeline.recipes.fit_video import FitVideoConfig

    p = add_config_command(sub, "fit-video", help_text, FitVideoConfig, "The policy is not changed: the encoder "
                           "learns to put a demo clip where the policy's tasks are in the language space. Then: "
                           "mtil eval OUT/last.pt --condition video --demos UNSEEN.hdf5", positional=("checkpoint",),
                           required=("out", "data"))

    def run(a) -> int:
        from mtil.pipeline.recipes.fit_video import FitVideoConfig, fit_video

        r = fit_video(dataclass_from_args(FitVideoConfig, a))
        for name in ("identification_train", "identification_heldout"):
            if r[name]:
                print(f"{name.split('_')[1]} clips ({r['camera']}): {r[name]['correct']}/{r[name]['n']} "
                      f"= {100 * r[name]['rate']:.0f}% identified as their own task")
        print(f"wrote {a.out}/last.pt and {a.out}/fit_video.json")
        return 0

    p.set_defaults(func=checking_cache(run))


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
