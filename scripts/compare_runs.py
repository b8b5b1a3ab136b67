"""Compare training setups over seeds: one markdown row per setup from its runs' eval.json files.

    python scripts/compare_runs.py "BC=runs/bc-s*/eval" "DART 0.1=runs/dart1-s*/eval" [--stages] [--json out.json]

Each argument is LABEL=GLOB (the glob matches eval directories written by `mtil eval`, one per training
seed). A row gives every seed's successes (training-instruction rows, all tasks pooled), the mean success
rate over seeds and its range (min..max), and with ``--stages`` the pooled "where episodes end" counts
(furthest stage of every episode; see pipeline/sim/stages.py). Seeds are compared on the same evaluation
episodes when the runs used the same `mtil eval --seed`. An evaluation without training-instruction rows
(video, paraphrases) counts all its rows; ``--task NAME`` counts one task's rows only.

``--plot FILE.png`` draws the rows: one column per setup, a dot per training seed, a bar at the mean.

``--per-task`` prints a task-by-setup matrix instead: one row per task, one column per setup, each cell the
successes of every evaluation under the glob that has a row for that task (one per training seed) and their
pooled rate. A glob may then gather single-task runs, one task each ("single=runs/seed_*/single_*/eval").
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import textwrap

STAGES = ("start", "reached", "grasped", "lifted", "above target", "success")


def load(pattern: str) -> list[dict]:
    runs = []
    for d in sorted(glob.glob(pattern)):
        path = os.path.join(d, "eval.json")
        if os.path.exists(path):
            with open(path) as f:
                runs.append(json.load(f))
    return runs


def summarize(label: str, runs: list[dict], task: str | None = None) -> dict:
    per_seed, stages, stalled = [], {}, 0
    for r in runs:
        rows = [w for w in training_rows(r) if task is None or w["task"] == task]
        per_seed.append({"checkpoint": r["checkpoint"], "successes": sum(w["successes"] for w in rows),
                         "n": sum(w["n"] for w in rows), "errors": sum(w["errors"] for w in rows),
                         "complete": r["complete"]})
        for row in rows:
            w = row.get("where_episodes_end") or {"stages": {}, "stalled": 0}
            for s, c in w["stages"].items():
                stages[s] = stages.get(s, 0) + c
            stalled += w["stalled"]
    rates = [p["successes"] / p["n"] for p in per_seed if p["n"]]
    label = label if task is None else f"{label} ({task})"
    return {"label": label, "seeds": per_seed, "mean": sum(rates) / len(rates) if rates else None,
            "min": min(rates) if rates else None, "max": max(rates) if rates else None,
            "stages": stages, "stalled": stalled}


def table(rows: list[dict], with_stages: bool) -> str:
    used = [s for s in STAGES if any(s in r["stages"] for r in rows)]
    head = "| setup | per seed | mean [range] |"
    if with_stages:
        head += "".join(f" {s} |" for s in used) + " stalled |"
    lines = [head, "|---" * (3 + (len(used) + 1 if with_stages else 0)) + "|"]
    for r in rows:
        seeds = ", ".join(f"{p['successes']}/{p['n']}" + ("" if p["complete"] else " (incomplete)") for p in r["seeds"])
        rate = "-" if r["mean"] is None else f"{r['mean']:.0%} [{r['min']:.0%}, {r['max']:.0%}]"
        line = f"| {r['label']} | {seeds} | {rate} |"
        if with_stages:
            line += "".join(f" {r['stages'].get(s, 0)} |" for s in used) + f" {r['stalled']} |"
        lines.append(line)
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: str, title: str) -> None:
    """One column per setup: each seed's success rate as a dot, the mean as a short bar and its value."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    width = 1.6 + 1.4 * len(rows)
    fig, ax = plt.subplots(figsize=(width, 3.6))
    for i, r in enumerate(rows):
        rates = [100 * p["successes"] / p["n"] for p in r["seeds"] if p["n"]]
        xs = [i + 0.12 * (j - (len(rates) - 1) / 2) for j in range(len(rates))]
        ax.scatter(xs, rates, s=28, color="tab:blue", zorder=3)
        if r["mean"] is not None:
            ax.plot([i - 0.32, i + 0.32], [100 * r["mean"]] * 2, color="black", lw=2)
            ax.annotate(f"{r['mean']:.0%}", (i + 0.34, 100 * r["mean"]), va="center", fontsize=9)
    ax.set_xticks(range(len(rows)), [r["label"] for r in rows], fontsize=9)
    ax.set_xlim(-0.6, len(rows) - 0.3)
    ax.set_ylim(-3, 103)
    ax.set_ylabel("success per training seed (%)")
    ax.set_title(textwrap.fill(title, int(11 * width)), fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def training_rows(run: dict) -> list[dict]:
    """The rows of one evaluation that count: the training-instruction rows, else all of them."""
    return [w for w in run["rows"] if w.get("condition") == "train instruction"] or run["rows"]


def per_task(setups: list[tuple[str, list[dict]]]) -> tuple[str, list[dict]]:
    """Task-by-setup matrix: for every task and setup, each evaluation's successes for that task, pooled."""
    cells: dict[tuple[str, str], list[tuple[int, int]]] = {}
    orders = []  # each evaluation's tasks; the table follows the evaluation with the most tasks
    for label, runs in setups:
        for r in runs:
            rows = training_rows(r)
            orders.append([w["task"] for w in rows])
            for w in rows:
                cells.setdefault((w["task"], label), []).append((w["successes"], w["n"]))
    tasks = list(dict.fromkeys(max(orders, key=len) + [t for seen in orders for t in seen]))
    labels = [label for label, _ in setups]
    lines = ["| task |" + "".join(f" {lb} |" for lb in labels), "|---" * (1 + len(labels)) + "|"]
    out = []
    for t in tasks:
        line = f"| {t} |"
        for lb in labels:
            got = cells.get((t, lb), [])
            s, n = sum(c[0] for c in got), sum(c[1] for c in got)
            line += f" {', '.join(str(c[0]) for c in got)} of {got[0][1]} = {s / n:.0%} |" if n else " - |"
            out.append({"task": t, "setup": lb, "successes": [c[0] for c in got], "n": [c[1] for c in got]})
        lines.append(line)
    return "\n".join(lines) + "\n", out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("setups", nargs="+", metavar="LABEL=GLOB", help="a setup and the glob of its eval dirs")
    ap.add_argument("--stages", action="store_true", help="add the pooled 'where episodes end' counts")
    ap.add_argument("--json", default=None, help="also write the rows as JSON to this file")
    ap.add_argument("--task", default=None, help="count only this task's rows (e.g. the rare task of an ablation)")
    ap.add_argument("--per-task", action="store_true", help="a task-by-setup matrix of successes per seed")
    ap.add_argument("--plot", default=None, metavar="PNG", help="also draw each setup's seeds (not with --per-task)")
    ap.add_argument("--title", default="", help="title of the --plot figure")
    a = ap.parse_args()
    if a.plot and a.per_task:
        print("error: --plot draws the per-setup rows; it cannot be combined with --per-task", file=sys.stderr)
        return 2
    loaded = []
    for s in a.setups:
        if "=" not in s:
            print(f"error: {s!r}: expected LABEL=GLOB", file=sys.stderr)
            return 2
        label, pattern = s.split("=", 1)
        runs = load(pattern)
        if not runs:
            print(f"error: {label}: no eval.json under {pattern!r}", file=sys.stderr)
            return 2
        loaded.append((label, runs))
    if a.per_task:
        text, rows = per_task(loaded)
    else:
        rows = [summarize(label, runs, a.task) for label, runs in loaded]
        text = table(rows, a.stages)
        if a.plot:
            plot(rows, a.plot, a.title or (f"task {a.task}" if a.task else "all tasks"))
    print(text, end="")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
