// Master Control dashboard: refresh the page's live section without a full reload.
// The page works without this file; with it, every few seconds the same URL is fetched
// (with the session cookie) and the element with id "live" is swapped for the new one.
(function () {
  "use strict";
  var live = document.getElementById("live");
  if (!live || !window.fetch || !window.DOMParser) { return; }
  var every = parseInt(live.getAttribute("data-refresh"), 10) * 1000;
  if (!(every > 0)) { return; }
  var busy = false;

  function refresh() {
    if (busy || document.hidden) { return; }
    var focused = document.activeElement;
    if (focused && focused.form && document.getElementById("live").contains(focused)) { return; }  // don't pull a form away
    busy = true;
    fetch(window.location.href, { credentials: "same-origin", cache: "no-store",
                                  headers: { "X-Requested-With": "fetch" } })
      .then(function (res) {
        if (res.redirected || res.status === 401 || res.status === 403) {
          window.location.reload();  // the session is gone: show the login page
          return null;
        }
        return res.ok ? res.text() : null;
      })
      .then(function (text) {
        if (!text) { return; }
        var doc = new DOMParser().parseFromString(text, "text/html");
        var fresh = doc.getElementById("live");
        var current = document.getElementById("live");
        if (fresh && current) {
          current.replaceWith(document.importNode(fresh, true));
          document.body.setAttribute("data-refreshed", String(Date.now()));
        }
      })
      .catch(function () { /* the central is away: try again next time */ })
      .then(function () { busy = false; });
  }

  window.setInterval(refresh, every);
})();
