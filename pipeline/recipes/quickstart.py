"""`mtil quickstart`: the whole loop on a small default, for a new user on a 2-core CPU.

collect scripted demos of a few language tasks that share one scene (told apart only by the
instruction) -> train one language-conditioned policy -> evaluate it by rollouts -> print the table
and where the report, plot and videos are. Stages already done in --out are reused, so an interrupted
quickstart continues where it stopped.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass

from mtil.datasets.errors import UserError, check_range

PRESETS: dict[str, dict] = {
    "lifts": {"out": "quickstart", "tasks": "lift_red,lift_green,lift_blue", "demos_per_task": 40, "steps": 3000,
              "episodes_per_task": 20, "max_steps": 200, "image_size": 64},
    "suite": {"out": "quickstart_suite", "tasks": "all", "demos_per_task": 45, "steps": 6000,
              "episodes_per_task": 50, "max_steps": 250, "image_size": 64},
    "mt10": {"out": "quickstart_mt10", "tasks": "mt10", "demos_per_task": 45, "steps": 6000,
             "episodes_per_task": 50, "max_steps": 500, "image_size": 84},
    "mt50": {"out": "quickstart_mt50", "tasks": "mt50", "demos_per_task": 45, "steps": 30000,
             "episodes_per_task": 50, "max_steps": 500, "image_size": 84},
}
"""What each --preset sets (an option given on the command line wins). lifts: three tasks that share one
scene and differ only in words (~4 min on 2 CPU cores, 95% over 3 seeds). suite: all 9 tasks with the
recipe of docs/results.md sections 11, 14 and 16 (91.2% over 3 seeds at 50 episodes per task; under 1 h here).
mt10, mt50: Meta-World's benchmarks, demos from the package's scripted policies, evaluated within the
benchmark's 500 steps on task variations never collected (docs/results.md)."""


@dataclass
class QuickstartConfig:
    """Collect (with DART noise) -> train -> evaluate a multi-task suite end to end. --preset lifts (default):
    3 lift tasks, about 4 minutes on 2 CPU cores, 93% mean success over 3 seeds; --preset suite: all 9 tasks,
    about an hour (docs/benchmarks.md, docs/results.md)."""

    preset: str = "lifts"
    """lifts (3 tasks told apart only by words) | suite (all 9 tasks, 50 episodes each) | mt10 | mt50
    (Meta-World): sets the options below that are left at 0 / empty"""
    out: str = ""
    """directory for demos.hdf5, run/ (checkpoints, TensorBoard) and eval/ (report, plot, videos); empty: from
    the preset (quickstart, quickstart_suite)"""
    tasks: str = ""
    """suite tasks (see `mtil tasks`) or all; empty: from the preset"""
    demos_per_task: int = 0
    """scripted demos collected per task; 0: from the preset (40, 45)"""
    noise: float = 0.2
    """DART noise of the collection (`mtil collect --noise`): the arm executes noisy actions and the demos
    record the expert's corrections; 0 = plain demonstrations (2500 steps, 2 seeds: 35% plain, 75% at 0.1,
    84% at 0.2; docs/results.md)"""
    steps: int = 0
    """training steps; 0: from the preset (3000, 6000)"""
    episodes_per_task: int = 0
    """evaluation episodes per task; 0: from the preset (20, 50)"""
    max_steps: int = 0
    """steps before an evaluation episode counts as a failure; 0: from the preset (200, 250)"""
    workers: int = 2
    """parallel simulator processes for collection and evaluation"""
    image_size: int = 0
    """camera image size in pixels; 0: from the preset (64 for our suite, 84 for Meta-World, whose objects are
    smaller in the frame)"""
    seed: int = 0
    """seed of collection and training"""
    conditioning: str = "language"
    """language: the policy is evaluated on its instructions | video: after training, a video encoder is fitted
    onto the policy's task space (`mtil fit-video`) and each task is shown by the clips of its validation
    demos in turn, never trained on (`mtil eval --condition video --clips 0`)"""
    video_steps: int = 1500
    """--conditioning video: steps of fitting the video encoder (`mtil fit-video --steps`)"""

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise UserError(f"--preset must be one of {', '.join(PRESETS)}, got {self.preset!r}")
        for name, value in PRESETS[self.preset].items():
            if not getattr(self, name):
                setattr(self, name, value)
        if self.steps < 1 or self.demos_per_task < 2 or self.episodes_per_task < 1 or self.max_steps < 1:
            raise UserError("--steps >= 1, --demos-per-task >= 2, --episodes-per-task >= 1 and --max-steps >= 1 "
                            "are needed")
        check_range("--seed", self.seed, 0, 2**31 - 1, integer=True, note=" (it seeds collection and training)")
        if not 0.0 <= self.noise <= 1.0:
            raise UserError(f"--noise must be in [0, 1], got {self.noise}")
        if self.conditioning not in ("language", "video"):
            raise UserError(f"--conditioning must be language or video, got {self.conditioning!r}")


def quickstart(cfg: QuickstartConfig) -> dict:
    from mtil.pipeline.evaluation.config import TRAIN_INSTRUCTION
    from mtil.pipeline.evaluation.report import headline
    from mtil.pipeline.evaluation.run import EvalConfig, evaluate
    from mtil.pipeline.sim.collect import CollectConfig, collect
    from mtil.pipeline.training.loop import TrainConfig, train

    out = os.path.abspath(cfg.out)
    os.makedirs(out, exist_ok=True)
    demos, run, ev = os.path.join(out, "demos.hdf5"), os.path.join(out, "run"), os.path.join(out, "eval")
    t0, n = time.time(), 4 if cfg.conditioning == "video" else 3
    say = lambda text: print(f"[{time.time() - t0:5.0f} s] {text}", file=sys.stderr, flush=True)  # noqa: E731

    if os.path.exists(demos):
        say(f"1/{n} demos: reusing {demos}")
    else:
        say(f"1/{n} collecting {cfg.demos_per_task} scripted demos for each of {cfg.tasks} ({cfg.workers} workers"
            + (f", DART noise {cfg.noise}" if cfg.noise else "") + ")")
        collect(CollectConfig(tasks=cfg.tasks, demos_per_task=cfg.demos_per_task, out=demos, workers=cfg.workers,
                              seed=cfg.seed, image_size=cfg.image_size, noise=cfg.noise))
    tcfg = TrainConfig(data=[demos], out=run, steps=cfg.steps, seed=cfg.seed, save_every=max(1, cfg.steps // 3))
    last = os.path.join(run, "last.pt")
    done_steps = _checkpoint_step(last)
    if done_steps == cfg.steps:
        say(f"2/{n} training: reusing {last}")
    else:
        tcfg.resume = done_steps is not None
        say(f"2/{n} training one language-conditioned policy for {cfg.steps} steps"
            + (f" (resuming at step {done_steps})" if tcfg.resume else "") + f"; TensorBoard: {run}/tb")
        train(tcfg)
    how = {}
    if cfg.conditioning == "video":
        last = _fit_video(cfg, last, demos, out, say)
        ev = os.path.join(out, "eval_video")
        how = {"condition": "video", "demos": demos, "clips": 0}  # every validation clip of a task, in turn
    say(f"{n}/{n} evaluating {cfg.episodes_per_task} episodes per task ({cfg.workers} workers"
        + (", each task shown by the clips of its validation demos in turn" if how else "") + ")")
    result = evaluate(EvalConfig(checkpoint=last, out=ev, episodes_per_task=cfg.episodes_per_task,
                                 workers=cfg.workers, max_steps=cfg.max_steps, **how))  # experts lift in ~65 steps
    with open(os.path.join(ev, "report.md")) as f:
        print(f.read())
    overall = headline(result, "video" if how else TRAIN_INSTRUCTION)
    rate = overall.get("success_rate")
    say(f"done in {(time.time() - t0) / 60:.1f} min: mean success "
        f"{'-' if rate is None else f'{rate:.0%}'} over {overall.get('n', 0)} episodes"
        + (" (each task shown by video clips)" if how else ""))
    nxt = (f"mtil eval {run}/last.pt --out {out}/eval  (the same policy told by words, same episodes)" if how
           else f"mtil eval {last} --out {out}/eval_heldout --instructions heldout")
    print(f"report: {ev}/report.md\nplot:   {ev}/success.png\nvideos: {ev}/videos/\nnext:   {nxt}", file=sys.stderr)
    return result


def _fit_video(cfg: QuickstartConfig, last: str, demos: str, out: str, say) -> str:
    """Stage 3 of --conditioning video: OUT/video/last.pt, the policy with a video encoder fitted on clips of its
    training demos (identification on the validation demos printed)."""
    from mtil.pipeline.recipes.fit_video import FitVideoConfig, fit_video

    path = os.path.join(out, "video", "last.pt")
    if os.path.exists(path):
        say(f"3/4 video encoder: reusing {path}")
        return path
    say("3/4 fitting a video encoder onto the policy's task space (mtil fit-video, clips of the training demos)")
    r = fit_video(FitVideoConfig(checkpoint=last, out=os.path.dirname(path), data=[demos], steps=cfg.video_steps,
                                 seed=cfg.seed))
    held = r["identification_heldout"]
    if held:
        say(f"    validation clips identified as their own task: {held['correct']}/{held['n']}")
    return path


def _checkpoint_step(path: str) -> int | None:
    if not os.path.exists(path):
        return None
    from mtil.pipeline.checkpoint import load_checkpoint

    return load_checkpoint(path).step
