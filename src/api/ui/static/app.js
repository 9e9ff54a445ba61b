// cinderblock dashboard: the few behaviours htmx does not give. Loaded with `defer`; every
// page works without it.
"use strict";
(function () {
  function wire(root) {
    // "Copy" buttons next to connection URIs (shown only when the clipboard API exists).
    if (navigator.clipboard) {
      root.querySelectorAll("button.copy-button[data-copy]").forEach(function (b) {
        b.hidden = false;
        b.addEventListener("click", function () {
          navigator.clipboard.writeText(b.dataset.copy).then(function () { b.textContent = "Copied"; });
        });
      });
    }
  }
  document.addEventListener("DOMContentLoaded", function () { wire(document); });
  document.addEventListener("htmx:afterSwap", function (e) { wire(e.target); });
})();
