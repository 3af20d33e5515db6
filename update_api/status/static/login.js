// A login link from the provider carries the token after '#': browsers never send that part to a
// server, so no proxy or access log sees it. Take it from there, drop it from the address bar and
// history, and log in with it.
(function () {
  "use strict";
  var m = /^#token=([A-Za-z0-9_-]+)$/.exec(window.location.hash);
  if (!m) { return; }
  window.history.replaceState(null, "", window.location.pathname);
  document.getElementById("token").value = m[1];
  document.getElementById("token-form").submit();
}());
