// Keeps the state card current without a reload: polls the state as JSON (same origin, the
// session cookie) every data-interval ms. No framework, no build step.
(function () {
  "use strict";
  var card = document.getElementById("state-card");
  if (!card) { return; }
  var url = card.getAttribute("data-poll");
  var every = parseInt(card.getAttribute("data-interval"), 10) || 3000;
  function set(id, text) {
    var el = document.getElementById(id);
    if (el && el.textContent !== text) { el.textContent = text; }
  }
  function apply(s) {
    card.classList.remove("live", "neutral");
    card.classList.add(s.css);
    card.setAttribute("data-state", s.css);
    set("state", s.label);
    set("since", s.since);
    set("ipv4", s.ipv4);
    set("ipv6", s.ipv6);
    set("last-beat", s.last_beat);
  }
  function poll() {
    fetch(url, { credentials: "same-origin", cache: "no-store", headers: { "Accept": "application/json" } })
      .then(function (r) {
        if (r.status === 401) { window.location.reload(); return null; }
        return r.ok ? r.json() : null;
      })
      .then(function (s) { if (s) { apply(s); } })
      .catch(function () { /* offline for a moment: the next poll tries again */ })
      .then(function () { window.setTimeout(poll, every); });
  }
  card.setAttribute("data-state", card.classList.contains("live") ? "live" : "neutral");
  window.setTimeout(poll, every);
}());
