"""The policy and its parts: ``model.py`` (``MultiTaskPolicy``, its options and config), ``normalizer.py``,
``heads/`` (action heads, table ``HEADS``), ``trunks/`` (table ``TRUNKS``). Backbones and conditioning
kinds live in mtil.encoders.

``from mtil.pipeline.policy import MultiTaskPolicy`` (the path before this folder existed) still works:
the names of ``model`` are looked up on first use, so importing a head or trunk does not load the model."""

from __future__ import annotations

_MODEL_NAMES = ("MultiTaskPolicy", "PolicyConfig", "PolicyOptions", "default_lowdim_keys")


def __getattr__(name: str):
    if name in _MODEL_NAMES:
        from mtil.pipeline.policy import model

        return getattr(model, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
