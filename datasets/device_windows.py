"""The training windows held on the accelerator: batches built by gathers there, not in Python on the CPU.

``WindowedDataset.__getitems__`` builds a batch with numpy on the CPU and the loop copies it to the
device; on a GPU that CPU work (and the copy) is the whole step (issue 16: an H100 busy 5-17% of the
time, 40 steps/s). ``DeviceWindows`` copies the dataset's uint8 images, low-dim observations and actions
to the device once and builds the same batch with a handful of index gathers on the device:

    dw = DeviceWindows(ds, torch.device("cuda"))
    batch = dw.batch(idx)            # idx: (B,) int64 tensor on the device; same fields as ds.__getitems__

Sample indices come from the same (CPU) sampler, uploaded ``rows_per_upload`` batches at a time, so the
batches are the CPU path's batches, element for element (test_device_windows). Only plain windows: goal
sampling and video clips stay on the CPU path.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import torch

from mtil.datasets.windowed import WindowedDataset


def device_bytes(ds: WindowedDataset) -> int:
    """Bytes ``DeviceWindows`` puts on the device for ``ds`` (images, low-dim, actions, indices)."""
    lowdim = sum(a.nbytes for a in ds.lowdim.values())
    return ds.image_bytes + lowdim + ds.actions.nbytes + 8 * (ds.num_samples + 2 * len(ds.demos))


class DeviceWindows:
    def __init__(self, ds: WindowedDataset, device: torch.device):
        if ds.goal is not None:
            raise ValueError("DeviceWindows builds plain windows; goal sampling stays on the CPU path")
        self.device = device
        self.To, self.H = ds.obs_horizon, ds.action_horizon
        self.image_keys, self.lowdim_keys = list(ds.image_keys), list(ds.lowdim_keys)
        self.starts = torch.as_tensor(ds.starts, device=device)
        self.lengths = torch.as_tensor(ds.lengths, device=device)
        self.step_task = torch.as_tensor(ds.step_task, device=device)
        self.actions = torch.as_tensor(ds.actions, device=device)
        self.lowdim = {k: torch.as_tensor(v, device=device) for k, v in ds.lowdim.items()}
        self.images = {}
        for k in self.image_keys:
            out = torch.empty((ds.num_samples, *ds.manifest.obs[k].shape), dtype=torch.uint8, device=device)
            for i in range(len(ds.demos)):  # demo by demo: never a second full copy in host memory
                s, n = int(ds.starts[i]), int(ds.lengths[i])
                out[s:s + n] = torch.from_numpy(np.ascontiguousarray(ds.frames(i, k, np.arange(n))))
            self.images[k] = out
        self.o_off = torch.arange(self.To, device=device) - self.To + 1
        self.a_off = torch.arange(self.H, device=device)

    def batch(self, idx: torch.Tensor) -> dict:
        """The batch of global step indices ``idx`` (B,) on the device: the fields and values of
        ``WindowedDataset.__getitems__`` (obs, obs_pad, actions, action_pad, task, index)."""
        demo = torch.searchsorted(self.starts, idx, right=True) - 1
        start, T = self.starts[demo], self.lengths[demo]
        raw_o = (idx - start)[:, None] + self.o_off  # (B, To) demo-relative
        rows = start[:, None] + raw_o.clamp(min=0)
        raw_a = (idx - start)[:, None] + self.a_off  # (B, H)
        arows = start[:, None] + torch.minimum(raw_a, T[:, None] - 1)
        obs = {k: v[rows] for k, v in self.images.items()}
        obs.update({k: v[rows] for k, v in self.lowdim.items()})
        return {"obs": obs, "obs_pad": raw_o < 0, "actions": self.actions[arows],
                "action_pad": raw_a > T[:, None] - 1, "task": self.step_task[idx], "index": idx}

    def stream(self, batches: Iterable[list[int]], rows_per_upload: int = 256) -> Iterator[dict]:
        """Batches for the sampler's index lists: ``rows_per_upload`` of them go to the device in one copy
        (a copy per step would make every step wait for the host)."""
        it, pending = iter(batches), None
        while True:
            rows = [pending] if pending is not None else []
            pending = None
            for b in it:
                if rows and len(b) != len(rows[0]):  # a batch of another size starts the next block
                    pending = b
                    break
                rows.append(b)
                if len(rows) == rows_per_upload:
                    break
            if not rows:
                return
            block = torch.as_tensor(np.asarray(rows, dtype=np.int64), device=self.device)
            for r in range(len(rows)):
                yield self.batch(block[r])
