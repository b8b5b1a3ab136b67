"""The multi-task vision policy pi(a_t..a_{t+H-1} | o_{t-To+1..t}, z_task).

Per camera, a backbone with FiLM after every conv block (conditioned on the task vector z) turns each of
the To frames into features; with the normalized low-dim observations and z itself they go through an
MLP that predicts a chunk of H normalized actions: an L1 regression head (default) or a Gaussian mixture
(``head="gmm"``). At rollout the policy either executes ``exec_steps`` of each chunk and re-plans, or
re-plans every step and averages the overlapping chunks (``temporal_ensemble``, ACT-style weights).

API (LeRobot/diffusion_policy style)::

    loss, metrics = policy.compute_loss(batch)    # batch as built by mtil.datasets.windowed
    action = policy.predict_action(obs, task)      # obs: one step, batched (B, ...) or not
    policy.reset()                                 # new episode(s)
"""

from __future__ import annotations

import dataclasses
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtil.datasets.errors import UserError, check_range
from mtil.encoders.backbones import make_backbone, random_shift
from mtil.encoders.conditioners import PolicyTasks
from mtil.encoders.conditioning import ConditioningConfig, make_conditioner
from mtil.encoders.video import cosine_alignment_loss
from mtil.pipeline.policy.heads import HEADS
from mtil.pipeline.policy.normalizer import Normalizer
from mtil.pipeline.policy.trunks import TRUNKS


def _opt(field_name: str) -> str:
    """The command-line option of a config field: ``grad_clip`` -> ``--grad-clip``."""
    return "--" + field_name.replace("_", "-")


@dataclass(kw_only=True)
class PolicyOptions:
    """The policy's architecture and rollout choices a user makes (`mtil train` exposes every one); the
    rest of ``PolicyConfig`` comes from the data."""

    obs_horizon: int = 1
    """observation frames the policy sees (t-To+1 .. t); each extra frame costs a full CNN pass per camera"""
    action_horizon: int = 8
    """actions predicted per chunk (t .. t+H-1)"""
    exec_steps: int = 4
    """actions executed per chunk at rollout before re-planning (without temporal ensembling)"""
    temporal_ensemble: bool = False
    """at rollout, re-plan every step and average the overlapping chunks' actions for this step (ACT-style)"""
    ensemble_decay: float = 0.1
    """temporal ensembling: weight exp(-decay * i) of the i-th oldest chunk still covering this step"""
    backbone: str = "small_cnn"
    """image backbone per camera, with FiLM (encoders/backbones.py BACKBONES): small_cnn (CPU) | resnet18 (GPU)"""
    feature_dim: int = 64
    """image features per camera and frame (the backbone's output size)"""
    trunk: str = "mlp"
    """what combines the observation tokens (pipeline/trunks): mlp (two layers over their concatenation) |
    transformer (attention over camera, proprio and task tokens with a readout token; BAKU-style)"""
    hidden_dim: int = 256
    """width of the trunk (MLP layers, or the transformer's token size)"""
    trunk_layers: int = 4
    """transformer trunk: encoder layers"""
    trunk_heads: int = 4
    """transformer trunk: attention heads (must divide --hidden-dim)"""
    trunk_dropout: float = 0.1
    """transformer trunk: dropout in training"""
    head: str = "l1"
    """action head (pipeline/heads): l1 (regression of the action chunk) | gmm (Gaussian mixture over chunks) |
    flow (flow matching, --flow-steps Euler steps at rollout)"""
    gmm_modes: int = 5
    """gmm head: mixture components"""
    flow_steps: int = 10
    """flow head: integration steps per chunk at rollout"""
    gripper_bce: bool = False
    """train the gripper (the last action dimension) as a binary open/close output by cross-entropy instead of
    through the head; at rollout it is -1 or +1"""
    shift_pad: int = 4
    """random-shift augmentation in pixels (training only); 0 disables"""
    align_weight: float = 1.0
    """video conditioning: weight of the cosine loss aligning clip and language embeddings"""

    def __post_init__(self) -> None:
        from mtil.encoders.backbones import BACKBONES
        from mtil.pipeline.policy.heads import HEADS
        from mtil.pipeline.policy.trunks import TRUNKS

        for name, table in (("head", HEADS), ("trunk", TRUNKS), ("backbone", BACKBONES)):
            if getattr(self, name) not in table:
                raise UserError(f"--{name} must be one of {', '.join(table)}, got {getattr(self, name)!r}")
        for name, lo in (("obs_horizon", 1), ("action_horizon", 1), ("feature_dim", 1), ("hidden_dim", 1),
                         ("gmm_modes", 1), ("shift_pad", 0), ("trunk_layers", 1), ("trunk_heads", 1),
                         ("flow_steps", 1)):
            check_range(_opt(name), getattr(self, name), lo, integer=True)
        check_range("--exec-steps", self.exec_steps, 1, self.action_horizon, integer=True,
                    note=f" (--action-horizon is {self.action_horizon})")
        check_range("--ensemble-decay", self.ensemble_decay, 0, note=" (0: equal weights)")
        check_range("--align-weight", self.align_weight, 0)
        check_range("--trunk-dropout", self.trunk_dropout, 0, 1, hi_open=True)
        if self.trunk == "transformer" and self.hidden_dim % self.trunk_heads:
            raise UserError(f"--trunk-heads {self.trunk_heads} must divide --hidden-dim {self.hidden_dim}")

    def options(self) -> dict:
        """Just the PolicyOptions fields of this object (also of a subclass such as TrainConfig)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(PolicyOptions)}


@dataclass
class PolicyConfig(PolicyOptions):
    """Architecture of the policy; saved as a dict in every checkpoint. Build it with ``from_manifest``."""

    image_keys: list[str]
    """camera observation keys, e.g. agentview_image, robot0_eye_in_hand_image"""
    lowdim_keys: list[str]
    """low-dim observation keys fed to the policy (proprioception)"""
    lowdim_dims: list[int]
    """flattened size of each low-dim key"""
    image_size: list[int]
    """(H, W) of the camera images"""
    action_dim: int
    """size of one action"""
    conditioning: dict
    """ConditioningConfig as a dict (kind, out_dim, ...)"""
    tasks: list[str] = field(default_factory=list)
    """task vocabulary: instruction of each task id"""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.image_keys:
            raise UserError("the policy needs at least one camera (an *_image observation key)")

    @classmethod
    def from_manifest(cls, manifest, options: PolicyOptions, conditioning: ConditioningConfig,
                      image_keys: list[str] | None = None, lowdim_keys: list[str] | None = None) -> PolicyConfig:
        """The policy for a dataset (``manifest``: a ``mtil.datasets.manifest.Manifest``): its cameras
        (default: every image key), proprioception (default: ``default_lowdim_keys``), image size, action size
        and task vocabulary, with ``options``."""
        obs = manifest.obs
        image_keys = list(image_keys or [k for k, v in obs.items() if v.image])
        lowdim_keys = list(lowdim_keys or default_lowdim_keys(obs))
        for k in image_keys + lowdim_keys:
            if k not in obs:
                raise UserError(f"observation key {k!r} is not in the data (have: {', '.join(obs)})")
        return cls(image_keys=image_keys, lowdim_keys=lowdim_keys,
                   lowdim_dims=[int(np.prod(obs[k].shape)) for k in lowdim_keys],
                   image_size=list(obs[image_keys[0]].shape[:2]) if image_keys else [],
                   action_dim=manifest.action_dim, conditioning=conditioning.to_dict(),
                   tasks=[t.instruction for t in manifest.tasks], **options.options())

    @classmethod
    def from_dict(cls, d: dict) -> PolicyConfig:
        """The inverse of ``dataclasses.asdict`` (a checkpoint's ``policy_config``); unknown fields raise."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise UserError(f"policy config has unknown field(s): {', '.join(unknown)}")
        return cls(**d)

    @property
    def conditioning_config(self) -> ConditioningConfig:
        return ConditioningConfig(**self.conditioning)


class MultiTaskPolicy(nn.Module):
    def __init__(self, cfg: PolicyConfig, stats: dict, task_lang_emb: Tensor | None = None):
        super().__init__()
        self.cfg = cfg
        self.cond = make_conditioner(cfg.conditioning)
        self.kind = self.cond.kind
        z_dim = self.cond.out_dim
        self.backbones = nn.ModuleDict({k: make_backbone(cfg.backbone, cond_dim=z_dim, out_dim=cfg.feature_dim)
                                        for k in cfg.image_keys})
        self.normalizer = Normalizer(stats, cfg.lowdim_keys, cfg.action_dim)
        To, A, H = cfg.obs_horizon, cfg.action_dim, cfg.action_horizon
        # tokens: each camera's features per frame, the low-dim observations per frame, the task vector
        token_dims = [cfg.feature_dim] * (len(cfg.image_keys) * To)
        token_dims += [sum(cfg.lowdim_dims)] * To if sum(cfg.lowdim_dims) else []
        token_dims += [z_dim] if z_dim else []
        self.trunk = TRUNKS[cfg.trunk](token_dims, cfg)
        self.head = HEADS[cfg.head](self.trunk.out_dim, H, A - 1 if cfg.gripper_bce else A, cfg)
        self.gripper = nn.Linear(self.trunk.out_dim, H) if cfg.gripper_bce else None  # open/close logits
        emb = task_lang_emb if task_lang_emb is not None else torch.zeros(len(cfg.tasks), 0)
        self.register_buffer("task_lang_emb", emb.float().clone())
        self._lang_encoder = None
        self.reset()

    # ------------------------------------------------------------------ conditioning
    def tasks_view(self) -> PolicyTasks:
        """What the conditioning kind may read of the policy: task names, their language embeddings, the
        camera goals and clips come from, and the instruction encoder."""
        return PolicyTasks(self.cfg.tasks, self.task_lang_emb, self.cfg.image_keys[0], self.embed_texts)

    def task_vector(self, batch: dict) -> tuple[Tensor, Tensor | None]:
        """z (B, out_dim) for a training batch, and the video embedding (for the alignment loss): the
        conditioning kind reads its input (task ids, instructions, goals, clips) from the batch."""
        return self.cond.task_vector(batch, self.tasks_view())

    # ------------------------------------------------------------------ network
    def _features(self, obs: dict[str, Tensor], z: Tensor, augment: bool) -> Tensor:
        """obs images (B, To, H, W, 3) uint8 + low-dim (B, To, D) -> tokens -> trunk -> (B, trunk.out_dim).
        Token order (cameras by frame, low-dim by frame, z) is the concatenation the MLP trunk always read."""
        tokens = []
        for k in self.cfg.image_keys:
            x = obs[k]
            B, To = x.shape[:2]
            x = x.reshape(B * To, *x.shape[2:]).permute(0, 3, 1, 2)
            if augment and self.cfg.shift_pad > 0:
                x = random_shift(x, self.cfg.shift_pad)
            f = self.backbones[k](x, z.repeat_interleave(To, dim=0))
            tokens += list(f.reshape(B, To, -1).unbind(1))
        if self.cfg.lowdim_keys:
            tokens += list(self.normalizer.normalize_lowdim(obs).unbind(1))
        if z.shape[1]:
            tokens.append(z)
        return self.trunk(tokens)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """Also loads checkpoints written before heads were parts (``head.weight`` -> ``head.out.weight``)."""
        if "head.weight" in state_dict and "head.out.weight" not in state_dict:
            state_dict = {("head.out." + k[5:] if k in ("head.weight", "head.bias") else k): v
                          for k, v in state_dict.items()}
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def forward(self, batch: dict) -> tuple[Tensor, dict]:
        """Same as ``compute_loss`` (so DistributedDataParallel can wrap the policy)."""
        return self.compute_loss(batch)

    def compute_loss(self, batch: dict) -> tuple[Tensor, dict]:
        """batch from the windowed dataset (on the policy's device) -> (scalar loss, metrics).

        metrics: detached tensors ``bc_loss`` (and ``align_loss`` for video) and ``per_sample`` (B,) BC
        losses for per-task logging (tensors, so that a training step never waits for the device).
        """
        z, video_emb = self.task_vector(batch)
        h = self._features(batch["obs"], z, augment=self.training)
        raw = batch["actions"].float()
        target = self.normalizer.normalize_actions(raw)  # (B, H, A)
        valid = ~batch["action_pad"]  # (B, H): padded steps do not count
        if self.gripper is None:
            per_sample = self.head.loss(h, target, valid)
        else:  # gripper: closed (+) or open (-), a classification; the head regresses the arm
            per_sample = self.head.loss(h, target[..., :-1], valid)
            bce = F.binary_cross_entropy_with_logits(self.gripper(h), (raw[..., -1] > 0).float(), reduction="none")
            per_sample = per_sample + (bce * valid).sum(1) / valid.sum(1).clamp(min=1)
        loss = per_sample.mean()
        metrics = {"bc_loss": loss.detach(), "per_sample": per_sample.detach()}
        if video_emb is not None and self.task_lang_emb.shape[1]:
            align = cosine_alignment_loss(video_emb, self.task_lang_emb[batch["task"]])
            loss = loss + self.cfg.align_weight * align
            metrics["align_loss"] = align.detach()
        return loss, metrics

    @torch.no_grad()
    def predict_chunk(self, obs: dict[str, Tensor], z: Tensor) -> Tensor:
        """obs windows (B, To, ...) and z (B, out_dim) -> (B, H, A) unnormalized actions."""
        h = self._features(obs, z, augment=False)
        pred = self.head.sample(h)
        if self.gripper is None:
            return self.normalizer.unnormalize_actions(pred)
        pred = self.normalizer.unnormalize_actions(torch.cat([pred, torch.zeros_like(pred[..., :1])], -1))
        pred[..., -1] = torch.where(self.gripper(h) > 0, 1.0, -1.0)
        return pred

    # ------------------------------------------------------------------ rollout
    def reset(self) -> None:
        """Forget observation history and planned actions (call at every episode start)."""
        self._hist: deque = deque(maxlen=self.cfg.obs_horizon)
        self._queue: Tensor | None = None
        self._chunks: list[tuple[int, Tensor]] = []
        self._t = 0
        self.head.reset(0)  # stochastic heads: the same noise stream in every episode

    def resolve_task(self, task, batch_size: int) -> Tensor:
        """An instruction (str or list of B), a task id (int), a language embedding (B, D) float, a goal
        image (H, W, 3)/(B, H, W, 3) uint8, or a demo clip {'video': (T, H, W, 3)/(B, T, H, W, 3)} -> z.
        This reads the form of ``task``; the conditioning kind accepts it or says it cannot take it."""
        dev = self.task_lang_emb.device
        if isinstance(task, dict) and "video" in task:
            clip = torch.as_tensor(np.asarray(task["video"]), device=dev)
            clip = clip.unsqueeze(0) if clip.dim() == 4 else clip
            return self.cond.from_video(clip.permute(0, 1, 4, 2, 3).expand(batch_size, -1, -1, -1, -1))
        if isinstance(task, (str, list)):
            texts = [task] * batch_size if isinstance(task, str) else list(task)
            return self.cond.from_instruction(texts, self.tasks_view())
        if isinstance(task, int):
            if not 0 <= task < len(self.cfg.tasks):
                raise UserError(f"task id {task} is not in [0, {len(self.cfg.tasks)})")
            return self.resolve_task(self.cfg.tasks[task], batch_size)
        t = torch.as_tensor(np.asarray(task) if not isinstance(task, Tensor) else task, device=dev)
        if t.dtype == torch.uint8:  # goal image(s)
            t = t.unsqueeze(0) if t.dim() == 3 else t
            return self.cond.from_goal_image(t.permute(0, 3, 1, 2).expand(batch_size, -1, -1, -1))
        return self.cond.from_embedding(t.float().reshape(-1, t.shape[-1]).expand(batch_size, -1))

    def embed_texts(self, texts: list[str]) -> Tensor:
        """Language embeddings: trained instructions from the checkpoint, others by the language encoder."""
        known = {t: i for i, t in enumerate(self.cfg.tasks)}
        if all(t in known for t in texts) and self.task_lang_emb.shape[1]:
            return self.task_lang_emb[[known[t] for t in texts]]
        if self._lang_encoder is None:
            self._lang_encoder = type(self.cond).language_encoder()
        return self._lang_encoder.encode(texts)

    @torch.no_grad()
    def predict_action(self, obs: dict, task) -> np.ndarray:
        """One step: obs {key: (H, W, 3) uint8 / (D,)} or batched (B, ...) -> action (A,) or (B, A)."""
        dev = self.task_lang_emb.device
        k0 = self.cfg.image_keys[0]
        single = np.asarray(obs[k0]).ndim == 3
        cur = {k: torch.as_tensor(np.asarray(obs[k]), device=dev) for k in self.cfg.image_keys + self.cfg.lowdim_keys}
        if single:
            cur = {k: v.unsqueeze(0) for k, v in cur.items()}
        B = cur[k0].shape[0]
        while len(self._hist) < self.cfg.obs_horizon - 1:  # episode start: pad with the first frame
            self._hist.append(cur)
        self._hist.append(cur)
        if self.cfg.temporal_ensemble or self._queue is None or self._queue.shape[1] == 0:
            window = {k: torch.stack([h[k] for h in self._hist], dim=1) for k in cur}
            chunk = self.predict_chunk(window, self.resolve_task(task, B))
            if self.cfg.temporal_ensemble:
                self._chunks = [(s, c) for s, c in self._chunks if self._t - s < self.cfg.action_horizon]
                self._chunks.append((self._t, chunk))
            else:
                self._queue = chunk[:, : self.cfg.exec_steps]
        if self.cfg.temporal_ensemble:
            preds = torch.stack([c[:, self._t - s] for s, c in self._chunks])  # oldest first
            w = torch.exp(-self.cfg.ensemble_decay * torch.arange(len(preds), device=dev, dtype=torch.float32))
            action = (preds * (w / w.sum())[:, None, None]).sum(0)
        else:
            action, self._queue = self._queue[:, 0], self._queue[:, 1:]
        self._t += 1
        out = action.cpu().numpy()
        return out[0] if single else out


def default_lowdim_keys(obs: dict) -> list[str]:
    """The low-dim keys a policy reads by default, from a manifest's ``obs`` ({key: ``ObsEntry``}): those
    of ``PROPRIO_KEYS`` (what mtil's environments give at rollout) the data holds; where it holds none of
    them, every low-dim key naming eef, gripper or joint. Issue 14: taking every proprio-looking key
    (robot0_eef_quat_site, robot0_joint_acc, ...) made policies no environment could feed."""
    from mtil.datasets.schema import PROPRIO_KEYS

    keys = [k for k in PROPRIO_KEYS if k in obs and not obs[k].image]
    return keys or [k for k, v in obs.items() if not v.image and any(s in k for s in ("eef", "gripper", "joint"))]
