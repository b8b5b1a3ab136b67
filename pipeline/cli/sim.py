"""`mtil tasks`, `mtil collect` and `mtil replay`: the simulated task suite on the command line.

Each ``register_*`` adds one subparser; the options of `collect` and `replay` are made from the fields
of the config dataclass the library function takes (``CollectConfig`` -> ``collect``, ``ReplayConfig``
-> ``replay``) by ``argsfrom``.
Simulator modules are imported only when a command runs, so ``mtil --help`` stays fast.
"""

from __future__ import annotations

import json

from mtil.pipeline.cli.argsfrom import HelpFormatter, add_config_command, checking_cache, dataclass_from_args


def register_tasks(sub, help_text: str) -> None:
    from mtil.pipeline.sim.backends import BACKENDS

    p = sub.add_parser("tasks", help=help_text, formatter_class=HelpFormatter,
                       description="List a simulator's language tasks: canonical (training) instruction, "
                                   "held-out paraphrases, named task sets (usable wherever --tasks is) and, for our "
                                   "suite, scenes and the held-out task compositions for zero-shot evaluation.")
    p.add_argument("--suite", default="robosuite", choices=list(BACKENDS),
                   help="robosuite: our 9-task suite (default); metaworld: Meta-World's MT50 (sets mt10, mt50 and "
                        "the difficulty groups)")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON instead of text")
    p.set_defaults(func=_run_tasks)


def _run_catalogue(backend, as_json: bool) -> int:
    """A backend's tasks grouped by its named sets (every backend but our suite, which has scenes)."""
    from dataclasses import asdict

    if as_json:
        print(json.dumps({"sets": {k: list(v) for k, v in backend.task_sets.items()},
                          "tasks": {n: asdict(t) for n, t in backend.tasks.items()}}, indent=2))
        return 0
    sets = ", ".join(f"{k} ({len(v)})" for k, v in backend.task_sets.items())
    print(f"{backend.name}: {len(backend.tasks)} tasks; sets for --tasks: {sets}")
    for name, spec in backend.tasks.items():
        group = getattr(spec, "difficulty", "")
        print(f"  {name:<30} {group:<10} \"{spec.instruction}\"")
        for para in spec.paraphrases:
            print(f"  {'':<41}   paraphrase (held out): \"{para}\"")
    return 0


def _run_tasks(args) -> int:
    from dataclasses import asdict

    from mtil.pipeline.sim.backends import backend_named
    from mtil.pipeline.sim.tasks import SCENES, TASKS

    if backend_named(args.suite).tasks is not TASKS:
        return _run_catalogue(backend_named(args.suite), args.json)
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
    from mtil.pipeline.sim.collect import CollectConfig

    p = add_config_command(sub, "collect", help_text, CollectConfig, "Runs scripted experts in parallel worker "
                           "processes, keeps only successful episodes (failures are counted and replaced; "
                           "--keep-failures also writes them, marked), and writes one robomimic-layout HDF5 file "
                           "atomically (Ctrl-C leaves nothing behind). See `mtil tasks` for the task names.",
                           required=("out",))
    p.set_defaults(func=checking_cache(_run_collect))


def _run_collect(a) -> int:
    from mtil.pipeline.sim.collect import CollectConfig, collect

    cfg = dataclass_from_args(CollectConfig, a)
    loader = None
    if cfg.policy:  # DAgger rollouts: the simulator layer gets the policy as a callable
        from mtil.pipeline.checkpoint import rollout_policy_loader

        loader = rollout_policy_loader(cfg.policy)
    s = collect(cfg, loader)
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
    from mtil.pipeline.sim.replay import ReplayConfig

    p = add_config_command(sub, "replay", help_text, ReplayConfig, "Rebuilds the env from the file's env_args, "
                           "restores the demo's recorded initial state, replays its actions, reports whether the "
                           "task still succeeds (exit 0) or not (exit 3), and writes an mp4.", positional=("file",))
    p.set_defaults(func=checking_cache(_run_replay))


def _run_replay(a) -> int:
    from mtil.pipeline.sim.replay import ReplayConfig, replay

    r = replay(dataclass_from_args(ReplayConfig, a))
    verdict = f"succeeded at step {r['success_step']}" if r["success"] else "did NOT succeed"
    print(f"{r['demo']} ({r['task'] or r['instruction']}): replayed {r['steps']} steps, {verdict}; "
          f"max joint-state drift {r['max_state_error']:.2e}")
    if r["video"]:
        print(f"video: {r['video']}")
    return 0 if r["success"] else 3


def register_dagger(sub, help_text: str) -> None:
    from mtil.pipeline.recipes.dagger import DaggerConfig

    p = add_config_command(sub, "dagger", help_text, DaggerConfig, "Each round: policy rollouts (a step executes "
                           "the expert's action with probability beta), every visited state labelled by the scripted "
                           "expert and written as OUT/round_<r>/rollouts.hdf5; training on the aggregate; evaluation. "
                           "Finished steps are reused, so rerunning the same command resumes. Exit 3 if a round's "
                           "rollouts all error.", positional=("checkpoint",), required=("out", "data"))
    p.set_defaults(func=checking_cache(_run_dagger))


def _run_dagger(a) -> int:
    import sys

    from mtil.pipeline.recipes.dagger import DaggerConfig, dagger

    try:
        s = dagger(dataclass_from_args(DaggerConfig, a))
    except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    with open(f"{a.out}/dagger.md") as f:
        print(f.read())
    return 0 if len(s["rounds"]) > 1 else 3
