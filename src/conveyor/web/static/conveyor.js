/* Conveyor dashboard: live updates for the server-rendered pages.
 *
 * Jobs list: polls one small JSON endpoint (data-live-url) each second for the visible jobs
 *   that have not ended; one request per page however many rows, which stays within the
 *   browser's per-host connection limit (twenty EventSource streams would not).
 * Job page: follows the job over Server-Sent Events (data-events-url); if the stream cannot
 *   be opened it falls back to polling. Progress is drawn here; when the job's state or attempt
 *   changes, the parts of the page that follow from it (state, buttons, worker and times,
 *   error and result, the attempts table) are fetched as server-rendered HTML
 *   (data-parts-url) and swapped in, up to the final outcome, without a reload.
 *
 * Workflow page: polls its server-rendered parts (graph included) while the workflow runs,
 *   every second (a large graph less often; an unchanged one answers 304), and swaps in the
 *   parts that changed, the same way. The workflows list polls its rows the same way, every
 *   two seconds, while they can change (its first page, or a page with one running).
 *
 * Job data is written with textContent, never innerHTML: it is untrusted. The swapped parts
 * are the server's own escaped templates, parsed with DOMParser (which runs no script).
 * formatDuration and formatRate mirror conveyor/web/formatting.py.
 */
(function () {
  "use strict";

  var TERMINAL = ["succeeded", "failed", "cancelled", "dead"];
  var ACTIVE_BAR = ["running", "retrying"];
  var LIST_INTERVAL_MS = 1000;
  var COUNTS_INTERVAL_MS = 10000;
  var JOB_POLL_MS = 2000;
  var WORKFLOW_POLL_MS = 1000;
  var WORKFLOWS_LIST_POLL_MS = 2000;

  function isTerminal(state) { return TERMINAL.indexOf(state) >= 0; }
  function num(value) {
    if (value === undefined || value === null || value === "") { return null; }
    var n = Number(value);
    return isFinite(n) ? n : null;
  }
  function pad2(n) { return (n < 10 ? "0" : "") + n; }

  function formatDuration(seconds) {
    if (seconds === null || seconds === undefined || isNaN(seconds)) { return "—"; }
    seconds = Math.max(0, seconds);
    if (seconds < 0.9995) { return Math.round(seconds * 1000) + " ms"; }
    if (seconds < 59.95) { return seconds.toFixed(1) + " s"; }
    var whole = Math.round(seconds);
    if (whole < 3600) { return Math.floor(whole / 60) + "m " + pad2(whole % 60) + "s"; }
    if (whole < 86400) {
      return Math.floor(whole / 3600) + "h " + pad2(Math.floor((whole % 3600) / 60)) + "m";
    }
    return Math.floor(whole / 86400) + "d " + pad2(Math.floor((whole % 86400) / 3600)) + "h";
  }

  function formatRate(perSecond) {
    if (perSecond === null || perSecond === undefined || !(perSecond > 0)) { return null; }
    if (perSecond < 0.1) { return (perSecond * 60).toFixed(1) + "/min"; }
    if (perSecond < 10) { return perSecond.toFixed(2) + "/s"; }
    return Math.round(perSecond).toLocaleString("en-US") + "/s";
  }

  function formatNumber(value) {
    if (value === null || value === undefined) { return "—"; }
    if (Number.isInteger(value)) { return value.toLocaleString("en-US"); }
    return String(Math.round(value * 100) / 100);
  }

  function setText(el, text) {
    if (el && el.textContent !== text) { el.textContent = text; }
  }

  /* Every badge marked data-field="state" inside root shows the new state. */
  function setState(root, state) {
    root.querySelectorAll('[data-field="state"]').forEach(function (badge) {
      badge.className = "badge state-" + state;
      setText(badge, state);
    });
  }

  /* Replace each part of root marked data-live-region with the same part of a fresh
   * server rendering (html); returns the data attributes of that rendering's wrapper. */
  function swapRegions(root, html, wrapperSelector) {
    var fresh = new DOMParser().parseFromString(html, "text/html");
    fresh.querySelectorAll("[data-live-region]").forEach(function (part) {
      var old = root.querySelector('[data-live-region="' + part.dataset.liveRegion + '"]');
      // Unchanged parts stay, so an opened traceback or a focused button is left alone.
      if (old && old.outerHTML !== part.outerHTML) { old.replaceWith(document.importNode(part, true)); }
    });
    var wrapper = fresh.querySelector(wrapperSelector);
    return wrapper ? wrapper.dataset : null;
  }

  function getJSON(url) {
    return fetch(url, { headers: { Accept: "application/json" }, cache: "no-store" })
      .then(function (resp) {
        if (!resp.ok) { throw new Error("HTTP " + resp.status); }
        return resp.json();
      });
  }

  /* ---------------------------------------------------------------- jobs list */

  function updateRowProgress(cell, job) {
    if (!cell) { return; }
    if (ACTIVE_BAR.indexOf(job.state) < 0) {
      if (cell.firstChild) { cell.replaceChildren(); }
      return;
    }
    var bar = cell.querySelector("progress");
    var label = cell.querySelector(".progress-label");
    if (!bar) {
      bar = document.createElement("progress");
      bar.max = 100;
      bar.setAttribute("aria-label", "progress");
      label = document.createElement("span");
      label.className = "progress-label";
      cell.replaceChildren(bar, label);
    }
    var p = job.progress;
    if (p && p.percent !== null) {
      bar.value = p.percent;
      setText(label, Math.round(p.percent) + "%");
    } else {
      bar.removeAttribute("value");
      setText(label, p ? p.count : "");
    }
  }

  function updateRow(row, job) {
    row.dataset.state = job.state;
    setState(row, job.state);
    setText(row.querySelector('[data-field="attempt"]'), String(job.attempt));
    setText(row.querySelector('[data-field="duration"]'), job.duration);
    updateRowProgress(row.querySelector('[data-field="progress"]'), job);
    var hint = row.querySelector(".hint");
    if (hint && (job.terminal || !job.cancel_requested)) { hint.remove(); }
  }

  function updateCounts(counts) {
    var total = 0;
    Object.keys(counts).forEach(function (state) {
      total += counts[state];
      setText(document.querySelector('[data-count="' + state + '"]'), formatNumber(counts[state]));
    });
    setText(document.querySelector('[data-count="all"]'), formatNumber(total));
  }

  function initJobsList() {
    var table = document.querySelector("table.jobs[data-live-url]");
    if (!table) { return; }
    var url = table.dataset.liveUrl;
    var failures = 0;
    var countsAt = Date.now();

    function pendingRows() {
      return Array.prototype.filter.call(
        table.querySelectorAll("tr[data-job-id]"),
        function (row) { return !isTerminal(row.dataset.state); }
      );
    }

    function tick() {
      var rows = pendingRows();
      var wantCounts = Date.now() - countsAt >= COUNTS_INTERVAL_MS;
      if (document.hidden || (!rows.length && !wantCounts)) {
        setTimeout(tick, LIST_INTERVAL_MS);
        return;
      }
      var params = new URLSearchParams();
      rows.slice(0, 200).forEach(function (row) { params.append("id", row.dataset.jobId); });
      if (wantCounts) { params.set("counts", "true"); }
      getJSON(url + "?" + params.toString())
        .then(function (body) {
          rows.forEach(function (row) {
            var job = body.jobs[row.dataset.jobId];
            if (job) { updateRow(row, job); }
          });
          if (body.counts) { updateCounts(body.counts); countsAt = Date.now(); }
          failures = 0;
          setTimeout(tick, LIST_INTERVAL_MS);
        })
        .catch(function () {
          failures += 1; // back off while the API is away, up to 30 s
          setTimeout(tick, Math.min(30000, LIST_INTERVAL_MS * Math.pow(2, failures)));
        });
    }

    setTimeout(tick, LIST_INTERVAL_MS);
  }

  /* ----------------------------------------------------------------- job page */

  function initJobPage() {
    var root = document.querySelector(".job[data-job-id]");
    if (!root || isTerminal(root.dataset.state)) { return; }
    var jobId = root.dataset.jobId;
    var panel = document.getElementById("progress");
    var status = document.getElementById("live-status");
    var ds = panel ? panel.dataset : {};
    // The rate is measured from the first progress report, as the server does.
    var anchor = { current: num(ds.firstCurrent), at: num(ds.firstAt) };
    var eta = { seconds: num(ds.etaSeconds), at: performance.now() };
    var ended = false;
    var source = null;

    function showProgress(p) {
      if (!panel) { return; }
      var bar = document.getElementById("progress-bar");
      if (p.percent !== null) {
        bar.value = p.percent;
        setText(document.getElementById("progress-percent"), p.percent.toFixed(1) + "%");
      } else {
        bar.removeAttribute("value");
      }
      setText(document.getElementById("progress-count"), p.count);
      if (p.rate) { setText(document.getElementById("progress-rate"), p.rate); }
      setText(document.getElementById("progress-step"), p.step || "—");
      setText(document.getElementById("progress-message"), p.message || "");
      eta = { seconds: p.etaSeconds, at: performance.now() };
      showEta();
    }

    function showEta() {
      var el = document.getElementById("progress-eta");
      if (!el) { return; }
      if (eta.seconds === null || ended) { setText(el, "—"); return; }
      setText(el, formatDuration(eta.seconds - (performance.now() - eta.at) / 1000));
    }

    function countText(current, total) {
      return formatNumber(current) + (total !== null && total !== undefined ? " / " + formatNumber(total) : "");
    }

    /* The ledger says the job ended: show its outcome and stop listening. */
    function finish() {
      if (ended) { return; }
      ended = true;
      if (source) { source.close(); }
      setText(status, "The job ended.");
      showEta();
      refreshParts();
    }

    /* Replace each part of the page with its fresh rendering; returns the state and attempt
     * that rendering shows. */
    function swapParts(html) { return swapRegions(root, html, ".job-parts"); }

    /* Fetch the parts and swap them in; one request at a time, the latest change wins. The
     * worker announces a change before the recorder writes it to the ledger, so parts that
     * still show an older state are fetched again, a few times. */
    var parts = { busy: false, again: false, tries: 0 };
    function refreshParts() {
      if (parts.busy) { parts.again = true; return; }
      parts.busy = true;
      fetch(root.dataset.partsUrl, { headers: { Accept: "text/html" }, cache: "no-store" })
        .then(function (resp) {
          if (!resp.ok) { throw new Error("HTTP " + resp.status); }
          return resp.text();
        })
        .then(function (html) {
          var shown = swapParts(html);
          // Parts rendered before the ledger caught up must not take the badge back.
          setState(root, root.dataset.state);
          setText(root.querySelector('[data-field="attempt"]'), root.dataset.attempt);
          var behind = shown && (shown.state !== root.dataset.state ||
            (shown.attempt !== root.dataset.attempt && !isTerminal(shown.state)));
          if (behind && parts.tries < 5) {
            parts.tries += 1;
            setTimeout(refreshParts, 300 * parts.tries);
          } else {
            parts.tries = 0;
          }
        })
        .catch(function () { /* the next state change or poll tries again */ })
        .then(function () {
          parts.busy = false;
          if (parts.again) { parts.again = false; refreshParts(); }
        });
    }

    function applyState(state, attempt) {
      // A live terminal event can outrun the ledger; never show the job going back.
      if (ended || (isTerminal(root.dataset.state) && !isTerminal(state))) { return; }
      var changed = state !== root.dataset.state;
      setState(root, state);
      root.dataset.state = state;
      if (attempt !== null && attempt !== undefined) {
        changed = changed || String(attempt) !== root.dataset.attempt;
        root.dataset.attempt = String(attempt);
        setText(root.querySelector('[data-field="attempt"]'), String(attempt));
      }
      if (changed) { refreshParts(); }
    }

    /* A full job from the API (SSE `job` event): the ledger's word, so it may end the page. */
    function onJob(job) {
      applyState(job.state, job.attempt);
      var p = job.progress;
      if (p) {
        showProgress({
          percent: p.percent, count: countText(p.current, p.total), rate: formatRate(p.rate),
          etaSeconds: p.eta_seconds, step: p.step, message: p.message,
        });
      }
      if (isTerminal(job.state)) { finish(); }
    }

    /* A progress report straight from the worker (SSE `progress` event). */
    function onProgress(ev) {
      var current = Number(ev.current);
      var total = num(ev.total);
      if (anchor.at === null) { anchor = { current: current, at: ev.ts }; }
      var rate = null;
      if (ev.ts - anchor.at > 0 && current - anchor.current > 0) {
        rate = (current - anchor.current) / (ev.ts - anchor.at);
      }
      var percent = total !== null && total > 0 ? Math.max(0, Math.min(100, 100 * current / total)) : null;
      showProgress({
        percent: percent, count: countText(current, total), rate: formatRate(rate),
        etaSeconds: rate && total !== null && total >= current ? (total - current) / rate : null,
        step: ev.step, message: ev.message,
      });
    }

    /* Without SSE: the dashboard's own JSON, already formatted by the server. */
    function poll() {
      if (ended) { return; }
      getJSON(root.dataset.liveUrl + "?id=" + encodeURIComponent(jobId))
        .then(function (body) {
          var job = body.jobs[jobId];
          if (!job) { return; }
          applyState(job.state, job.attempt);
          var p = job.progress;
          if (p) {
            showProgress({
              percent: p.percent, count: p.count, rate: p.rate, etaSeconds: p.eta_seconds,
              step: p.step, message: p.message,
            });
          }
          if (job.terminal) { finish(); }
          setText(status, "Live (polling every " + JOB_POLL_MS / 1000 + " s)");
        })
        .catch(function () { setText(status, "Live updates unavailable; retrying…"); })
        .then(function () { if (!ended) { setTimeout(poll, JOB_POLL_MS); } });
    }

    function listen(name, handler) {
      source.addEventListener(name, function (msg) {
        try { handler(JSON.parse(msg.data)); } catch (err) { /* a malformed event is skipped */ }
      });
    }

    setInterval(showEta, 1000);
    if (!window.EventSource) { poll(); return; }
    source = new EventSource(root.dataset.eventsUrl);
    source.onopen = function () { setText(status, "Live"); };
    source.onerror = function () {
      if (ended) { return; }
      if (source.readyState === EventSource.CLOSED) {
        poll(); // the stream was refused outright: poll instead
      } else {
        setText(status, "Reconnecting…"); // the browser retries on its own
      }
    };
    listen("job", onJob);
    listen("state", function (ev) {
      applyState(ev.state, ev.attempt);
      // The ledger's final `job` event follows; the reload waits for it.
      if (isTerminal(ev.state)) { setText(status, "The job ended; waiting for the ledger…"); }
    });
    listen("progress", onProgress);
  }

  /* ------------------------------------------------------------ file uploads */

  /* A form with data-upload-url sends its file as the request body (streamed to disk by the
   * server, never buffered as a form), showing the upload's progress; the server answers
   * {"url": …} for the page to follow, or {"detail": …} saying why the file was refused.
   * Without script the same form posts multipart and the server redirects. */
  function initUploads() {
    document.querySelectorAll("form[data-upload-url]").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        var input = form.querySelector('input[type="file"]');
        if (!input || !input.files.length || !window.XMLHttpRequest) { return; }
        event.preventDefault();
        var file = input.files[0];
        var status = form.querySelector(".upload-status");
        var bar = form.querySelector("progress");
        var label = form.querySelector(".progress-label");
        var error = form.querySelector(".flash-error");
        var button = form.querySelector('button[type="submit"]');
        if (status) { status.hidden = false; }
        if (error) { error.hidden = true; }
        if (button) { button.disabled = true; }
        var xhr = new XMLHttpRequest();
        xhr.open("POST", form.dataset.uploadUrl + "?filename=" + encodeURIComponent(file.name));
        xhr.setRequestHeader("Content-Type", "text/csv");
        xhr.setRequestHeader("Accept", "application/json");
        // The body is the file, so a CSRF token (where the dashboard uses them) rides in a header.
        var token = form.querySelector('input[name="csrf_token"]');
        if (token) { xhr.setRequestHeader("X-CSRF-Token", token.value); }
        xhr.upload.onprogress = function (e) {
          if (!e.lengthComputable) { return; }
          var percent = 100 * e.loaded / e.total;
          bar.value = percent;
          setText(label, "uploading: " + percent.toFixed(0) + "% of " + formatNumber(e.total) + " bytes");
        };
        xhr.upload.onload = function () { setText(label, "uploaded; checking the file…"); };
        xhr.onload = function () {
          var body = null;
          try { body = JSON.parse(xhr.responseText); } catch (err) { body = null; }
          if (xhr.status >= 200 && xhr.status < 300 && body && body.url) {
            window.location.assign(body.url);
            return;
          }
          fail(body && body.detail ? body.detail : "The upload failed (HTTP " + xhr.status + ").");
        };
        xhr.onerror = function () { fail("The upload was interrupted; try again."); };
        function fail(message) {
          if (status) { status.hidden = true; }
          if (button) { button.disabled = false; }
          if (error) { setText(error, message); error.hidden = false; }
        }
        xhr.send(file);
      });
    });
  }

  /* ------------------------------------------------- reload when work ends */

  /* An element with data-ended-url: poll that JSON ({"ended": bool}) every second and reload
   * the page once it says the work ended, so its outcome (a summary, an error) is shown even
   * if the live stream missed the end. */
  function initReloadWhenEnded() {
    var el = document.querySelector("[data-ended-url]");
    if (!el) { return; }
    function tick() {
      if (document.hidden) { setTimeout(tick, 1000); return; }
      getJSON(el.dataset.endedUrl)
        .then(function (body) {
          if (body.ended) { window.location.replace(window.location.pathname); return; }
          setTimeout(tick, 1000);
        })
        .catch(function () { setTimeout(tick, 3000); });
    }
    setTimeout(tick, 1000);
  }

  /* ------------------------------------------------------------- workflow page */

  /* Poll root's server-rendered parts (data-parts-url) every `every` ms, or as the root's
   * data-poll-ms says, and swap in those that changed (an unchanged rendering answers 304),
   * until a rendering's wrapper (wrapperSelector) says data-terminal="true". status, if
   * given, says how it goes. */
  function followParts(root, wrapperSelector, every, status, endedText) {
    if (!root || root.dataset.terminal === "true") { return; }
    every = num(root.dataset.pollMs) || every;
    var failures = 0;
    var etag = null;
    function tick() {
      if (document.hidden) { setTimeout(tick, every); return; }
      var headers = { Accept: "text/html" };
      if (etag) { headers["If-None-Match"] = etag; }
      fetch(root.dataset.partsUrl, { headers: headers, cache: "no-store" })
        .then(function (resp) {
          if (resp.status === 304) { return null; } // nothing changed since the last one
          if (!resp.ok) { throw new Error("HTTP " + resp.status); }
          etag = resp.headers.get("ETag");
          return resp.text();
        })
        .then(function (html) {
          failures = 0;
          var shown = html === null ? null : swapRegions(root, html, wrapperSelector);
          if (shown && shown.state) { root.dataset.state = shown.state; }
          if (shown && shown.terminal === "true") {
            root.dataset.terminal = "true";
            setText(status, endedText);
            return;
          }
          setText(status, "Live (every " + every / 1000 + " s)");
          setTimeout(tick, every);
        })
        .catch(function () {
          failures += 1; // back off while the API is away, up to 30 s
          setText(status, "Live updates unavailable; retrying…");
          setTimeout(tick, Math.min(30000, every * Math.pow(2, failures)));
        });
    }
    setTimeout(tick, every);
  }

  /* The workflow page polls its parts (state, buttons, progress, counts, the graph) every
   * second while the workflow runs (a large graph less often: data-poll-ms): nodes change
   * colour, and nodes recorded while it runs appear in the graph. */
  function initWorkflowPage() {
    followParts(document.querySelector(".workflow[data-parts-url]"), ".workflow-parts",
      WORKFLOW_POLL_MS, document.getElementById("live-status"), "The workflow ended.");
  }

  /* The workflows list polls its rows (states, progress bars, nodes done, new workflows on
   * the first page) while they can change: the first page, or one with a running workflow. */
  function initWorkflowsList() {
    followParts(document.querySelector(".workflows-list[data-parts-url]"), ".workflows-parts",
      WORKFLOWS_LIST_POLL_MS, null, "");
  }

  var page = document.body.dataset.page;
  initUploads();
  initReloadWhenEnded();
  if (page === "jobs" || page === "schedule") { initJobsList(); }  // a schedule's runs are jobs
  if (page === "job") { initJobPage(); }
  if (page === "workflow") { initWorkflowPage(); }
  if (page === "workflows") { initWorkflowsList(); }
})();
