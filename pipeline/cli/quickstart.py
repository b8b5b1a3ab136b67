"""`mtil quickstart`."""

from __future__ import annotations

from mtil.pipeline.cli.argsfrom import add_dataclass_args, dataclass_from_args


def register_quickstart(sub, help_text: str) -> None:
    from mtil.pipeline.cli.argsfrom import HelpFormatter
    from mtil.pipeline.quickstart import QuickstartConfig

    p = sub.add_parser("quickstart", help=help_text, description=QuickstartConfig.__doc__,
                       formatter_class=HelpFormatter)
    add_dataclass_args(p, QuickstartConfig)

    def run(a) -> int:
        from mtil.pipeline.quickstart import quickstart

        result = quickstart(dataclass_from_args(QuickstartConfig, a))
        return 0 if result["complete"] else 130

    p.set_defaults(func=run)
