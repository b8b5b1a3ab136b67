"""`mtil ingest` and `mtil info`: validate demonstration files, write a manifest, summarize.

Nothing is written unless every input validates, and source files are only ever opened read-only.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import re
import shutil
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field

from tqdm import tqdm

from mtil.datasets.atomic import atomic_path, remove_stale_temps_beside, write_json_atomic
from mtil.datasets.errors import DataError, UserError
from mtil.datasets.lerobot_ingest import (
    check_lerobot_sources,
    check_room,
    convert_lerobot_sources,
    lerobot_summary,
    moved_files,
)
from mtil.datasets.lerobot_read import inspect_lerobot, is_lerobot_dir
from mtil.datasets.manifest import Manifest, build_manifest, load_manifest
from mtil.datasets.schema import inspect_file
from mtil.datasets.text_table import text_table


@dataclass
class IngestConfig:
    """Validate HDF5 demonstration files and write DIR/manifest.json and DIR/stats.json."""

    sources: list[str]
    """HDF5 files (robomimic layout or LIBERO's variant) and/or LeRobot v3.0 dataset directories (decoded
    once into DIR/lerobot-NAME.hdf5, which training memory-maps)."""
    out: str
    """Output directory; created, or must be empty (--overwrite: or one `mtil ingest` wrote)."""
    instruction: list[str] = field(default_factory=list)
    """Instruction for files without language (repeat the option or give several): one for all files, or one
    per file in order. A file's own language (each demo's language_instruction, LIBERO's problem_info) wins:
    --instruction only fills in demos without one, and a note on stderr names each file that keeps its own."""
    valid_fraction: float = 0.1
    """Share of each task's demos held out as `valid` when a file has no train/valid mask."""
    seed: int = 0
    """Seed of the generated train/valid split."""
    overwrite: bool = False
    """Replace an existing ingest directory (only one `mtil ingest` wrote: manifest.json and stats.json)."""
    env_from: str = ""
    """LeRobot datasets without mtil's env_args (any not written by `mtil export`): take the simulator
    description `mtil eval` needs from this HDF5 file (one `mtil collect` wrote). Without it such data
    trains but cannot be evaluated in simulation."""

    def __post_init__(self) -> None:
        if self.seed < 0:
            raise UserError(f"--seed must be >= 0, got {self.seed}")


WRITTEN_BY = "mtil ingest"
OWN_FILES = {"manifest.json", "stats.json"}
CONVERTED = re.compile(r"lerobot-.+\.hdf5")
"""The HDF5 file a LeRobot source becomes inside the ingest directory."""


def _check_replaceable(out: str, shown: str) -> None:
    """--overwrite may replace only an empty directory or one `mtil ingest` wrote: its manifest.json says
    ``written_by: mtil ingest`` (or is a manifest of version 1 from before that marker) and it holds
    nothing else."""
    names = set(os.listdir(out))
    if not names:
        return
    if os.path.dirname(out) == out or not os.path.isfile(os.path.join(out, "manifest.json")):
        raise UserError(f"--out {shown}: not a directory written by `mtil ingest` (no manifest.json): refusing to "
                        "replace it; give a new or empty directory")
    try:
        with open(os.path.join(out, "manifest.json")) as f:
            m = json.load(f)
    except (OSError, ValueError):
        m = None
    ours = isinstance(m, dict) and (m.get("written_by") == WRITTEN_BY or (
        m.get("version") == 1 and {"files", "demos", "obs", "split"} <= set(m)))
    if not ours:
        raise UserError(f"--out {shown}: its manifest.json was not written by `mtil ingest`: refusing to replace it")
    others = sorted(n for n in names - OWN_FILES if not CONVERTED.fullmatch(n))
    if others:
        raise UserError(f"--out {shown}: holds {others[0]!r}, which `mtil ingest` did not write: refusing to "
                        "replace the directory")


@contextmanager
def _out_lock(out: str, shown: str):
    """An exclusive lock on ``.<name>.mtil-lock`` beside --out while one ingest checks and writes it: a
    concurrent ingest into the same --out is refused instead of racing. The lock file is removed at the end
    (a lock taken on a file already unlinked by its previous holder is detected by its inode)."""
    path = os.path.join(os.path.dirname(out), f".{os.path.basename(out)}.mtil-lock")
    busy = UserError(f"--out {shown}: another `mtil ingest` is writing it (lock {path})")
    with open(path, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise busy from None
        try:
            if not os.path.exists(path) or os.stat(path).st_ino != os.fstat(f.fileno()).st_ino:
                raise busy
            try:
                yield
            finally:
                os.unlink(path)
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def ingest(cfg: IngestConfig) -> Manifest:
    out = os.path.abspath(cfg.out)
    if os.path.dirname(out) == out:
        raise UserError(f"--out {cfg.out}: the filesystem root cannot be an ingest directory")
    if os.path.exists(out) and not os.path.isdir(out):
        raise UserError(f"--out {cfg.out}: exists and is not a directory")
    parent = os.path.dirname(out)
    if not os.path.isdir(parent):
        raise UserError(f"--out {cfg.out}: parent directory {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise UserError(f"--out {cfg.out}: parent directory is not writable")
    seen: dict[str, str] = {}
    for src in cfg.sources:
        if os.path.abspath(src).startswith(out + os.sep):
            raise UserError(f"{src}: a source file may not live inside --out")
        real = os.path.realpath(src)  # a symlink, a trailing slash or ./ spell the same source twice
        if real in seen:
            raise UserError(f"{src}: given twice (also as {seen[real]}): its demos would count twice")
        seen[real] = src
    with _out_lock(out, cfg.out):
        return _ingest_locked(cfg, out)


def _clean_interrupted(out: str, shown: str) -> None:
    """Remove what an ingest killed mid-write left beside --out (we hold the --out lock, so none runs now):
    its temp folder ``.NAME.tmp-*`` and the previous --out it had moved aside, ``.NAME.old-*``. That one is
    the user's data: when --out is missing (the kill came between moving it aside and putting the new one in
    place) the newest is put back instead."""
    folder, base = os.path.split(out)
    olds = [os.path.join(folder, n) for n in os.listdir(folder)
            if re.fullmatch(re.escape(f".{base}.old-") + r"[a-z0-9_]{8}", n) and os.path.isdir(os.path.join(folder, n))]
    if olds and not os.path.lexists(out):
        newest = max(olds, key=os.path.getmtime)
        os.replace(newest, out)
        print(f"note: {shown}: put back the previous contents, which an interrupted `mtil ingest --overwrite` "
              f"had moved aside to {os.path.basename(newest)}", file=sys.stderr)
    removed = remove_stale_temps_beside(out, kinds=("tmp", "old"))
    if removed:
        print(f"note: removed {len(removed)} temp folder(s) an interrupted `mtil ingest` left beside {shown}: "
              f"{', '.join(removed)}", file=sys.stderr)


def _ingest_locked(cfg: IngestConfig, out: str) -> Manifest:
    _clean_interrupted(out, cfg.out)
    if os.path.isdir(out) and os.listdir(out):
        if not cfg.overwrite:
            raise UserError(f"--out {cfg.out}: directory exists and is not empty (use --overwrite to replace)")
        _check_replaceable(out, cfg.out)

    lerobot, env_args = check_lerobot_sources(cfg)
    if lerobot:
        check_room(lerobot, out, cfg.out)
    notes: list[str] = []
    if not lerobot:  # HDF5 only: validated and summarized before anything is written
        manifest, stats = _manifest(cfg, cfg.sources, notes)

    # Everything validated: only now touch the file system. The new directory is written as a temp folder
    # beside --out and renamed into place; an existing one (checked above) is moved aside first and
    # removed once the new one is in place (put back if that fails). LeRobot sources were checked above
    # but for their video pixels, decoded into the temp folder here: an undecodable video leaves nothing.
    old = None
    if os.path.isdir(out) and os.listdir(out):
        old = tempfile.mkdtemp(prefix=f".{os.path.basename(out)}.old-", dir=os.path.dirname(out))
        os.replace(out, old)  # onto the empty temp folder: a rename
    try:
        with atomic_path(out, directory=True) as tmp:
            if lerobot:
                converted = convert_lerobot_sources(lerobot, tmp, env_args)
                sources = [converted.get(s, s) for s in cfg.sources]
                manifest, stats = _manifest(cfg, sources, notes)
                manifest = moved_files(manifest, tmp, out)
            write_json_atomic(os.path.join(tmp, "manifest.json"), manifest.to_dict())
            write_json_atomic(os.path.join(tmp, "stats.json"), stats)
    except BaseException:
        if old is not None and not os.path.exists(out):
            os.replace(old, out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    n_demos = len(manifest.demos)
    only_some = sorted({k for f in manifest.files for k in f.obs or {}} - set(manifest.obs))
    if only_some:
        print(f"note: observation keys not in every file with one shape (a policy cannot read them): "
              f"{', '.join(only_some)}")
    print(f"ingested {len(manifest.files)} file(s), {len(manifest.tasks)} task(s), {n_demos} demos "
          f"({manifest.split.train} train / {manifest.split.valid} valid) -> {cfg.out}")
    return manifest


def _manifest(cfg: IngestConfig, sources: list[str], notes: list[str]):
    with tqdm(desc="statistics", unit="demo", leave=False, disable=None) as bar:
        manifest, stats = build_manifest(sources, cfg.instruction, cfg.valid_fraction, cfg.seed,
                                         progress=bar, notes=notes)
    return dataclasses.replace(manifest, written_by=WRITTEN_BY), stats


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def info(paths: list[str], instruction: str | None = None) -> tuple[str, int]:
    """A readable summary of HDF5 files or ingest directories; returns (text, number of problems)."""
    if not paths:
        raise UserError("no paths given")
    out: list[str] = []
    n_problems = 0
    for path in paths:
        if is_lerobot_dir(path):
            lr = inspect_lerobot(path)
            out.extend(lerobot_summary(lr))
            n_problems += len(lr.problems)
            continue
        if os.path.isdir(path):
            manifest, _ = load_manifest(path)
            out.append(f"== {path} (ingested manifest, {len(manifest.files)} file(s))")
            out.append(text_table([[str(t.id), t.instruction, str(t.num_demos), str(t.num_steps),
                                f"{t.num_train}/{t.num_valid}"] for t in manifest.tasks],
                              ["task", "instruction", "demos", "steps", "train/valid"]))
            out.append(text_table([[k, "x".join(map(str, v.shape)), v.dtype,
                                "image" if v.image else "low-dim"] for k, v in manifest.obs.items()],
                              ["obs key", "shape", "dtype", "kind"]))
            out.append(f"action dim: {manifest.action_dim}")
            continue
        fi = inspect_file(path, instruction)
        out.append(f"== {path}  ({_fmt_bytes(fi.size_bytes)}, layout {fi.layout}"
                   f"{', images stored upside down' if fi.flip_images else ''})")
        if fi.demos:
            tasks: dict[str, list[int]] = {}
            for d in fi.demos:
                tasks.setdefault(d.instruction or "(no instruction)", []).append(d.length)
            out.append(text_table([[text, str(len(ls)), str(sum(ls)), f"{min(ls)}..{max(ls)}"]
                               for text, ls in tasks.items()], ["task", "demos", "steps", "length"]))
        if fi.obs:
            stored = {v: k for k, v in fi.key_map.items()}
            out.append(text_table([[k, stored.get(k, k), "x".join(map(str, v.shape)), v.dtype,
                                "compressed" if v.compressed else "contiguous"] for k, v in fi.obs.items()],
                              ["obs key", "stored as", "shape", "dtype", "storage"]))
        if fi.action_dim is not None:
            env = (fi.env_args or {}).get("env_name", "-")
            out.append(f"action dim: {fi.action_dim}   env: {env}   masks: "
                       f"{', '.join(f'{k}={len(v)}' for k, v in fi.masks.items()) or '-'}")
        if fi.problems:
            out.append(f"problems ({len(fi.problems)}):")
            out.extend(f"  - {p}" for p in fi.problems)
        else:
            out.append("problems: none")
        n_problems += len(fi.problems)
        out.append("")
    return "\n".join(out).rstrip() + "\n", n_problems


__all__ = ["IngestConfig", "ingest", "info", "write_json_atomic", "DataError"]
