// Checklist pages: the printable summary's print button (no inline handlers under the CSP).
(function () {
  "use strict";
  document.addEventListener("click", function (evt) {
    var target = evt.target;
    if (target instanceof Element && target.closest("[data-print]")) {
      evt.preventDefault();
      window.print();
    }
  });
})();
