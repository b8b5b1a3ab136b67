"""`mtil quickstart`."""

from __future__ import annotations

from mtil.pipeline.cli.argsfrom import add_config_command, dataclass_from_args


def register_quickstart(sub, help_text: str) -> None:
    from mtil.pipeline.quickstart import QuickstartConfig

    p = add_config_command(sub, "quickstart", help_text, QuickstartConfig)

    def run(a) -> int:
        from mtil.pipeline.quickstart import quickstart

        result = quickstart(dataclass_from_args(QuickstartConfig, a))
        return 0 if result["complete"] else 130

    p.set_defaults(func=run)
