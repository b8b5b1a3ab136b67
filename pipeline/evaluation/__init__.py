"""Rollout evaluation: ``config.py`` (``EvalConfig``, ``Row``), ``rows.py`` (what to evaluate and how each
task is given), ``checks.py`` (inputs and environments checked before any episode), ``run.py``
(``evaluate(cfg)``: episodes in worker processes), ``report.py`` (eval.json, report.md, plot, videos)."""
