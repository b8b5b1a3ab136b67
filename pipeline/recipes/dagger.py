"""DAgger (`mtil dagger`): roll out the policy, label every visited state with the expert, retrain, repeat.

    mtil dagger RUN/last.pt --data demos.hdf5 --rounds 3 --episodes-per-task 10 --out dagger/

Round r (1..R), each step skipped when its output already exists, so an interrupted run resumes:
1. rollouts: ``--episodes-per-task`` episodes per task driven by the current policy, where each step
   executes the expert's action instead with probability beta_r = ``--beta`` * ``--beta-decay``^(r-1);
   every visited state is labelled with the reactive expert's action (pipeline/sim/experts.py). Written
   by ``mtil collect --policy`` to ``OUT/round_<r>/rollouts.hdf5`` (our robomimic layout; data attrs
   ``mtil_source="dagger"``, ``dagger_round``, ``dagger_policy``), every episode in mask/train;
2. training on the aggregate (``--data`` + all rounds so far): fine-tuned from the previous policy for
   ``--steps`` steps (default), or retrained from scratch (``--retrain``), with the first policy's
   training options otherwise;
3. evaluation of the new policy (``--eval-episodes`` per task, seeds from 1000 like `mtil eval`).
``OUT/dagger.json`` and ``OUT/dagger.md`` list success per round (round 0: the starting policy).

DAgger needs an expert: the checkpoint must be trained on tasks of the simulated suite.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from dataclasses import dataclass, field

from mtil.datasets.errors import UserError


@dataclass
class DaggerConfig:
    """DAgger: policy rollouts labelled by the scripted expert, aggregated and retrained, round by round."""

    checkpoint: str
    """the starting policy (a `mtil train` checkpoint on suite tasks)"""
    out: str
    """output directory (round_<r>/rollouts.hdf5, round_<r>/run/, round_<r>/eval/, dagger.json, dagger.md)"""
    data: list[str] = field(default_factory=list)
    """the demonstrations the starting policy was trained on (aggregated with every round's rollouts)"""
    rounds: int = 3
    """DAgger rounds"""
    episodes_per_task: int = 10
    """policy rollouts per task and round"""
    steps: int = 500
    """training steps per round"""
    retrain: bool = False
    """train each round's policy from scratch instead of fine-tuning the previous one"""
    beta: float = 0.0
    """probability that a rollout step executes the expert's action in round 1"""
    beta_decay: float = 0.5
    """beta of round r = beta * beta_decay^(r-1)"""
    horizon: int = 200
    """steps per rollout episode"""
    eval_episodes: int = 20
    """evaluation episodes per task after each round (0: no evaluation)"""
    workers: int = 2
    """parallel simulator processes for rollouts and evaluation"""
    seed: int = 0
    """seed of rollouts (round r uses seed 7919 * r + seed) and of training"""

    def __post_init__(self) -> None:
        if not 0 <= self.seed < 2**31:  # options first, then files (as every command checks them)
            raise UserError(f"--seed must be in [0, 2^31), got {self.seed}")
        if not os.path.isfile(self.checkpoint):
            raise UserError(f"{self.checkpoint}: checkpoint file does not exist")
        if not self.data:
            raise UserError("--data: give the demonstration files the starting policy was trained on")
        for d in self.data:
            if not os.path.exists(d):
                raise UserError(f"--data {d}: no such file or directory")
        if self.rounds < 1 or self.episodes_per_task < 1 or self.steps < 1:
            raise UserError("--rounds, --episodes-per-task and --steps must be >= 1")
        if not (0.0 <= self.beta <= 1.0 and 0.0 <= self.beta_decay <= 1.0):
            raise UserError("--beta and --beta-decay must be in [0, 1]")
        if self.horizon < 10 or self.eval_episodes < 0 or not 1 <= self.workers <= 64:
            raise UserError("--horizon >= 10, --eval-episodes >= 0 and --workers in [1, 64] are needed")
        if os.path.exists(self.out) and not os.path.isdir(self.out):
            raise UserError(f"--out {self.out}: is a file, expected a directory (made if missing)")

    def settings(self) -> dict:
        """What a round's results depend on: a rerun into the same --out must match them (--rounds may grow,
        --workers changes nothing but speed)."""
        from mtil.pipeline.evaluation.run import file_sha256

        keep = {k: v for k, v in dataclasses.asdict(self).items() if k not in ("rounds", "workers", "out")}
        keep["checkpoint"] = os.path.abspath(self.checkpoint)
        keep["checkpoint_sha256"] = file_sha256(self.checkpoint)  # the same path retrained is another policy
        keep["data"] = [os.path.abspath(d) for d in self.data]
        return keep


def expert_tasks(ckpt, path: str) -> tuple[list[str], int]:
    """(suite task names, camera size) of a checkpoint; UserError when its tasks have no scripted expert."""
    from mtil.pipeline.sim.backends import backend_for, is_catalogue_env

    env_args = ckpt.env_args or {}
    if not is_catalogue_env(env_args):
        raise UserError(f"{path}: DAgger needs a scripted expert to label states, and this policy was trained on "
                        f"{env_args.get('env_name') or 'data without env_args'}, not on the simulated task suite "
                        "or Meta-World")
    names = [backend_for(env_args).task_for_instruction(t) for t in ckpt.tasks]
    missing = [t for t, n in zip(ckpt.tasks, names) if n is None]
    if missing:
        raise UserError(f"{path}: DAgger needs a scripted expert; no suite task has the instruction {missing[0]!r}")
    size = int(env_args.get("env_kwargs", {}).get("camera_heights", 84))
    return names, size


def check_data(cfg: DaggerConfig, ckpt) -> None:
    """Before any rollout: --data holds demos of the simulated suite, of exactly the checkpoint's tasks."""
    import h5py

    from mtil.datasets.manifest import manifest_from_inputs
    from mtil.pipeline.sim.backends import backend_for, is_catalogue_env

    for path in cfg.data:
        if not os.path.isfile(path):
            continue
        try:
            with h5py.File(path, "r") as f:
                raw = f["data"].attrs.get("env_args") if "data" in f else None
        except OSError as e:
            raise UserError(f"--data {path}: not a readable HDF5 file ({e})") from None
        args = json.loads(raw) if isinstance(raw, (str, bytes)) and raw else {}
        name = args.get("env_name")
        if not is_catalogue_env(args) or backend_for(args) is not backend_for(ckpt.env_args):
            raise UserError(f"--data {path}: demos of {name or 'an unknown environment'}, not of the simulated suite "
                            f"{cfg.checkpoint} was trained on (DAgger aggregates them with the suite's rollouts)")
    try:
        manifest, _ = manifest_from_inputs(cfg.data)
    except UserError as e:
        raise UserError(f"--data: {e}") from None
    have = [t.instruction for t in manifest.tasks]
    if sorted(have) != sorted(ckpt.tasks):
        raise UserError(f"--data {' '.join(cfg.data)}: its tasks {have} are not the tasks {list(ckpt.tasks)} of "
                        f"{cfg.checkpoint}: give the demonstrations the starting policy was trained on")


def check_out(cfg: DaggerConfig, out: str) -> None:
    """A rerun into ``out`` must use the settings its rounds were made with; the first run records them."""
    from mtil.datasets.atomic import write_json_atomic

    path = os.path.join(out, "dagger_config.json")
    now = cfg.settings()
    if os.path.exists(path):
        with open(path) as f:
            saved = json.load(f)
        changed = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
        if changed:
            k = changed[0]
            raise UserError(f"--out {cfg.out}: holds DAgger rounds made with other settings ({k}: {saved.get(k)!r} -> "
                            f"{now.get(k)!r}); rerun with the same options to resume, or choose another --out")
        return
    if any(n.startswith("round_") for n in os.listdir(out)):
        raise UserError(f"--out {cfg.out}: holds DAgger rounds of unknown settings (no dagger_config.json); "
                        "choose another --out")
    write_json_atomic(path, now)


def dagger(cfg: DaggerConfig) -> dict:
    """Run the rounds ``cfg`` describes (resuming finished steps); returns the summary written to dagger.json."""
    import h5py

    from mtil.datasets.atomic import write_json_atomic
    from mtil.pipeline.checkpoint import load_checkpoint, rollout_policy_loader
    from mtil.pipeline.evaluation.report import headline
    from mtil.pipeline.evaluation.run import EvalConfig, evaluate
    from mtil.pipeline.sim.collect import CollectConfig, collect
    from mtil.pipeline.training.loop import TrainConfig, train

    ckpt = load_checkpoint(cfg.checkpoint)
    tasks, image_size = expert_tasks(ckpt, cfg.checkpoint)
    check_data(cfg, ckpt)
    base = dict(ckpt.train_config)
    out = os.path.abspath(cfg.out)
    os.makedirs(out, exist_ok=True)
    check_out(cfg, out)
    say = lambda text: print(f"dagger: {text}", file=sys.stderr, flush=True)  # noqa: E731

    def evaluate_round(policy: str, where: str) -> dict | None:
        if cfg.eval_episodes == 0:
            return None
        path = os.path.join(where, "eval.json")
        if not os.path.exists(path):
            evaluate(EvalConfig(checkpoint=policy, out=where, episodes_per_task=cfg.eval_episodes,
                                workers=cfg.workers, max_steps=cfg.horizon, video_episodes=1))
        with open(path) as f:
            res = json.load(f)
        row = headline(res)
        return {"successes": row.get("successes"), "n": row.get("n"), "success_rate": row.get("success_rate"),
                "ci95": row.get("ci95"), "errors": row.get("errors"), "eval": where}

    summary = {"config": {k: v for k, v in vars(cfg).items()}, "tasks": tasks, "rounds": []}
    say(f"round 0: evaluating the starting policy {cfg.checkpoint}")
    summary["rounds"].append({"round": 0, "policy": os.path.abspath(cfg.checkpoint), "rollout_episodes": 0,
                              **(evaluate_round(cfg.checkpoint, os.path.join(out, "round_0", "eval")) or {})})
    policy, files = os.path.abspath(cfg.checkpoint), list(cfg.data)
    for r in range(1, cfg.rounds + 1):
        rdir = os.path.join(out, f"round_{r}")
        os.makedirs(rdir, exist_ok=True)
        rollouts = os.path.join(rdir, "rollouts.hdf5")
        beta = cfg.beta * cfg.beta_decay ** (r - 1)
        if not os.path.exists(rollouts):
            say(f"round {r}/{cfg.rounds}: {cfg.episodes_per_task} rollouts per task of {policy} (beta {beta:.2f}), "
                "labelled by the expert")
            s = collect(CollectConfig(tasks=",".join(tasks), demos_per_task=cfg.episodes_per_task, out=rollouts,
                                      workers=cfg.workers, seed=7919 * r + cfg.seed, image_size=image_size,
                                      horizon=cfg.horizon, policy=policy, beta=beta, dagger_round=r,
                                      valid_fraction=0.0, max_failures=3 * cfg.episodes_per_task),
                        rollout_policy_loader(policy))
            if s["demos"] == 0:
                raise RuntimeError(f"round {r}: every rollout errored; see the errors above")
        files.append(rollouts)
        run = os.path.join(rdir, "run")
        last = os.path.join(run, "last.pt")
        done = os.path.exists(last) and load_checkpoint(last).step == cfg.steps
        if not done:
            say(f"round {r}/{cfg.rounds}: training {cfg.steps} steps on {len(files)} files "
                + ("from scratch" if cfg.retrain else f"from {policy}"))
            fields = {f.name for f in dataclasses.fields(TrainConfig) if f.init}
            keep = {k: v for k, v in base.items() if k in fields}
            keep.update(data=files, out=run, steps=cfg.steps, seed=cfg.seed, resume=os.path.exists(last),
                        save_every=cfg.steps, rollout_every=0, tasks=[], demos_per_task=[],
                        init_from="" if cfg.retrain else policy, num_workers=-1, device="auto")
            train(TrainConfig(**keep))
        policy = last
        with h5py.File(rollouts, "r") as f:
            n_ep = len(f["data"].keys())
            n_steps = int(f["data"].attrs["total"])
            n_ok = sum(bool(f["data"][d].attrs["success"]) for d in f["data"])
        res = evaluate_round(policy, os.path.join(rdir, "eval")) or {}
        summary["rounds"].append({"round": r, "policy": policy, "beta": beta, "rollout_episodes": n_ep,
                                  "rollout_steps": n_steps, "rollout_successes": n_ok, **res})
        say(f"round {r}: rollouts {n_ok}/{n_ep} successful; evaluation "
            + (f"{res['successes']}/{res['n']}" if res else "skipped"))
    write_json_atomic(os.path.join(out, "dagger.json"), summary)
    _write_md(os.path.join(out, "dagger.md"), summary)
    return summary


def _write_md(path: str, summary: dict) -> None:
    from mtil.datasets.atomic import atomic_write

    lines = [f"# DAgger on {', '.join(summary['tasks'])}", "",
             "| round | beta | rollouts (successful) | rollout steps | success after the round [95% CI] |",
             "| --- | --- | --- | --- | --- |"]
    for r in summary["rounds"]:
        rate = (f"{r['successes']}/{r['n']} = {r['success_rate']:.0%} [{r['ci95'][0]:.0%}, {r['ci95'][1]:.0%}]"
                if r.get("success_rate") is not None else "-")
        roll = f"{r['rollout_episodes']} ({r.get('rollout_successes', '-')})" if r["round"] else "-"
        lines.append(f"| {r['round']} | {r.get('beta', '-')} | {roll} | {r.get('rollout_steps', '-')} | {rate} |")
    atomic_write(path, lambda f: f.write("\n".join(lines) + "\n"))
