// Deployments page: uPlot charts of error rate and P95 per colour with the weight changes marked.
(function () {
  "use strict";
  var COLOURS = { blue: "#1f6feb", green: "#2da44e" };

  function align(series, metric) {
    var keys = ["blue", "green"];
    var ts = {};
    keys.forEach(function (c) {
      (series[metric + ":" + c] || []).forEach(function (p) { ts[p[0]] = true; });
    });
    var xs = Object.keys(ts).map(Number).sort(function (a, b) { return a - b; });
    var data = [xs];
    keys.forEach(function (c) {
      var m = {};
      (series[metric + ":" + c] || []).forEach(function (p) { m[p[0]] = p[1]; });
      data.push(xs.map(function (x) { return x in m ? m[x] : null; }));
    });
    return data;
  }

  function markPlugin(marks) {
    return {
      hooks: {
        draw: [function (u) {
          var ctx = u.ctx;
          ctx.save();
          ctx.strokeStyle = "#d29922";
          ctx.fillStyle = "#d29922";
          ctx.lineWidth = 1;
          ctx.font = "11px system-ui, sans-serif";
          marks.forEach(function (m) {
            var x = Math.round(u.valToPos(m.t, "x", true));
            if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) return;
            ctx.beginPath();
            ctx.setLineDash([4, 3]);
            ctx.moveTo(x, u.bbox.top);
            ctx.lineTo(x, u.bbox.top + u.bbox.height);
            ctx.stroke();
            ctx.fillText(m.label, x + 3, u.bbox.top + 12);
          });
          ctx.restore();
        }]
      }
    };
  }

  // The analysis chart: each run's error rate of the new and the old colour, failed runs marked.
  function renderRuns(el, body) {
    var runs = body.runs || [];
    var data = [runs.map(function (r) { return r.t; }), runs.map(function (r) { return r.new; }),
      runs.map(function (r) { return r.old; })];
    var marks = runs.filter(function (r) { return r.decision === "fail" || r.decision === "critical"; })
      .map(function (r) { return { t: r.t, label: r.decision + " at " + r.weight + " %" }; });
    var newC = body.new_colour || "new", oldC = body.old_colour || "old";
    var opts = {
      width: Math.max(280, el.clientWidth || 600), height: 200, title: "Each analysis run (error rate, %)",
      plugins: [markPlugin(marks)],
      scales: { x: { time: true } },
      series: [{},
        { label: newC + " (new) %", stroke: COLOURS[newC] || "#d1242f", width: 2, points: { show: true } },
        { label: oldC + " (old) %", stroke: COLOURS[oldC] || "#57606a", width: 1, dash: [4, 3], points: { show: true } }],
      axes: [{ stroke: "#9aa4ae" }, { stroke: "#9aa4ae" }]
    };
    if (plots[el.id]) { plots[el.id].destroy(); }
    el.textContent = runs.length ? "" : "No analysis run yet.";
    if (runs.length) { plots[el.id] = new window.uPlot(opts, data, el); }
    el.setAttribute("data-runs", String(runs.length));
  }

  var plots = {};
  function render(el, body) {
    var metric = el.getAttribute("data-metric");
    if (metric === "analysis") { renderRuns(el, body); return; }
    var unit = el.getAttribute("data-unit");
    var data = align(body.series || {}, metric);
    var width = Math.max(280, el.clientWidth || 600);
    // The time axis spans the data and the weight-change marks, so every mark is visible.
    var xs = data[0].concat((body.marks || []).map(function (m) { return m.t; }));
    var xmin = Math.min.apply(null, xs.length ? xs : [Date.now() / 1000 - 600]);
    var xmax = Math.max.apply(null, xs.length ? xs : [Date.now() / 1000]);
    if (xmax - xmin < 60) { xmin -= 30; xmax += 30; }
    var opts = {
      width: width, height: 220,
      title: metric === "error_rate" ? "Error rate (%)" : "P95 latency (s)",
      plugins: [markPlugin(body.marks || [])],
      scales: { x: { time: true, range: function () { return [xmin, xmax]; } } },
      series: [
        {},
        { label: "blue " + unit, stroke: COLOURS.blue, width: 2, spanGaps: false },
        { label: "green " + unit, stroke: COLOURS.green, width: 2, spanGaps: false }
      ],
      axes: [{ stroke: "#9aa4ae" }, { stroke: "#9aa4ae" }]
    };
    if (plots[el.id]) { plots[el.id].destroy(); }
    el.textContent = "";
    plots[el.id] = new window.uPlot(opts, data, el);
  }

  function load() {
    var els = document.querySelectorAll("[data-chart-url]");
    if (!els.length || !window.uPlot) return;
    var url = els[0].getAttribute("data-chart-url");
    var status = document.getElementById("chart-status");
    fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json", "X-Portal-Background": "1" } })
      .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.json(); })
      .then(function (body) {
        els.forEach(function (el) { render(el, body); });
        if (status) status.textContent = body.error ? body.error : "";
      })
      .catch(function (e) { if (status) status.textContent = "Chart unavailable: " + e.message; });
  }

  document.addEventListener("DOMContentLoaded", function () {
    load();
    // Live while the page is open: the live region polls every 2 s, the charts every 5 s.
    window.setInterval(load, 5000);
  });
})();
