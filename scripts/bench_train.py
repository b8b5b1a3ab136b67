"""Training-step benchmark: steps/s, data-wait fraction, GPU busy and peak memory of `mtil train`'s loop.

Builds a synthetic multi-task file shaped like collected data (8 tasks x 20 demos x 150 steps, two
cameras at --image-size), then runs the real training loop (`mtil.pipeline.training.loop.train`) for --steps
steps with the small CNN and reads the numbers the loop itself logs to TensorBoard (data-wait fraction =
time spent waiting for the next batch / step time). Steady state: from the 10th to the last logged step.
On a GPU, "GPU busy" is nvidia-smi's utilization.gpu (share of time a kernel was running) sampled every
100 ms during that window.

    python scripts/bench_train.py [--image-size 84] [--steps 60] [--threads 2]
    python scripts/bench_train.py --device cuda --steps 1500 --device-data off --amp off   # the old GPU path

--device-data / --amp / --compile are passed to TrainConfig only when given, so the same script also
measures an older checkout (PYTHONPATH pointing at its source) that lacks those options.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import time
from datetime import date

import psutil
import torch

from mtil.datasets.synthetic import DEFAULT_INSTRUCTIONS, write_synthetic
from mtil.pipeline.training.loop import TrainConfig, train


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--image-size", type=int, nargs="+", default=[64, 84])
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    ap.add_argument("--conditioning", default="onehot", help="onehot avoids timing the language model load")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda")
    ap.add_argument("--device-data", help="TrainConfig.device_data (auto | on | off); default: the code's own")
    ap.add_argument("--amp", help="TrainConfig.amp (auto | bf16 | off); default: the code's own")
    ap.add_argument("--compile", help="TrainConfig.compile (off | default | reduce-overhead)")
    ap.add_argument("--label", default="", help="name of this variant in the table and the JSON line")
    ap.add_argument("--json", help="append one JSON line per image size to this file")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    extra = {k: v for k, v in (("device_data", args.device_data), ("amp", args.amp), ("compile", args.compile)) if v}
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() and args.device != "cpu" else "no GPU"
    print(f"{date.today()}, {platform.machine()}, {os.cpu_count()} cores, {gpu}, torch {torch.__version__}, "
          f"{args.threads} threads, batch {args.batch_size}, small CNN, 2 cameras, obs horizon 1, action chunk 8, "
          f"{args.label or 'default'} {extra}")
    print("| variant | image size | steps/s | s/step | data wait | GPU busy | peak RSS (GiB) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
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
            busy = GpuBusy() if gpu != "no GPU" else None
            t0 = time.perf_counter()
            train(TrainConfig(data=[data], out=os.path.join(tmp, "run"), steps=args.steps, batch_size=args.batch_size,
                              conditioning=args.conditioning, save_every=10**6, warmup_steps=5, device=args.device,
                              skip_env_check=True, **extra))
            total = time.perf_counter() - t0
            stop.set()
            t.join()
            samples = busy.stop() if busy else []
            from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

            ea = EventAccumulator(os.path.join(tmp, "run", "tb"))
            ea.Reload()
            loss = ea.Scalars("train/loss")
            wait = ea.Scalars("train/data_wait_fraction")[-1].value
            # steady state: from the 10th to the last logged step (skips start-up and the first steps)
            s_per_step = (loss[-1].wall_time - loss[0].wall_time) / (loss[-1].step - loss[0].step)
            window = [u for ts, u in samples if loss[0].wall_time <= ts <= loss[-1].wall_time]
            util = sum(window) / len(window) / 100 if window else None
            print(f"| {args.label or 'default'} | {size} | {1 / s_per_step:.2f} | {s_per_step:.4f} | {wait:.1%} | "
                  f"{'-' if util is None else f'{util:.0%}'} | {peak[0] / 2**30:.2f} |"
                  f"  (whole run incl. start-up {total:.0f} s)", flush=True)
            if args.json:
                with open(args.json, "a") as f:
                    f.write(json.dumps({"label": args.label, "image_size": size, "steps_per_s": 1 / s_per_step,
                                        "data_wait": wait, "gpu_busy": util, "gpu_samples": len(window),
                                        "peak_rss_gib": peak[0] / 2**30, "batch_size": args.batch_size,
                                        "device": gpu, "cores": os.cpu_count(), "threads": args.threads,
                                        "options": extra, "date": str(date.today()), "steps": args.steps}) + "\n")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


class GpuBusy:
    """nvidia-smi's utilization.gpu every 100 ms, with wall-clock times: [(time, percent)]."""

    def __init__(self):
        self.samples: list[tuple[float, float]] = []
        self.proc = subprocess.Popen(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
                                      "-lms", "100"], stdout=subprocess.PIPE, text=True)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        for line in self.proc.stdout:
            if line.strip().isdigit():
                self.samples.append((time.time(), float(line)))

    def stop(self) -> list[tuple[float, float]]:
        self.proc.terminate()
        self.thread.join(timeout=5)
        return self.samples


if __name__ == "__main__":
    main()
