"""``synthetic``: realistic skew, determinism, planted DDI, hospitals, learnable structure."""

from __future__ import annotations

import resource
import time

import numpy as np
import pytest
from pydantic import ValidationError

from medtoolkit.data.batching import make_batch
from medtoolkit.data.ehr import DIAGNOSES, MEDICATIONS, PROCEDURES, EHRData
from medtoolkit.data.divergence import jensen_shannon, prescription_distributions
from medtoolkit.data.loaders.synthetic import SyntheticDataset, hospital_prescribing_offsets


def _generate(**params: object) -> EHRData:
    return SyntheticDataset(SyntheticDataset.Params(**params)).load(progress=False)


@pytest.fixture(scope="module")
def mimic_like() -> EHRData:
    return _generate(seed=3)


def _per_visit(data: EHRData, kind: str) -> np.ndarray:
    return np.diff(data.code_offsets[kind])


def _ddi_rate(data: EHRData) -> float:
    visits = data.multi_hot(MEDICATIONS, np.arange(data.n_visits)).astype(np.float64)
    interacting = ((visits @ data.knowledge.ddi_adjacency) * visits).sum() / 2
    counts = visits.sum(axis=1)
    return float(interacting / (counts * (counts - 1) / 2).sum())


def _jaccard(predicted: np.ndarray, truth: np.ndarray) -> float:
    union = (predicted | truth).sum(axis=1)
    return float(np.mean((predicted & truth).sum(axis=1) / np.maximum(union, 1)))


def _top_k(scores: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Boolean ``[N, D]``: the ``k[n]`` best-scored drugs of every row."""
    ranks = np.argsort(np.argsort(-scores, axis=1, kind="stable"), axis=1)
    return ranks < k[:, None]


# ----------------------------------------------------------------------------- shape of the data
def test_defaults_look_like_mimic(mimic_like: EHRData) -> None:
    data = mimic_like
    assert data.n_patients == 6350
    assert [len(data.vocabularies[v]) for v in (DIAGNOSES, PROCEDURES, MEDICATIONS)] == [1958, 1430, 112]
    per_patient = data.visits_per_patient
    assert per_patient.mean() == pytest.approx(2.37, abs=0.1)
    assert np.mean(per_patient == 1) == pytest.approx(0.14, abs=0.02)
    assert per_patient.min() == 1 and 10 <= per_patient.max() <= 30
    for kind, mean in ((DIAGNOSES, 13.6), (PROCEDURES, 4.5), (MEDICATIONS, 19.6)):
        counts = _per_visit(data, kind)
        assert counts.mean() == pytest.approx(mean, rel=0.05), kind
        assert counts.min() >= 1, kind
    # MIMIC-like spread of medications per visit (MIMIC p10/p90: 11/29)
    p10, p90 = np.percentile(_per_visit(data, MEDICATIONS), [10, 90])
    assert 9 <= p10 <= 15 and 24 <= p90 <= 32
    assert data.time is not None and data.hospital is None


def test_codes_are_distinct_within_each_visit(mimic_like: EHRData) -> None:
    for kind, vocabulary in mimic_like.vocabularies.items():
        visit = np.repeat(np.arange(mimic_like.n_visits), _per_visit(mimic_like, kind))
        keys = visit * len(vocabulary) + mimic_like.codes[kind]
        assert len(np.unique(keys)) == len(keys), kind


def test_code_frequencies_are_zipfian(mimic_like: EHRData) -> None:
    def top_share(data: EHRData, kind: str, share: float = 0.1) -> float:
        frequency = np.sort(np.bincount(data.codes[kind], minlength=len(data.vocabularies[kind])))[::-1]
        return frequency[: int(len(frequency) * share)].sum() / frequency.sum()

    # the 10 % most frequent diagnoses hold most of the mass; uniform codes hold about 10 %
    assert top_share(mimic_like, DIAGNOSES) > 0.5
    flat = _generate(n_patients=1000, zipf_exponent=0.0, condition_share=0.0)
    assert top_share(flat, DIAGNOSES) < 0.2
    prevalence = mimic_like.multi_hot(MEDICATIONS, np.arange(mimic_like.n_visits)).mean(axis=0)
    assert 6 <= (prevalence > 0.5).sum() <= 20 and prevalence.max() < 0.95  # MIMIC: 12, 0.89
    assert (prevalence < 0.05).sum() >= 5


def test_planted_ddi_gives_a_realistic_rate(mimic_like: EHRData) -> None:
    knowledge = mimic_like.knowledge
    assert knowledge.n_ddi_pairs == 337
    assert np.array_equal(knowledge.ddi_adjacency, knowledge.ddi_adjacency.T)
    assert not np.diag(knowledge.ddi_adjacency).any()
    rate = _ddi_rate(mimic_like)
    assert 0.05 <= rate <= 0.10
    assert rate == pytest.approx(mimic_like.provenance["ground_truth_ddi_rate"], abs=1e-9)
    assert _ddi_rate(_generate(n_patients=800, ddi_rate=0.15, seed=1)) == pytest.approx(0.15, abs=0.01)
    uniform = _generate(n_patients=800, ddi_rate=None, n_ddi_pairs=0)
    assert uniform.knowledge.n_ddi_pairs == 0 and _ddi_rate(uniform) == 0.0
    assert knowledge.substructure_mask.shape == (112, 442)
    assert knowledge.substructure_mask.sum(axis=1).min() >= 1


def test_same_seed_same_data_other_seed_other_data() -> None:
    first = _generate(n_patients=300, seed=7, n_hospitals=3)
    again = _generate(n_patients=300, seed=7, n_hospitals=3)
    other = _generate(n_patients=300, seed=8, n_hospitals=3)
    assert first.fingerprint() == again.fingerprint()
    assert np.array_equal(first.time, again.time)
    assert first.fingerprint() != other.fingerprint()
    assert first.provenance["params"]["seed"] == 7


def test_exact_visit_count_and_times() -> None:
    data = _generate(n_visits=5000, seed=2)
    assert data.n_visits == 5000
    assert data.n_patients == pytest.approx(5000 / 2.37, rel=0.1)
    starts = data.visit_offsets[:-1]
    assert np.all(data.time[starts] == 0.0)
    within = np.ones(data.n_visits, dtype=bool)
    within[starts] = False
    assert np.all(np.diff(data.time)[within[1:]] >= 0)


def test_hospitals_shift_distributions() -> None:
    data = _generate(n_patients=4000, n_hospitals=4, seed=5)
    assert data.hospital is not None and data.hospital.dtype == np.int32
    assert set(np.unique(data.hospital)) <= set(range(4))
    patient = np.repeat(np.arange(data.n_patients), data.visits_per_patient)
    first_hospital = data.hospital[data.visit_offsets[:-1]]
    assert np.array_equal(data.hospital, first_hospital[patient])  # one hospital per patient
    drugs = data.multi_hot(MEDICATIONS, np.arange(data.n_visits))
    sizes = np.bincount(data.hospital)
    a, b = np.argsort(sizes)[::-1][:2]
    between = np.abs(drugs[data.hospital == a].mean(0) - drugs[data.hospital == b].mean(0)).mean()
    rows_a = np.flatnonzero(data.hospital == a)
    within = np.abs(drugs[rows_a[::2]].mean(0) - drugs[rows_a[1::2]].mean(0)).mean()
    assert between > 3 * within


# ----------------------------------------------------------------------------- multi-centre
def test_explicit_defaults_give_the_same_data() -> None:
    # hospital_size_skew 0.8 was the hard-coded exponent; hospital_drug_shift None = hospital_shift
    implicit = _generate(n_visits=3000, n_hospitals=30, hospital_shift=1.2, seed=6)
    explicit = _generate(n_visits=3000, n_hospitals=30, hospital_shift=1.2, seed=6,
                         hospital_size_skew=0.8, hospital_drug_shift=1.2)
    assert implicit.fingerprint() == explicit.fingerprint()
    other = _generate(n_visits=3000, n_hospitals=30, hospital_shift=1.2, seed=6, hospital_drug_shift=0.0)
    assert other.fingerprint() != implicit.fingerprint()
    assert _generate(n_patients=200, seed=6).provenance.get("hospital_jsd") is None  # no hospitals


def _size_ratio(skew: float) -> float:
    data = _generate(n_patients=20000, n_hospitals=20, hospital_size_skew=skew, mean_visits=1.0,
                     single_visit_share=1.0, seed=2)
    sizes = np.sort(np.bincount(data.hospital, minlength=20))
    assert data.provenance["hospital_sizes"] == np.bincount(data.hospital, minlength=20).tolist()
    return sizes[-1] / sizes[0]


def test_hospital_size_skew_sets_the_zipf_exponent() -> None:
    # shares r^-s / sum: largest / smallest = 20^s (1 for equal sizes, 11 for 0.8, 400 for 2)
    assert _size_ratio(0.0) == pytest.approx(1.0, abs=0.2)
    assert _size_ratio(0.8) == pytest.approx(20 ** 0.8, rel=0.35)
    assert _size_ratio(2.0) == pytest.approx(400, rel=0.5)


def _multicentre(drug_shift: float, **params: object) -> EHRData:
    return _generate(n_visits=20000, n_hospitals=10, hospital_drug_shift=drug_shift, seed=1, **params)


def test_drug_shift_raises_the_jensen_shannon_divergence() -> None:
    means = [_multicentre(shift).provenance["hospital_jsd"]["mean"] for shift in (0.0, 1.0, 2.0)]
    assert means[0] < means[1] < means[2]
    assert means[2] > 2 * means[0]
    summary = _multicentre(1.0).provenance["hospital_jsd"]
    assert summary["n_hospitals"] == 10 and summary["n_pairs"] == 45 and summary["base"] == 2
    assert 0 <= summary["min"] <= summary["median"] <= summary["max"] <= 1


def test_code_shift_and_drug_shift_are_separate() -> None:
    def diagnosis_jsd(data: EHRData) -> float:
        counts = np.zeros((10, len(data.vocabularies[DIAGNOSES])))
        per_visit = np.diff(data.code_offsets[DIAGNOSES])
        np.add.at(counts, (np.repeat(data.hospital, per_visit), data.codes[DIAGNOSES]), 1)
        return float(jensen_shannon(counts / counts.sum(axis=1, keepdims=True)).mean())

    # hospital_shift 0 with hospitals used to fail (one background row for all hospitals)
    same_codes = _multicentre(2.0, hospital_shift=0.0)
    shifted_codes = _multicentre(2.0, hospital_shift=1.5)
    assert diagnosis_jsd(shifted_codes) > 2 * diagnosis_jsd(same_codes)
    # with the same codes everywhere, hospitals still prescribe differently through the habit
    habit_only = same_codes.provenance["hospital_jsd"]["mean"]
    assert habit_only > 2 * _multicentre(0.0, hospital_shift=0.0).provenance["hospital_jsd"]["mean"]


def test_the_prescribing_habit_is_known_and_learnable_from_a_hospitals_own_data() -> None:
    params = SyntheticDataset.Params(n_visits=30000, n_hospitals=10, hospital_drug_shift=2.0, seed=1)
    data = SyntheticDataset(params).load(progress=False)
    offsets = hospital_prescribing_offsets(params)
    assert offsets.shape == (10, 112)
    assert offsets.std() == pytest.approx(0.5 * 2.0, rel=0.1)  # o = shift * 0.5 * N(0, 1)
    assert not hospital_prescribing_offsets(params.model_copy(update={"hospital_drug_shift": 0.0})).any()
    with pytest.raises(ValueError, match="n_hospitals is 0"):
        hospital_prescribing_offsets(SyntheticDataset.Params())

    drugs = data.multi_hot(MEDICATIONS, np.arange(data.n_visits)) > 0
    patient = np.repeat(np.arange(data.n_patients), data.visits_per_patient)
    train, test = patient % 2 == 0, patient % 2 == 1
    overall = drugs[train].mean(axis=0)
    own = np.stack([drugs[train & (data.hospital == h)].mean(axis=0) for h in range(10)])

    # the empirical per-hospital log-odds shift follows the true offsets
    def log_odds(f: np.ndarray) -> np.ndarray:
        return np.log((f + 1e-3) / (1 - f + 1e-3))

    deviation = log_odds(own) - log_odds(overall)[None, :]
    assert np.corrcoef((offsets - offsets.mean(axis=0)).ravel(), deviation.ravel())[0, 1] > 0.7
    # a hospital's own frequencies predict its held-out patients better than everyone's
    k = drugs.sum(axis=1)[test]
    everyone = _jaccard(_top_k(np.broadcast_to(overall, (int(test.sum()), 112)), k), drugs[test])
    its_own = _jaccard(_top_k(own[data.hospital[test]], k), drugs[test])
    assert its_own > everyone + 0.02


def test_hundreds_of_hospitals_are_fast() -> None:
    start = time.perf_counter()
    data = _generate(n_visits=100_000, n_hospitals=300, seed=3)
    seconds = time.perf_counter() - start
    assert data.n_visits == 100_000 and data.hospital.max() < 300
    assert seconds < 10, seconds  # about 1 s on one CPU thread
    summary = data.provenance["hospital_jsd"]
    assert summary["n_hospitals"] + summary["skipped_hospitals"] == 300
    assert prescription_distributions(data, n_hospitals=300, skip_empty=True).shape == (summary["n_hospitals"], 112)


def test_drugs_depend_on_history_and_diagnoses(mimic_like: EHRData) -> None:
    data = mimic_like
    drugs = data.multi_hot(MEDICATIONS, np.arange(data.n_visits)) > 0
    k = drugs.sum(axis=1)
    rng = np.random.default_rng(0)
    position = np.arange(data.n_visits) - np.repeat(data.visit_offsets[:-1], data.visits_per_patient)
    follow_up = np.flatnonzero(position > 0)

    random_guess = _jaccard(_top_k(rng.random(drugs.shape), k), drugs)
    popularity = _top_k(np.broadcast_to(drugs.mean(axis=0), drugs.shape), k)
    previous_visit = _jaccard(drugs[follow_up - 1], drugs[follow_up])
    assert random_guess < 0.15
    assert previous_visit > _jaccard(popularity[follow_up], drugs[follow_up]) + 0.02

    # P(drug | code) from the first half of the patients, applied to the second half
    split = int(data.visit_offsets[data.n_patients // 2])
    codes = np.hstack([data.multi_hot(DIAGNOSES, np.arange(data.n_visits)),
                       data.multi_hot(PROCEDURES, np.arange(data.n_visits))])
    given_code = (codes[:split].T @ drugs[:split]) / np.maximum(codes[:split].sum(axis=0)[:, None], 1)
    per_code = _jaccard(_top_k(codes[split:] @ given_code, k[split:]), drugs[split:])
    assert per_code > _jaccard(popularity[split:], drugs[split:]) + 0.01
    assert per_code > random_guess + 0.2


def test_batches_can_be_cut(mimic_like: EHRData) -> None:
    batch = make_batch(mimic_like, np.arange(8))
    assert batch.medications.shape[::2] == (8, 112)
    assert batch.n_visits == int(mimic_like.visits_per_patient[:8].sum())


# ----------------------------------------------------------------------------- parameters
def test_tiny_vocabularies_work() -> None:
    data = _generate(n_patients=50, n_diagnoses=6, n_procedures=4, n_drugs=4, mean_diagnoses=2,
                     mean_procedures=1.5, mean_medications=1.5, n_conditions=2, n_ddi_pairs=2,
                     n_substructures=3, seed=4)
    assert data.n_patients == 50 and data.knowledge.n_ddi_pairs == 2
    assert data.vocabularies[MEDICATIONS].idx2word == ["M0", "M1", "M2", "M3"]
    assert _per_visit(data, MEDICATIONS).min() >= 1


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"mean_medications": 80}, "mean_medications=80.0 must be at most half the vocabulary size 112"),
        ({"n_drugs": 10, "mean_medications": 3, "n_ddi_pairs": 50}, "n_ddi_pairs=50 exceeds the 45 pairs"),
        ({"mean_visits": 1.5}, "needs single_visit_share >= 0.500"),
        ({"mean_visits": 40}, "exceeds max_visits=30"),
        ({"n_patients": 0}, "greater than or equal to 1"),
        ({"zipf": 1.0}, "Extra inputs are not permitted"),
    ],
)
def test_invalid_parameters_are_rejected(params: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        SyntheticDataset.Params(**params)


def test_single_visit_population() -> None:
    data = _generate(n_patients=200, single_visit_share=1.0, mean_visits=1.0)
    assert np.all(data.visits_per_patient == 1)


@pytest.mark.slow
def test_one_million_visits_is_fast_and_lean() -> None:
    start = time.perf_counter()
    data = _generate(n_visits=1_000_000, seed=11)
    seconds = time.perf_counter() - start
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    assert data.n_visits == 1_000_000
    assert seconds < 60, seconds
    assert peak_gib < 4, peak_gib
    assert 0.05 <= data.provenance["ground_truth_ddi_rate"] <= 0.10


# ----------------------------------------------------------------------------- chunked generation
def _codes_whole(rng: np.random.Generator, target: np.ndarray, active: np.ndarray, condition_codes: np.ndarray,
                 condition_cdf: np.ndarray, background_cdf: np.ndarray, visit_hospital: np.ndarray,
                 condition_share: float) -> tuple[np.ndarray, np.ndarray]:
    """The generator's code drawing before it was chunked: every visit at once (the reference)."""
    from medtoolkit.data.loaders.synthetic import _sample_grouped, _sorted_unique

    n_visits, size = len(target), background_cdf.shape[1]
    rows, conditions = np.nonzero(active)
    per_visit = np.bincount(rows, minlength=n_visits)
    first = np.concatenate(([0], np.cumsum(per_visit)[:-1]))
    keys = np.zeros(0, dtype=np.int64)
    need = target.astype(np.int64)
    for _ in range(4):
        slot_visit = np.repeat(np.arange(n_visits, dtype=np.int64), need)
        from_condition = rng.random(len(slot_visit)) < condition_share
        drawn = np.empty(len(slot_visit), dtype=np.int64)
        cv = slot_visit[from_condition]
        pick = first[cv] + (rng.random(len(cv)) * per_visit[cv]).astype(np.int64)
        k = conditions[pick]
        drawn[from_condition] = condition_codes[k, _sample_grouped(rng, condition_cdf, k)]
        bv = slot_visit[~from_condition]
        drawn[~from_condition] = _sample_grouped(rng, background_cdf, visit_hospital[bv])
        keys = _sorted_unique(np.concatenate((keys, slot_visit * size + drawn)))
        need = target - np.bincount(keys // size, minlength=n_visits)
        if not need.any():
            break
    offsets = np.zeros(n_visits + 1, dtype=np.int64)
    np.cumsum(np.bincount(keys // size, minlength=n_visits), out=offsets[1:])
    return (keys % size).astype(np.int32), offsets


@pytest.mark.parametrize("chunk", [1, 37, 1000, None])
def test_chunked_codes_equal_the_whole_array_draw_and_leave_the_generator_in_step(chunk: int | None) -> None:
    from medtoolkit.data.loaders.synthetic import _codes

    setup = np.random.default_rng(5)
    n_visits, n_codes, n_conditions, n_hospitals = 3000, 40, 6, 3
    active = setup.random((n_visits, n_conditions)) < 0.3
    active[np.arange(n_visits), setup.integers(0, n_conditions, n_visits)] = True  # >= 1 condition a visit
    condition_codes = setup.integers(0, n_codes, (n_conditions, 5))
    condition_cdf = np.cumsum(setup.dirichlet(np.ones(5), n_conditions), axis=1)
    condition_cdf[:, -1] = 1.0
    background_cdf = np.cumsum(setup.dirichlet(np.ones(n_codes), n_hospitals), axis=1)
    background_cdf[:, -1] = 1.0
    hospital = setup.integers(0, n_hospitals, n_visits)
    target = np.minimum(1 + setup.poisson(8, n_visits), n_codes // 2)  # many repeats: several top-up rounds
    arguments = (target, active, condition_codes, condition_cdf, background_cdf, hospital, 0.7)

    reference_rng, chunked_rng = np.random.default_rng(9), np.random.default_rng(9)
    for rng in (reference_rng, chunked_rng):
        rng.random(3, dtype=np.float32)  # a half-used 64-bit word is buffered: it must survive the skips
    expected = _codes_whole(reference_rng, *arguments)
    got = _codes(chunked_rng, *arguments, chunk=chunk)
    assert np.array_equal(got[0], expected[0]) and np.array_equal(got[1], expected[1])
    assert chunked_rng.bit_generator.state == reference_rng.bit_generator.state
    assert np.array_equal(chunked_rng.random(5, dtype=np.float32), reference_rng.random(5, dtype=np.float32))


def test_prescription_bit_rows_list_like_a_dense_matrix() -> None:
    from medtoolkit.data.loaders.synthetic import _cooccurrence, _prescription_lists

    dense = np.random.default_rng(2).random((1000, 13)) < 0.3
    packed = np.packbits(dense, axis=1)
    for chunk in (1, 64, None):
        codes, offsets = _prescription_lists(packed, 13, chunk)
        rows, drugs = np.nonzero(dense)
        assert codes.dtype == np.int32 and np.array_equal(codes, drugs)
        assert np.array_equal(offsets, np.concatenate(([0], np.cumsum(dense.sum(axis=1)))))
    counts, pairs = _cooccurrence(packed, 13)
    as_float = dense.astype(np.float64)
    assert np.array_equal(counts, as_float.T @ as_float)
    k = dense.sum(axis=1)
    assert pairs == float((k * (k - 1) / 2).sum())


@pytest.mark.parametrize("params", [dict(n_visits=20_000, seed=5, n_hospitals=30),
                                    dict(n_patients=300, seed=1, n_diagnoses=10, n_procedures=8, n_drugs=6,
                                         mean_diagnoses=3, mean_procedures=2, mean_medications=2, n_ddi_pairs=3,
                                         n_conditions=3, n_substructures=5)],
                         ids=["hospitals", "tiny-vocabularies"])
def test_the_chunk_size_does_not_change_the_data(params: dict) -> None:
    from medtoolkit.data.loaders.synthetic import generate

    p = SyntheticDataset.Params(**params)
    whole = generate(p, chunk=10**9)  # one chunk: the whole-array draw
    for chunk in (777, None):
        chunked = generate(p, chunk=chunk)
        assert chunked.fingerprint() == whole.fingerprint()
        assert np.array_equal(chunked.time, whole.time)
        assert chunked.provenance == whole.provenance
