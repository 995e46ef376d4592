// The login step: the key goes once in the X-API-Key header of POST /login, whose answer sets an
// HttpOnly session cookie; the chart page and its live stream then send only that cookie.
"use strict";

document.getElementById("login").addEventListener("submit", async (event) => {
  event.preventDefault();
  const messages = document.getElementById("messages");
  messages.replaceChildren();
  const response = await fetch("/login", { method: "POST", headers: { "X-API-Key": document.getElementById("key").value } })
    .catch(() => null);
  if (response && response.ok) {
    window.location.assign("/");
    return;
  }
  const body = response ? await response.json().catch(() => null) : null;
  const item = document.createElement("li");
  item.className = "error";
  item.textContent = body && body.error ? body.error : "the API cannot be reached";
  messages.append(item);
});
