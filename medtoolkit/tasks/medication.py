"""Longitudinal medication recommendation (the GAMENet/SafeDrug task).

Every visit of every patient is a sample. The prediction for visit ``t`` may use the
diagnoses and procedures of visits ``<= t`` and the medications of visits ``< t`` only;
the target is the medication set of visit ``t``. Recommenders enforce this causality
(see :class:`medtoolkit.components.base.Recommender`); the task supplies the patient
splits, the :class:`DataSchema` of a split and the evaluation protocol.

Protocols:

* ``random`` (default): a seeded, patient-level random split per seed
  (``train_fraction`` / ``val_fraction`` / rest = test); the run is repeated per seed.
* ``legacy``: the papers' split, for comparison with published tables: patients in file
  order, ``split = int(N * 2 / 3)`` train; of the rest the *first* half
  (``int(rest / 2)`` patients) is the **test** set and the remainder validation.
  For N = 6350: 4233 train / 1058 test / 1059 validation.

Graphs and frequencies in the schema come from the training split only (the field's
``ehr_adj`` was built from all records, leaking 114 test/validation-only edges).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field, model_validator

from medtoolkit.components.base import Task
from medtoolkit.components.params import Params
from medtoolkit.components.schema import DataSchema
from medtoolkit.components.statistics import statistics_source
from medtoolkit.config import EvalParams
from medtoolkit.data.ehr import MEDICATIONS, EHRData
from medtoolkit.data.knowledge import cooccurrence_adjacency
from medtoolkit.metrics import bootstrap, score_visits

_BLOCK_VISITS = 65_536  # visits per multi-hot block when summarising the training split


def visits_of(data: EHRData, patients: np.ndarray) -> np.ndarray:
    """Global visit indices of the given patients (patient order, then time order).

    Args:
        data: the dataset.
        patients: ``[P]`` patient indices.

    Returns:
        ``[n_visits of those patients]`` int64 visit indices.
    """
    patients = np.asarray(patients, dtype=np.int64)
    starts = data.visit_offsets[patients]
    lengths = data.visit_offsets[patients + 1] - starts
    total = int(lengths.sum())
    first_of_patient = np.concatenate(([0], np.cumsum(lengths)[:-1])).astype(np.int64)
    return np.repeat(starts - first_of_patient, lengths) + np.arange(total, dtype=np.int64)


@dataclass(frozen=True)
class Split:
    """One train/validation/test partition of the patients.

    Attributes:
        name: ``"legacy"`` or ``"seed<k>"``.
        train: ``[P_train]`` int64 patient indices, ascending.
        val: ``[P_val]`` int64 patient indices, ascending.
        test: ``[P_test]`` int64 patient indices, ascending.
    """

    name: str
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray

    def __post_init__(self) -> None:
        for part in ("train", "val", "test"):
            object.__setattr__(self, part, np.asarray(getattr(self, part), dtype=np.int64))

    def counts(self, data: EHRData) -> dict[str, int]:
        """Patients and visits per part (for run reports)."""
        out: dict[str, int] = {}
        for part in ("train", "val", "test"):
            patients = getattr(self, part)
            out[f"{part}_patients"] = int(len(patients))
            out[f"{part}_visits"] = int(data.visits_per_patient[patients].sum())
        return out


class MedicationRecommendationTask(Task):
    """Recommend each visit's medication set from the history (longitudinal, causal).

    Visit ``t`` sees diagnoses/procedures of visits ``<= t`` and medications of visits
    ``< t``; its target is its own medication multi-hot. See the module docstring for
    the split protocols.
    """

    class Params(Params):
        """Split protocol of the task.

        Attributes:
            protocol: ``"random"`` (seeded patient-level splits) or ``"legacy"`` (the
                papers' file-order split).
            seeds: one random split per seed (ignored by ``legacy``); default ``[0]``, one
                split, as in the presets (``[0, 1, 2]`` repeats the run over three splits).
            train_fraction: share of patients in training (``random``).
            val_fraction: share of patients in validation (``random``); test gets the rest.
            min_visits: patients with fewer visits are left out of every split (applied
                before splitting, in file order; 1 keeps everyone, as the legacy data does).
        """

        protocol: Literal["legacy", "random"] = Field(
            "random", description="'random' (seeded patient-level) or 'legacy' (papers' file-order split)"
        )
        seeds: list[Annotated[int, Field(ge=0, le=2**32 - 1)]] = Field(
            default_factory=lambda: [0], min_length=1,
            description="one random split per seed; the run is repeated over seeds (default [0]: one split)",
        )
        train_fraction: float = Field(2 / 3, gt=0, lt=1, description="share of patients for training (random)")
        val_fraction: float = Field(1 / 6, gt=0, lt=1, description="share of patients for validation (random)")
        min_visits: int = Field(1, ge=1, description="drop patients with fewer visits before splitting")

        @model_validator(mode="after")
        def _check(self) -> "MedicationRecommendationTask.Params":
            if self.train_fraction + self.val_fraction >= 1:
                raise ValueError(
                    f"train_fraction + val_fraction must be < 1 (the rest is the test set), got "
                    f"{self.train_fraction} + {self.val_fraction}"
                )
            if len(set(self.seeds)) != len(self.seeds):
                raise ValueError(f"seeds must be distinct, got {self.seeds}")
            return self

    params: "MedicationRecommendationTask.Params"

    # ------------------------------------------------------------------ splits
    def eligible_patients(self, data: EHRData) -> np.ndarray:
        """``[P]`` int64 indices (file order) of patients with at least ``min_visits`` visits."""
        return np.flatnonzero(data.visits_per_patient >= self.params.min_visits).astype(np.int64)

    def splits(self, data: EHRData) -> list[Split]:
        """The splits of this protocol: one ``legacy`` split, or one per seed.

        Raises:
            ValueError: when a part of a split would be empty.
        """
        patients = self.eligible_patients(data)
        if self.params.protocol == "legacy":
            found = [_legacy_split(patients)]
        else:
            found = [
                _random_split(patients, seed, self.params.train_fraction, self.params.val_fraction)
                for seed in self.params.seeds
            ]
        for split in found:
            empty = [part for part in ("train", "val", "test") if len(getattr(split, part)) == 0]
            if empty:
                raise ValueError(
                    f"split {split.name!r} of {len(patients)} eligible patients has an empty "
                    f"{'/'.join(empty)} part; use more patients or other fractions"
                )
        return found

    # ------------------------------------------------------------------ schema
    def build_schema(self, data: EHRData, split: Split) -> DataSchema:
        """What models may know for ``split``: sizes, knowledge, training-only graphs.

        The schema's ``statistics_source`` computes the count statistics components ask
        for (:meth:`DataSchema.require_statistic`) from the training visits of ``split``
        only, lazily: a statistic no component requires is never computed.

        Args:
            data: the dataset.
            split: the split whose training patients define the co-occurrence graph, the
                drug frequencies and every requested statistic.
        """
        train_visits = visits_of(data, split.train)
        n_drugs = data.n_drugs
        cooccurrence = np.zeros((n_drugs, n_drugs), dtype=np.float32)
        prescribed = np.zeros(n_drugs, dtype=np.float64)
        for start in range(0, len(train_visits), _BLOCK_VISITS):
            block = data.multi_hot(MEDICATIONS, train_visits[start:start + _BLOCK_VISITS])
            cooccurrence = np.maximum(cooccurrence, cooccurrence_adjacency(block))
            prescribed += block.sum(axis=0, dtype=np.float64)
        frequency = (prescribed / max(len(train_visits), 1)).astype(np.float32)

        knowledge = data.knowledge
        smiles = None
        if knowledge.smiles is not None:
            smiles = tuple(tuple(str(s) for s in per_drug) for per_drug in knowledge.smiles)
        n_hospitals = int(data.hospital.max()) + 1 if data.hospital is not None and len(data.hospital) else 0
        return DataSchema(
            vocab_sizes={name: len(vocabulary) for name, vocabulary in data.vocabularies.items()},
            n_drugs=n_drugs,
            ddi_adjacency=knowledge.ddi_adjacency,
            cooccurrence_adjacency=cooccurrence,
            drug_codes=tuple(data.vocabularies[MEDICATIONS].idx2word),
            smiles=smiles,
            substructure_mask=knowledge.substructure_mask,
            n_hospitals=n_hospitals,
            drug_frequency=frequency,
            statistics_source=statistics_source(data, train_visits),
        )

    # ------------------------------------------------------------------ evaluation
    def evaluate(
        self,
        probabilities: np.ndarray,
        targets: np.ndarray,
        visit_patient: np.ndarray,
        schema: DataSchema,
        eval_params: EvalParams | None = None,
        visit_group: np.ndarray | None = None,
    ) -> dict[str, Any]:
        """Score every visit and bootstrap over patients.

        Args:
            probabilities: ``[N, n_drugs]`` predicted probabilities of N visits.
            targets: ``[N, n_drugs]`` ground-truth multi-hot medications.
            visit_patient: ``[N]`` patient index of each visit.
            schema: the split's schema (its DDI adjacency scores the DDI rate; without one,
                ``ddi_rate`` is ``{"mean": None, "std": None}``: not available).
            eval_params: threshold, averaging and bootstrap settings (None: defaults).

        Returns:
            ``{metric: {"mean": m, "std": s}}`` for jaccard, prauc, f1, precision, recall,
            ddi_rate, avg_drugs; ``"rounds"``: one ``{metric: value}`` per bootstrap round
            (empty without bootstrap); ``"averaging"``; ``"n_patients"``, ``"n_visits"``.
        """
        settings = eval_params if eval_params is not None else EvalParams()
        probabilities = np.asarray(probabilities, dtype=np.float64)
        if probabilities.ndim != 2 or probabilities.shape[1] != schema.n_drugs:
            raise ValueError(
                f"probabilities must have shape [visits, {schema.n_drugs}], got {probabilities.shape}"
            )
        owners = np.asarray(visit_patient)
        scores = score_visits(targets, probabilities, settings.threshold, schema.ddi_adjacency)
        result = bootstrap(
            scores,
            owners,
            rounds=settings.bootstrap_rounds,
            fraction=settings.bootstrap_fraction,
            seed=settings.bootstrap_seed,
            averaging=settings.averaging,
        )
        result["averaging"] = settings.averaging
        result["n_patients"] = int(len(np.unique(owners)))
        result["n_visits"] = int(len(owners))
        return result


def _legacy_split(patients: np.ndarray) -> Split:
    """The papers' file-order split (their middle part is the test set)."""
    n = len(patients)
    split = int(n * 2 / 3)
    rest = n - split
    n_test = int(rest / 2)
    return Split(
        name="legacy",
        train=patients[:split],
        test=patients[split:split + n_test],
        val=patients[split + n_test:],
    )


def _random_split(patients: np.ndarray, seed: int, train_fraction: float, val_fraction: float) -> Split:
    """A seeded patient-level split; each part is returned in ascending patient order."""
    n = len(patients)
    n_train = int(np.floor(n * train_fraction + 1e-9))
    n_val = int(np.floor(n * val_fraction + 1e-9))
    shuffled = patients[np.random.default_rng(seed).permutation(n)]
    return Split(
        name=f"seed{seed}",
        train=np.sort(shuffled[:n_train]),
        val=np.sort(shuffled[n_train:n_train + n_val]),
        test=np.sort(shuffled[n_train + n_val:]),
    )
