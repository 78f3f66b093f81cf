"""The review page in a real headless Chromium (Debian's chromium and chromium-driver, driven by
Selenium; nothing is downloaded): open a file, accept with a key, pick via search, undo, skip,
reload (the decisions persist), export (the file equals the expected one). A title holding HTML
shows as text. The page's screenshot goes to the test's temporary folder, and to the path in
$OCCLASS_SCREENSHOT when set (`OCCLASS_SCREENSHOT=docs/review-page.png` renews the README's).
Then the desk at keying speed: keys during a save, stale and fast searches, SOC groups and
residual outcomes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pandas as pd
import pytest
from helpers.review import coded_at_levels
from helpers.serving import serving
from helpers.tables import write_table
from helpers.tiny import OCCUPATIONS, ROOT

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
if not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()):
    pytest.skip("no browser: the page tests need Debian's chromium and chromium-driver "
                "(apt-get install -y chromium chromium-driver; .ci/run installs them)",
                allow_module_level=True)
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed "
                                "(pip install -e '.[dev]')")
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select, WebDriverWait

from occlass.predict.loader import load_run

SCRIPT = '<script>window.pwned = 1</script><img src=x onerror="window.pwned = 2">'
TITLES = ["Sr Wireman II", SCRIPT, "Night nurse", "Finish carpenter", "Plumber"]
WAIT = 120  # seconds a step may take on a busy machine before the test fails


@pytest.fixture
def browser(tmp_path):
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must not fetch anything
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--window-size=1100,900",
                 f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False})
    driver = webdriver.Chrome(options=options,
                              service=webdriver.ChromeService(str(CHROMEDRIVER)))
    driver.execute_cdp_cmd("Browser.setDownloadBehavior",
                           {"behavior": "allow", "downloadPath": str(downloads)})
    driver.downloads = downloads
    yield driver
    driver.quit()


def wait(driver, condition):
    return WebDriverWait(driver, WAIT).until(lambda d: condition())


def text(driver, id):
    return driver.find_element(By.ID, id).text


def press(driver, key):
    driver.find_element(By.TAG_NAME, "body").send_keys(key)


def open_page(driver, url):
    driver.get(url)
    wait(driver, lambda: driver.find_element(By.TAG_NAME, "body").get_attribute("data-ready"))


def test_review_a_file_in_the_browser(browser, run_dir, tiny_onet, tmp_path):
    raw = write_table(pd.DataFrame({"id": range(1, 6), "title": TITLES}), tmp_path / "jobs.csv")
    with serving(tmp_path, f"run={run_dir}", f"data_dir={tiny_onet}",
                 f"uploads={tmp_path / 'uploads'}", "confidence=platt", "review_below=1",  # all reviewed
                 "learn_threshold=0.9999") as (_, url):  # the tiny model finds all titles alike
        open_page(browser, url)
        reviewer = browser.find_element(By.ID, "reviewer")
        reviewer.send_keys("ann\t")  # kept when the field changes
        browser.find_element(By.ID, "upload").send_keys(str(raw))
        wait(browser, lambda: text(browser, "title") == TITLES[0])
        assert "0 of 5 rows to review decided" in text(browser, "progress")
        first = browser.find_elements(By.CSS_SELECTOR, "#candidates tbody tr")[0]
        accepted = first.find_elements(By.TAG_NAME, "td")[1].text

        press(browser, "1")  # accept the top candidate
        wait(browser, lambda: text(browser, "title") == SCRIPT)  # shown as text, not run
        assert browser.execute_script("return window.pwned") is None
        assert not browser.find_elements(By.CSS_SELECTOR, "#title script, #title img")

        press(browser, "/")
        browser.find_element(By.ID, "search").send_keys("carp")
        wait(browser, lambda: "47-2031.00 Carpenters" in text(browser, "results"))
        browser.find_element(By.ID, "search").send_keys("\n")  # the first result
        wait(browser, lambda: text(browser, "title") == TITLES[2])

        press(browser, "2")
        wait(browser, lambda: text(browser, "title") == TITLES[3])
        press(browser, "u")  # undo: row 3 is back
        wait(browser, lambda: text(browser, "title") == TITLES[2])
        press(browser, "s")  # skip it: row 4 comes first, row 3 goes last
        wait(browser, lambda: text(browser, "title") == TITLES[3])
        assert "2 of 5 rows to review decided" in text(browser, "progress")

        browser.refresh()
        open_page(browser, browser.current_url)
        wait(browser, lambda: text(browser, "title") == TITLES[3])  # ann's skip is kept
        assert "2 of 5 rows to review decided" in text(browser, "progress")
        browser.find_element(By.ID, "description-box")
        browser.save_screenshot(str(tmp_path / "page.png"))

        browser.find_element(By.ID, "export").click()
        exported = browser.downloads / "jobs.reviewed.csv"
        wait(browser, exported.is_file)
        coded = next((tmp_path / "uploads").glob("*-jobs.coded.csv"))
    assert (tmp_path / "page.png").stat().st_size > 0
    if os.environ.get("OCCLASS_SCREENSHOT"):
        shutil.copyfile(tmp_path / "page.png", os.environ["OCCLASS_SCREENSHOT"])

    result = pd.read_csv(exported, dtype=str, keep_default_na=False)
    expected = pd.read_csv(coded, dtype=str, keep_default_na=False)
    titles = {code: title for code, title, *_ in OCCUPATIONS}
    final = [(accepted, "reviewer", "ann"), ("47-2031.00", "reviewer", "ann"),
             ("", "", ""), ("", "", ""), ("", "", "")]
    expected["final_code"] = [code for code, _, _ in final]
    expected["final_title"] = [titles.get(code, "") for code, _, _ in final]
    expected["final_level"] = ["onet" if code else "" for code, _, _ in final]
    expected["decided_by"] = [by for _, by, _ in final]
    expected["reviewer"] = [who for _, _, who in final]
    expected["review_comment"] = ""
    pd.testing.assert_frame_equal(result, expected)
    assert result["title"].tolist() == TITLES


def keys(driver, *sequence):
    """Keys to whatever has the focus (no click first), as fast as the driver sends them."""
    ActionChains(driver).send_keys(*sequence).perform()


def blur(driver):
    driver.execute_script("document.activeElement.blur()")


DESK = ["Owner", "Wireman", "Temp", "Acountant", "Plumber", "Retired", "Manager", "Night nurse",
        "asdf qwer"]


def test_the_readme_screenshot_script_shows_the_second_row_of_a_run(run_dir, tiny_onet, tmp_path):
    """docs/screenshot.py (the README's picture of a real run) serves a run, opens its titles,
    accepts one and writes the page as a PNG of the browser's width, in one piece."""
    out = tmp_path / "page.png"
    done = subprocess.run([sys.executable, str(ROOT / "docs" / "screenshot.py"), "--run",
                           str(run_dir), "--out", str(out), f"data_dir={tiny_onet}",
                           "zero_shot_cache=null", "confidence=platt", "review_below=1",
                           "learn_threshold=0.9999"],  # the tiny model finds all titles alike
                          check=False, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    header = out.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    assert int.from_bytes(header[16:20], "big") == 1100  # --window-size width
    assert not list(tmp_path.glob("*.tmp.png"))


def test_the_desk_at_keying_speed_with_groups_and_outcomes(browser, run_dir, tiny_onet,
                                                           tmp_path):
    """Keys right after an upload act without a click, but not before the reviewer gives a
    name; keys pressed during a save are dropped (never applied to the row on screen nor to the
    next); search hits belong to the row and query that found them ("/" + Enter on the next row
    takes nothing; a query typed with Enter at once takes its own first hit); typo search, ↓
    then Enter; a decision at a SOC group; residual outcomes with a comment; the queue of rows
    the model coded at a group (confirm with c, refine with 1); the page at phone width."""
    coded = coded_at_levels(load_run(run_dir, tiny_onet), DESK, {0: "major", 1: "onet",
                                                                 2: "broad"}, tmp_path / "desk.csv")
    with serving(tmp_path, f"run={run_dir}", f"data_dir={tiny_onet}",
                 f"uploads={tmp_path / 'uploads'}", "learn_threshold=1.01") as (_, url):
        open_page(browser, url)
        browser.find_element(By.ID, "upload").send_keys(str(tmp_path / "desk.csv"))
        wait(browser, lambda: text(browser, "title") == "Acountant")
        assert text(browser, "row-id").startswith("row 4")
        keys(browser, "1")  # no click: the key reaches the page, which asks for a name
        wait(browser, lambda: "name" in text(browser, "status"))
        browser.find_element(By.ID, "reviewer").send_keys("ann")
        blur(browser)
        first, second = [r.find_elements(By.TAG_NAME, "td")[1].text for r in
                         browser.find_elements(By.CSS_SELECTOR, "#candidates tbody tr")[:2]]
        keys(browser, "12")  # "2" comes during the save of "1": dropped
        wait(browser, lambda: text(browser, "title") == "Plumber")

        keys(browser, "/", "plumbr")  # a typo
        wait(browser, lambda: "47-2152.00" in text(browser, "results"))
        keys(browser, Keys.ARROW_DOWN, Keys.ARROW_UP, Keys.ENTER)
        wait(browser, lambda: text(browser, "title") == "Retired")
        keys(browser, "/", Keys.ENTER, Keys.ESCAPE)  # no query: the last row's hits are gone
        browser.find_element(By.ID, "comment").send_keys("retired in 2019")
        blur(browser)
        keys(browser, "n")
        wait(browser, lambda: text(browser, "title") == "Manager")
        keys(browser, "/", "management", Keys.ENTER)  # Enter before the hits came back
        wait(browser, lambda: text(browser, "title") == "Night nurse")
        keys(browser, "/", "nurse")
        wait(browser, lambda: len(browser.find_elements(By.CSS_SELECTOR, "#results li")) > 1)
        picked = browser.find_elements(By.CSS_SELECTOR, "#results li .code")[1].text
        keys(browser, Keys.ARROW_DOWN, Keys.ENTER)
        wait(browser, lambda: text(browser, "title") == "asdf qwer")
        keys(browser, "x")
        wait(browser, lambda: browser.find_element(By.ID, "done").is_displayed())

        Select(browser.find_element(By.ID, "view")).select_by_value("groups")
        wait(browser, lambda: text(browser, "title") == "Owner")
        assert coded.loc[0, "coded_code"] in text(browser, "model")
        assert "major group" in text(browser, "model") and "97%" in text(browser, "model")
        keys(browser, "c")
        wait(browser, lambda: text(browser, "title") == "Temp")
        browser.set_window_size(390, 844)  # a phone: no sideways scroll, the title on top
        assert browser.execute_script("return document.documentElement.scrollWidth "
                                      "<= window.innerWidth")
        title, table = (browser.find_element(By.ID, i) for i in ("title", "candidates"))
        assert title.is_displayed() and title.location["y"] < table.location["y"]
        cells = browser.find_elements(By.CSS_SELECTOR, "#candidates tbody td")
        assert cells[3].text.endswith("%") and cells[1].value_of_css_property(
            "white-space") == "nowrap"
        refined = cells[1].text
        keys(browser, "1")
        wait(browser, lambda: browser.find_element(By.ID, "done").is_displayed())
        file = httpx.get(f"{url}/v1/files").json()["files"][-1]["id"]
        rows = httpx.get(f"{url}/v1/files/{file}/rows").json()["rows"]
    decided = {r["row"]: (r["decision"]["code"], r["decision"]["level"],
                          r["decision"]["comment"]) for r in rows if r["decision"]}
    assert first != second and decided == {
        0: (coded.loc[0, "coded_code"], "major", None), 2: (refined, "onet", None),
        3: (first, "onet", None), 4: ("47-2152.00", "onet", None),
        5: (None, "not_in_labour_force", "retired in 2019"), 6: ("11-0000", "major", None),
        7: (picked, "onet", None), 8: (None, "uncodable", None)}


TEAM = ["Welder", "CNA", "Plumber", "cna", "Joiner", "CNA ", "Plumber", "Baker"]


def test_a_team_on_one_file(browser, run_dir, tiny_onet, tmp_path):
    """Rows of one title come once, with their count, most frequent first on request, and are
    decided together; two reviewers (two tabs) see each other's decisions; each one's skips and
    undo history are theirs and survive a reload; undo never takes back another's decision."""
    raw = write_table(pd.DataFrame({"title": TEAM}), tmp_path / "team.csv")
    with serving(tmp_path, f"run={run_dir}", f"data_dir={tiny_onet}",
                 f"uploads={tmp_path / 'uploads'}", "confidence=platt", "review_below=1",
                 "learn_threshold=1.01") as (_, url):  # every row to review, nothing learnt
        file = httpx.post(f"{url}/v1/files", params={"name": "team.csv"},
                          content=raw.read_bytes(), timeout=WAIT,
                          headers={"X-Requested-With": "test"}).json()["id"]
        open_page(browser, f"{url}/#file={file}")
        ann = browser.current_window_handle
        browser.find_element(By.ID, "reviewer").send_keys("ann")
        blur(browser)
        wait(browser, lambda: text(browser, "title") == "Welder")
        Select(browser.find_element(By.ID, "order")).select_by_value("frequency")
        wait(browser, lambda: text(browser, "title") == "CNA")
        assert "×3" in text(browser, "row-id")
        for key, then in (("1", "Plumber"), ("s", "Welder"), ("2", "Joiner"), ("s", "Baker"),
                          ("s", "Plumber")):
            keys(browser, key)
            wait(browser, lambda: text(browser, "title") == then)  # noqa: B023

        browser.switch_to.new_window("tab")
        open_page(browser, f"{url}/#file={file}")
        reviewer = browser.find_element(By.ID, "reviewer")  # ann's name, from the profile
        reviewer.clear()
        reviewer.send_keys("bob")
        blur(browser)
        wait(browser, lambda: text(browser, "title") == "Plumber")  # ann's skips are hers
        assert "4 of 8 rows to review decided" in text(browser, "progress")
        keys(browser, "1")
        wait(browser, lambda: text(browser, "title") == "Joiner")

        browser.switch_to.window(ann)
        wait(browser, lambda: "6 of 8" in text(browser, "progress"))  # bob's, polled
        wait(browser, lambda: text(browser, "title") == "Joiner")  # ann's skipped ones
        browser.refresh()
        open_page(browser, browser.current_url)
        reviewer = browser.find_element(By.ID, "reviewer")  # one profile: bob's name was kept
        reviewer.clear()
        reviewer.send_keys("ann")
        blur(browser)
        wait(browser, lambda: "skipped before" in text(browser, "row-id"))  # ann's skips kept
        assert text(browser, "title") == "Joiner"
        for then in ("Welder", "Welder"):  # undo ann's Welder, then her CNA rows
            keys(browser, "u")
            wait(browser, lambda: text(browser, "title") == then)  # noqa: B023
        wait(browser, lambda: "2 of 8" in text(browser, "progress"))
        keys(browser, "u")
        wait(browser, lambda: "Nothing to undo" in text(browser, "status"))
        refused = httpx.delete(f"{url}/v1/files/{file}/rows/2/decision",
                               params={"reviewer": "ann"})
        decisions = httpx.get(f"{url}/v1/files/{file}/decisions").json()["decisions"]
    assert refused.status_code == 409 and "bob" in refused.json()["error"]
    assert {int(r): d["reviewer"] for r, d in decisions.items()} == {2: "bob", 6: "bob"}
