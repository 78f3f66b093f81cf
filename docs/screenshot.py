"""The README's picture of the review desk, taken from a real run in headless Chromium (Debian's
chromium and chromium-driver, as the page tests use; nothing is downloaded).

    .venv/bin/python docs/screenshot.py --run RUN_DIR [--out docs/review-page.png] [serve.py overrides]

Serves the run with `serve.py` on a free loopback port, opens a file of messy titles on the page
as a reviewer would (the rows coded at a group level when none needs review), accepts the first
row's top candidate and saves the page as the second row waits.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import pandas as pd
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from occlass.serve.launch import serving

ROOT = Path(__file__).resolve().parents[1]
TITLES = ["Sr. SW Eng II", "Assistant manager", "Inspector, pole", "Team member - nights",
          "Specialist II", "RN - ICU nights"]
WAIT = 600  # seconds: the first upload encodes the titles on a busy CPU


def browser(folder: Path) -> webdriver.Chrome:
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must not fetch anything
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1100,900",
                 "--disable-background-networking", "--disable-component-update",
                 f"--user-data-dir={folder / 'profile'}"):
        options.add_argument(flag)
    return webdriver.Chrome(options=options,
                            service=webdriver.ChromeService("/usr/bin/chromedriver"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, type=Path)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "review-page.png")
    args, overrides = parser.parse_known_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        with serving(f"run={args.run.resolve()}", f"uploads={folder / 'uploads'}", *overrides,
                     cwd=ROOT, log=folder / "server.log") as (_, url):
            shoot(url, folder, args.out)
    print(f"wrote {args.out}")


def shoot(url: str, folder: Path, out: Path) -> None:
    """The review page at `url` with the titles uploaded and one accepted, saved to `out`."""
    titles = folder / "job-titles.csv"
    pd.DataFrame({"id": range(1, len(TITLES) + 1), "title": TITLES}).to_csv(titles, index=False)
    driver = browser(folder)
    try:
        wait = WebDriverWait(driver, WAIT)
        driver.get(url)
        wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready"))
        driver.find_element(By.ID, "reviewer").send_keys("ann\t")
        driver.find_element(By.ID, "upload").send_keys(str(titles))
        wait.until(lambda d: d.find_element(By.ID, "title").text
                   or "has a decision" in d.find_element(By.TAG_NAME, "body").text)
        if not driver.find_element(By.ID, "title").text:  # every row coded: check the groups
            Select(driver.find_element(By.ID, "view")).select_by_value("groups")
            wait.until(lambda d: d.find_element(By.ID, "title").text)
        first = driver.find_element(By.ID, "title").text
        driver.find_element(By.TAG_NAME, "body").send_keys("1")  # accept the top candidate
        wait.until(lambda d: d.find_element(By.ID, "title").text not in ("", first))
        tmp_png = out.with_suffix(".tmp.png")
        driver.save_screenshot(str(tmp_png))
        os.replace(tmp_png, out)
    finally:
        driver.quit()


if __name__ == "__main__":
    main()
