"""What an evaluation is: ``EvalConfig`` (every option of `mtil eval`, with its validation) and ``Row`` (a task
and one way of giving it); pipeline/evaluation/rows.py plans the rows, pipeline/evaluation/run.py runs them."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from mtil.datasets.errors import UserError

TRAIN_INSTRUCTION = "train instruction"
"""the condition of rows whose task is given by its training instruction: an evaluation's headline"""


@dataclass
class Row:
    """One row of an evaluation: a task and one way of giving it to the policy."""

    task: str  # suite task name, or the stock env's name
    condition: str  # TRAIN_INSTRUCTION | "paraphrase" | "held-out task" | "video" | "goal image"
    instruction: str  # what the policy is told (the task's instruction for video/goal rows)
    task_input: object = None  # str instruction, {"video": clip} or goal image (H, W, 3)
    init_states: list | None = None  # flattened MuJoCo states to start episode i from (--seeds-from)
    env_args: dict | None = None  # the task's own env (tasks from different envs); None: the checkpoint's
    init_states_from: str = ""  # the --seeds-from file init_states come from (for messages)



@dataclass
class EvalConfig:
    """Evaluate a checkpoint by rollouts in simulation: per-task success with 95% intervals, report,
    plot and videos."""

    checkpoint: str
    """checkpoint file written by `mtil train` (e.g. RUN/last.pt)"""
    out: str
    """output directory for eval.json, report.md, success.png and videos/"""
    episodes_per_task: int = 20
    """episodes per row (task x way of giving it)"""
    workers: int = 2
    """parallel worker processes, each with its own simulator and a copy of the policy"""
    tasks: list[str] = field(default_factory=list)
    """suite task names to evaluate (default: every task the checkpoint was trained on)"""
    instructions: str = "train"
    """train (training instructions) | heldout (paraphrases + held-out compositions) | all"""
    condition: str = "auto"
    """auto (as trained; language for mixed policies) | language | video | goal_image: how the task is given"""
    demos: str = ""
    """HDF5 file with demos of the tasks: clips (video) or last frames (goal_image --goal-source demos)"""
    clips: int = 1
    """video rows: how many demos of a task show it, episode i shown by the (i mod N)-th; they are the task's
    last N demos in --demos, those of its mask/valid first (never trained on). 1: one clip decides the whole
    row; 0: every demo of the task in mask/valid (its last demo if none), success over the held-out clips"""
    goal_source: str = "expert"
    """goal_image rows: expert (last frame of the scripted expert's episode on the same seed: a held-out demo in
    the same scene; suite tasks only) | demos (last frame of a demo of the task in --demos)"""
    video_episodes: int = 2
    """episodes per row recorded as mp4 (the first ones)"""
    seed: int = 1000
    """seed of episode 0; episode i uses seed + i"""
    max_steps: int = 300
    """steps before an episode counts as a failure"""
    raw_weights: bool = False
    """use the raw weights instead of the EMA weights"""
    video_size: int = 192
    """video frame size in pixels"""
    seeds_from: str = ""
    """HDF5 demo file: start episode i of each task from the initial state of that task's i-th demo in the file
    (the training demos: fitting vs generalization) instead of a fresh seeded layout"""
    exec_steps: int = 0
    """actions executed per predicted chunk before re-planning; 0: as trained (the checkpoint's --exec-steps)"""
    temporal_ensemble: str = "auto"
    """auto (as trained) | on | off: re-plan every step and average the overlapping chunks (ACT-style)"""
    ensemble_decay: float = -1.0
    """temporal ensembling weight exp(-decay * i) of the i-th oldest chunk; -1: as trained"""

    def rollout_overrides(self, action_horizon: int) -> dict:
        """The policy options this evaluation changes from the checkpoint's ({} for none); checks
        --exec-steps against the checkpoint's chunk length."""
        from mtil.datasets.errors import check_range

        out: dict = {}
        if self.exec_steps:
            check_range("--exec-steps", self.exec_steps, 1, action_horizon, integer=True,
                        note=f" (the checkpoint predicts chunks of {action_horizon})")
            out["exec_steps"] = self.exec_steps
        if self.temporal_ensemble != "auto":
            out["temporal_ensemble"] = self.temporal_ensemble == "on"
        if self.ensemble_decay != -1.0:
            out["ensemble_decay"] = self.ensemble_decay
        return out

    def __post_init__(self) -> None:
        from mtil.datasets.errors import check_range

        for name, lo, hi in (("episodes_per_task", 1, None), ("workers", 1, 64), ("clips", 0, None),
                             ("video_episodes", 0, None), ("seed", 0, 2**63 - 1), ("max_steps", 1, None),
                             ("video_size", 16, 1024)):
            check_range("--" + name.replace("_", "-"), getattr(self, name), lo, hi, integer=True)
        if self.instructions not in ("train", "heldout", "all"):
            raise UserError(f"--instructions must be train, heldout or all, got {self.instructions!r}")
        if self.condition not in ("auto", "language", "video", "goal_image"):
            raise UserError(f"--condition must be auto, language, video or goal_image, got {self.condition!r}")
        if self.temporal_ensemble not in ("auto", "on", "off"):
            raise UserError(f"--temporal-ensemble must be auto, on or off, got {self.temporal_ensemble!r}")
        if self.ensemble_decay != -1.0:
            check_range("--ensemble-decay", self.ensemble_decay, 0, 10)
        check_range("--exec-steps", self.exec_steps, 0, 1024, integer=True)
        if self.goal_source not in ("expert", "demos"):
            raise UserError(f"--goal-source must be expert or demos, got {self.goal_source!r}")
        if self.seeds_from and not os.path.isfile(self.seeds_from):
            raise UserError(f"--seeds-from {self.seeds_from}: no such file")
