"""Shipped ATC3 DDI pair list and adjacency."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from medtoolkit.knowledge import ddi_adjacency, ddi_classes, ddi_pairs

_REPO = Path(__file__).resolve().parents[2]


def test_pair_list_shape_and_order() -> None:
    pairs = ddi_pairs()
    assert list(pairs.columns) == ["atc3_a", "atc3_b"]
    assert len(pairs) == 337
    assert (pairs.atc3_a < pairs.atc3_b).all()
    assert not pairs.duplicated().any()
    assert pairs.equals(pairs.sort_values(["atc3_a", "atc3_b"], ignore_index=True))
    classes = ddi_classes()
    assert len(classes) == 112
    assert set(pairs.atc3_a) | set(pairs.atc3_b) <= classes
    assert len(classes - (set(pairs.atc3_a) | set(pairs.atc3_b))) == 33


def test_adjacency_atc3_and_atc4() -> None:
    a, b = ddi_pairs().iloc[0]
    adjacency = ddi_adjacency([a, b, "Z99Z"])
    assert adjacency.dtype == np.float32
    assert adjacency.tolist() == [[0, 1, 0], [1, 0, 0], [0, 0, 0]]
    # ATC4 codes: connected through their ATC3 prefixes; same-class codes never connected
    adjacency4 = ddi_adjacency([a + "A", b + "B", b + "C", a + "Z"])
    assert adjacency4[0, 1] == adjacency4[0, 2] == adjacency4[3, 1] == 1
    assert adjacency4[1, 2] == 0 and adjacency4[0, 3] == 0
    assert np.array_equal(adjacency4, adjacency4.T)
    assert ddi_adjacency([]).shape == (0, 0)
    with pytest.raises(ValueError):
        ddi_adjacency(["N02"])


@pytest.mark.benchmark_data
def test_shipped_list_reproduces_benchmark(safedrug_dir: Path, tmp_path: Path) -> None:
    from medtoolkit.data.safe_pickle import safe_load

    idx2word = safe_load(safedrug_dir / "voc_final.pkl")["med_voc"].idx2word
    codes = [idx2word[i] for i in range(len(idx2word))]
    reference = np.asarray(safe_load(safedrug_dir / "ddi_A_final.pkl"))
    assert np.array_equal(ddi_adjacency(codes), reference)
    assert int(np.triu(reference, 1).sum()) == 337
    assert ddi_classes() == frozenset(codes)

    spec = importlib.util.spec_from_file_location("derive_ddi_pairs", _REPO / "scripts" / "derive_ddi_pairs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main([str(safedrug_dir), "--out", str(tmp_path)]) == 0
    shipped = _REPO / "medtoolkit" / "resources" / "drug_knowledge"
    for name in ("ddi_atc3_pairs.csv", "ddi_atc3_classes.csv"):
        assert (tmp_path / name).read_bytes() == (shipped / name).read_bytes()
