"""`mtil eval`."""

from __future__ import annotations

from mtil.pipeline.cli.argsfrom import add_config_command, checking_cache, dataclass_from_args


def register_eval(sub, help_text: str) -> None:
    from mtil.pipeline.evaluation.run import EvalConfig

    p = add_config_command(sub, "eval", help_text, EvalConfig, positional=("checkpoint",), required=("out",))

    def run(a) -> int:
        from mtil.pipeline.evaluation.run import evaluate

        result = evaluate(dataclass_from_args(EvalConfig, a))
        with open(f"{a.out}/report.md") as f:
            print(f.read())
        return eval_exit_code(result)

    p.set_defaults(func=checking_cache(run))


def eval_exit_code(result: dict) -> int:
    """0 when every episode ran without error; 3 (and the error counts on stderr) when any episode errored;
    130 when interrupted."""
    import sys

    if result.get("errors"):
        print(f"error: {result['errors']} episode(s) ended in an error, not a success or failure:", file=sys.stderr)
        for msg, n in list(result["error_counts"].items())[:10]:
            print(f"  {n} x {msg}", file=sys.stderr)
    if result.get("interrupted"):
        return 130
    return 3 if result.get("errors") or not result["complete"] else 0
