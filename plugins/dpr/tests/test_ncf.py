"""``ncf``: shapes, the split matcher equals the concatenated MLP, visit embedding, conformance."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from medtoolkit.data.batching import PaddedBatch
from medtoolkit.data.ehr import DIAGNOSES, PROCEDURES, EHRData
from medtoolkit.testing import check_component
from medtoolkit_dpr import NCFRecommender


def test_conforms() -> None:
    check_component(NCFRecommender, NCFRecommender.Params(dim=8, hidden=16))


def test_logits_equal_the_paper_mlp_on_the_concatenation(small_ncf: Callable[..., NCFRecommender], batch: PaddedBatch,
                                                         data: EHRData) -> None:
    torch.manual_seed(0)
    model = small_ncf()
    logits = model(batch)
    assert logits.shape == (batch.batch_size, batch.max_visits, data.n_drugs)
    assert (logits[~batch.visit_mask] == 0).all()
    # u from the dense multi-hot of the first visit (Eq. 1), r = MLP([u || d_j]) (Eq. 4)
    first = data.visit_offsets[0]
    multi_hot = np.concatenate([data.multi_hot(DIAGNOSES, [first]), data.multi_hot(PROCEDURES, [first])], axis=1)
    weight = torch.cat([model.patient.codes["diagnoses"].weight[1:], model.patient.codes["procedures"].weight[1:]])
    hidden = torch.relu(torch.from_numpy(multi_hot).float() @ weight + model.patient.bias)
    u = model.patient.out(hidden)[0]
    assert torch.allclose(model.visit_embedding(batch)[0, 0], u, atol=1e-6)
    concat = torch.cat([model.matcher.left.weight, model.matcher.right.weight], dim=1)
    for drug in (0, 5, data.n_drugs - 1):
        pair = torch.cat([u, model.drugs.weight[drug]])
        r = model.matcher.out(torch.relu(concat @ pair + model.matcher.left.bias))
        assert torch.allclose(logits[0, 0, drug], r.squeeze(), atol=1e-5)


def test_never_reads_medications(small_ncf: Callable[..., NCFRecommender], batch: PaddedBatch) -> None:
    model = small_ncf()
    changed = PaddedBatch(batch.codes, batch.visit_mask, 1 - batch.medications, batch.patient_index)
    assert torch.equal(model(batch), model(changed))


def test_fit_state_stores_the_training_visits_embeddings(small_ncf: Callable[..., NCFRecommender],
                                                         data: EHRData) -> None:
    model = small_ncf().eval()
    assert model.neighbour_index() is None
    patients = np.array([0, 2, 5])
    with torch.no_grad():
        model.fit_state(data, patients, None)  # type: ignore[arg-type]
    keys, visits = model.neighbour_index()  # type: ignore[misc]
    lengths = data.visits_per_patient[patients]
    assert keys.shape == (lengths.sum(), 8)
    assert visits.tolist() == [int(data.visit_offsets[p]) + t for p, n in zip(patients, lengths) for t in range(n)]
    assert set(model.state_dict()) >= {"neighbour_keys", "neighbour_visits"}
