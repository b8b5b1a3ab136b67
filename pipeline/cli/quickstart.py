"""`mtil quickstart`."""

from __future__ import annotations

from mtil.pipeline.cli.argsfrom import add_config_command, checking_cache, dataclass_from_args


def register_quickstart(sub, help_text: str) -> None:
    from mtil.pipeline.recipes.quickstart import QuickstartConfig

    p = add_config_command(sub, "quickstart", help_text, QuickstartConfig)

    def run(a) -> int:
        from mtil.pipeline.cli.eval import eval_exit_code
        from mtil.pipeline.recipes.quickstart import quickstart

        return eval_exit_code(quickstart(dataclass_from_args(QuickstartConfig, a)))

    p.set_defaults(func=checking_cache(run))
