"""The command line: every subcommand's --help works, and options come from config dataclasses
(field docstrings as help, `%` escaped, --no-x for flags on by default, repeatable list options)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

import pytest

from mtil.pipeline.cli.argsfrom import add_dataclass_args, dataclass_from_args
from mtil.pipeline.cli.main import SUBCOMMANDS, main


@pytest.mark.parametrize("command", [name for name, _, _ in SUBCOMMANDS])
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as e:
        main([command, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: mtil {command}")


def test_help_shows_every_option_of_the_configs(capsys):
    from mtil.pipeline.policy.model import PolicyOptions
    from mtil.pipeline.sim.collect import CollectConfig

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    for name in PolicyOptions.__dataclass_fields__:  # every policy option can be set from the CLI
        assert "--" + name.replace("_", "-") in text, name
    assert "38% vs 3%" in text  # a literal % in a field docstring
    with pytest.raises(SystemExit):
        main(["collect", "--help"])
    text = capsys.readouterr().out
    for name in ("demos-per-task", "keep-failures", "action-noise", "no-progress"):
        assert "--" + name in text
    assert "task_names" not in text and "--task-names" not in text  # not an init field
    assert CollectConfig.__dataclass_fields__["out"].default == "demos.hdf5"


@dataclass
class Example:
    """An example command."""

    src: list[str]
    """input files"""
    out: str | None = None
    """where to write, 100% atomically"""
    names: list[str] = field(default_factory=list)
    """names, several or the option repeated"""
    progress: bool = True
    """show progress"""
    fast: bool = False
    """go fast"""
    size: int = 3
    """a size"""


def _parse(argv: list[str]) -> Example:
    p = argparse.ArgumentParser()
    add_dataclass_args(p, Example, positional=("src",))
    return dataclass_from_args(Example, p.parse_args(argv))


def test_dataclass_options():
    assert _parse(["a.h5"]) == Example(src=["a.h5"])
    got = _parse(["a.h5", "b.h5", "--names", "x", "y", "--names", "z", "--no-progress", "--fast", "--size", "5",
                  "--out", "o"])
    assert got == Example(src=["a.h5", "b.h5"], out="o", names=["x", "y", "z"], progress=False, fast=True, size=5)
    assert _parse(["a.h5"]).names == []  # the default list is not shared between parses
    assert _parse(["a.h5"]).names is not _parse(["a.h5"]).names


def test_repeated_instruction_options_reach_ingest(tmp_path):
    """`--instruction A --instruction B` gives one instruction per file, as the README shows."""
    import json

    import h5py

    from mtil.datasets.synthetic import write_synthetic

    srcs = []
    for name in ("lift", "can"):
        src = write_synthetic(str(tmp_path / f"{name}.hdf5"), tasks=[name], per_demo_language=False)
        with h5py.File(src, "a") as f:
            del f["data"].attrs["problem_info"]
        srcs.append(src)
    out = tmp_path / "data"
    assert main(["ingest", *srcs, "--out", str(out), "--instruction", "lift the cube", "--instruction",
                 "pick up the can"]) == 0
    tasks = json.loads((out / "manifest.json").read_text())["tasks"]
    assert [t["instruction"] for t in tasks] == ["lift the cube", "pick up the can"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["can.hdf5", "data", "lift.hdf5"]  # no temp left
