"""``synthetic``: seeded EHR data with realistic skew, generated fully vectorised.

The generative story (every step is a numpy operation over all patients or visits, or
over chunks of about half a million visits; the only other Python loops run over visit
*positions*, at most ``max_visits`` of them, and over the few latent conditions / drugs
when the world is drawn):

1. **Patients and visits.** A share ``single_visit_share`` of patients has one visit, the
   others ``2 + NegativeBinomial`` (heavy tail, like MIMIC-III: mean about 2.4). Each
   patient belongs to one hospital when ``n_hospitals > 0``: hospital sizes are Zipfian,
   the hospital of size rank ``r`` (1 = largest; ranks are a random permutation of the
   hospital indices) drawing a share ``r^-hospital_size_skew / sum_r' r'^-hospital_size_skew``
   of the patients (0 = equal sizes; with the default 0.8 and 200 hospitals the largest
   draws ``200^0.8``, about 69, times the share of the smallest). A hospital may
   draw no patient at all when it is tiny.
2. **Codes.** Code popularity is Zipfian (``zipf_exponent``) over a random permutation of
   each vocabulary; every hospital ``h`` multiplies it by its own log-normal noise
   ``exp(hospital_shift * N(0, 1))`` per code (then renormalises): hospitals differ in which
   diagnoses, procedures and conditions (step 3) they see.
3. **Latent conditions.** ``n_conditions`` conditions, each with its own diagnoses,
   procedures and a group of drugs. A patient has chronic conditions (active at most
   visits) and each visit adds acute ones. A share ``condition_share`` of the diagnosis and
   procedure codes of a visit comes from its active conditions, the rest from the
   (hospital-shifted) background.
4. **Medications.** A logistic model per drug: at visit ``v`` of hospital ``h`` drug ``d``
   is given with probability ``sigmoid(b[d] + o[h, d] + sum_k active[v, k] E[k, d] + s_v +
   persistence * previous[v, d] + c)``: ``b`` a Zipfian base rate, ``E`` the condition
   effects, ``s_v ~ N(0, 0.6^2)`` a per-visit severity, ``previous`` the drugs of the
   patient's previous visit and ``c`` an intercept calibrated so that visits hold
   ``mean_medications`` drugs on average. Every visit gets at least one drug.
   **Hospital prescribing habit**: ``o[h, d] = hospital_drug_shift * 0.5 * N(0, 1)``,
   drawn once per (hospital, drug) - a hospital's own preference for or against each
   drug, the same for all its patients and whatever their conditions. It is what a model
   can learn from a hospital's own records and not from the others': given the inputs
   (conditions, previous drugs), two hospitals' drug logits differ by ``o[h] - o[h']``
   (up to float32 rounding). :func:`hospital_prescribing_offsets` returns the true ``o`` (the
   right answer for adaptation tests). ``hospital_drug_shift=None`` uses
   ``hospital_shift``; 0 removes the habit (hospitals then differ only through the
   conditions they see, step 2).
5. **DDI.** ``n_ddi_pairs`` interacting pairs are planted among the drugs, leaning towards
   (or away from) co-prescribed pairs so that the ground-truth DDI rate lands near
   ``ddi_rate`` (MIMIC-III: 0.083); ``ddi_rate=None`` plants uniformly random pairs.

Models can learn from the result: drugs depend on diagnoses/procedures (through the
conditions), on the previous visit and on the hospital.

**Memory.** The codes are drawn one chunk of visits at a time, each chunk drawing its own
ranges of the random streams (PCG64 skips ahead exactly), so the data does not depend on
the chunk size and the working memory is that of one chunk; prescriptions are held as bit
rows until they are listed. Ten million visits (1.8 GB of final arrays) peak at about
2.8 GB of resident memory.

With hospitals, ``provenance["hospital_jsd"]`` holds the mean / median / max Jensen-Shannon
divergence (bits) between the hospitals' prescription distributions
(:func:`medtoolkit.data.divergence.hospital_divergence_summary`); it grows with
``hospital_drug_shift``. Generating 100-300 hospitals with 20,000-100,000 visits takes
about a second: nothing loops over hospitals or visits in Python.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from pydantic import Field, model_validator

from medtoolkit.components.base import Dataset
from medtoolkit.components.params import Params as BaseParams
from medtoolkit.data.divergence import hospital_divergence_summary
from medtoolkit.data.ehr import DIAGNOSES, MEDICATIONS, PROCEDURES, EHRData
from medtoolkit.data.knowledge import DrugKnowledge
from medtoolkit.data.vocab import Vocabulary

#: negative-binomial shapes of the per-visit code counts (MIMIC-like spread)
_DIAGNOSIS_SHAPE, _PROCEDURE_SHAPE, _EXTRA_VISITS_SHAPE = 5.0, 1.5, 0.4
#: codes per condition, drugs per condition, chronic / acute conditions per patient / visit
_CONDITION_DIAGNOSES, _CONDITION_PROCEDURES, _CONDITION_DRUGS = 60, 30, 8
_CHRONIC_MEAN, _CHRONIC_ACTIVE, _ACUTE_MEAN = 1.5, 0.8, 1.0
#: spread and cap of the Zipfian base logits of drugs; sd of a per-visit severity effect
_BASE_SPREAD, _BASE_CAP, _SEVERITY = 2.0, 1.0, 0.6
#: visits per chunk when evaluating the drug model; visits used to calibrate its intercept
_ROW_CHUNK, _CALIBRATION_ROWS = 131_072, 8192
#: visits per chunk when drawing codes and listing prescriptions: bounds the working memory
#: (the output does not depend on it, see :func:`_codes`)
_VISIT_CHUNK = 1 << 19
_MEAN_GAP_DAYS = 120.0
#: sd of the hospital drug-logit offsets per unit of ``hospital_drug_shift``
_HABIT_SCALE = 0.5


class SyntheticDataset(Dataset):
    """Seeded synthetic EHR data shaped like MIMIC-III (see the module docstring).

    Same parameters and seed give identical data (on one platform and numpy version:
    transcendental functions may differ in the last bit between CPUs). ``provenance``
    records the parameters and the realised ground-truth DDI rate.
    """

    class Params(BaseParams):
        """Sizes and shape of the generated data.

        Attributes:
            n_patients: number of patients (ignored when ``n_visits`` is set).
            n_visits: exact number of visits to generate (patients are added until reached).
            n_diagnoses, n_procedures, n_drugs: vocabulary sizes (MIMIC-III: 1958/1430/112).
            mean_diagnoses, mean_procedures, mean_medications: mean codes per visit.
            mean_visits: mean visits per patient; single_visit_share: share with one visit;
                max_visits: cap on visits per patient.
            zipf_exponent: skew of code popularity (0 = uniform).
            n_conditions: latent conditions linking diagnoses/procedures to drug groups.
            condition_share: share of diagnosis/procedure codes drawn from active conditions.
            persistence: logit bonus for drugs prescribed at the previous visit.
            n_ddi_pairs: interacting drug pairs to plant.
            ddi_rate: target ground-truth DDI rate for planting (None: uniform pairs).
            n_substructures: width of a random drug-to-substructure mask (0: none).
            n_hospitals: number of hospitals (0: no hospital column).
            hospital_size_skew: Zipf exponent of the hospital sizes (0: equal sizes).
            hospital_shift: strength of the per-hospital shifts of the diagnosis,
                procedure and condition distributions (and of the prescribing habit when
                ``hospital_drug_shift`` is None).
            hospital_drug_shift: strength of the per-hospital prescribing habit (drug
                logit offsets ``0.5 * shift * N(0, 1)``); None: ``hospital_shift``.
            seed: random seed.
        """

        n_patients: int = Field(6350, ge=1, description="number of patients (ignored when n_visits is set)")
        n_visits: int | None = Field(None, ge=1, description="exact number of visits to generate (patients are added until reached)")
        n_diagnoses: int = Field(1958, ge=2, description="diagnosis vocabulary size")
        n_procedures: int = Field(1430, ge=2, description="procedure vocabulary size")
        n_drugs: int = Field(112, ge=2, description="medication vocabulary size")
        mean_diagnoses: float = Field(13.6, gt=0, description="mean diagnoses per visit")
        mean_procedures: float = Field(4.5, gt=0, description="mean procedures per visit")
        mean_medications: float = Field(19.6, gt=0, description="mean medications per visit")
        mean_visits: float = Field(2.37, ge=1, description="mean visits per patient")
        single_visit_share: float = Field(0.14, ge=0, le=1, description="share of patients with a single visit")
        max_visits: int = Field(30, ge=1, description="cap on visits per patient")
        zipf_exponent: float = Field(1.0, ge=0, description="skew of code popularity (0 = uniform)")
        n_conditions: int = Field(64, ge=1, description="latent conditions linking diagnoses/procedures to drug groups")
        condition_share: float = Field(0.7, ge=0, le=1, description="share of diagnosis/procedure codes drawn from active conditions")
        persistence: float = Field(2.0, ge=0, description="logit bonus for drugs prescribed at the previous visit")
        n_ddi_pairs: int = Field(337, ge=0, description="interacting drug pairs to plant")
        ddi_rate: float | None = Field(0.08, gt=0, lt=1, description="target ground-truth DDI rate for planting (None: uniform pairs)")
        n_substructures: int = Field(442, ge=0, description="width of a random drug-to-substructure mask (0: none)")
        n_hospitals: int = Field(0, ge=0, description="number of hospitals (0: no hospital column)")
        hospital_size_skew: float = Field(0.8, ge=0, description="Zipf exponent of hospital sizes (0 = equal sizes)")
        hospital_shift: float = Field(
            0.75, ge=0, description="strength of per-hospital shifts of the diagnosis/procedure/condition distributions"
        )
        hospital_drug_shift: float | None = Field(
            None, ge=0,
            description="strength of the per-hospital prescribing habit (drug logit offsets); None = hospital_shift",
        )
        seed: int = Field(0, description="random seed")

        @model_validator(mode="after")
        def _consistent(self) -> "SyntheticDataset.Params":
            for kind, mean, size in (
                ("diagnoses", self.mean_diagnoses, self.n_diagnoses),
                ("procedures", self.mean_procedures, self.n_procedures),
                ("medications", self.mean_medications, self.n_drugs),
            ):
                if mean > 0.5 * size:
                    raise ValueError(f"mean_{kind}={mean} must be at most half the vocabulary size {size}")
            pairs = self.n_drugs * (self.n_drugs - 1) // 2
            if self.n_ddi_pairs > pairs:
                raise ValueError(
                    f"n_ddi_pairs={self.n_ddi_pairs} exceeds the {pairs} pairs of {self.n_drugs} drugs"
                )
            if self.mean_visits > self.max_visits:
                raise ValueError(f"mean_visits={self.mean_visits} exceeds max_visits={self.max_visits}")
            if self.single_visit_share < 1 and self.mean_visits < 2 - self.single_visit_share:
                raise ValueError(
                    f"mean_visits={self.mean_visits} needs single_visit_share >= {2 - self.mean_visits:.3f} "
                    "(patients with more than one visit have at least two)"
                )
            return self

    params: Params

    @classmethod
    def knowledge_provided(cls, params: BaseParams) -> frozenset[str] | None:
        """``"ddi"`` (planted, possibly without pairs), and ``"substructures"`` when
        ``n_substructures > 0``; never SMILES (the drugs are not real molecules)."""
        provided = {"ddi"}
        if getattr(params, "n_substructures", 0) > 0:
            provided.add("substructures")
        return frozenset(provided)

    def load(self, progress: bool = True) -> EHRData:
        """Generate the data (``progress`` is accepted for the common interface; unused).

        Returns:
            :class:`EHRData` with vocabularies ``diagnoses`` / ``procedures`` /
            ``medications``, planted DDI knowledge, visit ``time`` (days since the
            patient's first visit) and ``hospital`` when ``n_hospitals > 0``.
        """
        return generate(self.params)


# ---------------------------------------------------------------------------- the world
@dataclass
class _World:
    """Everything drawn once per seed, before any visit.

    Attributes:
        diagnosis_cdf, procedure_cdf: ``[H, n_codes]`` per-hospital background CDFs.
        condition_cdf: ``[H, K]`` per-hospital condition prevalence CDFs.
        condition_diagnoses, condition_procedures: ``[K, m]`` codes of each condition.
        condition_diagnosis_cdf, condition_procedure_cdf: ``[K, m]`` CDFs over those codes.
        drug_effects: ``[K, n_drugs]`` float32 logit effects of each condition.
        drug_bias: ``[H, n_drugs]`` float32 base logit per hospital (base rate + habit).
        drug_offsets: ``[H, n_drugs]`` float64 hospital prescribing habit ``o`` (step 4).
    """

    diagnosis_cdf: np.ndarray
    procedure_cdf: np.ndarray
    condition_cdf: np.ndarray
    condition_diagnoses: np.ndarray
    condition_procedures: np.ndarray
    condition_diagnosis_cdf: np.ndarray
    condition_procedure_cdf: np.ndarray
    drug_effects: np.ndarray
    drug_bias: np.ndarray
    drug_offsets: np.ndarray


def _zipf(rng: np.random.Generator, size: int, exponent: float) -> np.ndarray:
    """``[size]`` Zipf weights ``rank^-exponent`` over a random permutation, summing to 1."""
    weights = np.arange(1, size + 1, dtype=np.float64) ** -exponent
    weights = weights[rng.permutation(size)]
    return weights / weights.sum()


def _shifted(rng: np.random.Generator, weights: np.ndarray, n_groups: int, shift: float) -> np.ndarray:
    """``[n_groups, size]`` copies of ``weights`` times log-normal noise, renormalised."""
    noise = np.exp(shift * rng.standard_normal((n_groups, len(weights)))) if shift else 1.0
    shifted = np.repeat(weights[None, :], n_groups, axis=0) * noise
    return shifted / shifted.sum(axis=1, keepdims=True)


def _cdf(weights: np.ndarray) -> np.ndarray:
    """Row-wise CDFs whose last entry is exactly 1."""
    cdf = np.cumsum(weights, axis=-1)
    cdf /= cdf[..., -1:]
    cdf[..., -1] = 1.0
    return cdf


def _condition_codes(rng: np.random.Generator, popularity: np.ndarray, n_conditions: int, per_condition: int,
                     exponent: float) -> tuple[np.ndarray, np.ndarray]:
    """``[K, m]`` codes per condition (drawn by popularity) and ``[K, m]`` CDFs over them."""
    m = min(per_condition, len(popularity))
    codes = np.stack(
        [rng.choice(len(popularity), size=m, replace=False, p=popularity) for _ in range(n_conditions)]
    )
    weights = np.stack([_zipf(rng, m, exponent) for _ in range(n_conditions)])
    return codes, _cdf(weights)


def _draw_world(rng: np.random.Generator, p: SyntheticDataset.Params) -> _World:
    n_groups = max(p.n_hospitals, 1)
    shift = p.hospital_shift if p.n_hospitals else 0.0
    drug_shift = p.hospital_shift if p.hospital_drug_shift is None else p.hospital_drug_shift
    drug_shift = drug_shift if p.n_hospitals else 0.0
    diagnosis_pop = _zipf(rng, p.n_diagnoses, p.zipf_exponent)
    procedure_pop = _zipf(rng, p.n_procedures, p.zipf_exponent)
    drug_pop = _zipf(rng, p.n_drugs, p.zipf_exponent)
    condition_pop = _zipf(rng, p.n_conditions, 1.0)
    condition_diagnoses, condition_diagnosis_cdf = _condition_codes(
        rng, diagnosis_pop, p.n_conditions, _CONDITION_DIAGNOSES, 0.7
    )
    condition_procedures, condition_procedure_cdf = _condition_codes(
        rng, procedure_pop, p.n_conditions, _CONDITION_PROCEDURES, 0.7
    )
    effects = np.zeros((p.n_conditions, p.n_drugs), dtype=np.float32)
    group = min(_CONDITION_DRUGS, p.n_drugs)
    drug_pick = np.sqrt(drug_pop) / np.sqrt(drug_pop).sum()
    for k in range(p.n_conditions):
        drugs = rng.choice(p.n_drugs, size=group, replace=False, p=drug_pick)
        # multiples of 1/256: sums of effects are exact in float32, whatever the BLAS order
        effects[k, drugs] = np.round(rng.uniform(3.0, 5.0, size=group) * 256) / 256
    base = np.minimum(_BASE_SPREAD * np.log(drug_pop * p.n_drugs), _BASE_CAP)  # Zipfian logits
    offsets = drug_shift * _HABIT_SCALE * rng.standard_normal((n_groups, p.n_drugs))  # prescribing habit
    drug_bias = (base[None, :] + offsets).astype(np.float32)
    return _World(
        diagnosis_cdf=_cdf(_shifted(rng, diagnosis_pop, n_groups, shift)),
        procedure_cdf=_cdf(_shifted(rng, procedure_pop, n_groups, shift)),
        condition_cdf=_cdf(_shifted(rng, condition_pop, n_groups, shift)),
        condition_diagnoses=condition_diagnoses,
        condition_procedures=condition_procedures,
        condition_diagnosis_cdf=condition_diagnosis_cdf,
        condition_procedure_cdf=condition_procedure_cdf,
        drug_effects=effects,
        drug_bias=drug_bias,
        drug_offsets=offsets,
    )


def hospital_prescribing_offsets(params: SyntheticDataset.Params) -> np.ndarray:
    """The true hospital prescribing habit ``o`` of the data ``params`` generate (step 4).

    Cheap: only the world (vocabularies, conditions, hospital effects) is drawn, no visit.

    Args:
        params: validated parameters with ``n_hospitals > 0``.

    Returns:
        ``[n_hospitals, n_drugs]`` float64 drug-logit offsets ``o[h, d]``; the drug logits
        of two hospitals for the same inputs differ by ``o[h] - o[h']``.

    Raises:
        ValueError: ``n_hospitals`` is 0 (no hospitals, no habit).
    """
    if params.n_hospitals == 0:
        raise ValueError("hospital_prescribing_offsets: n_hospitals is 0 (the data has no hospitals)")
    return _draw_world(np.random.default_rng(params.seed), params).drug_offsets.copy()


def _sample_grouped(rng: np.random.Generator, cdf: np.ndarray, group: np.ndarray) -> np.ndarray:
    """One categorical draw per element of ``group`` from row ``cdf[group]`` (vectorised).

    Args:
        cdf: ``[G, n]`` row-wise CDFs (last column 1).
        group: ``[N]`` row index of each draw.

    Returns:
        ``[N]`` int64 column indices.
    """
    return _sample_grouped_from(cdf, group, rng.random(len(group)))


def _sample_grouped_from(cdf: np.ndarray, group: np.ndarray, uniform: np.ndarray) -> np.ndarray:
    """:func:`_sample_grouped` with the ``[N]`` uniform draws given."""
    n_groups, width = cdf.shape
    stacked = (cdf + np.arange(n_groups)[:, None]).ravel()
    position = np.searchsorted(stacked, group + uniform, side="right")
    return np.minimum(position - group * width, width - 1)


# ---------------------------------------------------------------------------- skipping ahead
def _uniform_at(state: dict[str, Any], skip: int, n: int) -> np.ndarray:
    """``[n]`` float64 uniforms a generator in ``state`` draws after ``skip`` float64 draws.

    A float64 uniform takes exactly one 64-bit output of PCG64, so ``advance(skip)`` lands
    where ``skip`` draws would: the uniforms of one range of a long stream can be drawn
    without drawing (or holding) the ones before it.
    """
    bit_generator = np.random.PCG64(0)
    bit_generator.state = state
    bit_generator.advance(skip)
    return np.random.Generator(bit_generator).random(n)


def _skip(rng: np.random.Generator, state: dict[str, Any], draws: int) -> None:
    """Leave ``rng`` where it would be after ``draws`` float64 uniforms from ``state``.

    64-bit draws never touch PCG64's buffered half-word (used by float32 draws), which
    ``advance`` clears: it is put back, so that later float32 draws match too.
    """
    bit_generator = np.random.PCG64(0)
    bit_generator.state = state
    bit_generator.advance(draws)
    advanced = bit_generator.state
    advanced["has_uint32"], advanced["uinteger"] = state["has_uint32"], state["uinteger"]
    rng.bit_generator.state = advanced


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(s, s + l)`` for every (s, l)."""
    total = int(lengths.sum())
    shift = np.repeat(starts - np.concatenate(([0], np.cumsum(lengths)[:-1])), lengths)
    return shift + np.arange(total)


# ---------------------------------------------------------------------------- structure
def _visit_counts(rng: np.random.Generator, p: SyntheticDataset.Params, n_patients: int) -> np.ndarray:
    """``[n_patients]`` visits per patient: one for a share, else 2 + negative binomial."""
    single = rng.random(n_patients) < p.single_visit_share
    extra_mean = max((p.mean_visits - p.single_visit_share) / max(1 - p.single_visit_share, 1e-12) - 2, 0.0)
    if extra_mean > 0:
        success = _EXTRA_VISITS_SHAPE / (_EXTRA_VISITS_SHAPE + extra_mean)
        extra = rng.negative_binomial(_EXTRA_VISITS_SHAPE, success, size=n_patients)
    else:
        extra = np.zeros(n_patients, dtype=np.int64)
    return np.minimum(np.where(single, 1, 2 + extra), p.max_visits).astype(np.int64)


def _patients(rng: np.random.Generator, p: SyntheticDataset.Params) -> np.ndarray:
    """Visits per patient; with ``n_visits`` set, exactly that many visits in total."""
    if p.n_visits is None:
        return _visit_counts(rng, p, p.n_patients)
    batches: list[np.ndarray] = []
    total = 0
    while total < p.n_visits:
        batch = _visit_counts(rng, p, int(math.ceil((p.n_visits - total) / p.mean_visits * 1.05)) + 8)
        batches.append(batch)
        total += int(batch.sum())
    counts = np.concatenate(batches)
    cumulative = np.cumsum(counts)
    last = int(np.searchsorted(cumulative, p.n_visits))
    counts = counts[: last + 1].copy()
    counts[-1] -= int(cumulative[last] - p.n_visits)
    return counts


def _conditions(rng: np.random.Generator, world: _World, visit_offsets: np.ndarray,
                patient_hospital: np.ndarray, visit_hospital: np.ndarray, n_conditions: int) -> np.ndarray:
    """``[n_visits, K]`` bool active conditions (chronic per patient + acute per visit, >= 1)."""
    counts = np.diff(visit_offsets)
    n_patients, n_visits = len(counts), int(visit_offsets[-1])
    active = np.zeros((n_visits, n_conditions), dtype=bool)
    n_chronic = rng.poisson(_CHRONIC_MEAN, size=n_patients)
    owner = np.repeat(np.arange(n_patients), n_chronic)
    chronic = _sample_grouped(rng, world.condition_cdf, patient_hospital[owner])
    # expand every (patient, condition) pair to the patient's visits
    visits = _ranges(visit_offsets[owner], counts[owner])
    condition = np.repeat(chronic, counts[owner])
    on = rng.random(len(visits)) < _CHRONIC_ACTIVE
    active[visits[on], condition[on]] = True
    n_acute = rng.poisson(_ACUTE_MEAN, size=n_visits)
    n_acute[~active.any(axis=1) & (n_acute == 0)] = 1
    acute_visit = np.repeat(np.arange(n_visits), n_acute)
    active[acute_visit, _sample_grouped(rng, world.condition_cdf, visit_hospital[acute_visit])] = True
    return active


def _codes(rng: np.random.Generator, target: np.ndarray, active: np.ndarray, condition_codes: np.ndarray,
           condition_cdf: np.ndarray, background_cdf: np.ndarray, visit_hospital: np.ndarray,
           condition_share: float, chunk: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Distinct codes per visit, ``target[v]`` of them (topped up over a few rounds).

    Each round fills the ``need[v]`` missing codes of every visit from four streams of
    float64 uniforms drawn one after the other: ``A`` (condition or background, one per
    slot), ``B`` (which active condition), ``C`` (code of that condition), ``D`` (background
    code). Visits are processed ``chunk`` at a time, each chunk drawing its own ranges of
    the four streams (:func:`_uniform_at`), so the result is the same for every chunk size
    while the working memory is that of one chunk.

    Args:
        target: ``[n_visits]`` codes wanted per visit.
        active: ``[n_visits, K]`` bool active conditions.
        chunk: visits per chunk (None: :data:`_VISIT_CHUNK`).

    Returns:
        ``codes`` ``[n_codes]`` int32 (sorted within each visit) and ``offsets`` ``[n_visits + 1]``.
    """
    if not isinstance(rng.bit_generator, np.random.PCG64):
        raise TypeError("synthetic codes need a PCG64 generator (np.random.default_rng)")
    n_visits, size = len(target), background_cdf.shape[1]
    chunk = max(int(chunk or _VISIT_CHUNK), 1)
    bounds = list(range(0, n_visits, chunk)) + [n_visits]
    spans = list(zip(bounds[:-1], bounds[1:]))
    found: list[np.ndarray] = [np.zeros(0, dtype=np.int32) for _ in spans]  # codes per chunk
    counts = np.zeros(n_visits, dtype=np.int64)  # codes found per visit
    need = target.astype(np.int64)
    for _ in range(4):
        state = rng.bit_generator.state
        slots = np.array([need[a:b].sum() for a, b in spans], dtype=np.int64)
        slot_start = np.concatenate(([0], np.cumsum(slots)))
        total = int(slot_start[-1])
        # stream A first: the chunks' condition / background choices fix where B, C, D start
        choices = [_uniform_at(state, int(slot_start[i]), int(slots[i])) < condition_share
                   for i in range(len(spans))]
        n_condition = np.array([int(c.sum()) for c in choices], dtype=np.int64)
        condition_start = np.concatenate(([0], np.cumsum(n_condition)))
        background_start = slot_start - condition_start
        total_condition = int(condition_start[-1])
        for i, (a, b) in enumerate(spans):
            from_condition = choices[i]
            choices[i] = np.zeros(0, dtype=bool)  # release as we go
            slot_visit = np.repeat(np.arange(b - a, dtype=np.int64), need[a:b])  # chunk-local visits
            rows, conditions = np.nonzero(active[a:b])  # row-major: grouped by visit
            per_visit = np.bincount(rows, minlength=b - a)
            first = np.concatenate(([0], np.cumsum(per_visit)[:-1]))
            drawn = np.empty(len(slot_visit), dtype=np.int64)
            cv = slot_visit[from_condition]
            at = total + int(condition_start[i])
            pick = first[cv] + (_uniform_at(state, at, len(cv)) * per_visit[cv]).astype(np.int64)
            k = conditions[pick]
            uniform = _uniform_at(state, at + total_condition, len(k))
            drawn[from_condition] = condition_codes[k, _sample_grouped_from(condition_cdf, k, uniform)]
            bv = slot_visit[~from_condition]
            uniform = _uniform_at(state, total + 2 * total_condition + int(background_start[i]), len(bv))
            drawn[~from_condition] = _sample_grouped_from(background_cdf, visit_hospital[a + bv], uniform)
            known = np.repeat(np.arange(b - a, dtype=np.int64), counts[a:b]) * size + found[i]
            keys = _sorted_unique(np.concatenate((known, slot_visit * size + drawn)))
            found[i] = (keys % size).astype(np.int32)
            counts[a:b] = np.bincount(keys // size, minlength=b - a)
        _skip(rng, state, 2 * total + total_condition)
        need = target - counts
        if not need.any():
            break
    offsets = np.zeros(n_visits + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    codes = np.empty(int(offsets[-1]), dtype=np.int32)
    for i, (a, b) in enumerate(spans):
        codes[offsets[a]:offsets[b]] = found[i]
        found[i] = codes[:0]  # release as we go
    return codes, offsets


def _sorted_unique(values: np.ndarray) -> np.ndarray:
    """Sorted distinct values (sort + mask: much faster than hash-based ``np.unique`` here)."""
    values = np.sort(values)
    if len(values) == 0:
        return values
    keep = np.empty(len(values), dtype=bool)
    keep[0] = True
    np.not_equal(values[1:], values[:-1], out=keep[1:])
    return values[keep]


def _matmul(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """``left @ right`` in float32 through torch (its BLAS is far faster than numpy's here)."""
    return (torch.from_numpy(np.ascontiguousarray(left, dtype=np.float32))
            @ torch.from_numpy(np.ascontiguousarray(right, dtype=np.float32))).numpy()


def _count(rng: np.random.Generator, n: int, mean: float, shape: float, cap: int) -> np.ndarray:
    """``[n]`` per-visit code counts: 1 + negative binomial with the given mean (capped)."""
    extra_mean = max(mean - 1, 1e-9)
    counts = 1 + rng.negative_binomial(shape, shape / (shape + extra_mean), size=n)
    return np.minimum(counts, cap)


# ---------------------------------------------------------------------------- medications
def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _calibrate(logits: np.ndarray, target: float) -> float:
    """Intercept ``c`` with ``mean_v sum_d sigmoid(logits + c) = target`` (bisection)."""
    low, high = -30.0, 30.0
    for _ in range(30):
        middle = 0.5 * (low + high)
        if _sigmoid(logits + middle).sum(axis=1).mean() < target:
            low = middle
        else:
            high = middle
    return 0.5 * (low + high)


def _unpack(packed: np.ndarray, n_drugs: int) -> np.ndarray:
    """``[N, ceil(n_drugs / 8)]`` uint8 bit rows -> ``[N, n_drugs]`` bool."""
    return np.unpackbits(packed, axis=1, count=n_drugs).view(np.bool_)


def _medications(rng: np.random.Generator, world: _World, p: SyntheticDataset.Params, active: np.ndarray,
                 visit_offsets: np.ndarray, visit_hospital: np.ndarray) -> np.ndarray:
    """``[n_visits, ceil(n_drugs / 8)]`` uint8 prescriptions as bit rows (``np.packbits``,
    an eighth of a bool matrix), drawn one visit position at a time."""
    counts = np.diff(visit_offsets)
    prescribed = np.zeros((int(visit_offsets[-1]), (p.n_drugs + 7) // 8), dtype=np.uint8)
    intercept: float | None = None
    for position in range(int(counts.max(initial=0))):
        rows = visit_offsets[:-1][counts > position] + position
        for start in range(0, len(rows), _ROW_CHUNK):
            chunk = rows[start:start + _ROW_CHUNK]
            logits = _matmul(active[chunk], world.drug_effects)
            logits += world.drug_bias[visit_hospital[chunk]]
            logits += _SEVERITY * rng.standard_normal((len(chunk), 1), dtype=np.float32)
            if position > 0:
                logits += p.persistence * _unpack(prescribed[chunk - 1], p.n_drugs)
            if start == 0 and position <= 1:  # first visits, then follow-up visits
                sample = logits[:_CALIBRATION_ROWS].astype(np.float64)
                intercept = _calibrate(sample, p.mean_medications)
            assert intercept is not None
            logits += intercept
            chosen = rng.random(logits.shape, dtype=np.float32) < _sigmoid(logits)
            empty = ~chosen.any(axis=1)
            chosen[np.flatnonzero(empty), logits[empty].argmax(axis=1)] = True
            prescribed[chunk] = np.packbits(chosen, axis=1)
    return prescribed


def _prescription_lists(prescribed: np.ndarray, n_drugs: int, chunk: int | None = None
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Bit rows -> ``codes`` ``[n_codes]`` int32 (ascending within each visit) and
    ``offsets`` ``[n_visits + 1]`` int64, ``chunk`` visits at a time (no dense matrix)."""
    n_visits = len(prescribed)
    chunk = max(int(chunk or _VISIT_CHUNK), 1)
    offsets = np.zeros(n_visits + 1, dtype=np.int64)
    for start in range(0, n_visits, chunk):
        block = _unpack(prescribed[start:start + chunk], n_drugs)
        offsets[start + 1:start + 1 + len(block)] = block.sum(axis=1)
    np.cumsum(offsets, out=offsets)
    codes = np.empty(int(offsets[-1]), dtype=np.int32)
    for start in range(0, n_visits, chunk):
        block = _unpack(prescribed[start:start + chunk], n_drugs)
        codes[offsets[start]:offsets[min(start + chunk, n_visits)]] = np.nonzero(block)[1]
    return codes, offsets


# ---------------------------------------------------------------------------- knowledge
def _cooccurrence(prescribed: np.ndarray, n_drugs: int) -> tuple[np.ndarray, float]:
    """``[n_drugs, n_drugs]`` visit counts of each drug pair, and the number of prescribed pairs.

    Args:
        prescribed: ``[n_visits, ceil(n_drugs / 8)]`` uint8 bit rows (:func:`_medications`).
    """
    counts = np.zeros((n_drugs, n_drugs), dtype=np.float64)
    pairs = 0.0
    for start in range(0, len(prescribed), _ROW_CHUNK):
        block = _unpack(prescribed[start:start + _ROW_CHUNK], n_drugs)
        counts += _matmul(block.T, block).astype(np.float64)  # exact: < 2**24 per block
        k = block.sum(axis=1, dtype=np.float64)
        pairs += float((k * (k - 1) / 2).sum())
    return counts, pairs


def _plant_ddi(rng: np.random.Generator, cooccurrence: np.ndarray, total_pairs: float, n_pairs: int,
               target: float | None) -> tuple[np.ndarray, float, float]:
    """Choose ``n_pairs`` interacting pairs; returns ``[D, D]`` adjacency, its DDI rate and the tilt.

    Pairs are the top ``n_pairs`` of ``tilt * log(1 + cooccurrence) + Gumbel noise``; the
    tilt is bisected so that the realised rate approaches ``target`` (0 when None).
    """
    n_drugs = cooccurrence.shape[0]
    upper_i, upper_j = np.triu_indices(n_drugs, k=1)
    together = cooccurrence[upper_i, upper_j]
    noise = rng.gumbel(size=len(together))

    def choose(tilt: float) -> tuple[np.ndarray, float]:
        if n_pairs == 0:
            return np.zeros(0, dtype=np.int64), 0.0
        chosen = np.argpartition(-(tilt * np.log1p(together) + noise), n_pairs - 1)[:n_pairs]
        return chosen, float(together[chosen].sum() / max(total_pairs, 1.0))

    tilt = 0.0
    if target is not None and n_pairs:
        low, high = -8.0, 8.0
        for _ in range(40):
            tilt = 0.5 * (low + high)
            if choose(tilt)[1] < target:
                low = tilt
            else:
                high = tilt
    chosen, rate = choose(tilt)
    adjacency = np.zeros((n_drugs, n_drugs), dtype=np.float32)
    adjacency[upper_i[chosen], upper_j[chosen]] = 1.0
    adjacency[upper_j[chosen], upper_i[chosen]] = 1.0
    return adjacency, rate, tilt


def _substructures(rng: np.random.Generator, n_drugs: int, n_substructures: int) -> np.ndarray | None:
    """``[n_drugs, n_substructures]`` float32 0/1 mask, about 9 Zipf-popular fragments per drug."""
    if n_substructures == 0:
        return None
    mask = np.zeros((n_drugs, n_substructures), dtype=np.float32)
    popularity = _zipf(rng, n_substructures, 1.0)
    sizes = np.minimum(1 + rng.poisson(7.9, size=n_drugs), n_substructures)
    for drug in range(n_drugs):
        mask[drug, rng.choice(n_substructures, size=sizes[drug], replace=False, p=popularity)] = 1.0
    return mask


def _vocabulary(prefix: str, size: int, name: str) -> Vocabulary:
    width = len(str(size - 1))
    return Vocabulary([f"{prefix}{i:0{width}d}" for i in range(size)], name=name)


# ---------------------------------------------------------------------------- entry point
def generate(p: SyntheticDataset.Params, chunk: int | None = None) -> EHRData:
    """Generate a synthetic dataset from validated parameters (see the module docstring).

    Codes are drawn and listed ``chunk`` visits at a time (None: :data:`_VISIT_CHUNK`,
    about half a million): the data is the same for every chunk size, the working memory
    beyond the final arrays is that of one chunk plus a few per-visit columns (the
    prescriptions are held as bit rows, 14 bytes a visit for 112 drugs).
    """
    rng = np.random.default_rng(p.seed)
    world = _draw_world(rng, p)
    counts = _patients(rng, p)
    n_patients = len(counts)
    visit_offsets = np.zeros(n_patients + 1, dtype=np.int64)
    np.cumsum(counts, out=visit_offsets[1:])
    n_visits = int(visit_offsets[-1])
    patient_of_visit = np.repeat(np.arange(n_patients), counts)

    if p.n_hospitals:
        sizes = _zipf(rng, p.n_hospitals, p.hospital_size_skew)
        patient_hospital = rng.choice(p.n_hospitals, size=n_patients, p=sizes)
    else:
        patient_hospital = np.zeros(n_patients, dtype=np.int64)
    visit_hospital = patient_hospital[patient_of_visit]

    active = _conditions(rng, world, visit_offsets, patient_hospital, visit_hospital, p.n_conditions)
    diagnoses = _codes(
        rng, _count(rng, n_visits, p.mean_diagnoses, _DIAGNOSIS_SHAPE, p.n_diagnoses // 2), active,
        world.condition_diagnoses, world.condition_diagnosis_cdf, world.diagnosis_cdf, visit_hospital,
        p.condition_share, chunk,
    )
    procedures = _codes(
        rng, _count(rng, n_visits, p.mean_procedures, _PROCEDURE_SHAPE, p.n_procedures // 2), active,
        world.condition_procedures, world.condition_procedure_cdf, world.procedure_cdf, visit_hospital,
        p.condition_share, chunk,
    )
    prescribed = _medications(rng, world, p, active, visit_offsets, visit_hospital)
    del active  # the latent conditions are not part of the data

    cooccurrence, total_pairs = _cooccurrence(prescribed, p.n_drugs)
    adjacency, ddi_rate, tilt = _plant_ddi(rng, cooccurrence, total_pairs, p.n_ddi_pairs, p.ddi_rate)
    drugs, medication_offsets = _prescription_lists(prescribed, p.n_drugs, chunk)
    del prescribed

    gaps = rng.exponential(_MEAN_GAP_DAYS, size=n_visits)
    gaps[visit_offsets[:-1]] = 0.0  # every patient has at least one visit
    elapsed = np.cumsum(gaps)
    time = elapsed - np.repeat(elapsed[visit_offsets[:-1]], counts)

    vocabularies = {
        DIAGNOSES: _vocabulary("D", p.n_diagnoses, DIAGNOSES),
        PROCEDURES: _vocabulary("P", p.n_procedures, PROCEDURES),
        MEDICATIONS: _vocabulary("M", p.n_drugs, MEDICATIONS),
    }
    knowledge = DrugKnowledge(
        ddi_adjacency=adjacency,
        substructure_mask=_substructures(rng, p.n_drugs, p.n_substructures),
        provenance={"ddi_adjacency": f"planted by medtoolkit synthetic (seed {p.seed})"},
    )
    provenance: dict[str, Any] = {
        "source": "synthetic",
        "params": p.model_dump(),
        "ground_truth_ddi_rate": ddi_rate,
        "ddi_tilt": tilt,
        "dropped": {},
    }
    data = EHRData(
        vocabularies=vocabularies,
        visit_offsets=visit_offsets,
        codes={DIAGNOSES: diagnoses[0], PROCEDURES: procedures[0], MEDICATIONS: drugs},
        code_offsets={DIAGNOSES: diagnoses[1], PROCEDURES: procedures[1], MEDICATIONS: medication_offsets},
        patient_ids=[str(i) for i in range(n_patients)],
        knowledge=knowledge,
        hospital=visit_hospital.astype(np.int32) if p.n_hospitals else None,
        time=time,
        name=f"synthetic(seed={p.seed})",
        provenance=provenance,
    )
    if p.n_hospitals:
        provenance["hospital_sizes"] = np.bincount(visit_hospital, minlength=p.n_hospitals).tolist()
        provenance["hospital_jsd"] = hospital_divergence_summary(data, p.n_hospitals)
    return data
