"""`mtil eval`."""

from __future__ import annotations

from mtil.pipeline.cli.argsfrom import add_config_command, dataclass_from_args


def register_eval(sub, help_text: str) -> None:
    from mtil.pipeline.evaluate import EvalConfig

    p = add_config_command(sub, "eval", help_text, EvalConfig, positional=("checkpoint",), required=("out",))

    def run(a) -> int:
        from mtil.pipeline.evaluate import evaluate

        result = evaluate(dataclass_from_args(EvalConfig, a))
        print(open(f"{a.out}/report.md").read())
        return 0 if result["complete"] else 130

    p.set_defaults(func=run)
