// mailbot dashboard: the live queue and the print button. No other script runs here.
(function () {
  "use strict";

  function live(el) {
    var every = Math.max(2, parseFloat(el.getAttribute("data-every")) || 5) * 1000;
    var busy = false;
    function refresh() {
      if (busy || document.hidden) return;
      busy = true;
      fetch(el.getAttribute("data-live"), {credentials: "same-origin",
                                           headers: {"Accept": "text/html"}})
        .then(function (r) {
          // A session that ended sends us to the login page: show it.
          if (r.redirected || r.status === 403) { window.location.reload(); return null; }
          return r.ok ? r.text() : null;
        })
        .then(function (html) {
          if (html !== null && html !== undefined) {
            el.innerHTML = html;
            el.classList.remove("stale");
          }
        })
        .catch(function () { el.classList.add("stale"); })
        .then(function () { busy = false; });
    }
    setInterval(refresh, every);
    document.addEventListener("visibilitychange", refresh);
  }

  document.addEventListener("DOMContentLoaded", function () {
    Array.prototype.forEach.call(document.querySelectorAll("[data-live]"), live);
    Array.prototype.forEach.call(document.querySelectorAll("[data-print]"), function (b) {
      b.addEventListener("click", function () { window.print(); });
    });
  });
})();
