"""medtoolkit: composable, fast and safe medication recommendation.

Quick use from Python::

    import medtoolkit as mt

    experiment = mt.build(mt.load_preset("gamenet"))
    result = experiment.run(out_dir="runs/gamenet")
    print(result.report_markdown)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from medtoolkit.hookspecs import hookimpl

__version__ = "0.1.0"

if TYPE_CHECKING:
    from medtoolkit.experiment import Experiment

__all__ = ["__version__", "build", "fit_evaluate", "hookimpl", "load_preset"]


def build(config: Any, overrides: list[str] | None = None, host: Any = None) -> "Experiment":
    """Validate a run config (dict, YAML path or preset name) and return an :class:`Experiment`.

    Args:
        config: a mapping shaped like a run file, a path to one, or a preset name.
        overrides: ``key.path=value`` overrides applied before validation.
        host: plugin host (default: every installed plugin).
    """
    from medtoolkit.experiment import Experiment

    return Experiment.from_config(config, overrides=overrides or [], host=host)


def load_preset(name: str, host: Any = None) -> dict[str, Any]:
    """The raw run config of a registered preset (a fresh copy you may edit)."""
    from medtoolkit.presets import preset_config

    return preset_config(name, host=host)


def fit_evaluate(model: Any, losses: Any, data: Any, **options: Any) -> Any:
    """Train, evaluate and report parts built in Python: see :func:`medtoolkit.fit.fit_evaluate`."""
    from medtoolkit.fit import fit_evaluate as run

    return run(model, losses, data, **options)
