// Selected files (kept for this tab across pages and sorts), and downloads: the selection or
// every result as one tar (POST /api/v1/download), or a shell script of curl lines for
// result sets larger than one tar may be.

import { ApiError, json, save, token } from "./api.js";

const KEY = "archive-selection";
const chosen = new Set(JSON.parse(sessionStorage.getItem(KEY) || "[]"));
let onChange = () => {};

function changed() {
  sessionStorage.setItem(KEY, JSON.stringify([...chosen]));
  onChange(chosen.size);
}

export function setUp(listener) {
  onChange = listener;
  changed();
}

export function ids() {
  return [...chosen];
}

export function add(more) {
  for (const id of more) chosen.add(id);
  for (const box of document.querySelectorAll("input.select")) box.checked = chosen.has(Number(box.value));
  changed();
}

export function clear() {
  chosen.clear();
  for (const box of document.querySelectorAll("input.select, input.select-page")) box.checked = false;
  changed();
}

export function cell(row) {
  const td = document.createElement("td");
  const box = Object.assign(document.createElement("input"), { type: "checkbox", className: "select",
    value: row.id, checked: chosen.has(row.id), title: `select ${row.path || row.id}` });
  box.setAttribute("aria-label", `select ${row.path || row.id}`);
  box.addEventListener("change", () => {
    if (box.checked) chosen.add(row.id); else chosen.delete(row.id);
    changed();
  });
  td.append(box);
  return td;
}

// The "select all on this page" box, for the table's head.
export function pageBox(table) {
  const box = Object.assign(document.createElement("input"), { type: "checkbox", className: "select-page",
    title: "select all on this page" });
  box.setAttribute("aria-label", "select all on this page");
  box.addEventListener("change", () => {
    for (const row of table.querySelectorAll("input.select")) {
      row.checked = box.checked;
      if (box.checked) chosen.add(Number(row.value)); else chosen.delete(Number(row.value));
    }
    changed();
  });
  return box;
}

// The calibration frames of the selected files (bias, dark, flat, arc of their instrument
// and nights), added to the selection; how many were new.
export async function addCalibrations(most) {
  const before = chosen.size;
  const list = ids();
  for (let start = 0; start < list.length; start += most) {
    const found = await json(`/api/v1/calibrations?ids=${list.slice(start, start + most).join(",")}`);
    add(found.results.map((row) => row.id));
  }
  return chosen.size - before;
}

// One tar of `list`: a plain form post when the browser's own credentials do (the browser
// saves the attachment as it comes, whatever its size), else fetched with the token. The
// form answers into a hidden frame: a refusal (a 400 naming what was over a limit) lands
// there and is handed to `onError` instead of replacing the page.
export async function downloadTar(list, onError) {
  if (token()) {
    await save("/api/v1/download", "archive.tar", { method: "POST", body: JSON.stringify({ ids: list }),
      headers: { "Content-Type": "application/json" } });
    return;
  }
  const frame = document.querySelector("#download-frame");
  frame.onload = () => {
    let answer = {};
    try { answer = JSON.parse(frame.contentDocument.body.textContent); } catch (error) { return; }
    onError(new ApiError(400, answer.title, answer.description));
  };
  const form = Object.assign(document.createElement("form"), { method: "post", action: "/api/v1/download",
    target: frame.name });
  form.hidden = true;
  for (const id of list) form.append(Object.assign(document.createElement("input"), { name: "ids", value: id }));
  document.body.append(form);
  form.submit();
  form.remove();
}

// Every result of a search, `fields` only, page by page through the `next` links; null
// when there are more than `most`.
export async function everything(params, fields, most, pageSize) {
  const query = new URLSearchParams(params);
  query.delete("cursor");
  query.set("fields", fields);
  query.set("limit", pageSize);
  let page = await json(`/api/v1/files?${query}`);
  if (page.count > most) return { count: page.count, rows: null };
  const rows = [...page.results];
  while (page.next) {
    page = await json(`/api/v1/files${new URL(page.next, location.href).search}`);
    rows.push(...page.results);
  }
  return { count: page.count, rows };
}

const quoted = (text) => `'${String(text).replaceAll("'", "'\\''")}'`;

// A POSIX shell script fetching each file with curl; the caller's credentials are theirs
// to give (ARCHIVE_TOKEN), never written into it.
export function script(rows, search) {
  const lines = [
    "#!/bin/sh",
    `# ${rows.length} files of the archive search ${location.origin}/?${search}`,
    `# made ${new Date().toISOString()}. Run it in the directory the files should go to:`,
    "#   sh archive-download.sh                          (public files)",
    "#   ARCHIVE_TOKEN=<your token> sh archive-download.sh   (your proprietary files too)",
    "# Files already there are skipped, so it can be run again after an interruption.",
    "set -eu",
    `base=${quoted(location.origin)}`,
    "fetch() {",
    "    [ -e \"$2\" ] && return 0",
    "    mkdir -p \"$(dirname \"$2\")\"",
    "    if [ -n \"${ARCHIVE_TOKEN:-}\" ]; then",
    "        curl -fsS --retry 3 -H \"Authorization: Bearer $ARCHIVE_TOKEN\" -o \"$2.part\" \"$base/api/v1/files/$1/download\"",
    "    else",
    "        curl -fsS --retry 3 -o \"$2.part\" \"$base/api/v1/files/$1/download\"",
    "    fi",
    "    mv \"$2.part\" \"$2\"",
    "}",
    ...rows.map((row) => `fetch ${Number(row.id)} ${quoted(`${row.root}/${row.path}`)}`),
    "",
  ];
  return new Blob([lines.join("\n")], { type: "text/x-shellscript" });
}
