"""`mtil ingest`, `mtil info` and `mtil export`."""

from __future__ import annotations

from mtil.datasets.ingest import IngestConfig, info, ingest
from mtil.pipeline.cli.argsfrom import HelpFormatter, add_config_command, dataclass_from_args


def register_ingest(sub, help_text: str) -> None:
    p = add_config_command(sub, "ingest", help_text, IngestConfig, positional=("sources",), required=("out",))
    p.set_defaults(func=lambda a: ingest(dataclass_from_args(IngestConfig, a)) and 0)


def register_info(sub, help_text: str) -> None:
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


def register_export(sub, help_text: str) -> None:
    from mtil.datasets.lerobot_write import ExportConfig

    p = add_config_command(sub, "export", help_text, ExportConfig, positional=("sources",), required=("out",))

    def run(a) -> int:
        from mtil.datasets.lerobot_write import export

        export(dataclass_from_args(ExportConfig, a))
        return 0

    p.set_defaults(func=run)
