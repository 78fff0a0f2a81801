#!/usr/bin/env python
"""Derive the shipped ATC3 DDI pair list from SafeDrug's processed MIMIC-III DDI matrix.

Reads ``ddi_A_final.pkl`` (112x112 0/1 adjacency) and ``voc_final.pkl`` (its ``med_voc``
gives the ATC3 code of each row) from ``DATA_DIR`` with
:func:`medtoolkit.data.safe_pickle.safe_load` (restricted unpickling: no pickled code runs;
``dill``/``pickle.load`` are never used), and writes

* ``ddi_atc3_pairs.csv``: ``atc3_a,atc3_b`` with ``atc3_a < atc3_b``, rows sorted;
* ``ddi_atc3_classes.csv``: ``atc3,n_pairs`` for the classes the matrix covers (its vocabulary),
  so that "absent from the pair list" can be told apart from "not covered".

Only ATC codes are written (no visit, patient or count data). Usage::

    python scripts/derive_ddi_pairs.py ../shared/data/mimic3-safedrug \
        --out medtoolkit/resources/drug_knowledge

The sha256 of the outputs is printed so that PROVENANCE.md can be updated.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from medtoolkit.data.safe_pickle import safe_load


def derive_pairs(data_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Pair list and covered-class list from the benchmark's DDI matrix and vocabulary.

    Args:
        data_dir: directory holding ``ddi_A_final.pkl`` and ``voc_final.pkl``.

    Returns:
        ``(pairs, classes)``: ``pairs`` has columns ``atc3_a, atc3_b`` (a < b, sorted);
        ``classes`` has columns ``atc3, n_pairs`` (sorted by code).

    Raises:
        ValueError: the matrix is not square/symmetric/binary or does not match the vocabulary.
    """
    adjacency = np.asarray(safe_load(data_dir / "ddi_A_final.pkl"), dtype=np.float64)
    vocab = safe_load(data_dir / "voc_final.pkl")
    idx2word = vocab["med_voc"].idx2word
    codes = [str(idx2word[i]) for i in range(len(idx2word))]
    n = len(codes)
    if adjacency.shape != (n, n):
        raise ValueError(f"DDI matrix shape {adjacency.shape} does not match {n} medications")
    if not np.array_equal(adjacency, adjacency.T) or not np.isin(adjacency, (0.0, 1.0)).all():
        raise ValueError("DDI matrix must be symmetric 0/1")
    if len(set(codes)) != n:
        raise ValueError("medication vocabulary has duplicate codes")
    rows, cols = np.nonzero(np.triu(adjacency, k=1))
    a = [codes[i] for i in rows]
    b = [codes[j] for j in cols]
    pairs = pd.DataFrame({"atc3_a": [min(x, y) for x, y in zip(a, b)],
                          "atc3_b": [max(x, y) for x, y in zip(a, b)]})
    pairs = pairs.sort_values(["atc3_a", "atc3_b"], ignore_index=True)
    degree = pd.concat([pairs.atc3_a, pairs.atc3_b]).value_counts()
    classes = pd.DataFrame({"atc3": sorted(codes)})
    classes["n_pairs"] = classes.atc3.map(degree).fillna(0).astype(int)
    return pairs, classes


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data_dir", type=Path, help="directory with ddi_A_final.pkl and voc_final.pkl")
    parser.add_argument("--out", type=Path, default=Path("medtoolkit/resources/drug_knowledge"),
                        help="output directory (default: the package resources)")
    args = parser.parse_args(argv)
    pairs, classes = derive_pairs(args.data_dir)
    args.out.mkdir(parents=True, exist_ok=True)
    pairs_path = args.out / "ddi_atc3_pairs.csv"
    classes_path = args.out / "ddi_atc3_classes.csv"
    pairs.to_csv(pairs_path, index=False, lineterminator="\n")
    classes.to_csv(classes_path, index=False, lineterminator="\n")
    print(f"{len(pairs)} pairs over {len(classes)} ATC3 classes "
          f"({int((classes.n_pairs == 0).sum())} classes without any pair)")
    for path in (pairs_path, classes_path):
        print(f"sha256 {_sha256(path)}  {path.name}")
    for name in ("ddi_A_final.pkl", "voc_final.pkl"):
        print(f"input sha256 {_sha256(args.data_dir / name)}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
