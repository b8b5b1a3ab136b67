"""`mtil tasks`, `mtil collect` and `mtil replay`: the simulated task suite on the command line.

Each ``register_*`` adds one subparser; every option maps 1:1 to a field of the config dataclass the
library function takes (``CollectConfig`` -> ``collect``, ``ReplayConfig`` -> ``replay``).
Simulator modules are imported only when a command runs, so ``mtil --help`` stays fast.
"""

from __future__ import annotations

import json


def register_tasks(sub, help_text: str) -> None:
    from mtil.pipeline.cli.argsfrom import HelpFormatter

    p = sub.add_parser("tasks", help=help_text, formatter_class=HelpFormatter,
                       description="List the simulated language tasks: scene, canonical (training) instruction, "
                                   "held-out paraphrases, and the held-out task compositions for zero-shot "
                                   "evaluation.")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON instead of text")
    p.set_defaults(func=_run_tasks)


def _run_tasks(args) -> int:
    from dataclasses import asdict

    from mtil.pipeline.sim.tasks import SCENES, TASKS

    if args.json:
        print(json.dumps({"scenes": {n: asdict(s) for n, s in SCENES.items()},
                          "tasks": {n: asdict(t) for n, t in TASKS.items()}}, indent=2))
        return 0
    for scene in SCENES.values():
        objs = ", ".join(o.name.replace("_", " ") for o in scene.objects)
        print(f"scene {scene.name}: {objs}")
        for held_out in (False, True):
            tasks = [t for t in TASKS.values() if t.scene == scene.name and t.held_out == held_out]
            if tasks:
                print("  held-out compositions (zero-shot, not collected by --tasks all):" if held_out
                      else "  training tasks:")
            for t in tasks:
                print(f"    {t.name:<22} \"{t.instruction}\"")
                for para in t.paraphrases:
                    print(f"    {'':<22}   paraphrase (held out): \"{para}\"")
        print()
    n_train = sum(not t.held_out for t in TASKS.values())
    print(f"{n_train} training tasks, {len(TASKS) - n_train} held-out compositions, {len(SCENES)} scenes")
    return 0


def register_collect(sub, help_text: str) -> None:
    from mtil.pipeline.cli.argsfrom import HelpFormatter
    from mtil.pipeline.sim.collect import CollectConfig

    d = CollectConfig.__dataclass_fields__
    p = sub.add_parser("collect", help=help_text, formatter_class=HelpFormatter,
                       description=CollectConfig.__doc__ + "\n\nRuns scripted experts in parallel worker "
                       "processes, keeps only successful episodes (failures are counted and replaced; "
                       "--keep-failures also writes them, marked), and "
                       "writes one robomimic-layout HDF5 file atomically (Ctrl-C leaves nothing behind). "
                       "See `mtil tasks` for the task names.")
    p.add_argument("--tasks", default=d["tasks"].default,
                   help="'all' (training tasks), 'held_out', 'everything', or comma-separated task names")
    p.add_argument("--demos-per-task", type=int, default=d["demos_per_task"].default,
                   help="successful demos kept per task")
    p.add_argument("--out", required=True, metavar="FILE.hdf5", help="output HDF5 file")
    p.add_argument("--workers", type=int, default=d["workers"].default, help="parallel simulator processes")
    p.add_argument("--seed", type=int, default=d["seed"].default,
                   help="run seed; episode seeds derive from (seed, task, episode index)")
    p.add_argument("--image-size", type=int, default=d["image_size"].default, help="camera height = width (px)")
    p.add_argument("--next-obs", action="store_true", help="also store next_obs/<key> for every step")
    p.add_argument("--render-quality", choices=["fast", "default"], default=d["render_quality"].default,
                   help="fast: decimated meshes, no shadows, no MSAA; default: robosuite's rendering")
    p.add_argument("--valid-fraction", type=float, default=d["valid_fraction"].default,
                   help="share of each task's demos (rounded down) listed in mask/valid")
    p.add_argument("--horizon", type=int, default=d["horizon"].default,
                   help="max steps per episode before it counts as a failure")
    p.add_argument("--keep-failures", action="store_true",
                   help="also write the failed episodes met on the way (attr success=False, listed in mask/failed, "
                        "not in mask/train): data for hindsight goal-conditioned training")
    p.add_argument("--action-noise", type=float, default=d["action_noise"].default,
                   help="std of Gaussian noise on the expert's arm actions (0-2; the noisy action is executed "
                        "and recorded): varied, partly failed, play-like episodes")
    p.add_argument("--noise", type=float, default=d["noise"].default,
                   help="DART: std of Gaussian noise on the executed translation actions (0-1; 0.1-0.2 keeps the "
                        "expert successful); the expert's clean action for each visited state is the recorded "
                        "label, the executed action is kept under executed_actions")
    p.add_argument("--policy", default=d["policy"].default, metavar="CKPT",
                   help="DAgger rollouts: this checkpoint acts, the expert labels every visited state, and every "
                        "episode is kept (see also `mtil dagger`)")
    p.add_argument("--beta", type=float, default=d["beta"].default,
                   help="with --policy: probability that a step executes the expert's action instead")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_collect)


def _run_collect(a) -> int:
    from mtil.pipeline.sim.collect import CollectConfig, collect

    cfg = CollectConfig(tasks=a.tasks, demos_per_task=a.demos_per_task, out=a.out, workers=a.workers,
                        seed=a.seed, image_size=a.image_size, next_obs=a.next_obs,
                        render_quality=a.render_quality, overwrite=a.overwrite, valid_fraction=a.valid_fraction,
                        horizon=a.horizon, keep_failures=a.keep_failures, action_noise=a.action_noise,
                        noise=a.noise, policy=a.policy, beta=a.beta, progress=not a.no_progress)
    s = collect(cfg)
    fails = sum(c["fail"] for c in s["per_task"].values())
    errs = sum(c["error"] for c in s["per_task"].values())
    print(f"wrote {s['out']}: {s['demos']} demos, {s['steps']} steps, {len(s['per_task'])} tasks in "
          f"{s['seconds']} s ({s['demos_per_s']} demos/s); "
          + (f"kept {s['failed_kept']} failed episodes (mask/failed)" if a.keep_failures else f"dropped {fails} failed")
          + f" and dropped {errs} errored episodes")
    for task, c in s["per_task"].items():
        if c["fail"] or c["error"]:
            print(f"  {task}: {c['ok']} kept, {c['fail']} failed, {c['error']} errors")
    for msg in s["retried"][:10]:
        print(f"  retried: {msg}")
    for msg in s["errors"][:10]:
        print(f"  error: {msg}")
    return 0


def register_replay(sub, help_text: str) -> None:
    from mtil.pipeline.cli.argsfrom import HelpFormatter
    from mtil.pipeline.sim.replay import ReplayConfig

    d = ReplayConfig.__dataclass_fields__
    p = sub.add_parser("replay", help=help_text, formatter_class=HelpFormatter,
                       description=ReplayConfig.__doc__ + "\n\nRebuilds the env from the file's env_args, "
                       "restores the demo's recorded initial state, replays its actions, reports whether the "
                       "task still succeeds (exit 0) or not (exit 3), and writes an mp4.")
    p.add_argument("file", metavar="FILE", help="HDF5 demo file")
    p.add_argument("--demo", default=d["demo"].default, help="demo group name under data/")
    p.add_argument("--out", default=None, metavar="VIDEO.mp4", help="mp4 to write (omit: no video)")
    p.add_argument("--camera", default=d["camera"].default, help="camera rendered into the video")
    p.add_argument("--size", type=int, default=d["size"].default, help="video frame height = width (px)")
    p.add_argument("--fps", type=int, default=d["fps"].default, help="video frame rate")
    p.add_argument("--use-model-file", action="store_true",
                   help="reload the demo's recorded MJCF (model_file) before restoring the state")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out video")
    p.set_defaults(func=_run_replay)


def _run_replay(a) -> int:
    from mtil.pipeline.sim.replay import ReplayConfig, replay

    r = replay(ReplayConfig(a.file, demo=a.demo, out=a.out, camera=a.camera, size=a.size, fps=a.fps,
                            use_model_file=a.use_model_file, overwrite=a.overwrite))
    verdict = f"succeeded at step {r['success_step']}" if r["success"] else "did NOT succeed"
    print(f"{r['demo']} ({r['task'] or r['instruction']}): replayed {r['steps']} steps, {verdict}; "
          f"max joint-state drift {r['max_state_error']:.2e}")
    if r["video"]:
        print(f"video: {r['video']}")
    return 0 if r["success"] else 3


def register_dagger(sub, help_text: str) -> None:
    from mtil.pipeline.cli.argsfrom import HelpFormatter, add_dataclass_args, dataclass_from_args
    from mtil.pipeline.sim.dagger import DaggerConfig

    p = sub.add_parser("dagger", help=help_text, formatter_class=HelpFormatter,
                       description=DaggerConfig.__doc__ + "\n\nEach round: policy rollouts (a step executes the "
                       "expert's action with probability beta), every visited state labelled by the scripted expert "
                       "and written as OUT/round_<r>/rollouts.hdf5; training on the aggregate; evaluation. Finished "
                       "steps are reused, so rerunning the same command resumes. Exit 3 if a round's rollouts all "
                       "error.")
    add_dataclass_args(p, DaggerConfig, positional=("checkpoint",), required=("out", "data"))

    def run(a) -> int:
        import sys

        from mtil.pipeline.sim.dagger import dagger

        try:
            s = dagger(dataclass_from_args(DaggerConfig, a))
        except RuntimeError as e:
            print(f"error: {e}", file=sys.stderr)
            return 3
        print(open(f"{a.out}/dagger.md").read())
        return 0 if s["rounds"] else 3

    p.set_defaults(func=run)
