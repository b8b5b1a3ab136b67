"""Synthetic demonstration files in robomimic's layout (or LIBERO's variant), for tests and benchmarks.

Images are smooth gradients with a moving square rather than noise, so gzip compresses them about as
well as real renders. Actions are a task-dependent constant plus a little noise, which makes "the right
action depends only on the task" learnable by a conditioned policy and not by an unconditioned one.
"""

from __future__ import annotations

import json

import h5py
import numpy as np

DEFAULT_INSTRUCTIONS = ["lift the red cube", "lift the green cube", "lift the blue cube",
                        "stack the red cube on the green cube", "put the nut on the peg",
                        "open the drawer", "push the button", "close the drawer"]


def write_synthetic(path: str, tasks: list[str] | None = None, demos_per_task: int | list[int] = 3,
                    steps: int | tuple[int, int] = 20, image_size: int = 16,
                    cameras=("agentview", "robot0_eye_in_hand"),
                    action_dim: int = 7, compression: str | None = None, layout: str = "robomimic",
                    per_demo_language: bool = True, masks: bool = False, task_in_obs: bool = True,
                    seed: int = 0) -> str:
    """Write a valid file; ``steps`` is a length or a (min, max) range. Returns ``path``.

    ``task_in_obs=False`` makes observations carry no trace of the task (same image colours, same
    proprio distribution), so only a task-conditioned policy can tell which action is right.

    layout "libero": one task per file (``problem_info``), ``*_rgb`` keys, images stored upside down.
    """
    tasks = list(tasks or DEFAULT_INSTRUCTIONS[:2])
    if layout == "libero" and len(tasks) != 1:
        raise ValueError("a LIBERO file holds one task")
    counts = demos_per_task if isinstance(demos_per_task, list) else [demos_per_task] * len(tasks)
    rng = np.random.default_rng(seed)
    suffix = "_rgb" if layout == "libero" else "_image"
    if layout == "libero":
        cameras = tuple(c.replace("robot0_", "") for c in cameras)
    yy, xx = np.mgrid[0:image_size, 0:image_size]
    env_args = {"env_name": "Synthetic", "type": 1, "env_kwargs": {}}
    if layout != "libero":
        env_args["image_convention"] = "opencv"
    total = 0
    with h5py.File(path, "w") as f:
        data = f.create_group("data")
        data.attrs["env_args"] = json.dumps(env_args)
        if layout == "libero" or not per_demo_language:
            data.attrs["problem_info"] = json.dumps({"language_instruction": tasks[0]})
        n = 0
        names = []
        for ti, text in enumerate(tasks):
            for _ in range(counts[ti]):
                T = steps if isinstance(steps, int) else int(rng.integers(steps[0], steps[1] + 1))
                g = data.create_group(f"demo_{n}")
                names.append(f"demo_{n}")
                g.attrs["num_samples"] = T
                if per_demo_language and layout != "libero":
                    g.attrs["language_instruction"] = text
                base = np.zeros(action_dim)
                base[ti % action_dim] = 1.0 if ti < action_dim else -1.0
                # noise only where the task acts: the other dimensions are exactly 0 for this task
                g.create_dataset("actions", data=base * (1 + 0.01 * rng.standard_normal((T, action_dim))))
                g.create_dataset("states", data=rng.standard_normal((T, 10)))
                g.create_dataset("rewards", data=np.zeros(T))
                g.create_dataset("dones", data=np.eye(1, T, T - 1)[0])
                obs = g.create_group("obs")
                for ci, cam in enumerate(cameras):
                    img = np.empty((T, image_size, image_size, 3), np.uint8)
                    for t in range(T):
                        img[t, ..., 0] = (xx * 255 // image_size)
                        img[t, ..., 1] = (yy * 255 // image_size)
                        img[t, ..., 2] = ((40 * ti if task_in_obs else 0) + 20 * ci) % 256  # numpy 2: no overflow
                        c = (t * image_size) // T
                        img[t, c:c + 3, c:c + 3] = 255
                        # an upright marker: the bottom rows are dark (the "table"), unless stored flipped
                    img[:, -2:] = 0
                    if layout == "libero":
                        img = img[:, ::-1]
                    kw = {"compression": compression, "chunks": (1, image_size, image_size, 3)} if compression else {}
                    obs.create_dataset(cam + suffix, data=img, **kw)
                obs.create_dataset("robot0_eef_pos" if layout != "libero" else "ee_pos",
                                   data=rng.standard_normal((T, 3)).astype(np.float32) + (ti if task_in_obs else 0))
                obs.create_dataset("robot0_gripper_qpos" if layout != "libero" else "gripper_states",
                                   data=rng.standard_normal((T, 2)))
                total += T
                n += 1
        data.attrs["total"] = total
        if masks:
            m = f.create_group("mask")
            m.create_dataset("train", data=np.array(names[:-1], dtype="S"))
            m.create_dataset("valid", data=np.array(names[-1:], dtype="S"))
    return path
