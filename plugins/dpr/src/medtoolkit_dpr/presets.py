"""The plugin's presets: two YAML files and the paper's rows derived from them by overrides.

* ``dpr_ncf`` (``presets/dpr_ncf.yaml``): the NCF baseline, the top-K drugs of the ``ncf``
  model trained with ``bpr`` (task ``scoring: top_k``);
* ``dpr_nn``: ``dpr_ncf`` with ``scoring: nearest`` (the package of the nearest training visit
  by the fitted patient embedding; Table 4 "NN");
* ``dpr_wg`` (``presets/dpr_wg.yaml``): DPR-WG, stages ``pretrain`` (``bpr``) then ``train``
  (``package_bpr``), task ``scoring: model``;
* ``dpr_gnn``: ``variant: gnn`` (Table 4 "GNN");
* ``dpr_ag``: ``variant: ag`` with ``package_bpr`` + ``edge_type`` in the train stage (Eq. 21);
* ablations (Table 5): ``dpr_wg_context`` (no contextual impact factor), ``dpr_wg_type`` (no
  prior edge weights: ``e^ = c``), ``dpr_ag_mask`` (no mask layer), ``dpr_ag_type`` (no
  edge-type loss).

Every derived row differs from its base by exactly its overrides (and its ``name``), so data,
trainer and evaluation stay identical by construction. :data:`VARIANTS` carries the paper's
numbers (Tables 4 and 5, its private hospital data) for the benchmark tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medtoolkit.hookspecs import Register
from medtoolkit.presets import derived_presets

PRESET_DIR = Path(__file__).parent / "presets"
NCF_PATH = PRESET_DIR / "dpr_ncf.yaml"
WG_PATH = PRESET_DIR / "dpr_wg.yaml"

_AG_LOSSES = "stages.1.losses=[{type: package_bpr}, {type: edge_type}]"


@dataclass(frozen=True)
class Variant:
    """One row of the paper's comparison.

    Attributes:
        name: preset name.
        paper_label: the row's name in the paper.
        paper: the paper's ``{"precision", "recall", "f1"}`` (Table 4, or Table 5 for ablations).
        base: the preset it derives from (``None``: a YAML file of its own).
        overrides: ``key.path=value`` overrides applied to ``base``.
    """

    name: str
    paper_label: str
    paper: dict[str, float]
    base: str | None = None
    overrides: tuple[str, ...] = ()


def _prf(precision: float, recall: float, f1: float) -> dict[str, float]:
    return {"precision": precision, "recall": recall, "f1": f1}


VARIANTS: tuple[Variant, ...] = (
    Variant("dpr_ncf", "NCF", _prf(0.3812, 0.5442, 0.4200)),
    Variant("dpr_nn", "NN", _prf(0.4890, 0.4985, 0.4732), "dpr_ncf",
            ("task.scoring=nearest", "task.similarity=model")),
    Variant("dpr_gnn", "GNN", _prf(0.5085, 0.5288, 0.5009), "dpr_wg",
            ("model.variant=gnn", "model.mask=false", "model.context=false", "model.edge_prior=false")),
    Variant("dpr_wg", "DPR-WG", _prf(0.5133, 0.5488, 0.5137)),
    Variant("dpr_ag", "DPR-AG", _prf(0.5260, 0.5407, 0.5162), "dpr_wg", ("model.variant=ag", _AG_LOSSES)),
    Variant("dpr_wg_context", "DPR-WG-Context", _prf(0.5126, 0.5330, 0.5053), "dpr_wg", ("model.context=false",)),
    Variant("dpr_wg_type", "DPR-WG-Type", _prf(0.5126, 0.5377, 0.5074), "dpr_wg", ("model.edge_prior=false",)),
    Variant("dpr_ag_mask", "DPR-AG-Mask", _prf(0.5152, 0.5342, 0.5061), "dpr_wg",
            ("model.variant=ag", "model.mask=false", _AG_LOSSES)),
    Variant("dpr_ag_type", "DPR-AG-Type", _prf(0.5154, 0.5317, 0.5056), "dpr_wg", ("model.variant=ag",)),
)


def preset_sources() -> dict[str, Path | dict[str, Any]]:
    """Every preset of this plugin by name: a YAML path or a derived raw config (in :data:`VARIANTS` order)."""
    bases = {"dpr_ncf": NCF_PATH, "dpr_wg": WG_PATH}
    sources: dict[str, Path | dict[str, Any]] = {}
    for base, path in bases.items():
        derived = {v.name: v.overrides for v in VARIANTS if v.base == base}
        sources.update(derived_presets(base, path, derived))
    return {variant.name: sources[variant.name] for variant in VARIANTS}


def register_presets(register: Register) -> None:
    """Register :func:`preset_sources` (called from the plugin's ``register_presets`` hook)."""
    for name, source in preset_sources().items():
        register(name, source)
