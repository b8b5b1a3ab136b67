"""`mtil ingest` and `mtil info`."""

from __future__ import annotations

from mtil.datasets.ingest import IngestConfig, info, ingest


def register_ingest(sub, help_text: str) -> None:
    from mtil.pipeline.cli.argsfrom import HelpFormatter

    p = sub.add_parser("ingest", help=help_text, description=IngestConfig.__doc__, formatter_class=HelpFormatter)
    p.add_argument("sources", nargs="+", metavar="SRC", help="HDF5 files (robomimic layout or LIBERO's variant)")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory (created; must be empty)")
    p.add_argument("--instruction", action="append", default=[], metavar="TEXT",
                   help="instruction for files without language: once for all, or once per SRC in order")
    p.add_argument("--valid-fraction", type=float, default=0.1,
                   help="share of each task's demos held out as 'valid' when a file has no train/valid mask")
    p.add_argument("--seed", type=int, default=0, help="seed of the generated train/valid split")
    p.add_argument("--overwrite", action="store_true", help="replace an existing manifest in --out")
    p.set_defaults(func=lambda a: ingest(IngestConfig(a.sources, a.out, a.instruction, a.valid_fraction,
                                                      a.seed, a.overwrite)) and 0)


def register_info(sub, help_text: str) -> None:
    from mtil.pipeline.cli.argsfrom import HelpFormatter

    p = sub.add_parser("info", help=help_text, formatter_class=HelpFormatter,
                       description="Summarize HDF5 demo files or ingest directories: tasks, demos, steps, "
                                   "obs keys, shapes, sizes and every problem found. Exit 2 if any problem.")
    p.add_argument("paths", nargs="+", metavar="PATH", help="HDF5 files or directories made by `mtil ingest`")
    p.add_argument("--instruction", default=None, metavar="TEXT", help="instruction assumed for files without one")

    def run(a) -> int:
        text, n_problems = info(a.paths, a.instruction)
        print(text, end="")
        return 2 if n_problems else 0

    p.set_defaults(func=run)
