"""mtil.pipeline: policy, training, simulated task suite, collection, evaluation, CLI."""
