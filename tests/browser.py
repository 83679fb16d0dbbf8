"""Debian's chromium, headless, driven by selenium through Debian's chromedriver: the page
as a researcher's browser sees it. Nothing is downloaded (no selenium-manager)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = Path(os.environ.get("ARCHIVE_TEST_ARTIFACTS", REPO / "test-artifacts"))
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
FLAGS = ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1400,1000")


class Browser:
    """One chromium with a fresh profile; `console()` is what the page logged as errors."""

    def __init__(self, base: str):
        for program in (CHROMIUM, CHROMEDRIVER):
            if not os.access(program, os.X_OK):
                raise RuntimeError(f"{program} is missing: `bash scripts/setup.sh --test` installs chromium "
                                   "and chromium-driver")
        self.base = base
        self.profile = tempfile.mkdtemp(prefix="archive-chromium-")
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in (*FLAGS, f"--user-data-dir={self.profile}"):
            options.add_argument(flag)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        self.driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
        self.driver.implicitly_wait(0)
        self.downloads = Path(self.profile) / "downloads"
        self.downloads.mkdir()
        self.driver.execute_cdp_cmd("Browser.setDownloadBehavior",
                                    {"behavior": "allow", "downloadPath": str(self.downloads)})
        self.expected_errors: list[str] = []

    def open(self, path: str) -> None:
        self.driver.get(self.base + path)

    def wait(self, condition, timeout: float = 15):
        return WebDriverWait(self.driver, timeout).until(condition)

    def settled(self) -> None:
        """Until the page's search has answered (the loading indicator hidden again)."""
        self.wait(lambda d: d.execute_script(
            "return document.readyState === 'complete' && !!document.querySelector('#count') && "
            "document.querySelector('#loading').hidden && "
            "!document.querySelector('#table').hasAttribute('aria-busy') && "
            "(document.querySelector('#count').textContent !== '' || !document.querySelector('#message').hidden)"))

    def ids(self) -> list[int]:
        return [int(tr.get_attribute("data-id")) for tr in self.driver.find_elements(By.CSS_SELECTOR, "tr[data-id]")]

    def find(self, selector: str):
        return self.driver.find_element(By.CSS_SELECTOR, selector)

    def visible(self, selector: str):
        return self.wait(expected_conditions.visibility_of_element_located((By.CSS_SELECTOR, selector)))

    def downloaded(self, name: str, timeout: float = 20) -> Path:
        """A file the page made the browser save, once it is whole (and moved out of the way
        of the next download of the same name)."""
        path = self.downloads / name
        self.wait(lambda d: path.exists() and not any(self.downloads.glob("*.crdownload")), timeout)
        kept = path.with_name(f"{len(list(self.downloads.iterdir()))}-{name}")
        path.rename(kept)
        return kept

    def console(self) -> list[str]:
        """The errors logged since the last call, but for those containing an expected text."""
        return [entry["message"] for entry in self.driver.get_log("browser") if entry["level"] == "SEVERE"
                and not any(text in entry["message"] for text in self.expected_errors)]

    def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / name
        self.driver.save_screenshot(str(path))
        return path

    def close(self) -> None:
        self.driver.quit()
        shutil.rmtree(self.profile, ignore_errors=True)
