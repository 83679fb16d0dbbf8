// The page: the URL's query string is the search (the API's own parameter names); every
// search, sort, column change and page is a history entry, so searches can be bookmarked
// and mailed and the back button works.

import { ApiError, describe, json, save, token } from "./api.js";
import * as auth from "./auth.js";
import * as form from "./form.js";
import * as header from "./header.js";
import * as preview from "./preview.js";
import * as results from "./results.js";

const $ = (selector) => document.querySelector(selector);
const searchForm = $("#search");
const table = $("#table");
const loading = $("#loading");
const message = $("#message");
let api;

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
  td.className = "actions";
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

const extra = { headings: { before: ["preview"], after: [""] },
  cells: (row) => ({ before: [preview.cell(row)], after: [actions(row)] }) };

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
  try {
    const page = await json(`/api/v1/files?${params}`);
    const sort = params.get("sort") || "obs_start";
    results.render(table, page, { columns, sorts: api.sorts, sort, extra, onSort: (next) => {
      params.set("sort", next);
      params.delete("cursor");
      go(params);
    } });
    results.showCount($("#count"), page);
    if (!page.results.length) say("No files match this search. Widen it: fewer fields, a larger radius, a longer time.");
    const next = results.nextQuery(page);
    $("#next").hidden = !next;
    $("#next").href = next ? `/?${next}` : "";
    $("#previous").hidden = !params.has("cursor");
  } catch (error) {
    if (!(error instanceof ApiError)) throw error;
    table.tBodies[0].replaceChildren();
    $("#count").textContent = "";
    $("#next").hidden = true;
    if (!form.showError(searchForm, error)) say(error.message);
  } finally {
    loading.hidden = true;
    table.removeAttribute("aria-busy");
  }
}

async function start() {
  api = await describe();
  auth.setUp($("#token-form"), $("#forget-token"), async () => {
    await auth.showWho($("#whoami"));
    $("#forget-token").hidden = !token();
    run();
  });
  header.setUp($("#header-view"));
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
