"""DrugMapper: shipped and RxNorm NDC maps, GSN and names, coverage records."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from medtoolkit.knowledge import DrugMapper, MappingCoverage, atc_truncate


def test_atc_truncate_levels() -> None:
    codes = pd.Series(["N02BE01", "n02be", "N02", None])
    assert atc_truncate(codes, 3).tolist()[:2] == ["N02B", "N02B"]
    assert pd.isna(atc_truncate(codes, 3).iloc[2]) and pd.isna(atc_truncate(codes, 3).iloc[3])
    assert atc_truncate(codes, 4).iloc[0] == "N02BE"
    assert atc_truncate(codes, 2).iloc[2] == "N02"
    with pytest.raises(ValueError):
        atc_truncate(codes, 6)


def test_shipped_ndc_map_and_coverage() -> None:
    mapper = DrugMapper()
    # 24987026010 -> C01AA05 in the shipped map; 0 blank; "bad" malformed; 99999999999 unmapped
    ndc = pd.Series(["24987026010", "24987-0260-10", "0", "bad", "99999999999"], index=list("abcde"))
    atc3 = mapper.map_ndc(ndc, atc_level=3)
    assert list(atc3.index) == list("abcde")
    assert atc3.tolist()[:2] == ["C01A", "C01A"] and atc3.iloc[2:].isna().all()
    assert mapper.map_ndc(ndc, atc_level=4).iloc[0] == "C01AA"
    cov = mapper.last_coverage
    assert cov == MappingCoverage(step="ndc->atc4 (shipped)", rows_in=5, rows_mapped=2, codes_in=2,
                                  codes_mapped=1, source=cov.source, rows_blank=1, rows_malformed=1)
    assert cov.rows_dropped == 3 and cov.codes_dropped == 1
    assert set(cov.as_report_kwargs()) == {"step", "rows_in", "rows_mapped", "codes_in",
                                           "codes_mapped", "source"}
    assert len(mapper.coverages) == 2


def test_ambiguous_ndc_is_deterministic() -> None:
    from medtoolkit.knowledge.mapping import _choose

    table = pd.DataFrame({"key": ["x", "x", "x", "y", "y"],
                          "atc": ["B01AC06", "B01AC04", "N02BA01", "N02BA01", "B01AC06"]})
    chosen = _choose(table, 3)
    assert chosen["x"] == "B01A"  # most rows at level 3
    assert chosen["y"] == "B01A"  # tie: alphabetically smallest
    assert _choose(table.iloc[::-1], 3).to_dict() == chosen.to_dict()


def test_gsn_multi_token_and_padding() -> None:
    mapper = DrugMapper()
    gsn = pd.Series(["000015", "15", "000015 000016 ", None, "abc", "999999"])
    out = mapper.map_gsn(gsn, atc_level=5)
    assert out.tolist()[:3] == ["C01AA05"] * 3
    assert out.iloc[3:].isna().all()
    cov = mapper.last_coverage
    assert (cov.rows_in, cov.rows_mapped, cov.rows_blank, cov.rows_malformed) == (6, 3, 1, 1)
    assert (cov.codes_in, cov.codes_mapped) == (3, 2)


def test_name_map_case_insensitive() -> None:
    mapper = DrugMapper()
    out = mapper.map_name(pd.Series(["  acetaminophen ", "FUROSEMIDE", "no such drug", ""]), 3)
    assert out.tolist()[:2] == ["N02B", "C03C"]
    assert out.iloc[2:].isna().all()
    assert mapper.last_coverage.codes_in == 3 and mapper.last_coverage.codes_mapped == 2


def test_rxnorm_requires_files(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="map_dir"):
        DrugMapper(source="rxnorm")
    with pytest.raises(FileNotFoundError, match="ndc2rxnorm_mapping.txt"):
        DrugMapper(source="rxnorm", map_dir=tmp_path)
    with pytest.raises(ValueError):
        DrugMapper(source="other")  # type: ignore[arg-type]


def test_rxnorm_dict_is_not_evaluated(tmp_path: Path) -> None:
    import zipfile

    (tmp_path / "ndc2rxnorm_mapping.txt").write_text("__import__('os').system('echo hacked')")
    with zipfile.ZipFile(tmp_path / "ndc2atc_level4.zip", "w") as archive:
        archive.writestr("ndc2atc_level4.csv", "YEAR,MONTH,NDC,RXCUI,ATC5\n")
    with pytest.raises(ValueError):
        DrugMapper(source="rxnorm", map_dir=tmp_path)


def test_rxnorm_first_row_per_rxcui(tmp_path: Path) -> None:
    import zipfile

    (tmp_path / "ndc2rxnorm_mapping.txt").write_text("{'00002322701': u'11', '00006494300': '22'}")
    with zipfile.ZipFile(tmp_path / "ndc2atc_level4.zip", "w") as archive:
        archive.writestr("ndc2atc_level4.csv", 'YEAR,MONTH,NDC,RXCUI,ATC5\n2014,1,"x",11,"J01XA"\n'
                                                '2014,1,"y",11,"A07AA"\n')
    mapper = DrugMapper(source="rxnorm", map_dir=tmp_path)
    out = mapper.map_ndc(pd.Series(["0002-3227-01", "00006494300"]), atc_level=4)
    assert out.iloc[0] == "J01XA" and pd.isna(out.iloc[1])  # first row wins (SafeDrug, pitfall 8)
    with pytest.raises(ValueError):
        mapper.map_ndc(pd.Series(["00002322701"]), atc_level=5)


@pytest.mark.benchmark_data
def test_rxnorm_maps_at_hand(drug_knowledge_dir: Path) -> None:
    mapper = DrugMapper(source="rxnorm", map_dir=drug_knowledge_dir)
    out = mapper.map_ndc(pd.Series(["00338500341", "0", "99999999999"]), atc_level=3)
    assert pd.notna(out.iloc[0]) and len(out.iloc[0]) == 4
    assert out.iloc[1:].isna().all()


@pytest.mark.benchmark_data
def test_coverage_on_mimic3_demo(mimic3_demo_prescriptions: Path, drug_knowledge_dir: Path) -> None:
    """Figures (MIMIC-III demo, 10,398 prescription rows, 995 distinct NDCs, 1,478 NDC blank/0)."""
    rx = pd.read_csv(mimic3_demo_prescriptions, dtype=str, usecols=["NDC", "GSN", "DRUG"])
    shipped, rxnorm = DrugMapper(), DrugMapper(source="rxnorm", map_dir=drug_knowledge_dir)
    shipped.map_ndc(rx["NDC"], 3)
    rxnorm.map_ndc(rx["NDC"], 3)
    shipped.map_gsn(rx["GSN"], 3)
    shipped.map_name(rx["DRUG"], 3)
    figures = {c.step: (c.rows_in, c.rows_mapped, c.codes_in, c.codes_mapped)
               for c in [*shipped.coverages, *rxnorm.coverages]}
    assert figures == {
        "ndc->atc3 (shipped)": (10398, 232, 995, 23),
        "ndc->atc3 (rxnorm)": (10398, 6789, 995, 715),
        "gsn->atc3 (shipped)": (10398, 9031, 724, 702),
        "name->atc3 (shipped)": (10398, 9638, 571, 517),
    }
    assert shipped.coverages[0].rows_blank == 1478 and shipped.coverages[0].rows_malformed == 0
