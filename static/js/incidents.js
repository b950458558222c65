// Incidents pages: the filter selects submit on change (no inline handlers: the CSP forbids them).
(function () {
  "use strict";
  var form = document.getElementById("incident-filters");
  if (form) {
    form.querySelectorAll("select").forEach(function (select) {
      select.addEventListener("change", function () { form.submit(); });
    });
  }
})();
