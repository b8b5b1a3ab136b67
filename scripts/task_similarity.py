"""Which trained task does a policy take an instruction for? The cosine between the task vector z it computes
for each given instruction and the z of every task it was trained on, nearest first.

    python scripts/task_similarity.py RUN/last.pt [--instructions TEXT ...] [--top 3] [--json out.json]

Without --instructions: the suite's held-out compositions (`mtil tasks`). A held-out instruction whose z sits
at cosine ~1 of a trained task is, to the policy, that task (docs/results.md section 17: "stack the red cube on
the blue cube" is "stack the blue cube on the red cube" to a pooled-MiniLM policy, cosine 0.98).
"""

from __future__ import annotations

import argparse
import json
import sys


def similarities(policy, texts: list[str]) -> list[dict]:
    """For each text: {"instruction", "nearest": [(trained instruction, cosine), ...] all trained tasks, nearest
    first}."""
    import torch

    names = list(policy.cfg.tasks)
    with torch.no_grad():
        zt = torch.nn.functional.normalize(policy.resolve_task(names, len(names)).float(), dim=-1)
        zq = torch.nn.functional.normalize(policy.resolve_task(list(texts), len(texts)).float(), dim=-1)
    sim = (zq @ zt.T).cpu()
    return [{"instruction": t, "nearest": [(names[j], round(float(sim[i, j]), 4))
                                           for j in sim[i].argsort(descending=True).tolist()]}
            for i, t in enumerate(texts)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint")
    ap.add_argument("--instructions", nargs="+", default=[])
    ap.add_argument("--top", type=int, default=3, help="trained tasks printed per instruction")
    ap.add_argument("--json", default="", help="also write every cosine to this file")
    a = ap.parse_args(argv)
    from mtil.datasets.errors import UserError
    from mtil.pipeline.checkpoint import load_policy
    from mtil.pipeline.sim.tasks import TASKS

    texts = a.instructions or [t.instruction for t in TASKS.values() if t.held_out]
    try:
        policy, _ = load_policy(a.checkpoint)
        rows = similarities(policy, texts)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for r in rows:
        print(f"{r['instruction']}\n    " + "\n    ".join(f"{c:+.3f}  {n}" for n, c in r["nearest"][: a.top]))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"checkpoint": a.checkpoint, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
