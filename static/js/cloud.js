// Drill form: show the colour field only for per-colour kinds and the service field only for outages.
(function () {
  "use strict";
  var PER_COLOUR = ["error-rate", "latency", "cpu", "unhealthy-instance"];
  function update(form) {
    var kind = form.querySelector("select[name=kind]");
    if (!kind) return;
    var colour = form.querySelector(".field-colour");
    var service = form.querySelector(".field-service");
    var level = form.querySelector(".field-level");
    if (colour) colour.classList.toggle("field-hidden", PER_COLOUR.indexOf(kind.value) < 0);
    if (service) service.classList.toggle("field-hidden", kind.value !== "service-outage");
    if (level) level.classList.toggle("field-hidden", kind.value === "service-outage");
  }
  document.addEventListener("DOMContentLoaded", function () {
    var form = document.getElementById("drill-form");
    if (!form) return;
    update(form);
    form.addEventListener("change", function (evt) {
      if (evt.target && evt.target.name === "kind") update(form);
    });
  });
})();
