// mesh catalog: client-side search over window.MESH_SEARCH_INDEX (assets/search-index.js, loaded as a script
// because browsers block fetch() from file://), copy buttons, and opening the table a link points into.
// Results are built with textContent only: index values come from contracts and are never parsed as HTML.
(function () {
  "use strict";
  var root = document.body.getAttribute("data-root") || "";
  var index = (window.MESH_SEARCH_INDEX || []).map(function (e) {
    return { entry: e, name: e.name.toLowerCase(), text: (e.context + " " + e.description).toLowerCase() };
  });
  var input = document.getElementById("search");
  var list = document.getElementById("search-results");
  var KIND_RANK = { product: 0, port: 1, column: 2, table: 3 };
  var LIMIT = 40;

  // Every word must occur in the name, context or description; names that equal, start with or contain the
  // query come first.
  function search(query) {
    var q = query.trim().toLowerCase();
    if (!q) return [];
    var words = q.split(/\s+/);
    var hits = [];
    index.forEach(function (item) {
      for (var i = 0; i < words.length; i++) {
        if (item.name.indexOf(words[i]) < 0 && item.text.indexOf(words[i]) < 0) return;
      }
      var short = item.name.split(/[./]/).pop();
      var score = item.name === q || short === q ? 0 : short.indexOf(q) === 0 ? 1 : item.name.indexOf(q) >= 0 ? 2 : 3;
      hits.push({ item: item, score: score });
    });
    hits.sort(function (a, b) {
      return a.score - b.score || KIND_RANK[a.item.entry.kind] - KIND_RANK[b.item.entry.kind] ||
        (a.item.name < b.item.name ? -1 : a.item.name > b.item.name ? 1 : 0);
    });
    return hits.map(function (h) { return h.item.entry; });
  }

  function span(cls, text) {
    var s = document.createElement("span");
    s.className = cls;
    s.textContent = text;
    return s;
  }

  function render() {
    var found = search(input.value);
    list.textContent = "";
    if (!input.value.trim()) { list.hidden = true; return; }
    found.slice(0, LIMIT).forEach(function (e) {
      var li = document.createElement("li");
      var a = document.createElement("a");
      a.href = root + e.url;
      a.className = "result";
      a.appendChild(span("kind", e.kind));
      a.appendChild(span("name", e.name));
      a.appendChild(span("context", e.context));
      if (e.description) a.appendChild(span("desc", e.description));
      li.appendChild(a);
      list.appendChild(li);
    });
    if (!found.length) list.appendChild(span("empty", "No product, table or column matches."));
    else if (found.length > LIMIT) list.appendChild(span("empty", (found.length - LIMIT) + " more: refine the search."));
    list.hidden = false;
  }

  function move(step) {
    var links = Array.prototype.slice.call(list.querySelectorAll("a.result"));
    if (!links.length) return;
    var at = links.indexOf(list.querySelector("a.active"));
    if (at >= 0) links[at].classList.remove("active");
    at = (at + step + links.length) % links.length;
    links[at].classList.add("active");
    links[at].scrollIntoView({ block: "nearest" });
  }

  if (input && list) {
    input.addEventListener("input", render);
    input.addEventListener("focus", render);
    input.addEventListener("keydown", function (ev) {
      if (ev.key === "ArrowDown") { move(1); ev.preventDefault(); }
      else if (ev.key === "ArrowUp") { move(-1); ev.preventDefault(); }
      else if (ev.key === "Escape") { list.hidden = true; }
      else if (ev.key === "Enter") {
        var chosen = list.querySelector("a.active") || list.querySelector("a.result");
        if (chosen) window.location.href = chosen.href;
      }
    });
    document.addEventListener("click", function (ev) {
      if (!list.contains(ev.target) && ev.target !== input) list.hidden = true;
    });
  }

  // A link into a collapsed internal table opens it.
  function openTarget() {
    var id = decodeURIComponent(window.location.hash.slice(1));
    var target = id && document.getElementById(id);
    for (var node = target; node; node = node.parentElement) {
      if (node.tagName === "DETAILS") node.open = true;
    }
    if (target) target.scrollIntoView();
  }
  window.addEventListener("hashchange", openTarget);
  openTarget();

  document.querySelectorAll("button.copy").forEach(function (button) {
    button.addEventListener("click", function () {
      var text = button.closest(".snippet").querySelector("code").textContent;
      function done() { button.textContent = "Copied"; setTimeout(function () { button.textContent = "Copy"; }, 1500); }
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(text).then(done, fallback);
      } else {
        fallback();
      }
      function fallback() {  // file:// pages in some browsers have no async clipboard
        var area = document.createElement("textarea");
        area.value = text;
        document.body.appendChild(area);
        area.select();
        document.execCommand("copy");
        area.remove();
        done();
      }
    });
  });
})();
