"""Training: ``config.py`` (``TrainConfig``, every option and its range), ``data.py`` (which demos, the
datasets, the sampler, the batches), ``distributed.py`` (rank, device, process group under torchrun),
``loop.py`` (``train(cfg)``: the step-counted loop, checkpoints, rollouts during training)."""
