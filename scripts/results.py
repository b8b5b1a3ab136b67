"""Recipes of the results in docs/results.md: collect, train and evaluate, then summarize to JSON.

    python scripts/results.py list                       # experiments and the commands they run
    python scripts/results.py run main sampling ...      # run what is missing (idempotent), in order
    python scripts/results.py summarize main ...         # -> docs/results/<experiment>.json
    python scripts/results.py tables                     # markdown tables from docs/results/*.json

Every step is an `mtil` command line (printed, logged beside its output under --workdir); a step whose
output exists is skipped, so an interrupted recipe continues where it stopped. Datasets are shared by
the experiments. Scale: 84 px cameras (two); the ablations train on the three lift tasks with a smaller
budget than the main result. The recipe is issue 16's default: DART demos (`--noise 0.2`), batch 64,
3000 steps for the ablations, 10000 for the suite. These recipes run one training seed; the multi-seed
numbers of docs/results.md sections 9-10 came from `scripts/gpu_runs.sh` (the same commands per seed).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MTIL = os.path.join(os.path.dirname(sys.executable), "mtil")
LIFTS = ["lift_red", "lift_green", "lift_blue"]
HELD_OUT = ["stack_red_on_blue", "stack_green_on_red", "place_can_on_black"]
SUITE = "data/suite50.hdf5"  # 9 training tasks x 50 demos, 84 px
NOISY = "data/lifts_noisy.hdf5"  # lifts with noisy expert actions, failed episodes kept
ABLATION_BATCH, ABLATION_STEPS = "64", 3000  # the ablations' training budget (issue 16; was 32 x 2000)
LIFT_EVAL = ["--max-steps", "200", "--workers", "2"]


@dataclass
class Step:
    kind: str  # collect | train | eval
    out: str  # output (file for collect, run dir for train, eval dir for eval), relative to the workdir
    args: list[str]
    note: str = ""

    def done(self, root: str) -> bool:
        p = os.path.join(root, self.out)
        if self.kind == "collect":
            return os.path.exists(p)
        if self.kind == "train":  # finished, not just checkpointed
            if os.path.exists(os.path.join(p, "train_summary.json")):
                return True
            if not os.path.exists(p + ".log"):
                return False
            with open(p + ".log", errors="replace") as f:
                return "trained " in f.read()
        if not os.path.exists(os.path.join(p, "eval.json")):
            return False
        with open(os.path.join(p, "eval.json")) as f:
            return json.load(f)["complete"]

    def argv(self, root: str) -> list[str]:
        abs_ = [os.path.join(root, a) if a.startswith(("data/", "runs/")) else a for a in self.args]
        if self.kind == "eval":
            return [MTIL, "eval", os.path.join(root, abs_[0]), "--out", os.path.join(root, self.out), *abs_[1:]]
        return [MTIL, self.kind, *abs_, "--out", os.path.join(root, self.out)]


def collect_suite() -> Step:
    return Step("collect", SUITE, ["--tasks", "all", "--demos-per-task", "50", "--image-size", "84", "--seed", "0",
                                   "--noise", "0.2", "--workers", "2"])


def collect_noisy() -> Step:
    return Step("collect", NOISY, ["--tasks", ",".join(LIFTS), "--demos-per-task", "10", "--image-size", "84",
                                   "--seed", "1", "--workers", "2", "--keep-failures", "--action-noise", "0.3",
                                   "--horizon", "150"])


def lift_train(name: str, *extra: str, data: tuple[str, ...] = (SUITE,), tasks=tuple(LIFTS),
               steps: int = ABLATION_STEPS) -> Step:
    return Step("train", f"runs/{name}", ["--data", *data, "--tasks", *tasks, "--batch-size", ABLATION_BATCH,
                                          "--steps", str(steps), "--seed", "0", *extra])


def lift_eval(run: str, name: str, *extra: str, tasks=tuple(LIFTS), episodes: int = 20) -> Step:
    return Step("eval", f"runs/{run}/{name}", [f"runs/{run}/last.pt", "--tasks", *tasks, "--episodes-per-task",
                                               str(episodes), *LIFT_EVAL, *extra])


def experiments() -> dict[str, list[Step]]:
    # equal total gradient steps per task: the multi-task run's 2000 steps serve 3 tasks
    singles = [lift_train(f"single_{t}", tasks=(t,), steps=round(ABLATION_STEPS / len(LIFTS))) for t in LIFTS]
    return {
        "main": [
            collect_suite(),
            Step("train", "runs/main_language", ["--data", SUITE, "--steps", "10000", "--seed", "0"],
                 "default policy (84 px, batch 64, language, stratified), 9 tasks x 45 training demos"),
            Step("eval", "runs/main_language/eval", ["runs/main_language/last.pt", "--episodes-per-task", "50",
                                                     "--max-steps", "250", "--workers", "2"]),
            Step("eval", "runs/main_language/eval_heldout_tasks",
                 ["runs/main_language/last.pt", "--tasks", *HELD_OUT, "--instructions", "heldout",
                  "--episodes-per-task", "10", "--max-steps", "250", "--workers", "2"]),
        ],
        "sampling": [
            collect_suite(),
            lift_train("imbalanced_stratified", "--demos-per-task", "lift_blue=5", "--sampler", "stratified"),
            lift_train("imbalanced_size", "--demos-per-task", "lift_blue=5", "--sampler", "size"),
            lift_eval("imbalanced_stratified", "eval"),
            lift_eval("imbalanced_size", "eval"),
        ],
        "multitask": [
            collect_suite(),
            lift_train("lifts_language"),
            *singles,
            lift_eval("lifts_language", "eval"),
            *[lift_eval(f"single_{t}", "eval", tasks=(t,)) for t in LIFTS],
        ],
        "conditioning": [
            collect_suite(),
            lift_train("lifts_language"),
            lift_train("lifts_onehot", "--conditioning", "onehot"),
            lift_train("lifts_video", "--conditioning", "video"),
            lift_eval("lifts_language", "eval"),
            lift_eval("lifts_language", "eval_paraphrases", "--instructions", "heldout", episodes=5),
            lift_eval("lifts_onehot", "eval"),
            lift_eval("lifts_video", "eval_video", "--condition", "video", "--demos", SUITE),
        ],
        "goal": [
            collect_suite(),
            collect_noisy(),
            lift_train("goal_small10", "--conditioning", "goal_image", "--demos-per-task", "10", steps=1500),
            lift_train("goal_small10_failures", "--conditioning", "goal_image", "--demos-per-task", "10",
                       data=(SUITE, NOISY), steps=1500),
            lift_eval("goal_small10", "eval", "--condition", "goal_image"),
            lift_eval("goal_small10_failures", "eval", "--condition", "goal_image"),
            # all 45 training demos per task, the budget of the language/one-hot/video runs
            lift_train("goal_all45", "--conditioning", "goal_image"),
            lift_eval("goal_all45", "eval", "--condition", "goal_image"),
        ],
    }


def run(names: list[str], root: str) -> None:
    exps = experiments()
    for name in names:
        for step in exps[name]:
            if step.done(root):
                print(f"[{name}] done already: {step.out}", flush=True)
                continue
            argv = step.argv(root)
            log = os.path.join(root, step.out.rstrip("/") + ".log")
            os.makedirs(os.path.dirname(log), exist_ok=True)
            lock = os.path.join(root, step.out.rstrip("/") + ".lock")  # two runners may share steps
            try:
                os.close(os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                print(f"[{name}] running elsewhere, skipped: {step.out} (delete {lock} if nothing runs it)")
                continue
            print(f"[{name}] {shlex.join(argv)}  (log: {log})", flush=True)
            t0 = time.time()
            try:
                with open(log, "w") as f:
                    code = subprocess.call(argv, stdout=f, stderr=subprocess.STDOUT)
            finally:
                os.unlink(lock)
            print(f"[{name}] exit {code} after {time.time() - t0:.0f} s", flush=True)
            if code != 0:
                sys.exit(f"step failed (exit {code}); see {log}")


def _train_summary(root: str, out: str) -> dict:
    p = os.path.join(root, out, "train_summary.json")
    if os.path.exists(p):
        with open(p) as f:
            return json.load(f)
    with open(os.path.join(root, out + ".log")) as f:  # runs started before train_summary.json existed
        m = re.findall(r"trained (\d+) steps in (\d+) s \(([\d.]+) steps/s, data wait ([\d.]+)%", f.read())
    steps, secs, rate, wait = m[-1]
    return {"steps": int(steps), "seconds": float(secs), "steps_per_s": float(rate),
            "data_wait_fraction": float(wait) / 100, "source": "training log"}


def summarize(names: list[str], root: str) -> None:
    exps = experiments()
    for name in names:
        out = {"experiment": name, "created": datetime.date.today().isoformat(),
               "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
               "workdir": root, "commands": [], "train": {}, "eval": {}}
        for step in exps[name]:
            out["commands"].append(shlex.join(["mtil", *step.argv(root)[1:]]).replace(root + "/", ""))
            if not step.done(root):
                out.setdefault("missing", []).append(step.out)
                continue
            if step.kind == "train":
                with open(os.path.join(root, step.out, "config.json")) as f:
                    cfg = json.load(f)["train"]
                out["train"][step.out] = {**_train_summary(root, step.out), "config": cfg, "note": step.note}
            elif step.kind == "eval":
                with open(os.path.join(root, step.out, "eval.json")) as f:
                    ev = json.load(f)
                out["eval"][step.out] = {
                    "checkpoint_sha256": ev["checkpoint_sha256"], "step": ev["step"], "seconds": ev["seconds"],
                    "complete": ev["complete"], "seeds": [ev["config"]["seed"],
                                                          ev["config"]["seed"] + ev["config"]["episodes_per_task"] - 1],
                    "created": ev["created"], "overall": ev["overall"],
                    "rows": [{k: r[k] for k in ("task", "condition", "instruction", "successes", "n", "success_rate",
                                                "ci95", "errors", "mean_length")} for r in ev["rows"]]}
        path = os.path.join(REPO, "docs", "results", f"{name}.json")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            json.dump(out, f, indent=1)
        if out["eval"]:
            plot(out, path[:-len(".json")] + ".png")
        print(f"wrote {path}" + (f" (missing: {', '.join(out['missing'])})" if out.get("missing") else ""))


def plot(res: dict, path: str) -> None:
    """Grouped bars: success per task (x) for every evaluation of the experiment, 95% Wilson intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    series = [(f"{ev_name.removeprefix('runs/')} ({cond})", [r for r in ev["rows"] if r["condition"] == cond])
              for ev_name, ev in res["eval"].items() for cond in ev["overall"]]
    labels = list(dict.fromkeys(r["task"] if r["condition"] != "paraphrase" else f"{r['task']}: {r['instruction']}"
                                for _, rows in series for r in rows))
    width = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.5 * len(labels) * max(1, len(series)) ** 0.5 + 3), 4.5))
    for i, (name, rows) in enumerate(series):
        by = {(r["task"] if r["condition"] != "paraphrase" else f"{r['task']}: {r['instruction']}"): r for r in rows}
        xs = [j for j, lab in enumerate(labels) if lab in by and by[lab]["success_rate"] is not None]
        rates = np.array([by[labels[j]]["success_rate"] for j in xs])
        err = np.array([[by[labels[j]]["success_rate"] - by[labels[j]]["ci95"][0],
                         by[labels[j]]["ci95"][1] - by[labels[j]]["success_rate"]] for j in xs]).T.reshape(2, -1)
        ax.bar(np.array(xs) + (i - (len(series) - 1) / 2) * width, rates, width, yerr=err, capsize=2, label=name)
    ax.set_xticks(range(len(labels)), labels, rotation=50, ha="right", fontsize=7)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("success rate (95% Wilson CI)")
    ax.set_title(f"{res['experiment']} ({res['created']})", fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _cell(r: dict) -> str:
    if r.get("success_rate") is None:
        return "-"
    lo, hi = r["ci95"]
    return f"{r['successes']}/{r['n']} = {r['success_rate']:.0%} [{lo:.0%}, {hi:.0%}]"


def tables() -> None:
    """Per experiment: one row per (eval, row) with success and interval, then training wall-clock."""
    d = os.path.join(REPO, "docs", "results")
    for fn in sorted(os.listdir(d)):
        if not fn.endswith(".json") or fn.startswith("bench"):
            continue
        with open(os.path.join(d, fn)) as f:
            res = json.load(f)
        print(f"### {res['experiment']} ({res['created']}, {res['machine']})\n")
        print("| run / eval | task | given as | instruction | success [95% CI] |\n| --- | --- | --- | --- | --- |")
        for ev_name, ev in res["eval"].items():
            for r in ev["rows"]:
                print(f"| {ev_name.removeprefix('runs/')} | {r['task']} | {r['condition']} | {r['instruction']} | "
                      f"{_cell(r)} |")
            for cond, s in ev["overall"].items():
                print(f"| {ev_name.removeprefix('runs/')} | **all** | {cond} | | **{_cell(s)}** |")
        print("\n| training run | steps | batch | wall-clock | steps/s | train demos per task |")
        print("| --- | --- | --- | --- | --- | --- |")
        for tr_name, tr in res["train"].items():
            demos = tr.get("train_demos", "")
            print(f"| {tr_name.removeprefix('runs/')} | {tr['steps']} | {tr['config']['batch_size']} | "
                  f"{tr['seconds'] / 60:.1f} min | {tr['steps_per_s']:.2f} | {demos} |")
        print()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("action", choices=["list", "run", "summarize", "tables"])
    ap.add_argument("experiments", nargs="*", help="experiment names (default: all)")
    ap.add_argument("--workdir", default=os.environ.get("MTIL_RESULTS_DIR", "results-work"),
                    help="where data, runs and logs go (default: $MTIL_RESULTS_DIR or ./results-work)")
    a = ap.parse_args()
    exps = experiments()
    names = a.experiments or list(exps)
    unknown = [n for n in names if n not in exps]
    if unknown:
        print(f"unknown experiment {unknown[0]!r}; choose from {', '.join(exps)}", file=sys.stderr)
        return 2
    root = os.path.abspath(a.workdir)
    if a.action == "list":
        for n in names:
            print(f"{n}:")
            for s in exps[n]:
                print(f"  {shlex.join(['mtil', *s.argv(root)[1:]])}")
    elif a.action == "run":
        run(names, root)
    elif a.action == "summarize":
        summarize(names, root)
    else:
        tables()
    return 0


if __name__ == "__main__":
    sys.exit(main())
