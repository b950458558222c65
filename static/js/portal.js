// Portal behaviour without inline scripts (the CSP forbids them).
(function () {
  "use strict";
  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  }
  // Every htmx request carries the CSRF token; Django checks it on every POST.
  // A request no person caused (a poll, a load trigger, an event htmx raised itself) is marked as
  // background: it does not count as activity for the idle timeout and does not write the session.
  document.addEventListener("htmx:configRequest", function (evt) {
    evt.detail.headers["X-CSRFToken"] = csrfToken();
    var cause = evt.detail.triggeringEvent;
    if (!(cause && cause.isTrusted)) evt.detail.headers["X-Portal-Background"] = "1";
  });
  // Plain forms with data-confirm ask before submitting and disable their buttons while in flight,
  // so a double click sends one request.
  document.addEventListener("submit", function (evt) {
    var form = evt.target;
    if (!(form instanceof HTMLFormElement)) return;
    var question = form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) {
      evt.preventDefault();
      return;
    }
    if (form.dataset.submitted === "1") {
      evt.preventDefault();
      return;
    }
    form.dataset.submitted = "1";
    // A disabled button is left out of the form's data, the one that was clicked included: its
    // name and value (action=save next to action=preview) go along in a hidden field instead.
    var submitter = evt.submitter;
    if (submitter && submitter.name && form.contains(submitter)) {
      var carried = document.createElement("input");
      carried.type = "hidden";
      carried.name = submitter.name;
      carried.value = submitter.value;
      carried.setAttribute("data-submitter", "1");
      form.appendChild(carried);
    }
    form.querySelectorAll("button[type=submit], button:not([type])").forEach(function (b) {
      b.disabled = true;
      b.setAttribute("aria-busy", "true");
    });
  }, false);
  // Pages restored from the back/forward cache get their buttons back.
  window.addEventListener("pageshow", function () {
    document.querySelectorAll("form[data-submitted]").forEach(function (f) {
      delete f.dataset.submitted;
      f.querySelectorAll("input[data-submitter]").forEach(function (i) { i.remove(); });
      f.querySelectorAll("button").forEach(function (b) { b.disabled = false; b.removeAttribute("aria-busy"); });
    });
  });
  // A 4xx/5xx on an htmx request shows its text instead of silently doing nothing.
  document.addEventListener("htmx:responseError", function (evt) {
    var target = evt.detail.target;
    var box = document.createElement("p");
    box.className = "msg error";
    box.setAttribute("role", "alert");
    var text = evt.detail.xhr.responseText || "";
    try { var j = JSON.parse(text); text = j.detail || j.error || text; } catch (e) { /* not JSON */ }
    box.textContent = "Failed (" + evt.detail.xhr.status + "): " + String(text).replace(/<[^>]*>/g, " ").trim().slice(0, 300);
    if (target && target.parentNode) target.parentNode.insertBefore(box, target.nextSibling);
  });
})();
