"""The review desk's API for a coding team (FastAPI's test client on the tiny run): a code's
reference text, spreadsheet uploads with a chosen title column, and the audit sample of
model-accepted rows with the reviewer–model agreement on it."""

from __future__ import annotations

import io
import shutil

import pandas as pd
import pytest
import test_serve
from helpers.review import coded_at_levels
from helpers.tiny import OCCUPATIONS
from test_serve import UPLOAD, uploaded

client, make_client, parts = test_serve.client, test_serve.make_client, test_serve.parts

CODES = [code for code, *_ in OCCUPATIONS]
RELATED = [("47-2111.00", "47-2152.00", "1"), ("47-2111.00", "47-2031.00", "2"),
           ("47-2111.00", "99-9999.00", "3"),  # not in the taxonomy: left out
           *((code, other, "1") for code, other in zip(CODES, CODES[1:] + CODES[:1])
             if code != "47-2111.00")]


@pytest.fixture
def related_onet(tiny_onet, tmp_path):
    """The tiny release with O*NET's `Related Occupations.txt` (the SOC structure beside it)."""
    folder = tmp_path / "data"
    shutil.copytree(tiny_onet.parent, folder)
    header = "O*NET-SOC Code\tTitle\tRelated O*NET-SOC Code\tRelated Title\tTier\tIndex"
    lines = [header, *(f"{code}\tx\t{other}\ty\tPrimary-Short\t{i}"
                       for code, other, i in RELATED)]
    (folder / tiny_onet.name / "Related Occupations.txt").write_text("\n".join(lines) + "\n")
    return folder / tiny_onet.name


def test_a_codes_reference_text_has_its_groups_and_related_occupations(make_client,
                                                                       related_onet):
    client = make_client(f"data_dir={related_onet}")
    electricians = client.get("/v1/occupations/47-2111.00").json()
    assert electricians["description"] and "Wireman" in electricians["alternate_titles"]
    assert electricians["related"] == [{"code": "47-2152.00", "title": "Plumbers"},
                                       {"code": "47-2031.00", "title": "Carpenters"}]
    assert [(g["code"], g["level"]) for g in electricians["hierarchy"]] == [
        ("47-0000", "major"), ("47-2000", "minor"), ("47-2110", "broad"),
        ("47-2111", "detailed")]
    assert electricians["hierarchy"][0]["title"] == "Construction and Extraction Occupations"
    group = client.get("/v1/occupations/47-2110").json()  # a SOC group: its own groups
    assert group["level"] == "broad" and group["description"] is None
    assert [g["code"] for g in group["hierarchy"]] == ["47-0000", "47-2000"]
    assert client.get("/v1/occupations/99-9999.00").status_code == 404


def upload(client, path, **params):
    return client.post("/v1/files", params={"name": path.name, **params},
                       content=path.read_bytes(), headers=UPLOAD)


SHEET = pd.DataFrame({"id": ["007", "8"], "Job Title": ["Wireman", "Pipe fitter"],
                      "Duties": ["wiring", None], "Position": ["x", "y"]})


def test_a_workbook_is_opened_with_the_title_column_the_reviewer_picks(client, tmp_path):
    """An .xlsx upload (its first sheet) without a `title` column is a 400 listing its columns;
    with `title_column` (and `description_column`) it opens, and the export keeps its own
    columns (as CSV) with the final ones after them."""
    book = tmp_path / "survey.xlsx"
    with pd.ExcelWriter(book) as writer:
        SHEET.to_excel(writer, index=False)
        pd.DataFrame({"title": ["ignored"]}).to_excel(writer, sheet_name="notes", index=False)
    asked = upload(client, book)
    assert asked.status_code == 400 and "title_column" in asked.json()["error"]
    assert asked.json()["columns"] == list(SHEET.columns)
    assert uploaded(tmp_path) == []
    unknown = upload(client, book, title_column="Job")
    assert unknown.status_code == 400 and "'Job Title'" in unknown.json()["error"]
    opened = upload(client, book, title_column="Job Title", description_column="Duties")
    assert opened.status_code == 200, opened.text
    file = opened.json()["id"]
    rows = client.get(f"/v1/files/{file}/rows").json()["rows"]
    assert sorted((r["row"], r["title"], r["description"]) for r in rows) == [
        (0, "Wireman", "wiring"), (1, "Pipe fitter", None)]
    client.put(f"/v1/files/{file}/rows/0/decision", json={"code": "47-2111.00",
                                                          "reviewer": "ann"})
    export = client.get(f"/v1/files/{file}/export")
    assert 'filename="survey.reviewed.csv"' in export.headers["content-disposition"]
    table = pd.read_csv(io.StringIO(export.text), dtype=str, keep_default_na=False)
    assert table.columns[:4].tolist() == list(SHEET.columns)
    assert table["id"].tolist() == ["007", "8"] and table["final_code"][0] == "47-2111.00"


def test_a_bad_workbook_is_one_line_and_leaves_nothing(client, tmp_path):
    for content, says in ((b"not a workbook", "not a readable .xlsx workbook"),
                          (None, "first sheet is empty")):
        book = tmp_path / "bad.xlsx"
        if content is None:
            pd.DataFrame().to_excel(book, index=False)
        else:
            book.write_bytes(content)
        refused = upload(client, book)
        assert refused.status_code == 400, refused.text
        error = refused.json()["error"]
        assert error.startswith("bad.xlsx: ") and says in error and "\n" not in error
        assert str(tmp_path) not in error and uploaded(tmp_path) == []


AUDITED = ["Owner", "Boss", "Chief", "Head", "Director", "Plumbr", "Nurse?"]


def test_an_audit_sample_of_accepted_rows_and_the_agreement_on_it(client, parts, tmp_path):
    """A seeded sample of the rows the model accepted (never a flagged one; a larger size with
    the same seed keeps the rows drawn); a reviewer's code equal to the model's or inside its
    group agrees, an outcome does not; the agreement is reported and each verdict exported."""
    coded = coded_at_levels(parts, AUDITED, dict.fromkeys(range(5), "major"),
                            tmp_path / "audited.csv")
    file = upload(client, tmp_path / "audited.csv").json()["id"]
    assert client.get(f"/v1/files/{file}/audit").json() == {
        "seed": None, "size": 0, "checked": 0, "agreed": 0, "agreement": None, "rows": []}
    assert "audit" not in pd.read_csv(io.StringIO(client.get(f"/v1/files/{file}/export").text))
    three = client.put(f"/v1/files/{file}/audit", json={"size": 3, "seed": 7}).json()
    drawn = [r["row"] for r in three["rows"]]
    assert len(drawn) == 3 and set(drawn) <= set(range(5)) and drawn == sorted(drawn)
    four = client.put(f"/v1/files/{file}/audit", json={"size": 4, "seed": 7}).json()
    assert set(drawn) < {r["row"] for r in four["rows"]}
    assert all(r["model_code"] == coded.loc[r["row"], "coded_code"] for r in four["rows"])
    rows = client.get(f"/v1/files/{file}/rows").json()["rows"]
    assert sorted(r["row"] for r in rows if r["audit"]) == [r["row"] for r in four["rows"]]

    first, second, third, fourth = (r["row"] for r in four["rows"])
    model = coded.loc[second, "coded_code"]
    inside = next(code for code, *_ in OCCUPATIONS if code[:2] == model[:2])
    for row, decision in ((first, {"code": coded.loc[first, "coded_code"]}),
                          (second, {"code": inside}), (third, {"outcome": "uncodable"})):
        assert client.put(f"/v1/files/{file}/rows/{row}/decision",
                          json={**decision, "reviewer": "ann"}).status_code == 200
    report = client.get(f"/v1/files/{file}/audit").json()
    assert (report["size"], report["checked"], report["agreed"]) == (4, 3, 2)
    assert report["agreement"] == pytest.approx(2 / 3)
    verdicts = {r["row"]: r["verdict"] for r in report["rows"]}
    assert verdicts == {first: "agreed", second: "agreed", third: "disagreed",
                        fourth: "unchecked"}
    export = pd.read_csv(io.StringIO(client.get(f"/v1/files/{file}/export").text), dtype=str,
                         keep_default_na=False)
    assert export["audit"].tolist() == [verdicts.get(r, "") for r in range(len(AUDITED))]
    assert client.put(f"/v1/files/{file}/audit", json={"size": 0}).status_code == 422
    assert client.get("/v1/files/999/audit").status_code == 404
