// Bosun's dashboard: live updates without polling. One EventSource (/events) tells which app changed;
// the page then fetches itself once and swaps its live part. Nothing here writes anything.
(function () {
  "use strict";
  var key = document.body.getAttribute("data-live");
  var state = document.getElementById("live-state");
  var timer = null, inflight = false, again = false, updates = 0;

  function refresh() {
    if (inflight) { again = true; return; }
    inflight = true;
    fetch(location.href, { cache: "no-store", headers: { "Accept": "text/html" } })
      .then(function (r) { return r.text(); })
      .then(function (text) {
        var fresh = new DOMParser().parseFromString(text, "text/html").getElementById("live");
        var live = document.getElementById("live");
        if (fresh && live) {
          live.innerHTML = fresh.innerHTML;
          updates += 1;
          document.body.setAttribute("data-updates", String(updates));
        }
      })
      .catch(function () { /* the next event tries again */ })
      .then(function () {
        inflight = false;
        if (again) { again = false; schedule(); }
      });
  }

  // Many changes in a burst make one fetch: at most one a second for the overview (every app's
  // change concerns it), sooner for one app's page.
  var delay = key === "*" ? 1000 : 300;
  function schedule() {
    if (timer !== null) { return; }
    timer = setTimeout(function () { timer = null; refresh(); }, delay);
  }

  var filter = document.querySelector("form.filter");
  if (filter) {
    Array.prototype.forEach.call(filter.querySelectorAll("select"), function (s) {
      s.addEventListener("change", function () { filter.submit(); });
    });
  }

  if (!window.EventSource) { state.textContent = "reload for updates"; return; }
  var events = new EventSource("/events");
  var opened = false;
  events.onopen = function () {
    state.textContent = "live";
    // After a reconnection, changes may have been missed.
    if (opened) { schedule(); }
    opened = true;
  };
  events.onerror = function () { state.textContent = "reconnecting…"; };
  events.addEventListener("change", function (e) {
    if (key === "*" || e.data === "*" || e.data === key) { schedule(); }
  });
})();
