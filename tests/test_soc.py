"""The SOC 2018 structure and the coded levels of O*NET-SOC occupations."""

import pytest
from helpers.tiny import SOC_ROWS, write_tiny_onet

from occlass.data.soc import LEVELS, SOC_FILE, SocStructure, load_levels, soc_path
from occlass.data.taxonomy import Taxonomy
from occlass.errors import DataError


@pytest.fixture
def onet(tmp_path):
    return write_tiny_onet(tmp_path / "onet-29.3")


def test_groups_are_ranges_of_the_structure(onet):
    taxonomy = Taxonomy.load(onet)
    levels = load_levels(taxonomy, onet)
    assert [level.name for level in levels] == list(LEVELS)
    row = taxonomy.index["29-1229.00"]
    # broad group 29-1210 holds 29-1221 ... 29-1229; minor 11-3000 holds 11-3031
    assert [(lv.codes[lv.of_code[row]], lv.titles[lv.of_code[row]]) for lv in levels] == [
        ("29-1229.00", "Physicians, All Other"), ("29-1229", "Physicians, All Other"),
        ("29-1210", "Physicians"), ("29-1000", "Healthcare Diagnosing or Treating Practitioners"),
        ("29-0000", "Healthcare Practitioners and Technical Occupations")]
    minor = levels[LEVELS.index("minor")]
    assert minor.codes[minor.of_code[taxonomy.index["11-3031.01"]]] == "11-3000"
    assert len(minor.codes) == sum(level == "minor" for _, level, _ in SOC_ROWS)


def test_a_missing_or_malformed_structure_is_a_clear_error(onet, tmp_path):
    path = soc_path(onet)
    assert path == tmp_path / "soc-2018" / SOC_FILE
    path.write_text("code,level,title\n15-1252,detailed,Software Developers\n15-12,minor,x\n")
    with pytest.raises(DataError, match=r"line 3: expected a 7-character SOC code"):
        SocStructure.load(path)
    path.write_text("code,level,title\n15-1252,detailed,Software Developers\n")
    with pytest.raises(DataError, match="SOC 2018 code 11-1011 has no detailed group"):
        load_levels(Taxonomy.load(onet), onet)
    path.unlink()
    with pytest.raises(DataError, match=r"SOC 2018 structure not found \(run `make data`"):
        load_levels(Taxonomy.load(onet), onet)
