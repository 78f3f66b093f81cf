"""The review page's tools for a coding team, in headless Chromium (the fixtures and helpers of
test_review_page): a candidate's reference text, a spreadsheet with its title column chosen on
the page, queue filters by level and confidence, and the audit sample."""

from __future__ import annotations

import io

import httpx
import pandas as pd
import test_review_page
import test_serve_desk
from helpers.review import coded_at_levels
from helpers.serving import serving
from helpers.tables import write_table
from test_review_page import By, Keys, Select, keys, open_page, text, wait
from test_serve_desk import AUDITED

from occlass.predict.loader import load_run

browser, related_onet = test_review_page.browser, test_serve_desk.related_onet  # fixtures
FILTERED = ["Owner", "Wireman", "Temp", "Acountant", "Plumber"]


def candidate_codes(driver) -> list[str]:
    return [r.find_elements(By.TAG_NAME, "td")[1].text
            for r in driver.find_elements(By.CSS_SELECTOR, "#candidates tbody tr")]


def test_i_shows_each_candidates_reference_text(browser, run_dir, related_onet, tmp_path):
    """`i` opens candidate 1's reference (its SOC groups, description, alternate titles and
    related occupations), `i` again candidate 2's; the next row starts without one."""
    raw = write_table(pd.DataFrame({"title": ["Sparky", "Pipe guy"]}), tmp_path / "jobs.csv")
    with serving(tmp_path, f"run={run_dir}", f"data_dir={related_onet}",
                 f"uploads={tmp_path / 'uploads'}", "confidence=platt", "review_below=1",
                 "learn_threshold=1.01") as (_, url):
        open_page(browser, url)
        browser.find_element(By.ID, "reviewer").send_keys("ann")
        browser.find_element(By.ID, "upload").send_keys(str(raw))
        wait(browser, lambda: text(browser, "title") == "Sparky")
        codes = candidate_codes(browser)
        expected = [httpx.get(f"{url}/v1/occupations/{c}").json() for c in codes[:2]]
        assert not browser.find_element(By.ID, "reference").is_displayed()
        keys(browser, "i")
        for at, found in enumerate(expected):
            wait(browser, lambda: text(browser, "reference-title").startswith(
                f"{at + 1}: {found['code']} {found['title']}"))  # noqa: B023
            assert text(browser, "reference-description") == found["description"]
            groups = text(browser, "reference-groups")
            assert [g["code"] for g in found["hierarchy"]] == [
                part.split()[0] for part in groups.split(" › ")]
            assert found["alternate_titles"][0] in text(browser, "reference-alternates")
            related = text(browser, "reference-related")
            assert found["related"] and related == " · ".join(
                f"{o['code']} {o['title']}" for o in found["related"])
            row = browser.find_elements(By.CSS_SELECTOR, "#candidates tbody tr")[at]
            assert "at" in row.get_attribute("class")
            keys(browser, "i")
        keys(browser, "1")
        wait(browser, lambda: text(browser, "title") == "Pipe guy")
        assert not browser.find_element(By.ID, "reference").is_displayed()


def test_a_workbook_without_a_title_column_opens_with_the_column_picked(browser, run_dir,
                                                                       tiny_onet, tmp_path):
    """An .xlsx file without a `title` column: the page offers its columns (the likeliest
    first), the reviewer picks the titles and the descriptions, and the file opens; keys work
    at once."""
    book = tmp_path / "survey.xlsx"
    pd.DataFrame({"id": [1, 2], "Main job (text)": ["Sparky", "Pipe guy"],
                  "Duties": ["wires houses", None]}).to_excel(book, index=False)
    with serving(tmp_path, f"run={run_dir}", f"data_dir={tiny_onet}",
                 f"uploads={tmp_path / 'uploads'}", "confidence=platt", "review_below=1",
                 "learn_threshold=1.01") as (_, url):
        open_page(browser, url)
        browser.find_element(By.ID, "reviewer").send_keys("ann")
        browser.find_element(By.ID, "upload").send_keys(str(book))
        wait(browser, lambda: browser.find_element(By.ID, "pick-columns").is_displayed())
        assert "title" in text(browser, "status")
        titles = Select(browser.find_element(By.ID, "title-column"))
        assert [o.text for o in titles.options] == ["id", "Main job (text)", "Duties"]
        assert titles.first_selected_option.text == "Main job (text)"  # "job": the guess
        descriptions = Select(browser.find_element(By.ID, "description-column"))
        assert descriptions.first_selected_option.text == "Duties"
        browser.find_element(By.CSS_SELECTOR, "#pick-columns button").click()
        wait(browser, lambda: text(browser, "title") == "Sparky")
        assert not browser.find_element(By.ID, "pick-columns").is_displayed()
        assert browser.execute_script("return document.getElementById('description')"
                                      ".textContent") == "wires houses"
        keys(browser, "1")  # no click first
        wait(browser, lambda: text(browser, "title") == "Pipe guy")
        exported = httpx.get(f"{url}/v1/files/1/export").text.splitlines()[0]
    assert exported.startswith("id,Main job (text),Duties,") and "final_code" in exported


def test_the_queue_filtered_by_level_and_confidence(browser, run_dir, tiny_onet, tmp_path):
    """The level filter keeps the rows the model coded at that level ("not coded" too), the
    confidence filter those below a percentage (the coded code's, else the top candidate's);
    deciding moves to the next row that passes."""
    coded = coded_at_levels(load_run(run_dir, tiny_onet), FILTERED, {0: "major", 1: "onet",
                                                                     2: "broad"},
                            tmp_path / "filtered.csv")
    coded["needs_review"] = "True"  # every row to review, whatever its level
    coded["coded_confidence"] = ["0.30", "0.90", "0.55", "", ""]
    coded["confidence"] = ["0.5", "0.5", "0.5", "0.20", "0.80"]
    write_table(coded, tmp_path / "filtered.csv")
    with serving(tmp_path, f"run={run_dir}", f"data_dir={tiny_onet}",
                 f"uploads={tmp_path / 'uploads'}", "learn_threshold=1.01") as (_, url):
        open_page(browser, url)
        browser.find_element(By.ID, "reviewer").send_keys("ann")
        browser.find_element(By.ID, "upload").send_keys(str(tmp_path / "filtered.csv"))
        wait(browser, lambda: text(browser, "title") == "Owner")
        level = Select(browser.find_element(By.ID, "level"))
        level.select_by_value("broad")
        wait(browser, lambda: text(browser, "title") == "Temp")
        assert "1 undecided rows pass the filters" in text(browser, "progress")
        level.select_by_value("none")
        wait(browser, lambda: text(browser, "title") == "Acountant")
        level.select_by_value("")
        browser.find_element(By.ID, "below").send_keys("60\n")  # Owner 30%, Temp 55%, Acountant 20%
        wait(browser, lambda: "3 undecided rows pass the filters" in text(browser, "progress"))
        assert text(browser, "title") == "Owner"
        for then in ("Temp", "Acountant"):
            keys(browser, "x")
            wait(browser, lambda: text(browser, "title") == then)  # noqa: B023
        keys(browser, "x")
        wait(browser, lambda: browser.find_element(By.ID, "done").is_displayed())
        assert "filters" in text(browser, "done")
        browser.find_element(By.ID, "below").send_keys(Keys.BACKSPACE * 2, Keys.ENTER)
        wait(browser, lambda: text(browser, "title") == "Wireman")


def test_an_audit_sample_is_checked_in_the_queue_and_its_agreement_shown(browser, run_dir,
                                                                         tiny_onet, tmp_path):
    """Drawing an audit sample on the page puts those model-accepted rows in the queue (in
    file order, among the flagged ones), marked; confirming one agrees, an outcome disagrees; the agreement is shown and the
    export's `audit` column holds each verdict."""
    coded = coded_at_levels(load_run(run_dir, tiny_onet), AUDITED,
                            dict.fromkeys(range(4), "major"), tmp_path / "audited.csv")
    with serving(tmp_path, f"run={run_dir}", f"data_dir={tiny_onet}",
                 f"uploads={tmp_path / 'uploads'}", "learn_threshold=1.01") as (_, url):
        open_page(browser, url)
        browser.find_element(By.ID, "reviewer").send_keys("ann")
        browser.find_element(By.ID, "upload").send_keys(str(tmp_path / "audited.csv"))
        wait(browser, lambda: text(browser, "title") == AUDITED[4])  # the first flagged row
        browser.find_element(By.CSS_SELECTOR, "#audit-box summary").click()
        size = browser.find_element(By.ID, "audit-size")
        size.clear()
        size.send_keys("2")
        browser.find_element(By.CSS_SELECTOR, "#audit-form button").click()
        wait(browser, lambda: "0 of 2 checked" in text(browser, "audit-summary"))
        drawn = [r["row"] for r in httpx.get(f"{url}/v1/files/1/audit").json()["rows"]]
        wait(browser, lambda: text(browser, "title") == AUDITED[drawn[0]])
        assert "audit sample" in text(browser, "row-id")
        assert coded.loc[drawn[0], "coded_code"] in text(browser, "model")
        keys(browser, "c")  # the model's code confirmed: agreed
        wait(browser, lambda: text(browser, "title") == AUDITED[drawn[1]])
        keys(browser, "x")  # uncodable: disagreed
        wait(browser, lambda: text(browser, "title") == AUDITED[4])
        wait(browser, lambda: "2 of 2 checked · agreement 1/2 (50%)" in text(browser,
                                                                              "audit-summary"))
        export = pd.read_csv(io.StringIO(httpx.get(f"{url}/v1/files/1/export").text),
                             dtype=str, keep_default_na=False)
    verdicts = {drawn[0]: "agreed", drawn[1]: "disagreed"}
    assert export["audit"].tolist() == [verdicts.get(r, "") for r in range(len(AUDITED))]
