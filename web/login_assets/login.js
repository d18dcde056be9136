// The login page follows its ticket by polling /login/status, then
// completes the login (approved or denied) by submitting the page's own
// form, which carries the CSRF token. No inline script: the page's CSP
// allows only this file.
(function () {
  "use strict";
  var main = document.getElementById("login");
  if (!main) { return; }
  var ticket = main.dataset.ticket;
  var status = document.getElementById("status");
  var qr = document.getElementById("qr");
  var renew = document.getElementById("renew");
  var complete = document.getElementById("complete");
  var done = false;
  var failures = 0;

  function show(state, key) {
    status.dataset.state = state;
    status.textContent = main.dataset["msg" + key];
  }
  function stale(state, key) {
    done = true;
    show(state, key);
    qr.classList.add("stale");
    renew.hidden = false;
  }
  function finish(state, key) {
    done = true;
    show(state, key);
    complete.submit();
  }
  qr.addEventListener("error", function () { stale("failed", "Failed"); });

  function poll() {
    if (done) { return; }
    fetch("/login/status?ticket=" + encodeURIComponent(ticket), {
      credentials: "same-origin", cache: "no-store", headers: { "Accept": "application/json" }
    }).then(function (r) {
      if (r.status === 404) { return { state: "expired" }; }
      if (!r.ok) { throw new Error("status " + r.status); }
      return r.json();
    }).then(function (s) {
      failures = 0;
      switch (s.state) {
        case "waiting": show("waiting", "Waiting"); break;
        case "scanned": show("scanned", "Scanned"); break;
        case "approved": finish("approved", "Approved"); return;
        case "denied": finish("denied", "Denied"); return;
        default: stale("expired", "Expired"); return;
      }
      setTimeout(poll, 1000);
    }).catch(function () {
      failures++;
      show("unreachable", "Unreachable");
      setTimeout(poll, Math.min(1000 * Math.pow(2, failures), 10000));
    });
  }
  poll();
})();
