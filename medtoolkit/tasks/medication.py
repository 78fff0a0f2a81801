"""Longitudinal medication recommendation (the GAMENet/SafeDrug task).

Every visit of every patient is a sample. The prediction for visit ``t`` may use the
diagnoses and procedures of visits ``<= t`` and the medications of visits ``< t`` only;
the target is the medication set of visit ``t``. Recommenders enforce this causality
(see :class:`medtoolkit.components.base.Recommender`); the task supplies the patient
splits, the :class:`DataSchema` of a split and the evaluation protocol.

Samples (``samples``):

* ``patient`` (default): a sample is a patient with all of its visits (longitudinal).
* ``visit``: every visit (ICU stay) is its own one-visit sample, as in eICU work
  (:mod:`medtoolkit.tasks.samples`; :meth:`MedicationRecommendationTask.prepare` builds the
  view). Splits still assign whole *source* patients: all stays of one patient land in
  the same part.

Protocols (every protocol assigns whole source patients, then takes their samples):

* ``random`` (default): a seeded, patient-level random split per seed
  (``train_fraction`` / ``val_fraction`` / rest = test); the run is repeated per seed.
* ``legacy``: the papers' split, for comparison with published tables: patients in file
  order, ``split = int(N * 2 / 3)`` train; of the rest the *first* half
  (``int(rest / 2)`` patients) is the **test** set and the remainder validation.
  For N = 6350: 4233 train / 1058 test / 1059 validation.
* ``hospital``: stratified per hospital (TEMPT's 8:1:1 with ``train_fraction`` 0.8 and
  ``val_fraction`` 0.1): a patient belongs to the hospital of its first visit; inside each
  hospital its ``n`` patients are shuffled with the split's seed and cut into
  ``int(n * train_fraction)`` train, ``int(n * val_fraction)`` validation and the rest test.
  One split per seed, named ``hospital_seed<k>``.

With ``eval.group_by: hospital`` the test metrics are also given per hospital and per
hospital-size bin (:mod:`medtoolkit.tasks.grouping`).

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
from medtoolkit.tasks.grouping import group_scores
from medtoolkit.tasks.samples import PerVisitData, expand_groups, per_visit_view, sample_groups

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

    Indices are sample indices of the data the split was made on: patients, or stays of a
    per-visit view (:mod:`medtoolkit.tasks.samples`).

    Attributes:
        name: ``"legacy"``, ``"seed<k>"`` or ``"hospital_seed<k>"``.
        train: ``[P_train]`` int64 patient (sample) indices, ascending.
        val: ``[P_val]`` int64 patient (sample) indices, ascending.
        test: ``[P_test]`` int64 patient (sample) indices, ascending.
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
        """Samples and split protocol of the task.

        Attributes:
            samples: ``"patient"`` (a patient with all its visits is a sample) or ``"visit"``
                (every visit, e.g. an ICU stay, is its own sample; splits still keep a
                patient's stays together).
            protocol: ``"random"`` (seeded patient-level splits), ``"legacy"`` (the papers'
                file-order split) or ``"hospital"`` (seeded patient-level splits inside
                each hospital).
            seeds: one random split per seed (ignored by ``legacy``); default ``[0]``, one
                split, as in the presets (``[0, 1, 2]`` repeats the run over three splits).
            train_fraction: share of patients in training (``random``; per hospital for
                ``hospital``).
            val_fraction: share of patients in validation (``random``, ``hospital``); test
                gets the rest.
            min_visits: patients with fewer visits are left out of every split (applied
                before splitting, in file order; 1 keeps everyone, as the legacy data does).
                With ``samples: visit`` it counts the visits of the source patient.
        """

        samples: Literal["patient", "visit"] = Field(
            "patient", description="'patient' (longitudinal samples) or 'visit' (every visit/stay is a sample)"
        )
        protocol: Literal["legacy", "random", "hospital"] = Field(
            "random",
            description="'random' (seeded patient-level), 'legacy' (papers' file-order split) or "
                        "'hospital' (seeded patient-level split inside each hospital)",
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

    # ------------------------------------------------------------------ samples
    def prepare(self, data: EHRData) -> EHRData:
        """The data as this task's samples.

        Args:
            data: the loaded dataset (patient samples).

        Returns:
            ``data`` itself with ``samples: patient``; with ``samples: visit`` its
            :func:`~medtoolkit.tasks.samples.per_visit_view` (every visit a sample, the code
            arrays shared, the source patient of each sample remembered for the splits).
        """
        if self.params.samples == "visit":
            return per_visit_view(data)
        return data

    # ------------------------------------------------------------------ splits
    def _eligible_groups(self, data: EHRData) -> tuple[np.ndarray, np.ndarray]:
        """Source patients that may be split, and the sample boundaries of all source patients.

        Returns:
            ``(groups, offsets)``: ``[G]`` int64 ascending indices of the source patients with
            at least ``min_visits`` visits, and ``[n_source_patients + 1]`` int64 offsets
            (:func:`~medtoolkit.tasks.samples.sample_groups`).

        Raises:
            ValueError: ``samples: visit`` but ``data`` is not a per-visit view.
        """
        if self.params.samples == "visit" and not isinstance(data, PerVisitData):
            raise ValueError(
                "task samples 'visit' needs the per-visit view of the data: call task.prepare(data) "
                "before task.splits(data)"
            )
        offsets = sample_groups(data)
        visits = data.visit_offsets[offsets[1:]] - data.visit_offsets[offsets[:-1]]
        return np.flatnonzero(visits >= self.params.min_visits).astype(np.int64), offsets

    def eligible_patients(self, data: EHRData) -> np.ndarray:
        """``[P]`` int64 indices (file order) of the samples whose patient has at least ``min_visits`` visits."""
        groups, offsets = self._eligible_groups(data)
        return expand_groups(offsets, groups)

    def splits(self, data: EHRData) -> list[Split]:
        """The splits of this protocol: one ``legacy`` split, or one per seed.

        Whole source patients are assigned to a part, then replaced by their samples (with
        ``samples: visit``: all their stays), so no patient is in two parts.

        Raises:
            ValueError: when a part of a split would be empty; ``protocol: hospital`` on
                data without hospitals; ``samples: visit`` on data not prepared.
        """
        groups, offsets = self._eligible_groups(data)
        params = self.params
        if params.protocol == "legacy":
            found = [_legacy_split(groups)]
        elif params.protocol == "random":
            found = [_random_split(groups, seed, params.train_fraction, params.val_fraction)
                     for seed in params.seeds]
        else:
            if data.hospital is None:
                raise ValueError(
                    f"task protocol 'hospital' needs the hospital of every visit, but dataset "
                    f"{data.name!r} has none (hospital is none); use protocol 'random' or a dataset "
                    f"with hospitals (eicu, synthetic with n_hospitals > 0)"
                )
            group_hospital = data.hospital[data.visit_offsets[offsets[groups]]]
            found = [_hospital_split(groups, group_hospital, seed, params.train_fraction, params.val_fraction)
                     for seed in params.seeds]
        for split in found:
            empty = [part for part in ("train", "val", "test") if len(getattr(split, part)) == 0]
            if empty:
                raise ValueError(
                    f"split {split.name!r} of {len(groups)} eligible patients has an empty "
                    f"{'/'.join(empty)} part; use more patients or other fractions"
                )
        if isinstance(data, PerVisitData):
            found = [Split(split.name, *(expand_groups(offsets, getattr(split, part))
                                         for part in ("train", "val", "test")))
                     for split in found]
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

        The hospital facts (``n_hospitals``, ``hospital_sizes``, ``hospital_ids``) describe
        the whole (prepared) dataset, not the split: the size of a hospital is its number of
        samples (records), which decides its size bin in grouped evaluation.
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
            hospital_sizes=hospital_sizes(data, n_hospitals),
            hospital_ids=_hospital_ids(data, n_hospitals),
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
        """Score every visit and bootstrap over patients; optionally per hospital.

        Args:
            probabilities: ``[N, n_drugs]`` predicted probabilities of N visits.
            targets: ``[N, n_drugs]`` ground-truth multi-hot medications.
            visit_patient: ``[N]`` patient (sample) index of each visit; the bootstrap draws
                samples (with ``samples: visit``, stays).
            schema: the split's schema (its DDI adjacency scores the DDI rate; without one,
                ``ddi_rate`` is ``{"mean": None, "std": None}``: not available; its
                ``hospital_sizes`` and ``hospital_ids`` serve grouped evaluation).
            eval_params: threshold, averaging, bootstrap and grouping settings (None: defaults).
            visit_group: ``[N]`` hospital index of each visit; needed by ``group_by: hospital``.

        Returns:
            ``{metric: {"mean": m, "std": s}}`` for jaccard, prauc, f1, precision, recall,
            ddi_rate, avg_drugs; ``"rounds"``: one ``{metric: value}`` per bootstrap round
            (empty without bootstrap); ``"averaging"``; ``"n_patients"``, ``"n_visits"``; with
            ``group_by: hospital`` also ``"groups"``
            (:func:`~medtoolkit.tasks.grouping.group_scores`).

        Raises:
            ValueError: malformed probabilities; ``group_by: hospital`` without ``visit_group``
                or without ``schema.hospital_sizes``.
        """
        settings = eval_params if eval_params is not None else EvalParams()
        probabilities = np.asarray(probabilities, dtype=np.float64)
        if probabilities.ndim != 2 or probabilities.shape[1] != schema.n_drugs:
            raise ValueError(
                f"probabilities must have shape [visits, {schema.n_drugs}], got {probabilities.shape}"
            )
        grouped = settings.group_by == "hospital"
        if grouped and visit_group is None:
            raise ValueError(
                "eval.group_by 'hospital' needs the hospital of every test visit, but none was given "
                "(visit_group is none: the dataset has no hospitals); set eval.group_by to 'none' or use "
                "a dataset with hospitals"
            )
        if grouped and schema.hospital_sizes is None:
            raise ValueError(
                "eval.group_by 'hospital' needs the record count of every hospital, but the schema has "
                "none (hospital_sizes is none); build the schema with the task's build_schema"
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
        if grouped:
            assert visit_group is not None and schema.hospital_sizes is not None
            result["groups"] = group_scores(scores, visit_group, schema.hospital_sizes, settings.group_bins,
                                            schema.hospital_ids)
        return result


def sample_hospital(data: EHRData) -> np.ndarray:
    """``[n_samples]`` int64 hospital of each sample: the hospital of its first visit.

    Samples without a visit get -1.

    Raises:
        ValueError: the data has no hospitals.
    """
    if data.hospital is None:
        raise ValueError(f"dataset {data.name!r} has no hospitals (hospital is none)")
    out = np.full(data.n_patients, -1, dtype=np.int64)
    has_visit = data.visits_per_patient > 0
    out[has_visit] = data.hospital[data.visit_offsets[:-1][has_visit]]
    return out


def hospital_sizes(data: EHRData, n_hospitals: int) -> np.ndarray | None:
    """``[n_hospitals]`` int64 number of samples (records) per hospital, or None without hospitals.

    A sample counts for the hospital of its first visit (:func:`sample_hospital`): with
    ``samples: visit`` that is the number of stays of each hospital.
    """
    if data.hospital is None:
        return None
    hospitals = sample_hospital(data)
    return np.bincount(hospitals[hospitals >= 0], minlength=n_hospitals).astype(np.int64)


def _hospital_ids(data: EHRData, n_hospitals: int) -> tuple[str, ...]:
    """The original id of each hospital index (``provenance["hospital_ids"]``), or () when unknown."""
    ids = data.provenance.get("hospital_ids")
    if not isinstance(ids, (list, tuple)) or len(ids) != n_hospitals:
        return ()
    return tuple(str(i) for i in ids)


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


def _hospital_split(
    patients: np.ndarray, hospital: np.ndarray, seed: int, train_fraction: float, val_fraction: float
) -> Split:
    """A seeded patient-level split inside each hospital (vectorised over hospitals).

    One permutation of all patients, then a stable sort by hospital, shuffles each
    hospital's patients; the first ``int(n_h * train_fraction)`` of hospital ``h`` train,
    the next ``int(n_h * val_fraction)`` validate and the rest test.

    Args:
        patients: ``[P]`` int64 patient indices.
        hospital: ``[P]`` hospital index of each patient.
        seed: the split's seed.
        train_fraction: share of each hospital's patients for training.
        val_fraction: share of each hospital's patients for validation.
    """
    n = len(patients)
    shuffled = np.random.default_rng(seed).permutation(n)
    order = shuffled[np.argsort(hospital[shuffled], kind="stable")]
    ordered_hospital = hospital[order]
    _, starts, sizes = np.unique(ordered_hospital, return_index=True, return_counts=True)
    rank = np.arange(n, dtype=np.int64) - np.repeat(starts, sizes)
    n_train = np.repeat(np.floor(sizes * train_fraction + 1e-9).astype(np.int64), sizes)
    n_val = np.repeat(np.floor(sizes * val_fraction + 1e-9).astype(np.int64), sizes)
    chosen = patients[order]
    return Split(
        name=f"hospital_seed{seed}",
        train=np.sort(chosen[rank < n_train]),
        val=np.sort(chosen[(rank >= n_train) & (rank < n_train + n_val)]),
        test=np.sort(chosen[rank >= n_train + n_val]),
    )
