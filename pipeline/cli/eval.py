"""`mtil eval`."""

from __future__ import annotations

from mtil.pipeline.cli.argsfrom import add_dataclass_args, dataclass_from_args


def register_eval(sub, help_text: str) -> None:
    from mtil.pipeline.cli.argsfrom import HelpFormatter
    from mtil.pipeline.evaluate import EvalConfig

    p = sub.add_parser("eval", help=help_text, description=EvalConfig.__doc__, formatter_class=HelpFormatter)
    add_dataclass_args(p, EvalConfig, positional=("checkpoint",), required=("out",))

    def run(a) -> int:
        from mtil.pipeline.evaluate import evaluate

        result = evaluate(dataclass_from_args(EvalConfig, a))
        print(open(f"{a.out}/report.md").read())
        return 0 if result["complete"] else 130

    p.set_defaults(func=run)
