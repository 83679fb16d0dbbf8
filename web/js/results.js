// The results table: one <tr data-id> per file, the count as text, sortable column heads,
// the column chooser (the API's `fields`) and the next-page link.

export const DEFAULT_COLUMNS = ["path", "object", "obs_start", "instrument", "telescope", "frame_type",
  "filter", "exptime"];
const LABELS = { obs_start: "start (UTC)", obs_end: "end (UTC)", frame_type: "frame", exptime: "exp (s)",
  public_date: "public from", ra: "RA (°)", dec: "Dec (°)" };

export function columnsOf(params) {
  const fields = params.get("fields");
  if (!fields) return DEFAULT_COLUMNS;
  return [...new Set(fields.split(",").map((f) => f.trim()).filter((f) => f && f !== "id"))];
}

function cell(value, column) {
  const td = document.createElement("td");
  if (value === null || value === undefined) return td;
  if ((column === "ra" || column === "dec") && typeof value === "number") td.textContent = value.toFixed(5);
  else if (column === "size") td.textContent = `${(value / 2 ** 20).toFixed(1)} MiB`;
  else td.textContent = String(value);
  td.className = `c-${column}`;
  return td;
}

function heading(column, sorts, sort, onSort) {
  const th = document.createElement("th");
  th.scope = "col";
  const label = LABELS[column] || column.replace("_", " ");
  if (!sorts.has(column)) {
    th.textContent = label;
    return th;
  }
  const current = sort.replace(/^-/, "");
  const descending = sort.startsWith("-");
  const button = document.createElement("button");
  button.type = "button";
  button.className = "sort";
  button.dataset.sort = column;
  button.textContent = label + (current === column ? (descending ? " ▼" : " ▲") : "");
  if (current === column) th.setAttribute("aria-sort", descending ? "descending" : "ascending");
  button.addEventListener("click", () => onSort(current === column && !descending ? `-${column}` : column));
  th.append(button);
  return th;
}

// `extra` adds cells of other parts (selection, preview, actions) to each row: a function
// (row) -> {before: [td], after: [td]}.
export function render(table, page, { columns, sorts, sort, onSort, extra }) {
  const head = table.tHead.rows[0];
  const th = (content) => {
    const cell = document.createElement("th");
    cell.append(content);
    return cell;
  };
  const leading = extra.headings.before.map(th);
  const trailing = extra.headings.after.map(th);
  head.replaceChildren(...leading, ...columns.map((c) => heading(c, sorts, sort, onSort)), ...trailing);
  const body = table.tBodies[0];
  body.replaceChildren(...page.results.map((row) => {
    const tr = document.createElement("tr");
    tr.dataset.id = row.id;
    const { before, after } = extra.cells(row);
    tr.append(...before, ...columns.map((c) => cell(row[c], c)), ...after);
    return tr;
  }));
}

// A broad search's count is the API's estimate (count_exact false), and says so.
export function showCount(element, page) {
  const n = page.count;
  const about = page.count_exact === false ? "about " : "";
  element.textContent = n === 1 ? "1 file" : `${about}${n.toLocaleString("en")} files`;
}

// The next page's query string (the API's own link may name another host behind a proxy:
// only its query is followed, on this origin).
export function nextQuery(page) {
  return page.next ? new URL(page.next, location.href).search.slice(1) : null;
}

export function chooser(container, fields, columns, onChange) {
  container.replaceChildren(...fields.filter((f) => f !== "id").map((field) => {
    const label = document.createElement("label");
    const box = Object.assign(document.createElement("input"), { type: "checkbox", value: field,
      checked: columns.includes(field) });
    box.addEventListener("change", () => {
      const chosen = [...container.querySelectorAll("input:checked")].map((b) => b.value);
      onChange(chosen.length ? chosen : columns);
    });
    label.append(box, ` ${LABELS[field] || field}`);
    return label;
  }));
}
