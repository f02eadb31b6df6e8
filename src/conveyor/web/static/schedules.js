/* Conveyor dashboard: the schedules pages.
 *
 * Every next fire (<time class="fire" datetime=… data-zone=…>) is written by the server
 * relative, in UTC and in the schedule's zone; this adds the viewer's own zone when it is
 * another. The schedule form shows the inputs of the chosen trigger kind only, and refreshes
 * its preview of the next fires as the user types: the form is posted to data-preview-url
 * (which stores nothing) and the server's rendered fragment swapped in, parsed with
 * DOMParser, which runs no script. Without this script the form still works: its "Preview"
 * button asks the server for the same list.
 */
(function () {
  "use strict";

  var PREVIEW_DELAY_MS = 350;

  function pad2(n) { return (n < 10 ? "0" : "") + n; }

  function viewerZone() {
    try { return Intl.DateTimeFormat().resolvedOptions().timeZone || ""; } catch (e) { return ""; }
  }

  /* The parts of a moment on the clock of zone: {date: "2026-12-05", clock: "15:05"}. */
  function onClock(moment, zone) {
    var parts = {};
    new Intl.DateTimeFormat("en-CA", {
      timeZone: zone, year: "numeric", month: "2-digit", day: "2-digit",
      hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23"
    }).formatToParts(moment).forEach(function (p) { parts[p.type] = p.value; });
    var clock = parts.hour + ":" + parts.minute + (parts.second !== "00" ? ":" + parts.second : "");
    return { date: parts.year + "-" + parts.month + "-" + parts.day, clock: clock };
  }

  /* As formatting.format_clock: the date only when it is not today on that clock. */
  function clockText(moment, zone) {
    var at = onClock(moment, zone);
    var today = onClock(new Date(), zone);
    return (at.date !== today.date ? at.date + " " : "") + at.clock + " " + zone;
  }

  function addViewerZone(root) {
    var zone = viewerZone();
    if (!zone || zone === "UTC" || zone === "Etc/UTC") { return; }
    root.querySelectorAll("time.fire[datetime]").forEach(function (el) {
      if (el.dataset.zone === zone || el.dataset.viewer) { return; }
      var moment = new Date(el.getAttribute("datetime"));
      if (isNaN(moment.getTime())) { return; }
      el.dataset.viewer = zone;
      el.textContent = el.textContent + " · " + clockText(moment, zone);
    });
  }

  function initForm() {
    var form = document.getElementById("schedule-form");
    var chooser = document.getElementById("choose-task");
    if (chooser) {
      chooser.querySelector("select").addEventListener("change", function () { chooser.submit(); });
    }
    if (!form) { return; }
    var kind = form.querySelector("select[name=kind]");
    var preview = document.getElementById("preview");
    function showKind() {
      form.querySelectorAll("label[data-kind]").forEach(function (label) {
        label.hidden = label.dataset.kind !== kind.value;
      });
    }
    kind.addEventListener("change", showKind);
    showKind();

    var timer = null;
    var latest = 0;
    function refresh() {
      // URL-encoded, as the form posts itself (the CSRF check reads a multipart body's token
      // from the query string, for uploads).
      var body = new URLSearchParams(new FormData(form));
      body.set("op", "preview");
      var mine = ++latest;
      fetch(form.dataset.previewUrl, { method: "POST", body: body, headers: { Accept: "text/html" } })
        .then(function (resp) { return resp.text(); })
        .then(function (html) {
          if (mine !== latest) { return; }  // an older answer: a newer one is on its way
          var fresh = new DOMParser().parseFromString(html, "text/html").body;
          preview.replaceChildren.apply(preview, Array.prototype.slice.call(fresh.childNodes));
          addViewerZone(preview);
        })
        .catch(function () { /* the next keystroke tries again */ });
    }
    function later() {
      if (timer) { clearTimeout(timer); }
      timer = setTimeout(refresh, PREVIEW_DELAY_MS);
    }
    form.querySelectorAll(".trigger input, .trigger select, input[name=start_at], input[name=end_at]")
      .forEach(function (el) {
        el.addEventListener("input", later);
        el.addEventListener("change", later);
      });
  }

  addViewerZone(document);
  initForm();
})();
