"""Benchmark the encoders on this machine's CPU and print a markdown table.

Measures:
- vision backbones with FiLM (small CNN, ResNet-18 GroupNorm): forward (no grad) and forward+backward ms
  per batch of 64 uint8 images at 84 px, conditioned on a 128-d task vector;
- the demo-video encoder: the same for a batch of 8 clips x 8 frames at 84 px;
- the language encoder (default MiniLM): import of transformers, model load, first encode of 16
  instructions with an empty cache (cold), then the cached lookup of the same 16 in a new encoder object
  (no model load).

Run from anywhere (the package must be installed, e.g. `pip install -e .`):

    HF_HUB_OFFLINE=1 python scripts/bench_encoders.py [--threads 2] [--iters 5]

Backbone timings are "median (min)" over `--iters` runs after one warm-up (ResNet-18 uses at most 3:
it takes seconds per batch on CPU); the machine is shared, so the load average is printed too.
Numbers go to docs/benchmarks.md ("## Encoders").
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable

import torch

INSTRUCTIONS = [
    f"{verb} the {colour} {thing}"
    for verb in ("lift", "push")
    for colour in ("red", "green", "blue", "yellow")
    for thing in ("cube", "bowl")
]  # 16 texts


def timed_ms(fn: Callable[[], object], iters: int) -> tuple[float, float]:
    """(median, min) wall time of ``fn()`` in ms over ``iters`` runs, after one warm-up run.

    The machine is shared: the min is the least disturbed run, the median what a job typically sees.
    """
    fn()
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times), min(times)


def fmt(t: tuple[float, float]) -> str:
    return f"{t[0]:.0f} ({t[1]:.0f})"


def bench_module(net: torch.nn.Module, inputs: tuple, iters: int) -> tuple[str, str]:
    """("median (min)" forward ms without grad, same for forward+backward) for ``net(*inputs)``."""
    net.train()

    def fwd() -> None:
        with torch.no_grad():
            net(*inputs)

    def fwd_bwd() -> None:
        net.zero_grad(set_to_none=True)
        net(*inputs).square().mean().backward()

    return fmt(timed_ms(fwd, iters)), fmt(timed_ms(fwd_bwd, iters))


def bench_language() -> list[tuple[str, str]]:
    """Rows (what, ms) for the language encoder: import, cold load + encode, cached lookup."""
    t0 = time.perf_counter()
    import transformers  # noqa: F401  (timed: the cold path pays for it, the cached path does not)

    t_import = time.perf_counter() - t0
    from mtil.encoders.language import LanguageEncoder

    with tempfile.TemporaryDirectory() as cache:
        enc = LanguageEncoder(cache_dir=cache)
        t0 = time.perf_counter()
        enc._load()
        t_load = time.perf_counter() - t0
        t0 = time.perf_counter()
        enc.encode(INSTRUCTIONS)
        t_encode = time.perf_counter() - t0
        cached = LanguageEncoder(cache_dir=cache)
        t0 = time.perf_counter()
        cached.encode(INSTRUCTIONS)
        t_cached = time.perf_counter() - t0
        assert not cached.model_loaded
        lookup, _ = timed_ms(lambda: LanguageEncoder(cache_dir=cache).encode(INSTRUCTIONS), 5)
    return [
        ("`import transformers` (first in process)", f"{t_import * 1e3:.0f}"),
        ("MiniLM load (tokenizer + model, offline)", f"{t_load * 1e3:.0f}"),
        ("encode 16 instructions, empty cache (model loaded)", f"{t_encode * 1e3:.0f}"),
        ("cold total: import + load + encode 16", f"{(t_import + t_load + t_encode) * 1e3:.0f}"),
        ("cached lookup of 16, new encoder object (first call)", f"{t_cached * 1e3:.1f}"),
        ("cached lookup of 16, new encoder object (median of 5)", f"{lookup:.1f}"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--iters", type=int, default=5, help="timed iterations per measurement")
    parser.add_argument("--batch", type=int, default=64, help="images per backbone batch")
    parser.add_argument("--size", type=int, default=84, help="image side in pixels")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    load_start = os.getloadavg()

    language_rows = bench_language()  # first, so that transformers' import is measured cold

    from mtil.encoders.backbones import ResNet18Backbone, SmallCNN
    from mtil.encoders.video import VideoEncoder

    b, s, cond = args.batch, args.size, 128
    images = torch.randint(0, 256, (b, 3, s, s), dtype=torch.uint8)
    z = torch.randn(b, cond)
    clips = torch.randint(0, 256, (8, 8, 3, s, s), dtype=torch.uint8)
    cases = [
        ("small CNN + FiLM", SmallCNN(cond_dim=cond, out_dim=256), (images, z), f"{b}x3x{s}x{s}", args.iters),
        ("ResNet-18 GN + FiLM", ResNet18Backbone(cond_dim=cond, out_dim=256), (images, z), f"{b}x3x{s}x{s}", 3),
        (
            "video encoder (CNN + 1-layer transformer)",
            VideoEncoder(out_dim=384),
            (clips,),
            f"8x8x3x{s}x{s}",
            args.iters,
        ),
    ]
    rows = []
    for name, net, inputs, shape, iters in cases:
        params = sum(p.numel() for p in net.parameters())
        fwd, fwd_bwd = bench_module(net, inputs, min(iters, args.iters))
        rows.append((name, shape, f"{params / 1e6:.2f} M", fwd, fwd_bwd))

    load = "/".join(f"{x:.1f}" for x in load_start + os.getloadavg())
    print(f"torch {torch.__version__}, {args.threads} threads, {os.cpu_count()} CPUs, {platform.machine()}, ")
    print(f"load average (1/5/15 min) at start/end: {load}\n")
    print("| module | input (uint8) | params | forward ms, median (min) | forward+backward ms, median (min) |")
    print("| --- | --- | --- | --- | --- |")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print("\n| language encoder (default MiniLM, D=384) | ms |")
    print("| --- | --- |")
    for what, ms in language_rows:
        print(f"| {what} | {ms} |")


if __name__ == "__main__":
    main()
