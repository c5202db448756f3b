// Keyboard shortcuts of the review pages (listed on each page under "Keyboard shortcuts").
// Loaded from this site, as the Content-Security-Policy requires (no inline script).
(function () {
  "use strict";

  function typing(target) {
    if (!target || !target.tagName) return false;
    var tag = target.tagName.toLowerCase();
    return tag === "textarea" || tag === "select" || target.isContentEditable ||
      (tag === "input" && ["radio", "checkbox", "button", "submit", "range"].indexOf(target.type) < 0);
  }

  function choose(verdict) {
    var input = document.querySelector("input[name=verdict][value=" + verdict + "]");
    if (input) { input.checked = true; input.focus(); }
    return input;
  }

  function classify(n) {
    var select = document.getElementById("classification");
    if (!select || n >= select.options.length) return;
    if (!choose("confirm")) return;
    select.selectedIndex = n;  // option 0 is "—"
  }

  function follow(id) {
    var link = document.getElementById(id);
    if (link && link.href) window.location.assign(link.href);
  }

  document.addEventListener("keydown", function (event) {
    if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey) return;
    if (typing(event.target)) return;
    var key = event.key;
    var handled = true;
    if (key === "c") choose("confirm");
    else if (key === "r") choose("reject");
    else if (key === "e") choose("escalate");
    else if (/^[1-9]$/.test(key)) classify(Number(key));
    else if (key === "s") {
      var next = document.getElementById("submit-next");
      if (next) next.click();  // through the form's own validation, as a click would
    }
    else if (key === "n") follow("next-item");
    else if (key === "q") { if (window.location.pathname !== "/review") window.location.assign("/review"); }
    else if (key === "?") {
      var keys = document.getElementById("shortcuts");
      if (keys) keys.open = !keys.open;
    }
    else handled = false;
    if (handled) event.preventDefault();
  });
})();
