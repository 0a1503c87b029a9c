// Patchday console: the one script. Pages are complete without it; it only keeps the
// rollout page current by polling its JSON fragment. Text goes in with textContent,
// never as HTML.
"use strict";
(function () {
  var box = document.getElementById("rollout");
  if (!box) { return; }
  var url = box.getAttribute("data-progress");
  var tenant = url.split("/")[3];
  function cell(text) {
    var td = document.createElement("td");
    td.textContent = text;
    return td;
  }
  function show(p) {
    document.getElementById("halt").textContent = p.halt;
    var counts = document.getElementById("counts");
    counts.textContent = "";
    Object.keys(p.counts).forEach(function (state) {
      var span = document.createElement("span");
      span.className = "tag state-" + state;
      span.textContent = state + ": " + p.counts[state];
      counts.appendChild(span);
      counts.appendChild(document.createTextNode(" "));
    });
    var body = document.getElementById("rollout-hosts");
    body.textContent = "";
    p.hosts.forEach(function (h) {
      var tr = document.createElement("tr");
      var name = document.createElement("td");
      var a = document.createElement("a");
      a.href = "/console/tenants/" + encodeURIComponent(tenant) + "/hosts/" + encodeURIComponent(h.id);
      a.textContent = h.hostname;
      name.appendChild(a);
      tr.appendChild(name);
      var st = cell(h.state);
      st.className = "host-state";
      st.setAttribute("data-host", h.hostname);
      tr.appendChild(st);
      tr.appendChild(cell(h.message));
      body.appendChild(tr);
    });
    box.setAttribute("data-updated", String(Date.now()));
  }
  function poll() {
    fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (p) { if (p) { show(p); } })
      .catch(function () {})
      .then(function () { setTimeout(poll, 2000); });
  }
  setTimeout(poll, 2000);
})();
