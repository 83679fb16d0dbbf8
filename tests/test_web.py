"""The search page in a real browser (headless chromium) against a real gunicorn and
PostgreSQL: what a researcher does, checked against what the API answers."""

from __future__ import annotations

import subprocess
import tarfile
import urllib.parse

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from apiserver import NIGHT, OLD, ApiServer, build_archive
from browser import Browser
from fitsmaker import image


CALIBRATIONS = ("2019-05/03/many/bias.fits", "2019-05/03/many/flat.fits")


def _more_files(root):
    for path in CALIBRATIONS:
        image(root / path, {"OBJECT": "calibration", "OBSTYPE": path.rsplit("/", 1)[1][:-5].upper(),
                            "DATE-OBS": "2019-05-04T02:00:00"})
    for n in range(7):
        image(root / OLD / "many" / f"frame{n}.fits", {"OBJECT": f"field {n}", "DATE-OBS": f"2019-05-03T0{n}:30:00",
                                                       "RA": f"0{n}:00:00", "DEC": f"{10 * n - 30}:00:00"})


@pytest.fixture(scope="module")
def archive(cluster, tmp_path_factory):
    base = tmp_path_factory.mktemp("web")
    built = build_archive(cluster, base, extra=_more_files)
    server = ApiServer(built["config_path"], built["url"], base / "gunicorn.log")
    yield {**built, "server": server}
    server.stop()
    built["close"]()


@pytest.fixture(scope="module")
def browser(archive):
    opened = Browser(archive["server"].base)
    yield opened
    opened.close()


@pytest.fixture
def page(browser, archive):
    """The browser, with a fresh tab state: no token, an empty console (but for the 404 of
    the preview of escape.fits, archived and then made a link, which is never served)."""
    browser.open("/api/v1/health")
    browser.driver.execute_script("sessionStorage.clear()")
    browser.console()
    browser.expected_errors = [f"/api/v1/files/{archive['ids'][f'{OLD}/cam/escape.fits']}/preview?"]
    yield browser


def api_ids(archive, query: str, headers=None) -> list[int]:
    answer = archive["server"].get(f"/api/v1/files?{query}", headers=headers or {})
    assert answer.status_code == 200, answer.text
    return [row["id"] for row in answer.json()["results"]]


def query_of(page) -> dict:
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(page.driver.current_url).query))


def test_the_page_is_served_at_the_root_with_its_types_and_nothing_outside_web(archive):
    server = archive["server"]
    assert server.get("/").headers["Content-Type"].startswith("text/html")
    assert "script-src 'self'" in server.get("/").headers["Content-Security-Policy"]
    assert server.get("/js/main.js").headers["Content-Type"].startswith("text/javascript")
    assert server.get("/archive.css").headers["Content-Type"].startswith("text/css")
    for escape in ("/../setup.cfg", "/%2e%2e/setup.cfg", "/js/..%2f..%2fsetup.cfg", "/.gitignore", "/web/index.html",
                   "/js/%2e%2e/index.html", "/index.html%00.js"):
        answer = server.get(escape)
        assert answer.status_code == 404 and "description" in answer.json(), escape
    assert requests_post(server, "/").status_code == 405


def requests_post(server, path):
    import requests
    return requests.post(server.base + path, timeout=30)


def test_a_search_in_the_url_is_run_and_its_rows_are_the_apis(archive, page):
    query = f"path={OLD}/many&sort=path"
    page.open(f"/?{query}")
    page.settled()
    assert page.ids() == api_ids(archive, query)
    assert page.find("#count").text == "7 files"
    assert page.find("input[name=path]").get_attribute("value") == f"{OLD}/many"
    assert page.console() == []


def test_a_search_by_the_form_puts_its_parameters_in_the_url(archive, page):
    page.open("/")
    page.settled()
    box = page.find("input[name=object]")
    box.send_keys("field", Keys.TAB)
    page.find("select[name=object_match]").send_keys("prefix")
    box.send_keys(Keys.ENTER)
    page.wait(lambda d: "object=field" in d.current_url)
    page.settled()
    assert query_of(page) == {"object": "field", "object_match": "prefix"}
    assert page.ids() == api_ids(archive, "object=field&object_match=prefix")
    page.screenshot("results.png")
    assert page.console() == []


def test_sorting_by_a_column_asks_the_api_in_that_order_and_back_returns(archive, page):
    page.open(f"/?path={OLD}/many")
    page.settled()
    page.find("button.sort[data-sort=object]").click()
    page.wait(lambda d: query_of(page).get("sort") == "object")
    page.settled()
    page.find("button.sort[data-sort=object]").click()
    page.wait(lambda d: query_of(page).get("sort") == "-object")
    page.settled()
    assert page.ids() == api_ids(archive, f"path={OLD}/many&sort=-object")
    assert page.ids() == sorted(page.ids(), reverse=True)  # made in object order
    page.driver.back()
    page.wait(lambda d: query_of(page).get("sort") == "object")
    page.settled()
    assert page.ids() == api_ids(archive, f"path={OLD}/many&sort=object")


def test_next_follows_the_apis_link_and_previous_goes_back(archive, page):
    page.open(f"/?path={OLD}/many&sort=path&limit=3")
    page.settled()
    first = page.ids()
    following = archive["server"].get(f"/api/v1/files?path={OLD}/many&sort=path&limit=3").json()["next"]
    page.find("a[rel=next]").click()
    page.wait(lambda d: "cursor" in query_of(page))
    page.settled()
    assert page.ids() == api_ids(archive, urllib.parse.urlsplit(following).query)
    assert page.find("#count").text == "7 files"
    page.find("#previous").click()
    page.wait(lambda d: "cursor" not in query_of(page))
    page.settled()
    assert page.ids() == first


def test_the_column_chooser_sets_the_apis_fields(archive, page):
    page.open(f"/?path={OLD}/many&sort=path")
    page.settled()
    page.find("#columns summary").click()
    page.find("#column-choices input[value=ra]").click()
    page.wait(lambda d: "ra" in query_of(page).get("fields", "").split(","))
    page.settled()
    headings = [th.text for th in page.driver.find_elements(By.CSS_SELECTOR, "#table thead th")]
    assert "RA (°)" in headings


def test_the_header_is_shown_as_its_80_column_cards(archive, page):
    file_id = archive["ids"][f"{OLD}/cam/public2.fits"]
    page.open(f"/?path={OLD}/cam/public2.fits")
    page.settled()
    page.find(f"tr[data-id='{file_id}'] button.header").click()
    text = page.visible("#header-text").text
    expected = archive["server"].get(f"/api/v1/files/{file_id}/header").text
    assert text.splitlines() == expected.splitlines()
    assert text.startswith("SIMPLE  =") and "OBJECT  = 'M31" in text
    page.find("#header-find").send_keys("m31")
    page.wait(lambda d: len(page.find("#header-text").text.splitlines()) == 1)
    assert page.find("#header-text").text.startswith("OBJECT  = 'M31")
    page.find("#header-view button").click()


def test_a_400_is_shown_beside_the_field_it_names(page):
    page.open("/?ra=10&dec=41&radius=30x")
    page.wait(lambda d: page.find(".error[data-for=radius]").text)
    assert "not a radius" in page.find(".error[data-for=radius]").text
    assert page.find("input[name=radius]").get_attribute("aria-invalid") == "true"
    assert page.ids() == []


def test_no_results_says_so(page):
    page.open("/?object=nothing-like-this")
    page.settled()
    assert page.find("#count").text == "0 files"
    assert "No files match" in page.find("#message").text


def test_a_proprietary_file_is_shown_to_its_owner_only(archive, page):
    mine = archive["ids"][f"{NIGHT}/cam/mine.fits"]
    page.open(f"/?path={NIGHT}")
    page.settled()
    assert mine not in page.ids()
    assert "Anonymous" in page.find("#whoami").text
    page.find("#token-box summary").click()
    page.find("#token").send_keys(archive["tokens"]["alice"], Keys.ENTER)
    page.wait(lambda d: "alice" in page.find("#whoami").text)
    page.wait(lambda d: mine in page.ids())
    assert page.ids() == api_ids(archive, f"path={NIGHT}", {"Authorization": f"Bearer {archive['tokens']['alice']}"})
    page.find("#forget-token").click()
    page.wait(lambda d: "Anonymous" in page.find("#whoami").text)
    page.wait(lambda d: mine not in page.ids())
    assert page.console() == []


def test_the_facets_offer_what_exists_with_counts(archive, page):
    page.open("/")
    page.settled()
    page.wait(lambda d: len(page.driver.find_elements(By.CSS_SELECTOR, "select[name=instrument] option")) > 1)
    options = [o.text for o in page.driver.find_elements(By.CSS_SELECTOR, "select[name=instrument] option")]
    assert "Kast (1)" in options


def test_each_row_shows_its_preview(archive, page):
    page.open(f"/?path={OLD}/many&sort=path")
    page.settled()
    page.wait(lambda d: d.execute_script(
        "return [...document.querySelectorAll('td.preview img')].every(i => i.complete && i.naturalWidth > 0)"))
    images = page.driver.find_elements(By.CSS_SELECTOR, "tr[data-id] td.preview img")
    assert len(images) == 7
    assert images[0].get_attribute("src").endswith(f"/api/v1/files/{page.ids()[0]}/preview?size=96")
    assert page.console() == []


def _members(path) -> set[str]:
    with tarfile.open(path) as tar:
        return set(tar.getnames())


def test_download_selected_saves_one_tar_of_the_selected_files(archive, page):
    page.open(f"/?path={OLD}/many&sort=path")
    page.settled()
    first, third = page.ids()[0], page.ids()[2]
    for file_id in (first, third):
        page.find(f"tr[data-id='{file_id}'] input.select").click()
    assert page.find("#selected-count").text == "2 selected"
    button = page.driver.find_element(By.XPATH, "//button[normalize-space()='Download selected']")
    button.click()
    names = _members(page.downloaded("archive.tar"))
    paths = {v: k for k, v in archive["ids"].items()}
    assert {f"data/{paths[first]}", f"data/{paths[third]}"} <= names
    assert not {n for n in names if n.startswith("data/")} - {f"data/{paths[first]}", f"data/{paths[third]}"}
    page.find("#clear-selection").click()
    assert page.find("#selected-count").text == "0 selected"
    assert page.console() == []


def test_select_all_on_a_page_and_the_selection_survives_paging(archive, page):
    page.open(f"/?path={OLD}/many&sort=path&limit=3")
    page.settled()
    page.find("input.select-page").click()
    assert page.find("#selected-count").text == "3 selected"
    page.find("a[rel=next]").click()
    page.wait(lambda d: "cursor" in query_of(page))
    page.settled()
    page.find(f"tr[data-id='{page.ids()[0]}'] input.select").click()
    assert page.find("#selected-count").text == "4 selected"
    page.find("#clear-selection").click()


def test_download_all_beyond_the_tar_limit_says_so_and_the_script_fetches_everything(archive, page, tmp_path):
    page.open(f"/?path={OLD}/many")
    page.settled()
    page.find("#download-all").click()  # 7 files; this archive's tar holds 5
    page.wait(lambda d: "7 files are more than one download holds (5)" in page.find("#message").text)
    page.find("#download-script").click()
    script = page.downloaded("archive-download.sh")
    done = subprocess.run(["sh", str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    fetched = {str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*.fits")}
    assert fetched == {f"data/{OLD}/many/frame{n}.fits" for n in range(7)}
    assert (tmp_path / "data" / OLD / "many" / "frame3.fits").read_bytes() == \
        (archive["root"] / OLD / "many" / "frame3.fits").read_bytes()


def test_download_all_within_the_limit_and_a_tokens_download_selected(archive, page):
    page.open(f"/?path={OLD}/many&object=field 1")
    page.settled()
    page.find("#download-all").click()
    assert _members(page.downloaded("archive.tar")) >= {f"data/{OLD}/many/frame1.fits"}
    mine = archive["ids"][f"{NIGHT}/cam/mine.fits"]
    page.find("#token-box summary").click()
    page.find("#token").send_keys(archive["tokens"]["alice"], Keys.ENTER)
    page.open(f"/?path={NIGHT}")
    page.settled()
    page.find(f"tr[data-id='{mine}'] input.select").click()
    page.driver.find_element(By.XPATH, "//button[normalize-space()='Download selected']").click()
    assert f"data/{NIGHT}/cam/mine.fits" in _members(page.downloaded("archive.tar"))
    page.find("#clear-selection").click()
    assert page.console() == []


def test_add_calibrations_puts_them_into_the_selection_and_the_tar(archive, page):
    page.open(f"/?path={OLD}/many&sort=path")
    page.settled()
    science = page.ids()[0]
    page.find(f"tr[data-id='{science}'] input.select").click()
    page.driver.find_element(By.XPATH, "//button[normalize-space()='Add calibrations']").click()
    page.wait(lambda d: page.find("#selected-count").text == "3 selected")
    assert "Added 2 calibration frames" in page.find("#message").text
    page.driver.find_element(By.XPATH, "//button[normalize-space()='Download selected']").click()
    names = _members(page.downloaded("archive.tar"))
    assert {f"data/{p}" for p in CALIBRATIONS} <= names
    page.find("#clear-selection").click()
    assert page.console() == []


def test_the_sky_shows_the_pages_positions_and_a_click_highlights_the_row(archive, page):
    page.open(f"/?path={OLD}/many&sort=path")
    page.settled()
    points = page.driver.find_elements(By.CSS_SELECTOR, "#sky circle.point")
    assert sorted(int(p.get_attribute("data-id")) for p in points) == sorted(page.ids())
    rows = {r["id"]: r for r in archive["server"].get(f"/api/v1/files?path={OLD}/many").json()["results"]}
    west = max(points, key=lambda p: rows[int(p.get_attribute("data-id"))]["ra"])
    east = min(points, key=lambda p: rows[int(p.get_attribute("data-id"))]["ra"])
    assert float(west.get_attribute("cx")) < float(east.get_attribute("cx"))  # RA grows to the left
    west.click()
    chosen = west.get_attribute("data-id")
    assert "highlight" in page.find(f"tr[data-id='{chosen}']").get_attribute("class")
    page.screenshot("sky.png")
    assert page.console() == []
