// berth console: live fragments over server-sent events, and forms that
// act without leaving the page. Pages work without it (forms post and
// come back; a reload shows the news).
"use strict";

(function () {
  const status = () => document.getElementById("status");

  // Each `data-fragment` element is replaced by the server's rendering of
  // it when the event of its id arrives. The HTML is the server's, with
  // every value escaped there.
  const live = document.body.dataset.live;
  if (live && window.EventSource) {
    const source = new EventSource(live);
    document.querySelectorAll("[data-fragment]").forEach((region) => {
      source.addEventListener(region.id, (event) => {
        region.innerHTML = event.data;
      });
    });
    // The page cannot be read any more (session ended, service gone):
    // reloading shows why, or the login form.
    source.addEventListener("gone", () => window.location.reload());
  }

  // A log tail: each `lines` event is the server's HTML of new lines,
  // escaped there, appended below the others. The view follows the end
  // unless it was scrolled up; the oldest lines go past a limit.
  const MAX_LOG_LINES = 1000;
  document.querySelectorAll("[data-stream]").forEach((log) => {
    log.scrollTop = log.scrollHeight;
    if (!window.EventSource) {
      return;
    }
    const source = new EventSource(log.dataset.stream);
    source.addEventListener("lines", (event) => {
      const atEnd = log.scrollHeight - log.scrollTop - log.clientHeight < 8;
      log.querySelectorAll("[data-empty]").forEach((e) => e.remove());
      log.insertAdjacentHTML("beforeend", event.data);
      while (log.childElementCount > MAX_LOG_LINES) {
        log.firstElementChild.remove();
      }
      if (atEnd) {
        log.scrollTop = log.scrollHeight;
      }
    });
  });

  // Actions post in the background and report in the status line; the
  // live updates show their effect.
  document.addEventListener("submit", async (event) => {
    const form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.hasAttribute("data-action")) {
      return;
    }
    event.preventDefault();
    const buttons = form.querySelectorAll("button");
    buttons.forEach((b) => { b.disabled = true; });
    try {
      const answer = await fetch(form.action, {
        method: "POST",
        headers: { "x-berth-console": "fetch" },
        body: new URLSearchParams(new FormData(form)),
        credentials: "same-origin",
      });
      const text = await answer.text();
      status().textContent = answer.ok ? text : "Refused (" + answer.status + "): " + text;
      status().className = answer.ok ? "" : "error";
    } catch (e) {
      status().textContent = "The master did not answer: " + e;
      status().className = "error";
    } finally {
      buttons.forEach((b) => { b.disabled = false; });
    }
  });
})();
