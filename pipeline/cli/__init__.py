"""The `mtil` command line: ``main`` dispatches, one module per command group, ``argsfrom`` turns config
dataclasses into options."""
