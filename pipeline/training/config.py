"""``TrainConfig``: every option of `mtil train` (the policy's architecture options come from
``PolicyOptions``), with its validation."""

from __future__ import annotations

from dataclasses import dataclass, field

from mtil.datasets.errors import UserError, check_range
from mtil.encoders.conditioners import CONDITIONERS, TaskConditioner
from mtil.encoders.conditioning import RANGES, ConditioningConfig, conditioning_kind
from mtil.pipeline.policy.model import PolicyOptions


@dataclass
class TrainConfig(PolicyOptions):
    """Train one multi-task policy by behavior cloning on HDF5 demonstrations."""

    data: list[str]
    """HDF5 files, or one directory made by `mtil ingest`"""
    out: str
    """run directory (config.json, last.pt, step_<n>.pt, tb/)"""
    steps: int = 3000
    """gradient steps"""
    seed: int = 0
    """seed of model init, sampler stream, augmentation and clip sampling"""
    batch_size: int = 64
    """samples per step (per process under DDP)"""
    conditioning: str = ConditioningConfig.kind
    """task conditioning (encoders/conditioners CONDITIONERS): language | language_tokens (learned queries attend
    over the instruction's token states instead of one sentence vector: for new pairings of known words) |
    video | onehot | goal_image | mixed (language or hindsight goal image, one dropped at random per sample; the
    policy then takes either at evaluation)"""
    goal_prob: float = ConditioningConfig.goal_prob
    """mixed: share of samples conditioned on their hindsight goal image instead of their instruction"""
    tasks: list[str] = field(default_factory=list)
    """train on these tasks only: suite task names (lift_red) or instructions (default: every task in the data)"""
    demos_per_task: list[str] = field(default_factory=list)
    """cap the training demos per task (the first ones in file order): N for every task and/or TASK=N"""
    failed_demos: str = "auto"
    """unsuccessful episodes (mask/failed, `mtil collect --keep-failures`): auto (used with goal_image and
    mixed conditioning, as hindsight-goal data only; skipped otherwise) | use | skip"""
    sampler: str = "stratified"
    """stratified (equal share of every batch per task) | size (proportional to task size) | power (share
    proportional to task size ^ --sampler-alpha: between the two)"""
    sampler_alpha: float = 0.5
    """power sampler: exponent alpha of p(task) ~ n_task^alpha (0: stratified, 1: size)"""
    gripper_oversample: int = 1
    """draw the windows within --gripper-window steps of a gripper switch (the last action dimension changing
    sign) this many times as often as the other windows of their task (1: off); tasks keep their share. On the
    9-task suite 3x cost 22 points over 3 seeds (docs/results.md section 23)"""
    gripper_window: int = 8
    """--gripper-oversample: steps before and after a gripper switch that count as near it"""
    resume: bool = False
    """continue from RUN/last.pt (the config must be unchanged)"""
    save_every: int = 500
    """write step_<n>.pt and last.pt every N steps (and at the end)"""
    eval_every: int = 0
    """validation loss every N steps on the valid split (0: only at the end)"""
    rollout_every: int = 0
    """evaluate by simulated rollouts every N steps (at a checkpoint save) and keep the best as best.pt; 0: off"""
    rollout_episodes: int = 10
    """episodes per task of each periodic rollout evaluation"""
    lr: float = 1e-3
    """peak learning rate of AdamW (1e-3 reached 38% vs 3% for 3e-4 on the quickstart tasks at 3000 steps)"""
    weight_decay: float = 1e-4
    """AdamW weight decay (matrices only)"""
    warmup_steps: int = 200
    """linear warmup steps, then cosine decay to 10% of the peak"""
    grad_clip: float = 1.0
    """gradient norm clip"""
    ema_decay: float = 0.995
    """decay of the EMA weights used for evaluation"""
    cond_dim: int = ConditioningConfig.out_dim
    """size of the task vector z (the conditioning's out_dim)"""
    image_keys: list[str] = field(default_factory=list)
    """cameras to use (default: every *_image key in the data)"""
    lowdim_keys: list[str] = field(default_factory=list)
    """low-dim keys (default: the proprioception mtil's environments give at rollout, robot0_eef_pos,
    robot0_eef_quat, robot0_gripper_qpos, those in the data; data with none of them: keys with eef, gripper or
    joint in the name)"""
    skip_env_check: bool = False
    """do not check at start that the environment of each file's env_args produces the policy's keys"""
    goal_max_offset: int = 0
    """goal_image: goals at most this many steps ahead (0: anywhere in the demo's future)"""
    num_workers: int = -1
    """DataLoader workers (-1: 0 for memory-mapped/in-RAM images, 2 for h5py reads)"""
    device: str = "auto"
    """auto (cuda if available) | cpu | cuda"""
    device_data: str = "auto"
    """keep the training windows on the device and build batches there: auto (on a GPU, when the data takes
    under half of its free memory and the conditioning is language/one-hot) | on | off"""
    amp: str = "off"
    """mixed precision of the forward pass: off | bf16 (autocast; on an H200 it made the small CNN 36% slower,
    62 vs 97 steps/s: its casts add kernel launches to a launch-bound step; for large backbones)"""
    compile: str = "off"
    """torch.compile the policy's training step: off | default | reduce-overhead (adds CUDA graphs); compiling
    costs tens of seconds at start"""
    init_from: str = ""
    """start from this checkpoint's (EMA) weights and normalization instead of a fresh network (fine-tuning,
    e.g. DAgger rounds); the data must have the same tasks, in the same order, and observation keys"""

    def __post_init__(self) -> None:
        super().__post_init__()  # the policy options
        if not self.data:
            raise UserError("--data: give at least one HDF5 file or ingest directory")
        for name, (lo, hi, note) in NUMERIC_RANGES.items():  # every numeric option (NaN and inf rejected)
            check_range("--" + name.replace("_", "-"), getattr(self, name), lo, hi, note=note,
                        integer=self.__dataclass_fields__[name].type == "int", **OPEN_ENDS.get(name, {}))
        if self.sampler not in ("stratified", "size", "power"):
            raise UserError(f"--sampler must be stratified, size or power, got {self.sampler!r}")
        conditioning_kind(self.conditioning, "--conditioning")  # raises on an unknown kind
        check_device(self.device)
        if self.failed_demos not in ("auto", "use", "skip"):
            raise UserError(f"--failed-demos must be auto, use or skip, got {self.failed_demos!r}")
        if self.failed_demos == "use" and not self.kind.uses_goal_image:
            goal_kinds = " or ".join(k for k, c in CONDITIONERS.items() if c.uses_goal_image)
            raise UserError(f"--failed-demos use: unsuccessful episodes do not demonstrate their instruction; only "
                            f"{goal_kinds} conditioning can learn from them (not {self.conditioning})")
        parse_demo_caps(self.demos_per_task)  # raises on a malformed entry
        for name, value, allowed in (("--device-data", self.device_data, ("auto", "on", "off")),
                                     ("--amp", self.amp, ("off", "bf16")),
                                     ("--compile", self.compile, ("off", "default", "reduce-overhead"))):
            if value not in allowed:
                raise UserError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")

    @property
    def kind(self) -> type[TaskConditioner]:
        """The conditioning kind: what data it needs (language, goal images, video)."""
        return conditioning_kind(self.conditioning)

    def conditioning_config(self, num_tasks: int, lang_dim: int) -> ConditioningConfig:
        """The policy's ConditioningConfig: this run's options under their conditioning names (``cond_dim`` is
        ``out_dim``), the rest from the data (``num_tasks``, ``lang_dim``) or at their defaults."""
        return ConditioningConfig(kind=self.conditioning, out_dim=self.cond_dim, goal_prob=self.goal_prob,
                                  num_tasks=num_tasks, lang_dim=lang_dim)


# The numeric options of TrainConfig (those of PolicyOptions are checked there): field -> (low, high, what the
# bounds mean); bounds are inclusive unless OPEN_ENDS says otherwise; int fields must be integers.
NUMERIC_RANGES: dict[str, tuple[float | None, float | None, str]] = {
    "steps": (1, None, ""),
    "seed": (0, 2**63 - 1, ""),
    "batch_size": (1, None, ""),
    "goal_prob": (*RANGES["goal_prob"], ""),
    "sampler_alpha": (0.0, 1.0, " (0: stratified, 1: size)"),
    "gripper_oversample": (1, 100, " (1: off)"),
    "gripper_window": (0, 10000, ""),
    "save_every": (1, None, ""),
    "eval_every": (0, None, " (0: only at the end)"),
    "rollout_every": (0, None, " (0: off)"),
    "rollout_episodes": (1, None, ""),
    "lr": (0.0, 1.0, ""),
    "weight_decay": (0.0, 1.0, ""),
    "warmup_steps": (0, None, " (0: no warmup)"),
    "grad_clip": (0.0, None, " (the largest gradient norm; a large value clips nothing)"),
    "ema_decay": (0.0, 1.0, " (1 would never move the EMA weights)"),
    "cond_dim": (*RANGES["out_dim"], ""),
    "goal_max_offset": (0, None, " (0: anywhere in the demo's future)"),
    "num_workers": (-1, 256, " (-1: automatic)"),
}
OPEN_ENDS: dict[str, dict] = {"lr": {"lo_open": True}, "grad_clip": {"lo_open": True}, "ema_decay": {"hi_open": True}}


def check_device(device: str) -> None:
    """``--device``: auto, cpu, cuda or cuda:N, and a CUDA device only where one is available (``UserError``
    otherwise, before any data is read)."""
    import re

    import torch

    if device in ("auto", "cpu"):
        return
    m = re.fullmatch(r"cuda(?::(\d+))?", device)
    if m is None:
        raise UserError(f"--device must be auto, cpu, cuda or cuda:N, got {device!r}")
    if not torch.cuda.is_available():
        raise UserError(f"--device {device}: no CUDA GPU is available on this machine (torch "
                        f"{torch.__version__}, CUDA {torch.version.cuda or 'not built in'}); use --device cpu or auto")
    if m.group(1) is not None and int(m.group(1)) >= torch.cuda.device_count():
        raise UserError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s) "
                        f"(cuda:0..cuda:{torch.cuda.device_count() - 1})")


# Fields that do not change what is computed: they may differ when resuming.
RESUME_FREE = {"skip_env_check", "resume", "save_every", "eval_every", "num_workers", "device", "out", "rollout_every",
               "rollout_episodes", "device_data", "amp", "compile"}


def parse_demo_caps(entries: list[str]) -> tuple[int | None, dict[str, int]]:
    """``--demos-per-task`` entries (``N`` and/or ``TASK=N``) -> (cap for every task, {task: cap})."""
    default, per = None, {}
    for e in entries:
        name, _, num = e.rpartition("=")
        try:
            n = int(num)
        except ValueError:
            n = -1
        if n < 1:
            raise UserError(f"--demos-per-task {e!r}: expected N or TASK=N with N >= 1")
        if name:
            per[name] = n
        else:
            default = n
    return default, per
