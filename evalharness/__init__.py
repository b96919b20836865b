"""evalharness: evaluate multi-token-prediction code models on HumanEval and MBPP.

Notebook API: `load_run(path)` (samples, results, problems as DataFrames,
pass@k with CIs, comparisons) and `load_runs(glob)` / `plot_runs(df)` for many
runs. They load lazily so the CLI does not pay for pandas at start-up.
"""
__version__ = "0.2.0"

__all__ = ["Run", "load_run", "load_runs", "plot_runs", "__version__"]
_NOTEBOOK = ("Run", "load_run", "load_runs", "plot_runs")


def __getattr__(name):
    if name in _NOTEBOOK:
        from . import notebook

        return getattr(notebook, name)
    raise AttributeError(f"module 'evalharness' has no attribute {name!r}")


def __dir__():
    """The API (loaded lazily, so not yet module globals) and the module's own names."""
    return sorted(set(__all__) | set(globals()))
