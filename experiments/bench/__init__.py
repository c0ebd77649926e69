"""Benchmark suites for experiments/benchmark.py.

Each suite is a module `experiments.bench.<name>` with

    def run(quick: bool) -> list[dict[str, object]]

returning the rows of one table (every row has the same keys; strings or numbers). `quick=True`
uses smaller sizes for a smoke run. Suites time with `timing.time_fn`, never inside tests.
"""

SUITES = ("losses", "data", "models", "train_step", "conv_variants", "inference", "scaling")
