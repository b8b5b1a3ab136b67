"""argparse options from a config dataclass (CleanRL style): one option per field, its help text the
field's docstring, its default the field's default. ``--flag`` for bools, repeatable options for lists."""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import textwrap
import typing

from mtil.datasets.errors import DataError, UserError


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows defaults and keeps the line breaks of descriptions."""


def field_docs(cls) -> dict[str, str]:
    """The string literal right after each annotated field in the class body."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body
    docs = {}
    for node, nxt in zip(body, body[1:]):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and isinstance(nxt, ast.Expr)
                and isinstance(nxt.value, ast.Constant) and isinstance(nxt.value.value, str)):
            docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


def add_dataclass_args(parser: argparse.ArgumentParser, cls, positional: tuple[str, ...] = (),
                       required: tuple[str, ...] = (), skip: tuple[str, ...] = ()) -> None:
    docs = field_docs(cls)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        tp = hints[f.name]
        help_text = docs.get(f.name, "")
        is_list = typing.get_origin(tp) is list
        if f.name in positional:
            parser.add_argument(f.name, nargs="+" if is_list else None, help=help_text)
            continue
        opt = "--" + f.name.replace("_", "-")
        kw: dict = {"dest": f.name, "help": help_text}
        if f.name in required:
            kw["required"] = True
        elif f.default is not dataclasses.MISSING:
            kw["default"] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            kw["default"] = f.default_factory()
        if tp is bool:
            parser.add_argument(opt, action="store_true", **kw)
        elif is_list:
            item = typing.get_args(tp)[0]
            parser.add_argument(opt, nargs="+", type=item, metavar=f.name.upper(), **kw)
        else:
            parser.add_argument(opt, type=tp, metavar=f.name.upper(), **kw)


def dataclass_from_args(cls, args: argparse.Namespace):
    return cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)})


def run_guarded(func, args) -> int:
    """Run a command's ``func(args)`` with the exit-code conventions of `mtil`: 2 and one line per problem
    for bad input (no traceback), 130 on Ctrl-C; anything else propagates (a bug: traceback, exit 1)."""
    import sys

    try:
        return int(func(args) or 0)
    except DataError as e:
        for p in e.problems:
            print(f"error: {p}", file=sys.stderr)
        return 2
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
