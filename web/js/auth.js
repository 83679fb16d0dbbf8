// Who the archive takes the page for: the user Apache logged in, a pasted token (kept in
// this tab's sessionStorage, sent as a Bearer header), or nobody (public files only).

import { json, setToken, token } from "./api.js";

export async function showWho(element) {
  try {
    const me = await json("/api/v1/whoami");
    element.textContent = me.user
      ? `Signed in as ${me.user}${me.by === "token" ? " (token)" : ""}: public files and your programs'`
      : "Anonymous: public files only";
    return true;
  } catch (error) {
    if (error.status !== 401) throw error;
    setToken(null);
    element.textContent = "That token was refused (unknown or revoked): anonymous, public files only";
    return false;
  }
}

export function setUp(form, forget, onChange) {
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const input = form.querySelector("#token");
    setToken(input.value.trim());
    input.value = "";
    onChange();
  });
  forget.addEventListener("click", () => { setToken(null); onChange(); });
  forget.hidden = !token();
}
