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
