"""mtil.pipeline, by role: ``policy/`` (the policy and its parts), ``training/``, ``evaluation/``,
``recipes/`` (quickstart, DAgger, fit-video), ``sim/`` (simulated tasks, experts, collection, worker
pool), ``cli/`` (the ``mtil`` command); ``checkpoint.py`` (the checkpoint layout, read by training and
evaluation alike) and ``mp4.py`` beside them. Old flat module paths still import (``moved.py``)."""

from mtil.pipeline import moved

moved.install()
