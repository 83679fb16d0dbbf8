// A file's FITS header as its 80-column cards, in a dialog, with a filter over the cards.

import { request } from "./api.js";

let cards = [];

function show(dialog) {
  const find = dialog.querySelector("#header-find").value.trim().toLowerCase();
  dialog.querySelector("#header-text").textContent =
    (find ? cards.filter((c) => c.toLowerCase().includes(find)) : cards).join("\n");
}

export function setUp(dialog) {
  dialog.querySelector("#header-find").addEventListener("input", () => show(dialog));
}

export async function open(dialog, id, name) {
  const text = await (await request(`/api/v1/files/${id}/header`)).text();
  cards = text.replace(/\n$/, "").split("\n");
  dialog.querySelector("#header-title").textContent = name;
  dialog.querySelector("#header-find").value = "";
  show(dialog);
  dialog.showModal();
}
