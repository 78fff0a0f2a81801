"""``dpr``: conformance per variant (with the task's collate), extras, score_packages, init from ncf."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch

from medtoolkit.components.schema import DataSchema
from medtoolkit.data.batching import PaddedBatch
from medtoolkit.data.ehr import EHRData
from medtoolkit.testing import check_component
from medtoolkit.testing.conformance import CHECK_HOSPITALS
from medtoolkit.testing.fake import fake_ehr, fake_schema
from medtoolkit_dpr import BPRLoss, DPRRecommender, EdgeTypeLoss, NCFRecommender, PackageBPRLoss
from medtoolkit_dpr.names import EDGE_TYPES, PACKAGE_GRAPHS, PACKAGE_SCORES

SMALL = {"dim": 8, "hidden": 16, "negatives": 3}


def task_collate(data: EHRData) -> Callable[[PaddedBatch], PaddedBatch]:
    """The package task's collate on ``data`` (what the trainer applies)."""
    from medtoolkit.tasks.package_task import PackageRecommendationTask

    collate = PackageRecommendationTask().collate_fn(data, None, fake_schema(data), frozenset({PACKAGE_GRAPHS}))
    assert collate is not None
    return collate


@pytest.fixture(scope="module")
def check_collate() -> Callable[[PaddedBatch], PaddedBatch]:
    return task_collate(fake_ehr(n_hospitals=CHECK_HOSPITALS))


@pytest.fixture()
def collated(data: EHRData, batch: PaddedBatch) -> PaddedBatch:
    return task_collate(data)(batch)


VARIANTS: list[dict[str, Any]] = [
    {"variant": "wg"}, {"variant": "ag"}, {"variant": "gnn"},
    {"variant": "wg", "context": False}, {"variant": "ag", "mask": False},
]


@pytest.mark.parametrize("options", VARIANTS, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
def test_conforms(options: dict[str, Any], check_collate: Callable[[PaddedBatch], PaddedBatch]) -> None:
    check_component(DPRRecommender, DPRRecommender.Params(**SMALL, **options), collate=check_collate)


def test_losses_conform(check_collate: Callable[[PaddedBatch], PaddedBatch]) -> None:
    check_component(BPRLoss)
    for loss in (PackageBPRLoss, EdgeTypeLoss):
        check_component(loss, recommender=DPRRecommender,
                        recommender_params=DPRRecommender.Params(**SMALL, variant="ag"), collate=check_collate)


def test_extras_and_declarations(small_dpr: Callable[..., DPRRecommender], collated: PaddedBatch) -> None:
    assert DPRRecommender.scores_packages and not NCFRecommender.scores_packages
    assert DPRRecommender.batch_items_needed(DPRRecommender.Params()) == {PACKAGE_GRAPHS}
    assert DPRRecommender.extras_provided(DPRRecommender.Params(variant="wg")) == {PACKAGE_SCORES}
    torch.manual_seed(0)
    model = small_dpr(variant="ag")
    output = model(collated, extras=(PACKAGE_SCORES, EDGE_TYPES))
    n_visits = collated.n_visits
    assert output.extras[PACKAGE_SCORES].shape == (n_visits, 4)
    logits, labels = output.extras[EDGE_TYPES]
    graphs = collated.items[PACKAGE_GRAPHS]
    assert labels.tolist() == graphs.edge_label[graphs.edge_label >= 0].tolist() and logits.shape == (len(labels), 3)
    assert torch.equal(output.logits, model(collated))
    # column 0 is the visit's own graph: score_packages of (visit i, graph i) gives the same numbers
    own = model.score_packages(collated, graphs, torch.arange(n_visits), torch.arange(n_visits))
    assert torch.allclose(output.extras[PACKAGE_SCORES][:, 0], own, atol=1e-6)


def test_missing_graphs_and_unknown_extras_are_refused(small_dpr: Callable[..., DPRRecommender],
                                                       batch: PaddedBatch) -> None:
    model = small_dpr()
    with pytest.raises(KeyError, match="package_graphs"):
        model(batch, extras=(PACKAGE_SCORES,))
    with pytest.raises(ValueError, match="edge_types"):
        model(batch, extras=(EDGE_TYPES,))


def test_ncf_weights_load_into_dpr(schema: DataSchema, collated: PaddedBatch) -> None:
    ncf = NCFRecommender(NCFRecommender.Params(dim=8, hidden=16), schema)
    dpr = DPRRecommender(DPRRecommender.Params(**SMALL), schema)
    missing, unexpected = dpr.load_state_dict(ncf.state_dict(), strict=False)
    assert not unexpected and all(name.startswith("package.") for name in missing)
    assert torch.equal(dpr(collated), ncf(collated))
