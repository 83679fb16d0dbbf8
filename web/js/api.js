// Calls to the API: the caller's token (if one was pasted) as a Bearer header, errors as
// ApiError carrying the API's description, and what the API says it accepts.

const TOKEN_KEY = "archive-token";

export class ApiError extends Error {
  constructor(status, title, description) {
    super(description || title || `HTTP ${status}`);
    this.status = status;
    this.title = title;
    this.description = description || "";
  }

  // The parameter a 400 names: its description starts with "name:".
  get parameter() {
    const match = /^([a-z_]+):/.exec(this.description);
    return this.status === 400 && match ? match[1] : null;
  }
}

export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(value) {
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
}

function headers(extra = {}) {
  const t = token();
  return t ? { ...extra, Authorization: `Bearer ${t}` } : extra;
}

export async function request(path, options = {}) {
  let response;
  try {
    response = await fetch(path, { ...options, headers: headers(options.headers) });
  } catch (error) {
    throw new ApiError(0, "The archive cannot be reached", "The archive cannot be reached; try again.");
  }
  if (!response.ok) {
    let body = {};
    try { body = await response.json(); } catch (error) { /* not JSON: the status says enough */ }
    throw new ApiError(response.status, body.title, body.description);
  }
  return response;
}

export async function json(path, options) {
  return (await request(path, options)).json();
}

// A file fetched with the token and handed to the browser to save: a plain link cannot
// carry an Authorization header.
export async function save(path, name, options) {
  saveBlob(await (await request(path, options)).blob(), name);
}

export function saveBlob(blob, name) {
  const link = Object.assign(document.createElement("a"), { href: URL.createObjectURL(blob), download: name });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 60000);
}

// The search's parameters, fields and sort keys, from the OpenAPI document, so the page
// never lists them a second time.
export async function describe() {
  const doc = await json("/api/v1/openapi.json");
  const search = doc.paths["/api/v1/files"].get.parameters.filter((p) => p.in === "query");
  const facets = doc.paths["/api/v1/facets"].get.parameters.map((p) => p.name);
  const sort = search.find((p) => p.name === "sort").schema.enum.filter((s) => !s.startsWith("-"));
  const tar = doc.paths["/api/v1/download"].post.requestBody.content["application/json"].schema;
  return {
    maxLimit: search.find((p) => p.name === "limit").schema.maximum,
    tarFiles: tar.properties.ids.maxItems,
    tarBytes: tar["x-max-bytes"],
    parameters: new Set(search.map((p) => p.name)),
    filters: new Set(facets),
    fields: Object.keys(doc.components.schemas.File.properties),
    sorts: new Set(sort),
  };
}
