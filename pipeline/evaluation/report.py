"""Evaluation outputs: eval.json (machine-readable), report.md (table), success.png (bar chart with
95% intervals) and mp4 videos with the instruction and the outcome written on the frames."""

from __future__ import annotations

import datetime
import os
import platform

import numpy as np

from mtil.datasets.atomic import atomic_write, check_writable_dir, write_json_atomic
from mtil.pipeline.evaluation.config import TRAIN_INSTRUCTION
from mtil.pipeline.mp4 import write_mp4
from mtil.pipeline.sim.stages import STAGE_ORDER


def wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval for k successes in n trials (95% by default); (0, 1) when n = 0."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    den = 1 + z * z / n
    center = (p + z * z / (2 * n)) / den
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    # the interval always contains p; rounding made center - half exceed 0 = p for k = 0 at some n (e.g.
    # 2e-17), which a plot's error bar then rejected as a negative length
    return float(min(p, max(0.0, center - half))), float(max(p, min(1.0, center + half)))


def summarize(episodes: list[dict]) -> dict:
    valid = [e for e in episodes if e is not None and not e["error"]]
    k, n = sum(e["success"] for e in valid), len(valid)
    lo, hi = wilson(k, n)
    return {"successes": k, "n": n, "success_rate": k / n if n else None, "ci95": [lo, hi],
            "errors": sum(1 for e in episodes if e is not None and e["error"]),
            "missing": sum(1 for e in episodes if e is None),
            "mean_length": float(np.mean([e["length"] for e in valid])) if valid else None}


def headline(result: dict, given: str = TRAIN_INSTRUCTION) -> dict:
    """The headline summary of an evaluation's result (``eval.json``): successes, n, success_rate, ci95,
    errors for the tasks given as ``given`` (by default their training instruction; "video" for an evaluation
    with clips); {} when no such row was evaluated."""
    return result["overall"].get(given, {})


def stage_counts(episodes: list[dict]) -> dict:
    """{"stages": {stage: episodes whose furthest stage it is}, "stalled": n} over finished, error-free
    episodes that recorded a stage (see pipeline/sim/stages.py)."""
    valid = [e for e in episodes if e is not None and not e["error"] and "stage" in e]
    counts: dict[str, int] = {}
    for e in valid:
        counts[e["stage"]] = counts.get(e["stage"], 0) + 1
    return {"stages": counts, "stalled": sum(bool(e.get("stalled")) for e in valid)}


def prepare_out(path: str) -> tuple[str, bool]:
    """Create ``path`` after checking ``--out`` (a file in the way or a read-only folder is a
    ``UserError``); returns (its absolute path, whether this call made it). ``videos/`` is made by the
    first video written."""
    out = check_writable_dir(path)
    made = not os.path.isdir(out)
    os.makedirs(out, exist_ok=True)
    return out, made


def remove_if_empty(*folders: str) -> None:
    """Remove each folder that exists and is empty, in order (an evaluation that could write nothing
    leaves no empty videos/ or --out behind)."""
    for folder in folders:
        try:
            os.rmdir(folder)
        except OSError:  # not empty, or not there
            pass


def error_summary(episodes: dict, finished: bool) -> dict:
    """``complete`` is true only when every episode ran and none errored; ``errors`` counts the errored
    episodes, ``error_counts`` their messages."""
    errors = [e["error"] for e in episodes.values() if e is not None and e["error"]]
    counts: dict[str, int] = {}
    for msg in errors:
        counts[msg] = counts.get(msg, 0) + 1
    return {"complete": finished and not errors, "interrupted": not finished, "errors": len(errors),
            "error_counts": dict(sorted(counts.items(), key=lambda kv: -kv[1]))}


def write_outputs(out: str, rows, episodes: dict, n: int, meta: dict) -> dict:
    result_rows = []
    for r, row in enumerate(rows):
        eps = [episodes[(r, i)] for i in range(n)]
        result_rows.append({"task": row.task, "condition": row.condition, "instruction": row.instruction,
                            **summarize(eps), "where_episodes_end": stage_counts(eps), "episodes": eps})
    groups = {}
    for row, res in zip(rows, result_rows):
        groups.setdefault(row.condition, []).extend(res["episodes"])
    result = {"schema": "mtil-eval/1", **meta, "created": datetime.datetime.now().isoformat(timespec="seconds"),
              "machine": f"{platform.machine()}, {os.cpu_count()} cores",
              "rows": result_rows, "overall": {c: summarize(e) for c, e in groups.items()}}
    write_json_atomic(os.path.join(out, "eval.json"), result)
    _write_report(os.path.join(out, "report.md"), result)
    _plot(os.path.join(out, "success.png"), result)
    return result


def _fmt(s: dict) -> str:
    if s["success_rate"] is None:
        return "-"
    return f"{s['successes']}/{s['n']} = {s['success_rate']:.0%} [{s['ci95'][0]:.0%}, {s['ci95'][1]:.0%}]"


def _write_report(path: str, result: dict) -> None:
    lines = [f"# Evaluation of `{os.path.basename(result['checkpoint'])}` (step {result['step']})", ""]
    if result.get("interrupted", not result["complete"]):
        lines += ["**INCOMPLETE: interrupted; only the episodes that finished are counted.**", ""]
    if result.get("errors"):
        lines += [f"**INCOMPLETE: {result['errors']} episode(s) ended in an error** (not counted as failures):", ""]
        lines += [f"- {n} x {msg}" for msg, n in result["error_counts"].items()] + [""]
    lines += [f"checkpoint sha256 `{result['checkpoint_sha256'][:16]}`, env `{result['env_name']}`, "
              f"{result['config']['episodes_per_task']} episodes per row, seeds {result['config']['seed']}.."
              f"{result['config']['seed'] + result['config']['episodes_per_task'] - 1}, {result['machine']}, "
              f"{result['created']}, {result['seconds']:.0f} s", "",
              "| task | given as | instruction | success [95% CI] | mean length | errors |",
              "| --- | --- | --- | --- | --- | --- |"]
    for r in result["rows"]:
        ml = f"{r['mean_length']:.0f}" if r["mean_length"] is not None else "-"
        lines.append(f"| {r['task']} | {r['condition']} | {r['instruction']} | {_fmt(r)} | {ml} | {r['errors']} |")
    lines += ["", "| given as | success [95% CI] | errors |", "| --- | --- | --- |"]
    for c, s in result["overall"].items():
        lines.append(f"| {c} (all tasks) | {_fmt(s)} | {s['errors']} |")
    lines += stage_table(result["rows"]) + clip_table(result["rows"])
    atomic_write(path, lambda f: f.write("\n".join(lines) + "\n"))


def clip_table(rows: list[dict]) -> list[str]:
    """Markdown lines for rows shown by several clips (`mtil eval --clips N`): successes per demo shown."""
    lines = []
    for r in rows:
        by: dict[str, list[int]] = {}
        for e in r["episodes"]:
            if e is not None and not e["error"] and "clip" in e:
                by.setdefault(e["clip"], []).append(int(e["success"]))
        if by:
            lines.append(f"| {r['task']} | " + ", ".join(f"{c}: {sum(v)}/{len(v)}" for c, v in by.items()) + " |")
    if not lines:
        return []
    return ["", "## By clip", "", "Successes of the episodes shown each demo's clip (`--clips`).", "",
            "| task | demo: successes/episodes |", "|---|---|", *lines]


def stage_table(rows: list[dict]) -> list[str]:
    """Markdown lines: per row, how many episodes ended at each furthest stage ("-": not a stage of that
    task), and how many failed episodes ended with the arm stalled."""
    rows = [r for r in rows if r.get("where_episodes_end", {}).get("stages")]
    if not rows:
        return []
    used = [s for s in STAGE_ORDER if any(s in r["where_episodes_end"]["stages"] for r in rows)]
    lines = ["", "## Where episodes end", "",
             "Furthest stage each episode reached (privileged simulator state; stages in pipeline/sim/stages.py); "
             "stalled: failed episodes whose arm moved < 5 mm in their last 30 steps.", "",
             "| task | given as | " + " | ".join(used) + " | stalled |", "|---" * (len(used) + 3) + "|"]
    for r in rows:
        w = r["where_episodes_end"]
        stages = _task_stages(r["task"])
        cells = [str(w["stages"].get(s, 0)) if s in stages else "-" for s in used]
        lines.append(f"| {r['task']} | {r['condition']} | " + " | ".join(cells) + f" | {w['stalled']} |")
    return lines


def _task_stages(task: str) -> tuple[str, ...]:
    from mtil.pipeline.sim.backends import stages_of_task

    return stages_of_task(task)


def _plot(path: str, result: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in result["rows"] if r["success_rate"] is not None]
    if not rows:
        return
    colors = {TRAIN_INSTRUCTION: "tab:blue", "paraphrase": "tab:orange", "held-out task": "tab:red",
              "video": "tab:green", "goal image": "tab:purple"}
    labels = [f"{r['task']}\n{r['instruction'][:38]}" if r["condition"] == "paraphrase" else r["task"] for r in rows]
    rates = np.array([r["success_rate"] for r in rows])
    err = np.clip([[r["success_rate"] - r["ci95"][0], r["ci95"][1] - r["success_rate"]] for r in rows], 0, None).T
    fig, ax = plt.subplots(figsize=(max(6, 0.55 * len(rows) + 2), 4.5))
    ax.bar(range(len(rows)), rates, yerr=err, capsize=3, color=[colors.get(r["condition"], "gray") for r in rows])
    ax.set_xticks(range(len(rows)), labels, rotation=60, ha="right", fontsize=7)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("success rate (95% Wilson CI)")
    title = f"{os.path.basename(result['checkpoint'])} step {result['step']}: n={rows[0]['n']} per row"
    ax.set_title(title + ("" if result["complete"] else " (INCOMPLETE)"), fontsize=9)
    from matplotlib.patches import Patch

    present = [c for c in colors if any(r["condition"] == c for r in rows)]
    ax.legend(handles=[Patch(color=colors[c], label=c) for c in present], fontsize=7, loc="upper left",
              bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110), binary=True)
    plt.close(fig)


def write_video(path: str, frames: list[np.ndarray], instruction: str, res: dict, fps: int = 20,
                goal: np.ndarray | None = None) -> None:
    """mp4 of the episode, the instruction on top of every frame, the outcome at the bottom; the last
    frame is held for one second so the outcome is readable. ``goal`` (H, W, 3): the goal image the
    policy was given, drawn as an inset in the top-right corner with a white border."""
    from PIL import Image, ImageDraw

    outcome = "ERROR" if res.get("error") else ("SUCCESS" if res["success"] else "FAILURE")
    color = {"SUCCESS": (40, 200, 60), "FAILURE": (230, 50, 40), "ERROR": (230, 160, 20)}[outcome]
    inset = None
    if goal is not None:
        side = max(24, frames[0].shape[0] // 3)
        inset = Image.fromarray(np.asarray(goal, dtype=np.uint8)).resize((side, side))
    out = []
    for t, frame in enumerate(frames):
        img = Image.fromarray(frame)
        d = ImageDraw.Draw(img)
        w, h = img.size
        if inset is not None:
            d.rectangle([w - inset.width - 2, 14, w, 16 + inset.height], fill=(255, 255, 255))
            img.paste(inset, (w - inset.width - 1, 15))
            d.text((w - inset.width, 16 + inset.height), "goal", fill=(255, 255, 255))
        d.rectangle([0, 0, w, 13], fill=(0, 0, 0))
        d.text((3, 1), instruction[:60], fill=(255, 255, 255))
        last = t == len(frames) - 1
        d.rectangle([0, h - 13, w, h], fill=(0, 0, 0))
        d.text((3, h - 12), f"step {t + 1}" + (f"  {outcome}" if last else ""), fill=color if last else (200, 200, 200))
        out.append(np.asarray(img))
    write_mp4(path, out + [out[-1]] * fps, fps)
