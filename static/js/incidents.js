// Incidents pages: the filter selects submit on change (no inline handlers: the CSP forbids them),
// and the list's bulk selection (ticks survive the rows' live refresh).
(function () {
  "use strict";
  var form = document.getElementById("incident-filters");
  if (form) {
    form.querySelectorAll("select").forEach(function (select) {
      select.addEventListener("change", function () { form.submit(); });
    });
  }
  var bulk = document.getElementById("bulk-form");
  if (!bulk) return;
  var picked = new Set();
  var all = document.getElementById("bulk-all");
  var rows = document.getElementById("incident-rows");
  function boxes() { return Array.prototype.slice.call(document.querySelectorAll("input.bulk-pick")); }
  function sync() {
    boxes().forEach(function (b) { b.checked = picked.has(b.value); });
    var shown = boxes();
    document.getElementById("bulk-count").textContent = picked.size + " selected";
    bulk.querySelectorAll("button[data-action]").forEach(function (b) { b.disabled = picked.size === 0; });
    if (all) all.checked = shown.length > 0 && shown.every(function (b) { return picked.has(b.value); });
  }
  document.addEventListener("change", function (evt) {
    var t = evt.target;
    if (t.classList && t.classList.contains("bulk-pick")) {
      if (t.checked) { picked.add(t.value); } else { picked.delete(t.value); }
      sync();
    } else if (t === all) {
      boxes().forEach(function (b) { if (all.checked) { picked.add(b.value); } else { picked.delete(b.value); } });
      sync();
    }
  });
  bulk.querySelectorAll("button[data-action]").forEach(function (b) {
    b.addEventListener("click", function () { document.getElementById("bulk-action").value = b.getAttribute("data-action"); });
  });
  // Ticked rows that a refresh took off the page still count: send them as hidden fields.
  bulk.addEventListener("submit", function () {
    bulk.querySelectorAll("input.bulk-hidden").forEach(function (i) { i.remove(); });
    var shown = new Set(boxes().map(function (b) { return b.value; }));
    picked.forEach(function (id) {
      if (shown.has(id)) return;
      var i = document.createElement("input");
      i.type = "hidden"; i.name = "ids"; i.value = id; i.className = "bulk-hidden";
      bulk.appendChild(i);
    });
  }, true);
  if (rows) rows.addEventListener("htmx:afterSwap", sync);
  sync();
})();

// The incident page: the signal as a chart (uPlot, data from signal.json: per colour, the threshold
// lines, the opening, deployment and weight marks; live while open), actions that show their result in
// place, and the keyboard: a acknowledge, r resolve, b roll back (both ask first), g r runbook, ? keys.
(function () {
  "use strict";
  var page = document.getElementById("incident-page");
  if (!page) return;
  var COLOURS = { blue: "#1f6feb", green: "#2da44e", all: "#8250df" };
  var MARK = { deployment: "#d29922", weights: "#8c959f", rollback: "#cf222e" };

  function drawPlugin(body) {
    return {
      hooks: {
        draw: [function (u) {
          var ctx = u.ctx, top = u.bbox.top, h = u.bbox.height, left = u.bbox.left, w = u.bbox.width;
          ctx.save();
          ctx.font = "11px system-ui, sans-serif";
          (body.thresholds || []).forEach(function (t) {
            var y = Math.round(u.valToPos(t.value, "y", true));
            if (y < top || y > top + h) return;
            ctx.strokeStyle = t.severity === "critical" ? "#cf222e" : "#bf8700";
            ctx.fillStyle = ctx.strokeStyle;
            ctx.setLineDash([6, 4]);
            ctx.beginPath(); ctx.moveTo(left, y); ctx.lineTo(left + w, y); ctx.stroke();
            ctx.textAlign = "right";
            ctx.fillText(t.severity + " " + t.value + (body.unit || ""), left + w - 4, y - 4);
            ctx.textAlign = "left";
          });
          var marks = (body.marks || []).concat([{ t: body.opened, kind: "opened", label: "incident opened" }]);
          marks.forEach(function (m, i) {
            var x = Math.round(u.valToPos(m.t, "x", true));
            if (x < left || x > left + w) return;
            ctx.strokeStyle = m.kind === "opened" ? "#cf222e" : (MARK[m.kind] || "#d29922");
            ctx.fillStyle = ctx.strokeStyle;
            ctx.lineWidth = m.kind === "opened" ? 2 : 1;
            ctx.setLineDash(m.kind === "opened" ? [] : [4, 3]);
            ctx.beginPath(); ctx.moveTo(x, top); ctx.lineTo(x, top + h); ctx.stroke();
            var right = x > left + w * 0.7;
            ctx.textAlign = right ? "right" : "left";
            if (m.kind === "opened") ctx.fillText(m.label, right ? x - 4 : x + 4, top + h - 6);
            else if (m.kind !== "weights") ctx.fillText(m.label, right ? x - 4 : x + 4, top + 12 + (i % 3) * 13);
            ctx.textAlign = "left";
          });
          ctx.restore();
        }]
      }
    };
  }

  var plot = null;
  function render(el, body) {
    var keys = Object.keys(body.series || {});
    var ts = {};
    keys.forEach(function (k) { body.series[k].forEach(function (p) { ts[p[0]] = true; }); });
    var xs = Object.keys(ts).map(Number).sort(function (a, b) { return a - b; });
    var data = [xs];
    keys.forEach(function (k) {
      var m = {};
      body.series[k].forEach(function (p) { m[p[0]] = p[1]; });
      data.push(xs.map(function (x) { return x in m ? m[x] : null; }));
    });
    var ys = [];
    data.slice(1).forEach(function (s) { s.forEach(function (v) { if (v !== null) ys.push(v); }); });
    (body.thresholds || []).forEach(function (t) { ys.push(t.value); });
    var ymax = Math.max.apply(null, ys.length ? ys : [1]) * 1.15;
    var unit = body.unit || "";
    var opts = {
      width: Math.max(260, el.clientWidth || 600), height: el.clientWidth < 500 ? 200 : 260,
      plugins: [drawPlugin(body)],
      scales: { x: { time: true, range: function () { return [body.start, body.end]; } },
        y: { range: function () { return [0, ymax]; } } },
      series: [{}].concat(keys.map(function (k) {
        var affected = !body.colour || body.colour === k;
        return { label: k + (unit ? " (" + unit + ")" : ""), stroke: COLOURS[k] || "#57606a", width: affected ? 2.5 : 1.5,
          dash: affected ? undefined : [4, 3], spanGaps: false };
      })),
      axes: [{ stroke: "#9aa4ae", grid: { stroke: "rgba(128,128,128,.2)" } }, { stroke: "#9aa4ae", grid: { stroke: "rgba(128,128,128,.2)" } }]
    };
    if (plot) { plot.destroy(); plot = null; }
    el.textContent = "";
    if (keys.length) plot = new window.uPlot(opts, data, el);
    else el.textContent = body.error || "No data for this metric in the last hour.";
    var marks = body.marks || [];
    el.setAttribute("data-rendered", "1");
    el.setAttribute("data-points", String(xs.length));
    el.setAttribute("data-series", keys.join(" "));
    el.setAttribute("data-thresholds", (body.thresholds || []).map(function (t) { return t.severity + ":" + t.value; }).join(" "));
    el.setAttribute("data-marks", String(marks.length));
    el.setAttribute("data-deployment-marks", marks.filter(function (m) { return m.kind === "deployment"; })
      .map(function (m) { return m.deployment; }).join(" "));
    el.setAttribute("data-weight-marks", String(marks.filter(function (m) { return m.kind === "weights"; }).length));
    el.setAttribute("data-opened", String(body.opened));
  }

  var chart = document.getElementById("incident-chart");
  function load() {
    if (!chart || !window.uPlot) return;
    var status = document.getElementById("incident-chart-status");
    fetch(chart.getAttribute("data-chart-url"), { credentials: "same-origin", headers: { "Accept": "application/json", "X-Portal-Background": "1" } })
      .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.json(); })
      .then(function (body) {
        render(chart, body);
        if (status) status.textContent = body.error || "";
        var q = document.getElementById("incident-chart-query");
        if (q) q.textContent = body.query || "";
      })
      .catch(function (e) { if (status) status.textContent = "Chart unavailable: " + e.message; });
  }
  if (chart) {
    load();
    if (chart.getAttribute("data-live") === "1") window.setInterval(load, 10000);
    var resized = null;
    window.addEventListener("resize", function () { window.clearTimeout(resized); resized = window.setTimeout(load, 300); });
  }

  // A live region does not refresh while someone types in it or while its form is on its way.
  document.addEventListener("htmx:beforeRequest", function (evt) {
    var el = evt.detail.elt;
    if (!el || !el.id || el.id.indexOf("incident-") !== 0) return;
    var active = document.activeElement;
    if (active && el.contains(active) && /INPUT|TEXTAREA|SELECT/.test(active.tagName)) { evt.preventDefault(); return; }
    if (el.querySelector("form[data-submitted='1']")) evt.preventDefault();
  });

  // Actions of the deployments app (rollback, scale, automation) post to their own views (same
  // permission, step-up and audit) and show what they did here instead of leaving the page.
  function refreshAction() {
    var region = document.getElementById("incident-action");
    if (region && window.htmx) window.htmx.trigger(region, "refresh");
  }
  function say(text, kind) {
    var out = document.getElementById("action-result");
    if (!out) return;
    out.textContent = "";
    var p = document.createElement("p");
    p.className = "msg " + (kind || "success");
    p.textContent = text;
    out.appendChild(p);
  }
  document.addEventListener("submit", function (evt) {
    var form = evt.target;
    if (evt.defaultPrevented || !(form instanceof HTMLFormElement)) return;
    var inplace = form.hasAttribute("data-inplace") || (form.closest("#incident-action") && (form.getAttribute("action") || "").indexOf("/deployments/") === 0);
    if (!inplace) return;
    evt.preventDefault();
    var meta = document.querySelector('meta[name="csrf-token"]');
    fetch(form.action, { method: "POST", body: new FormData(form), credentials: "same-origin",
      headers: { "X-CSRFToken": meta ? meta.getAttribute("content") : "" } })
      .then(function (r) {
        if (r.url.indexOf("/accounts/reauth/") >= 0) {
          // Step-up: confirm the password, then come back here (not to the deployments page).
          var u = new URL(r.url);
          u.searchParams.set("next", window.location.pathname);
          window.location.assign(u.pathname + u.search);
          return null;
        }
        return r.text().then(function (html) {
          if (r.status === 403) { say("Refused (403): your role does not allow this.", "error"); return; }
          if (!r.ok) { say("Failed (" + r.status + ").", "error"); return; }
          var doc = new DOMParser().parseFromString(html, "text/html");
          var msgs = Array.prototype.slice.call(doc.querySelectorAll(".messages .msg"));
          if (!msgs.length) { say("Done."); return; }
          msgs.forEach(function (m, i) {
            var kind = m.classList.contains("error") ? "error" : (m.classList.contains("warning") ? "warning" : "success");
            if (i === 0) say(m.textContent.trim(), kind);
            else { var p = document.createElement("p"); p.className = "msg " + kind; p.textContent = m.textContent.trim(); document.getElementById("action-result").appendChild(p); }
          });
        });
      })
      .catch(function (e) { say("Failed: " + e.message, "error"); })
      .finally(function () {
        delete form.dataset.submitted;
        form.querySelectorAll("input[data-submitter]").forEach(function (i) { i.remove(); });
        form.querySelectorAll("button").forEach(function (b) { b.disabled = false; b.removeAttribute("aria-busy"); });
        refreshAction();
      });
  }, false);

  // Keyboard shortcuts (never while typing, never with a modifier).
  var overlay = document.getElementById("incident-keys");
  var pendingG = 0;
  function submitForm(selector) {
    var form = document.querySelector(selector);
    if (!form) return false;
    if (form.requestSubmit) form.requestSubmit(); else form.submit();
    return true;
  }
  function openRunbook() {
    var run = document.querySelector("#incident-runbook-runs a[href*='/runbooks/runs/']");
    var link = run || document.getElementById("runbook-link");
    if (link) window.location.assign(link.getAttribute("href") + (run ? "#step-current" : ""));
  }
  document.addEventListener("keydown", function (evt) {
    if (evt.ctrlKey || evt.metaKey || evt.altKey) return;
    var t = evt.target;
    if (t && (/INPUT|TEXTAREA|SELECT/.test(t.tagName) || t.isContentEditable)) return;
    var key = evt.key;
    if (key === "Escape" && overlay && !overlay.hidden) { overlay.hidden = true; return; }
    if (key === "?") { if (overlay) overlay.hidden = !overlay.hidden; evt.preventDefault(); return; }
    if (pendingG && Date.now() - pendingG < 1500 && key === "r") { pendingG = 0; evt.preventDefault(); openRunbook(); return; }
    pendingG = 0;
    if (key === "g") { pendingG = Date.now(); return; }
    if (key === "a") { if (submitForm("#ack-form")) evt.preventDefault(); }
    else if (key === "r") { if (submitForm("#resolve-form")) evt.preventDefault(); }
    else if (key === "b") { if (submitForm("#incident-action form.rollback-form")) evt.preventDefault(); }
  });
  if (overlay) overlay.addEventListener("click", function (evt) { if (evt.target === overlay) overlay.hidden = true; });
})();
