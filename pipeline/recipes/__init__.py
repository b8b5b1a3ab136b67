"""Loops built from collection, training and evaluation: ``quickstart.py`` (the whole loop on a small
default), ``dagger.py`` (rounds of expert-labelled rollouts), ``fit_video.py`` (a demo-video encoder fitted
onto a trained language policy's task space)."""
