"""The review page in a real headless Chromium (Debian's chromium and chromium-driver, driven by
Selenium; nothing is downloaded): open a file, accept with a key, pick via search, undo, skip,
reload (the decisions persist), export (the file equals the expected one). A title holding HTML
shows as text. Also saves the README's screenshot, docs/review-page.png."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pandas as pd
import pytest
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
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

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
        wait(browser, lambda: text(browser, "title") == TITLES[2])  # the first undecided row
        assert "2 of 5 rows to review decided" in text(browser, "progress")
        browser.find_element(By.ID, "description-box")
        browser.save_screenshot(str(tmp_path / "page.png"))

        browser.find_element(By.ID, "export").click()
        exported = browser.downloads / "jobs.reviewed.csv"
        wait(browser, exported.is_file)
        coded = next((tmp_path / "uploads").glob("*-jobs.coded.csv"))
    shutil.copyfile(tmp_path / "page.png", ROOT / "docs" / "review-page.png")

    result = pd.read_csv(exported, dtype=str, keep_default_na=False)
    expected = pd.read_csv(coded, dtype=str, keep_default_na=False)
    titles = {code: title for code, title, *_ in OCCUPATIONS}
    final = [(accepted, "reviewer", "ann"), ("47-2031.00", "reviewer", "ann"),
             ("", "", ""), ("", "", ""), ("", "", "")]
    expected["final_code"] = [code for code, _, _ in final]
    expected["final_title"] = [titles.get(code, "") for code, _, _ in final]
    expected["decided_by"] = [by for _, by, _ in final]
    expected["reviewer"] = [who for _, _, who in final]
    pd.testing.assert_frame_equal(result, expected)
    assert result["title"].tolist() == TITLES
