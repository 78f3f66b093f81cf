import pytest
from helpers.tiny import write_tiny_onet

from occlass.data.taxonomy import Taxonomy, soc_hierarchy
from occlass.errors import DataError


def test_hierarchy_of_a_code():
    assert soc_hierarchy("15-1252.00") == {
        "major": "15", "minor": "15-12", "broad": "15-125", "detailed": "15-1252",
        "onet": "15-1252.00"}


@pytest.mark.parametrize("code", ["15-1252", "151252.00", "15-1252.0", " 15-1252.00", None])
def test_malformed_code_is_rejected(code):
    with pytest.raises(DataError, match="malformed"):
        soc_hierarchy(code)


def test_loads_occupations_in_file_order(tiny_onet):
    taxonomy = Taxonomy.load(tiny_onet)
    assert len(taxonomy) == 12
    assert taxonomy.codes[3] == "15-1252.00"
    assert taxonomy.titles[3] == "Software Developers"
    assert taxonomy.index["15-1252.00"] == 3
    assert taxonomy.version == "29.3"


def test_category_text_recipes(tiny_onet):
    taxonomy = Taxonomy.load(tiny_onet, with_tasks=True)
    i = taxonomy.index["15-1252.00"]
    assert taxonomy.category_texts("title")[i] == "Software Developers"
    assert (taxonomy.category_texts("title_description")[i]
            == "Software Developers. Design and develop software.")
    with_tasks = taxonomy.category_texts("title_description_tasks", n_tasks=1)[i]
    assert with_tasks == ("Software Developers. Design and develop software. "
                          "Core task of Software Developers.")  # core tasks come first
    assert taxonomy.category_texts("title_description_tasks", n_tasks=2)[i].endswith(
        "Supplemental task of Software Developers.")
    with pytest.raises(ValueError, match="unknown category-text recipe"):
        taxonomy.category_texts("everything")


def test_fingerprint_changes_with_the_codes(tiny_onet, tmp_path):
    other = write_tiny_onet(tmp_path / "other")
    lines = (other / "Occupation Data.txt").read_text().splitlines()
    (other / "Occupation Data.txt").write_text("\n".join(lines[:-1]) + "\n")
    assert Taxonomy.load(tiny_onet).fingerprint == Taxonomy.load(tiny_onet).fingerprint
    assert Taxonomy.load(other).fingerprint != Taxonomy.load(tiny_onet).fingerprint


@pytest.fixture
def broken_onet(tmp_path):
    return write_tiny_onet(tmp_path / "onet")


def test_missing_file(broken_onet):
    (broken_onet / "Occupation Data.txt").unlink()
    with pytest.raises(DataError, match=r"Occupation Data\.txt: file not found"):
        Taxonomy.load(broken_onet)


def test_missing_column(broken_onet):
    path = broken_onet / "Occupation Data.txt"
    path.write_text(path.read_text().replace("Description", "Summary", 1))
    with pytest.raises(DataError, match=r"missing column\(s\) \['Description'\]"):
        Taxonomy.load(broken_onet)


def test_malformed_code_names_file_and_line(broken_onet):
    path = broken_onet / "Occupation Data.txt"
    path.write_text(path.read_text().replace("15-1252.00", "15-1252", 1))
    with pytest.raises(DataError, match=r"Occupation Data\.txt, line 5: malformed O\*NET-SOC "
                                        r"code '15-1252'"):
        Taxonomy.load(broken_onet)


def test_duplicate_code(broken_onet):
    path = broken_onet / "Occupation Data.txt"
    path.write_text(path.read_text() + "15-1252.00\tDevelopers again\tx\n")
    with pytest.raises(DataError, match="line 14: duplicate code '15-1252.00'"):
        Taxonomy.load(broken_onet)


def test_non_utf8_file(broken_onet):
    path = broken_onet / "Occupation Data.txt"
    path.write_bytes(path.read_bytes().replace(b"Carpenters", b"Carpenter\xe9s"))
    with pytest.raises(DataError, match="not UTF-8"):
        Taxonomy.load(broken_onet)


def test_empty_occupation_title(broken_onet):
    path = broken_onet / "Occupation Data.txt"
    path.write_text(path.read_text().replace("\tPlumbers\t", "\t\t", 1))
    with pytest.raises(DataError, match="line 12: empty occupation title"):
        Taxonomy.load(broken_onet)
