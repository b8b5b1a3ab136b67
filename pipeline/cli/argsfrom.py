"""argparse options from a config dataclass (CleanRL style): one option per field, its help text the
field's docstring (the string literal after it), its default the field's default. ``--flag`` for bools,
options taking one or more values (repeatable) for lists. Every command's options come from its config
dataclass this way, so the dataclass is the one place an option is defined and documented."""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import textwrap
import types
import typing

from mtil.datasets.errors import DataError, UserError


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows defaults and keeps the line breaks of descriptions."""


def field_docs(cls) -> dict[str, str]:
    """The string literal right after each annotated field in the class body (and in its dataclass bases),
    whitespace collapsed."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass) or klass is object:
            continue
        body = ast.parse(textwrap.dedent(inspect.getsource(klass))).body[0].body
        for node, nxt in zip(body, body[1:]):
            if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and isinstance(nxt, ast.Expr)
                    and isinstance(nxt.value, ast.Constant) and isinstance(nxt.value.value, str)):
                docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


def _fields(cls) -> list[dataclasses.Field]:
    """The init fields, those declared by ``cls`` itself first (a config's own options lead its --help),
    then the inherited ones."""
    own = set(cls.__dict__.get("__annotations__", {}))
    fields = [f for f in dataclasses.fields(cls) if f.init]
    return [f for f in fields if f.name in own] + [f for f in fields if f.name not in own]


def add_dataclass_args(parser: argparse.ArgumentParser, cls, positional: tuple[str, ...] = (),
                       required: tuple[str, ...] = (), skip: tuple[str, ...] = ()) -> None:
    """One argument per init field of the dataclass ``cls``: ``positional`` ones by name, the rest as
    ``--field-name`` with the field's default. Bools are flags (``--x``; ``--no-x`` when the default is
    True); lists take one or more values and the option may be repeated; ``T | None`` takes a T."""
    docs = field_docs(cls)
    hints = typing.get_type_hints(cls)
    for f in _fields(cls):
        if f.name in skip:
            continue
        tp = hints[f.name]
        if typing.get_origin(tp) in (typing.Union, types.UnionType):  # Optional[T]: parse a T
            tp = next(a for a in typing.get_args(tp) if a is not type(None))
        help_text = docs.get(f.name, "").replace("%", "%%")  # argparse formats help strings with %
        is_list = typing.get_origin(tp) is list
        if f.name in positional:
            parser.add_argument(f.name, nargs="+" if is_list else None, help=help_text, metavar=f.name.upper())
            continue
        opt = "--" + f.name.replace("_", "-")
        kw: dict = {"dest": f.name, "help": help_text}
        if f.name in required:
            kw["required"] = True
        elif f.default is not dataclasses.MISSING:
            kw["default"] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            kw["default"] = f.default_factory()
        if tp is bool and kw.get("default") is True:
            parser.add_argument("--no-" + f.name.replace("_", "-"), action="store_false", **kw)
        elif tp is bool:
            parser.add_argument(opt, action="store_true", **kw)
        elif is_list:
            item = typing.get_args(tp)[0]
            action = "store" if kw.get("default") else "extend"  # extending a non-empty default would keep it
            parser.add_argument(opt, nargs="+", action=action, type=item, metavar=f.name.upper(), **kw)
        else:
            parser.add_argument(opt, type=tp, metavar=f.name.upper(), **kw)


def add_config_command(sub, name: str, help_text: str, cls, more: str = "", **fields) -> argparse.ArgumentParser:
    """Subcommand ``name`` whose options are the fields of the config dataclass ``cls`` (``fields``: the
    ``positional``/``required``/``skip`` of ``add_dataclass_args``); its description is the class docstring,
    then ``more``."""
    p = sub.add_parser(name, help=help_text, formatter_class=HelpFormatter,
                       description=cls.__doc__ + (f"\n\n{more}" if more else ""))
    add_dataclass_args(p, cls, **fields)
    return p


def dataclass_from_args(cls, args: argparse.Namespace):
    return cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if f.init and hasattr(args, f.name)})


def checking_cache(func):
    """``func`` with the cache folder (``$MTIL_CACHE_DIR``) checked first: for the commands that build
    simulators (decimated meshes) or embed instructions, where an unusable cache would otherwise fail inside
    every worker's episode."""

    def run(args):
        from mtil.datasets.cache import check_cache_root

        check_cache_root()
        return func(args)

    return run


def run_guarded(func, args) -> int:
    """Run a command's ``func(args)`` with the exit-code conventions of `mtil`: 2 and one line per problem
    for bad input (no traceback), 2 and one line for a full disk or a read-only file system, 130 on Ctrl-C;
    anything else propagates (a bug: traceback, exit 1)."""
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
    except OSError as e:
        import errno

        if e.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
            raise
        where = f" writing {e.filename}" if e.filename else ""
        print(f"error: {e.strerror or e}{where} (temp files of unfinished writes were removed; earlier outputs are "
              "untouched)", file=sys.stderr)
        return 2
