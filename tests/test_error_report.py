import pandas as pd
import pytest
from helpers.tiny import ONET_DATA, write_tiny_onet

from occlass.data.taxonomy import Taxonomy
from occlass.report.error_report import (
    PLOTS,
    REPORT_FILE,
    error_analysis_markdown,
    load_related,
    write_error_report,
)

RN, LPN, DEV, ANALYST = "29-1141.00", "29-2061.00", "15-1252.00", "15-1211.00"
# (title, valid codes, top-1 prediction, rank of the first valid code among the top 5 or None)
ROWS = [
    ("CEO", ["11-1011.00"], "11-1011.00", 1),
    ("Managing Director", ["11-1011.00"], "11-1021.00", 2),
    ("Plant Manager", ["11-1021.00"], "11-1021.00", 1),
    ("Controller", ["11-3031.01"], "11-1021.00", None),
    ("Software Engineer", [DEV], ANALYST, 2),
    ("Programmer", [DEV], ANALYST, 2),
    ("Developer", [DEV, ANALYST], ANALYST, 1),  # several valid codes: correct
    ("Statistician", ["15-2041.00"], "15-2041.00", 1),
    ("Nurse | Ward", [RN], LPN, 2),  # the planted confusion: 3 of 4 nurses
    ("Staff Nurse", [RN], LPN, None),
    ("Charge Nurse", [RN], LPN, None),
    ("RN", [RN], RN, 1),
    ("Doctor", ["29-1229.00"], "29-1229.00", 1),
    ("Electrician", ["47-2111.00"], "47-2111.00", 1),
    ("Plumber", ["47-2152.00"], "11-1021.00", None),
]
# by hand: group -> (n, top-1, top-5)
BY_GROUP = {"11": (4, 2 / 4, 3 / 4), "15": (4, 2 / 4, 4 / 4), "29": (5, 2 / 5, 3 / 5),
            "47": (2, 1 / 2, 1 / 2)}


@pytest.fixture(scope="module")
def taxonomy(tmp_path_factory) -> Taxonomy:
    return Taxonomy.load(write_tiny_onet(tmp_path_factory.mktemp("onet") / "onet-29.3"))


@pytest.fixture(scope="module")
def predictions(taxonomy) -> pd.DataFrame:
    records = []
    for i, (title, codes, top1, rank) in enumerate(ROWS):
        ranked = [top1]
        if rank and rank > 1:
            ranked.append(codes[0])
        ranked += [c for c in taxonomy.codes if c not in ranked and c not in codes][:5 - len(ranked)]
        record = {"title": title, "codes": codes, "confidence": (i % 10 + 0.5) / 10}
        for k, code in enumerate(ranked, start=1):
            record |= {f"pred_code_{k}": code, f"pred_score_{k}": 1.0 - k / 10}
        records.append(record)
    return pd.DataFrame(records)


def table_rows(markdown: str, heading: str) -> list[list[str]]:
    """The data rows of the first table after a heading containing `heading`."""
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("#") and heading in line)
    table = []
    for line in lines[start + 1:]:
        if line.startswith("#"):
            break
        if line.startswith("|"):
            table.append([cell.strip() for cell in line.strip("|").split(" | ")])
    return table[2:]  # past the header and the alignment row


def test_most_confused_pair_first_with_count_and_related_flag(predictions, taxonomy):
    markdown = error_analysis_markdown(predictions, taxonomy, related={(LPN, RN)})
    pairs = table_rows(markdown, "most confused")
    assert pairs[0] == [RN, "Registered Nurses", LPN, "Licensed Practical Nurses", "3", "yes"]
    assert pairs[1] == [DEV, "Software Developers", ANALYST, "Computer Systems Analysts", "2",
                        "no"]
    assert len(pairs) == 5
    unknown = table_rows(error_analysis_markdown(predictions, taxonomy), "most confused")
    assert unknown[0][-1] == "–"


def test_accuracy_per_major_group_matches_a_hand_computation(predictions, taxonomy):
    groups = table_rows(error_analysis_markdown(predictions, taxonomy), "major group")
    assert [row[0] for row in groups] == list(BY_GROUP)
    for group, name, n, top1, top5 in groups:
        assert (int(n), float(top1), float(top5)) == pytest.approx(BY_GROUP[group], abs=1e-4)
    assert groups[2][1] == "Healthcare Practitioners and Technical"


def test_worst_occupations_need_three_titles_and_show_an_error(predictions, taxonomy):
    worst = table_rows(error_analysis_markdown(predictions, taxonomy), "worst occupations")
    assert [row[0] for row in worst] == [RN, DEV]  # 1/4 and 1/3; others have < 3 titles
    assert worst[0][2:] == ["4", "0.2500", "Nurse \\| Ward → Licensed Practical Nurses"]


def test_writes_the_report_and_four_valid_pngs(predictions, taxonomy, tmp_path):
    image = pytest.importorskip("matplotlib.image")
    paths = write_error_report(tmp_path / "report", predictions, taxonomy, related={(LPN, RN)})
    assert [p.name for p in paths] == [REPORT_FILE, *PLOTS]
    assert sorted(p.name for p in (tmp_path / "report").iterdir()) == sorted(p.name for p in paths)
    markdown = paths[0].read_text(encoding="utf-8")
    assert markdown == error_analysis_markdown(predictions, taxonomy, {(LPN, RN)})
    for name in PLOTS:
        assert f"]({name})" in markdown
    for path in paths[1:]:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        pixels = image.imread(path)
        assert pixels.ndim == 3 and pixels.shape[0] > 100 and pixels.shape[1] > 100


@pytest.mark.skipif(not ONET_DATA.is_dir(), reason="run `make data` first")
def test_load_related_on_the_release():
    related = load_related(ONET_DATA)
    assert ("11-1011.00", "11-1021.00") in related
    assert len(related) > 10000
