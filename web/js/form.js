// The search form: filled from the URL, read back into API parameters, the facet choices,
// and a 400's description shown beside the field it names.

import { json } from "./api.js";

export function fill(form, params) {
  for (const element of form.elements) {
    if (!element.name) continue;
    const value = params.get(element.name) ?? "";
    if (element.tagName === "SELECT" && value && ![...element.options].some((o) => o.value === value)) {
      element.add(new Option(value, value));
    }
    element.value = value;
  }
}

// The form's non-empty fields, as the API names them.
export function read(form) {
  const params = new URLSearchParams();
  for (const [name, value] of new FormData(form)) {
    if (String(value).trim()) params.set(name, String(value).trim());
  }
  return params;
}

export function clearErrors(form) {
  for (const span of form.querySelectorAll(".error")) span.textContent = "";
  for (const element of form.querySelectorAll("[aria-invalid]")) element.removeAttribute("aria-invalid");
}

// Shows the error beside its field; false when no field of the form is the one it names.
export function showError(form, error) {
  const name = error.parameter;
  const span = name && form.querySelector(`.error[data-for="${name}"]`);
  if (!span) return false;
  span.textContent = error.description.slice(name.length + 1).trim();
  const field = form.elements.namedItem(name);
  field.setAttribute("aria-invalid", "true");
  field.focus();
  return true;
}

// Offers the values that exist among the files the caller may see, with their counts.
export async function loadFacets(form, params, filters) {
  const query = new URLSearchParams([...params].filter(([name]) => filters.has(name)));
  let facets;
  try {
    facets = await json(`/api/v1/facets?${query}`);
  } catch (error) {
    return; // the search itself reports what is wrong
  }
  for (const select of form.querySelectorAll("select[data-facet]")) {
    const chosen = params.get(select.name) ?? "";
    const values = facets[select.name] || [];
    select.replaceChildren(new Option("any", ""));
    for (const { value, count, count_exact } of values) {
      select.add(new Option(`${value} (${count_exact === false ? "~" : ""}${count})`, value));
    }
    if (chosen && !values.some((v) => v.value.toLowerCase() === chosen.toLowerCase())) {
      select.add(new Option(chosen, chosen));
    }
    const match = [...select.options].find((o) => o.value.toLowerCase() === chosen.toLowerCase());
    select.value = match ? match.value : "";
  }
}
