// Run page keys: j / k move between steps, Enter opens or closes one (native <summary>), c returns
// to the current step. Keys are ignored while typing in a field.
(function () {
  "use strict";
  function steps() { return Array.prototype.slice.call(document.querySelectorAll("li[data-step] > details > summary")); }
  function typing(el) {
    return el && (el.tagName === "INPUT" || el.tagName === "TEXTAREA" || el.tagName === "SELECT" || el.isContentEditable);
  }
  function focusAt(list, i) {
    if (!list.length) return;
    i = Math.max(0, Math.min(list.length - 1, i));
    list[i].focus();
    list[i].scrollIntoView({ block: "nearest" });
  }
  function current() {
    return document.querySelector("li[data-state='current'] > details > summary");
  }
  document.addEventListener("keydown", function (evt) {
    if (evt.ctrlKey || evt.metaKey || evt.altKey || typing(evt.target)) return;
    var list = steps();
    var at = list.indexOf(document.activeElement);
    if (evt.key === "j") { focusAt(list, at < 0 ? 0 : at + 1); evt.preventDefault(); }
    else if (evt.key === "k") { focusAt(list, at < 0 ? 0 : at - 1); evt.preventDefault(); }
    else if (evt.key === "c") {
      var cur = current();
      if (cur) { cur.focus(); cur.scrollIntoView({ block: "center" }); evt.preventDefault(); }
    }
  });
  // Forms with Done / Failed / Skip buttons: portal.js disables buttons while a form is in flight,
  // and a disabled submitter sends no value, so the clicked button's status goes into a hidden field.
  document.addEventListener("click", function (evt) {
    var button = evt.target.closest ? evt.target.closest("button[name=status]") : null;
    if (!button || !button.form) return;
    var field = button.form.querySelector("input[data-status-field]");
    if (field) field.value = button.value;
  }, true);
  // After a step is recorded the page reloads at #step-current: put the keyboard there too.
  document.addEventListener("DOMContentLoaded", function () {
    var cur = current();
    if (cur && window.location.hash === "#step-current") cur.focus();
  });
  // When another responder records a step the run body is swapped: keep the current step in view
  // if the reader was already at it.
  document.addEventListener("htmx:afterSwap", function (evt) {
    if (evt.detail.target && evt.detail.target.id === "run-body") {
      var cur = current();
      if (cur && window.location.hash === "#step-current") cur.scrollIntoView({ block: "nearest" });
    }
  });
})();
