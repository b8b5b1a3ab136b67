"""Training-step benchmark: steps/s, data-wait fraction and peak memory of `mtil train`'s loop.

Builds (or reuses) a synthetic multi-task file shaped like collected data (8 tasks x 20 demos x 150
steps, two cameras at --image-size), then runs the real training loop (`mtil.pipeline.train.train`)
for --steps steps at batch 64 with the small CNN and reads the numbers the loop itself logs to
TensorBoard (data-wait fraction = time spent waiting for the next batch / step time).

    python scripts/bench_train.py [--image-size 84] [--steps 60] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import threading
import time
from datetime import date

import psutil
import torch

from mtil.datasets.synthetic import DEFAULT_INSTRUCTIONS, write_synthetic
from mtil.pipeline.train import TrainConfig, train


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--image-size", type=int, nargs="+", default=[64, 84])
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    ap.add_argument("--conditioning", default="onehot", help="onehot avoids timing the language model load")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{date.today()}, {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{args.threads} threads, batch 64, small CNN, 2 cameras, obs horizon 1, action chunk 8")
    print("| image size | steps/s | s/step | data wait | peak RSS (GiB) |")
    print("| --- | --- | --- | --- | --- |")
    for size in args.image_size:
        tmp = tempfile.mkdtemp(prefix="mtil-bench-train-")
        try:
            data = write_synthetic(os.path.join(tmp, "d.hdf5"), tasks=DEFAULT_INSTRUCTIONS[:8], demos_per_task=20,
                                   steps=150, image_size=size)
            peak = [0]
            stop = threading.Event()

            def watch(peak=peak, stop=stop):
                me = psutil.Process()
                while not stop.is_set():
                    peak[0] = max(peak[0], me.memory_info().rss)
                    time.sleep(0.05)

            t = threading.Thread(target=watch, daemon=True)
            t.start()
            t0 = time.perf_counter()
            train(TrainConfig(data=[data], out=os.path.join(tmp, "run"), steps=args.steps, batch_size=64,
                              conditioning=args.conditioning, save_every=10**6, warmup_steps=5))
            total = time.perf_counter() - t0
            stop.set()
            t.join()
            from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

            ea = EventAccumulator(os.path.join(tmp, "run", "tb"))
            ea.Reload()
            loss = ea.Scalars("train/loss")
            wait = ea.Scalars("train/data_wait_fraction")[-1].value
            # steady state: from the 10th to the last logged step (skips start-up and the first steps)
            s_per_step = (loss[-1].wall_time - loss[0].wall_time) / (loss[-1].step - loss[0].step)
            print(f"| {size} | {1 / s_per_step:.2f} | {s_per_step:.3f} | {wait:.1%} | {peak[0] / 2**30:.2f} |"
                  f"  (whole run incl. start-up {total:.0f} s)")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
