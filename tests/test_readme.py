"""The README's code runs: its Python "Library" snippet against a tiny ingested file and a tiny checkpoint
(issue 14, defect 7), and output piped into a reader that goes away ends quietly (defect 6)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from mtil.datasets.synthetic import write_synthetic

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _python_blocks() -> list[str]:
    with open(os.path.join(REPO_ROOT, "README.md")) as f:
        return re.findall(r"```python\n(.*?)```", f.read(), flags=re.S)


def test_readme_library_snippet_runs(tmp_path, monkeypatch):
    from mtil.datasets.ingest import IngestConfig, ingest
    from mtil.pipeline.train import TrainConfig, train

    blocks = _python_blocks()
    assert blocks, "README.md has no ```python block"
    src = write_synthetic(str(tmp_path / "demos.hdf5"), demos_per_task=[2, 2], steps=12)
    ingest(IngestConfig(sources=[src], out=str(tmp_path / "data")))
    train(TrainConfig(data=[str(tmp_path / "data")], out=str(tmp_path / "run"), steps=1, batch_size=4,
                      conditioning="onehot", cond_dim=8, obs_horizon=2, action_horizon=8))
    monkeypatch.chdir(tmp_path)
    for code in blocks:
        scope: dict = {}
        exec(compile(code, "README.md", "exec"), scope)  # noqa: S102 - the README's own code
    assert scope["batch"]["actions"].shape[:2] == (64, 8)
    assert scope["action"].shape == (7,)


def test_output_into_a_closed_pipe_ends_quietly():
    """`mtil tasks | head -3`: the reader closes the pipe before we write; no traceback, exit 0."""
    code = "import sys; from mtil.pipeline.cli.main import main; sys.exit(main(['tasks']))"
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd="/")
    p.stdout.close()
    err = p.stderr.read().decode()
    p.wait(timeout=120)
    assert p.returncode == 0 and "Traceback" not in err and "BrokenPipe" not in err, err
