// The page: the URL's query string is the search (the API's own parameter names); every
// search, sort, column change and page is a history entry, so searches can be bookmarked
// and mailed and the back button works.

import { ApiError, describe, json, save, saveBlob, token } from "./api.js";
import * as auth from "./auth.js";
import * as form from "./form.js";
import * as header from "./header.js";
import * as preview from "./preview.js";
import * as results from "./results.js";
import * as selection from "./selection.js";
import * as sky from "./sky.js";

const $ = (selector) => document.querySelector(selector);
const searchForm = $("#search");
const table = $("#table");
const loading = $("#loading");
const message = $("#message");
let api;
let searches = 0; // a search answered after a newer one began is dropped

// The URL's parameters the API takes, without empty ones (it refuses both).
function current() {
  return new URLSearchParams([...new URLSearchParams(location.search)]
    .filter(([name, value]) => api.parameters.has(name) && value.trim()));
}

function go(params) {
  history.pushState(null, "", `/?${params}`);
  run();
}

function say(text) {
  message.textContent = text;
  message.hidden = !text;
}

function actions(row) {
  const td = document.createElement("td");
  td.className = "row-actions";
  const name = row.path ? row.path.split("/").pop() : `file ${row.id}`;
  const download = Object.assign(document.createElement("a"), {
    href: `/api/v1/files/${row.id}/download`, textContent: "Download", className: "download" });
  download.addEventListener("click", (event) => {
    if (!token()) return; // a plain link, with Apache's login if there is one
    event.preventDefault();
    save(download.href, name).catch((error) => say(error.message));
  });
  const view = Object.assign(document.createElement("button"), { type: "button", textContent: "Header",
    className: "header" });
  view.addEventListener("click", () => header.open($("#header-view"), row.id, row.path || name)
    .catch((error) => say(error.message)));
  td.append(download, " ", view);
  return td;
}

const pageBox = selection.pageBox(table);
const extra = { headings: { before: [pageBox, "preview"], after: [""] },
  cells: (row) => ({ before: [selection.cell(row), preview.cell(row)], after: [actions(row)] }) };

async function run() {
  const params = current();
  if (`?${params}` !== location.search && location.search) history.replaceState(null, "", `/?${params}`);
  form.fill(searchForm, params);
  form.clearErrors(searchForm);
  say("");
  form.loadFacets(searchForm, params, api.filters);
  const columns = results.columnsOf(params);
  results.chooser($("#column-choices"), api.fields, columns, (chosen) => {
    params.set("fields", chosen.join(","));
    go(params);
  });
  loading.hidden = false;
  table.setAttribute("aria-busy", "true");
  const mine = ++searches;
  try {
    const page = await json(`/api/v1/files?${params}`);
    if (mine !== searches) return;
    const sort = params.get("sort") || "obs_start";
    results.render(table, page, { columns, sorts: api.sorts, sort, extra, onSort: (next) => {
      params.set("sort", next);
      params.delete("cursor");
      go(params);
    } });
    results.showCount($("#count"), page);
    sky.draw($("#sky"), page.results, table);
    pageBox.checked = page.results.length > 0 && page.results.every((row) => selection.ids().includes(row.id));
    if (!page.results.length) say("No files match this search. Widen it: fewer fields, a larger radius, a longer time.");
    const next = results.nextQuery(page);
    $("#next").hidden = !next;
    $("#next").href = next ? `/?${next}` : "";
    $("#previous").hidden = !params.has("cursor");
  } catch (error) {
    if (!(error instanceof ApiError)) throw error;
    if (mine !== searches) return;
    table.tBodies[0].replaceChildren();
    $("#count").textContent = "";
    $("#next").hidden = true;
    if (!form.showError(searchForm, error)) say(error.message);
  } finally {
    if (mine === searches) {
      loading.hidden = true;
      table.removeAttribute("aria-busy");
    }
  }
}

async function busy(work) {
  loading.hidden = false;
  say("");
  try {
    await work();
  } catch (error) {
    if (!(error instanceof ApiError)) throw error;
    say(error.message);
  } finally {
    loading.hidden = true;
  }
}

// Every result (id, root, path, size), or a message when there are more than `most`.
async function allResults(most, what, advice) {
  const { count, rows } = await selection.everything(current(), "id,root,path,size", most, api.maxLimit);
  if (rows === null) say(`${count.toLocaleString("en")} files are more than ${what} (${most.toLocaleString("en")}): ${advice}.`);
  return rows;
}

function setUpDownloads() {
  selection.setUp((n) => {
    $("#selected-count").textContent = `${n} selected`;
    for (const id of ["#download-selected", "#clear-selection", "#add-calibrations"]) $(id).disabled = n === 0;
  });
  $("#clear-selection").addEventListener("click", selection.clear);
  $("#add-calibrations").addEventListener("click", () => busy(async () => {
    const added = await selection.addCalibrations(api.maxLimit);
    say(added ? `Added ${added} calibration frame${added === 1 ? "" : "s"} to the selection.`
      : "No calibration frames beyond those selected: none of their instrument and nights.");
  }));
  $("#download-selected").addEventListener("click", () => busy(async () => {
    const ids = selection.ids();
    if (ids.length > api.tarFiles) {
      say(`${ids.length} files are selected; one download holds at most ${api.tarFiles}. Use "Download script".`);
      return;
    }
    await selection.downloadTar(ids, (error) => say(error.message));
  }));
  $("#download-all").addEventListener("click", () => busy(async () => {
    const rows = await allResults(api.tarFiles, "one download holds", 'narrow the search, or use "Download script"');
    if (!rows) return;
    const bytes = rows.reduce((sum, row) => sum + row.size, 0);
    if (bytes > api.tarBytes) {
      say(`These files come to ${(bytes / 2 ** 30).toFixed(1)} GiB, more than one download holds ` +
        `(${(api.tarBytes / 2 ** 30).toFixed(1)} GiB): narrow the search, or use "Download script".`);
      return;
    }
    await selection.downloadTar(rows.map((r) => r.id), (error) => say(error.message));
  }));
  $("#download-script").addEventListener("click", () => busy(async () => {
    const rows = await allResults(100000, "a script lists", "narrow the search");
    if (rows) saveBlob(selection.script(rows, current()), "archive-download.sh");
  }));
}

async function start() {
  api = await describe();
  auth.setUp($("#token-form"), $("#forget-token"), async () => {
    await auth.showWho($("#whoami"));
    $("#forget-token").hidden = !token();
    run();
  });
  header.setUp($("#header-view"));
  setUpDownloads();
  searchForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const params = form.read(searchForm);
    for (const kept of ["sort", "fields"]) if (current().has(kept)) params.set(kept, current().get(kept));
    go(params);
  });
  $("#next").addEventListener("click", (event) => {
    event.preventDefault();
    go(new URLSearchParams($("#next").search));
  });
  $("#previous").addEventListener("click", () => history.back());
  window.addEventListener("popstate", run);
  await auth.showWho($("#whoami"));
  await run();
}

start().catch((error) => say(`The page could not start: ${error.message}`));
