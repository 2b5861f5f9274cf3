// mailbot dashboard: the live queue, the print button and keyboard access to wide tables.
// No other script runs here.
(function () {
  "use strict";

  // A node's identity across refreshes: its data-key, else its id, else its data-testid.
  function keyOf(node) {
    if (node.nodeType !== 1) return null;
    return node.getAttribute("data-key") || node.id || node.getAttribute("data-testid") || null;
  }

  // Attributes this script set itself (see scrollers) stay: dropping a focused region's
  // tabindex would drop the focus.
  var OWN = {"tabindex": true, "data-scroll-auto": true};

  function syncAttributes(from, to) {
    var i, a;
    for (i = from.attributes.length - 1; i >= 0; i--) {
      a = from.attributes[i].name;
      if (!to.hasAttribute(a) && !(OWN[a] && from.hasAttribute("data-scroll-auto"))) {
        from.removeAttribute(a);
      }
    }
    for (i = 0; i < to.attributes.length; i++) {
      a = to.attributes[i];
      if (from.getAttribute(a.name) !== a.value) from.setAttribute(a.name, a.value);
    }
  }

  // Makes the children of `from` equal to those of `to`, touching only what differs:
  // nodes that did not change stay the same DOM nodes, so keyboard focus, an open
  // <details> and a screen reader's place survive the refresh. Keyed children (rows,
  // panels) are matched by key, the others in order by tag.
  function patchChildren(from, to) {
    var olds = Array.prototype.slice.call(from.childNodes);
    var wanted = Array.prototype.slice.call(to.childNodes);
    var keyed = {}, unkeyed = [], next = 0;
    olds.forEach(function (n) {
      var k = keyOf(n);
      if (k) keyed[k] = n; else unkeyed.push(n);
    });
    var matches = wanted.map(function (n) {
      var k = keyOf(n), match = null;
      if (k) {
        match = keyed[k] || null;
        delete keyed[k];
        if (match && match.nodeName !== n.nodeName) match = null;
      } else {
        while (next < unkeyed.length && !match) {
          var cand = unkeyed[next++];
          if (cand.nodeName === n.nodeName) match = cand;
        }
      }
      return match;
    });
    // Old nodes without a counterpart go first, so the kept ones need not move (a node
    // that moves loses focus).
    olds.forEach(function (o) { if (matches.indexOf(o) < 0) from.removeChild(o); });
    wanted.forEach(function (n, i) {
      var match = matches[i], here = from.childNodes[i] || null;
      if (!match) { from.insertBefore(n, here); return; }
      if (match !== here) from.insertBefore(match, here);
      if (n.nodeType === 1) {
        syncAttributes(match, n);
        patchChildren(match, n);
      } else if (match.nodeValue !== n.nodeValue) {
        match.nodeValue = n.nodeValue;
      }
    });
    while (from.childNodes.length > wanted.length) from.removeChild(from.lastChild);
  }

  // The counts the queue shows ([data-count]), with their labels (data-news).
  function counts(root) {
    var out = {};
    Array.prototype.forEach.call(root.querySelectorAll("[data-count]"), function (el) {
      out[el.getAttribute("data-count")] = {n: el.textContent.trim(),
                                            label: el.getAttribute("data-news") || ""};
    });
    return out;
  }

  // One short sentence naming the counts that changed, e.g. "czeka na decyzję: 1".
  function news(before, after) {
    var parts = [];
    Object.keys(after).forEach(function (k) {
      if (before[k] && before[k].n !== after[k].n) parts.push(after[k].label + ": " + after[k].n);
    });
    return parts.join("; ");
  }

  function live(el) {
    var every = Math.max(2, parseFloat(el.getAttribute("data-every")) || 5) * 1000;
    var announcer = document.getElementById(el.getAttribute("data-announce") || "");
    var busy = false;
    function update(html) {
      var fresh = document.createElement("div");
      fresh.innerHTML = html;
      var before = counts(el), focused = document.activeElement;
      var focusKey = focused && el.contains(focused) ? (keyOf(focused) ||
        (focused.getAttribute && focused.getAttribute("href"))) : null;
      patchChildren(el, fresh);
      // The focused element went away (its row left the list): focus its successor
      // with the same key or link, if there is one, rather than dropping to <body>.
      if (focusKey && !el.contains(focused)) {
        var again = null;
        var candidates = el.querySelectorAll("[data-key], [id], [data-testid], a[href]");
        Array.prototype.some.call(candidates, function (c) {
          again = keyOf(c) === focusKey || c.getAttribute("href") === focusKey ? c : null;
          return again !== null;
        });
        if (again) again.focus();
      }
      var said = news(before, counts(el));
      if (announcer && said) announcer.textContent = said;
      scrollers();
    }
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
            update(html);
            el.classList.remove("stale");
          }
        })
        .catch(function () { el.classList.add("stale"); })
        .then(function () { busy = false; });
    }
    setInterval(refresh, every);
    document.addEventListener("visibilitychange", refresh);
  }

  // A .scroll region that is wider than the screen can be scrolled from the keyboard:
  // it takes focus (tabindex=0) while it overflows, and only then. A region the page
  // made focusable itself (the guide's tables) is left as it is.
  function scrollers() {
    Array.prototype.forEach.call(document.querySelectorAll(".scroll"), function (s) {
      if (s.hasAttribute("tabindex") && !s.hasAttribute("data-scroll-auto")) return;
      s.setAttribute("data-scroll-auto", "");
      if (s.scrollWidth > s.clientWidth + 1) s.setAttribute("tabindex", "0");
      else s.removeAttribute("tabindex");
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    Array.prototype.forEach.call(document.querySelectorAll("[data-live]"), live);
    Array.prototype.forEach.call(document.querySelectorAll("[data-print]"), function (b) {
      b.addEventListener("click", function () { window.print(); });
    });
    scrollers();
    window.addEventListener("resize", scrollers);
  });
})();
