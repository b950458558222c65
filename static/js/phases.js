// Phases page charts: uPlot drawn from the portal's own JSON, coloured from the theme's CSS variables.
(function () {
  "use strict";
  function cssVar(name, fallback) {
    var v = getComputedStyle(document.documentElement).getPropertyValue(name);
    return (v && v.trim()) || fallback;
  }
  var PALETTE = ["#8b5cf6", "#14b8a6", "#f97316", "#ec4899", "#84cc16", "#06b6d4", "#eab308"];

  function axes() {
    var fg = cssVar("--muted", "#888"), grid = cssVar("--border", "#ccc");
    var ax = { stroke: fg, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 } };
    return [Object.assign({}, ax), Object.assign({ size: 60 }, ax)];
  }
  function yRange(u, min, max) { return [Math.min(0, min), max > 0 ? max * 1.1 : 1]; }
  function constant(xs, v) { return xs.map(function () { return v; }); }
  function empty(el, text) {
    var p = document.createElement("p");
    p.className = "chart-empty";
    p.textContent = text;
    el.replaceChildren(p);
  }

  var builders = {
    users: function (d) {
      if (!d.t || d.t.length === 0) return null;
      var data = [d.t, d.users], series = [{}, { label: "Users", stroke: cssVar("--accent", "#1f6feb"), width: 2 }];
      (d.boundaries || []).forEach(function (b, i) {
        data.push(constant(d.t, b.users_min));
        series.push({ label: b.name + " from", stroke: PALETTE[i % PALETTE.length], dash: [6, 4], width: 1, points: { show: false } });
      });
      return { data: data, series: series };
    },
    instances: function (d) {
      if (!d.t || d.t.length === 0) return null;
      return {
        data: [d.t, d.blue, d.green, constant(d.t, d.min), constant(d.t, d.max)],
        series: [{},
          { label: "Blue in service", stroke: "#3b82f6", width: 2 },
          { label: "Green in service", stroke: cssVar("--ok", "#1a7f37"), width: 2 },
          { label: "Phase min", stroke: cssVar("--warn", "#9a6700"), dash: [6, 4], points: { show: false } },
          { label: "Phase max", stroke: cssVar("--crit", "#cf222e"), dash: [6, 4], points: { show: false } }]
      };
    },
    cost: function (d) {
      if (!d.t || d.t.length === 0) return null;
      var data = [d.t, d.total, d.forecast, constant(d.t, d.budget)];
      var series = [{},
        { label: "Month to date", stroke: cssVar("--accent", "#1f6feb"), width: 2, points: { show: true, size: 7 } },
        { label: "Forecast", stroke: cssVar("--warn", "#9a6700"), width: 2, dash: [4, 3], points: { show: true, size: 7 } },
        { label: "Budget", stroke: cssVar("--crit", "#cf222e"), dash: [6, 4], points: { show: false } }];
      Object.keys(d.services || {}).forEach(function (name, i) {
        data.push(d.services[name]);
        series.push({ label: name, stroke: PALETTE[i % PALETTE.length], width: 1, show: i < 4, points: { show: true, size: 5 } });
      });
      return { data: data, series: series };
    }
  };

  function draw(el) {
    var kind = el.getAttribute("data-chart"), url = el.getAttribute("data-url");
    if (!builders[kind] || !url) return;
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json", "X-Portal-Background": "1" } })
      .then(function (r) { return r.json().then(function (j) { return { ok: r.ok, body: j }; }); })
      .then(function (res) {
        if (!res.ok) { empty(el, (res.body && res.body.detail) || "Chart unavailable."); return; }
        var spec = builders[kind](res.body);
        if (!spec) { empty(el, "No samples yet: the chart fills in as the portal samples the platform."); return; }
        if (typeof window.uPlot !== "function") { empty(el, "Charting library missing."); return; }
        el.replaceChildren();
        var opts = {
          width: Math.max(el.clientWidth, 280), height: 240, series: spec.series, axes: axes(),
          scales: { x: { time: true }, y: { range: yRange } },
          legend: { live: false }, cursor: { drag: { x: false, y: false } }
        };
        var plot = new window.uPlot(opts, spec.data, el);
        var xs = spec.data[0], pad = kind === "cost" ? 20 * 86400 : 3600;
        if (xs[xs.length - 1] - xs[0] < pad) plot.setScale("x", { min: xs[0] - pad, max: xs[xs.length - 1] + pad });
        el.dataset.drawn = "1";
        window.addEventListener("resize", function () { plot.setSize({ width: Math.max(el.clientWidth, 280), height: 240 }); });
      })
      .catch(function () { empty(el, "Chart unavailable."); });
  }
  function init() { document.querySelectorAll("[data-chart]").forEach(draw); }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init); else init();
})();
