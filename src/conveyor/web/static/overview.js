/* Conveyor overview: refresh the page's figures every few seconds without a reload.
 *
 * Fetches this same URL and swaps in its [data-live-region]; the server renders (and
 * escapes) it exactly as on a first load, so nothing job-supplied is ever built here.
 * Pauses while the tab is hidden and backs off while the server is unreachable.
 */
(function () {
  "use strict";

  var region = document.querySelector("[data-live-region]");
  if (!region || !window.fetch || !window.DOMParser) { return; }
  var interval = Number(region.getAttribute("data-refresh-ms")) || 5000;
  var delay = interval;
  var timer = null;

  function schedule() {
    if (timer) { clearTimeout(timer); }
    timer = setTimeout(refresh, delay);
  }

  function refresh() {
    timer = null;
    if (document.hidden) { return; }
    fetch(window.location.href, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (response) {
        if (!response.ok || response.redirected) { throw new Error("status " + response.status); }
        return response.text();
      })
      .then(function (html) {
        var fresh = new DOMParser().parseFromString(html, "text/html").querySelector("[data-live-region]");
        var current = document.querySelector("[data-live-region]");
        if (fresh && current) {
          current.replaceWith(document.importNode(fresh, true));
          document.body.setAttribute("data-refreshed-at", String(Date.now()));
        }
        delay = interval;
      })
      .catch(function () { delay = Math.min(delay * 2, 60000); })
      .then(schedule);
  }

  document.addEventListener("visibilitychange", function () {
    if (!document.hidden) { delay = interval; refresh(); }
  });
  schedule();
})();
