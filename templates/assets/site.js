// handstep: theme switch and search. Pages read completely without this file.
(function () {
  "use strict";
  var doc = document.documentElement;
  var KEY = "handstep-theme";

  // Theme: auto follows the system (pure CSS); light/dark are remembered.
  var select = document.getElementById("theme-select");
  if (select) {
    select.value = doc.dataset.theme || "auto";
    select.addEventListener("change", function () {
      var value = select.value;
      if (value === "light" || value === "dark") doc.dataset.theme = value;
      else delete doc.dataset.theme;
      try {
        if (value === "auto") localStorage.removeItem(KEY);
        else localStorage.setItem(KEY, value);
      } catch (e) { /* storage blocked: the choice lasts for this page */ }
    });
  }

  // Close the phone menu after picking a page.
  var toggle = document.getElementById("menu-toggle");
  document.querySelectorAll(".sidebar a").forEach(function (a) {
    a.addEventListener("click", function () { if (toggle) toggle.checked = false; });
  });

  // Search with Pagefind's JS API; its index only loads over http(s).
  var input = document.getElementById("search-input");
  var box = document.getElementById("search-results");
  if (!input || !box) return;
  var root = doc.dataset.root || "";
  var offline = location.protocol === "file:";
  if (offline) {
    input.placeholder = "Search needs make serve";
    input.title = "Search needs `make serve` (browsers block the index on file://)";
  }
  var pagefind = null;
  var seq = 0;

  function load() {
    if (!pagefind) {
      var base = new URL(root || "./", location.href);
      pagefind = import(new URL("pagefind/pagefind.js", base).href).then(function (pf) {
        return pf.options({ baseUrl: base.pathname }).then(function () { return pf; });
      });
    }
    return pagefind;
  }

  function show(nodes) {
    box.replaceChildren.apply(box, nodes);
    box.hidden = nodes.length === 0;
  }

  function message(text) {
    var p = document.createElement("p");
    p.textContent = text;
    show([p]);
  }

  function search() {
    var query = input.value.trim();
    var mine = ++seq;
    if (!query) return show([]);
    if (offline) return message("Search needs `make serve`: browsers block the search index on pages opened from disk.");
    load().then(function (pf) { return pf.debouncedSearch(query, {}, 150); }).then(function (res) {
      if (!res || mine !== seq) return null;
      return Promise.all(res.results.slice(0, 8).map(function (r) { return r.data(); }));
    }).then(function (items) {
      if (!items || mine !== seq) return;
      if (!items.length) return message("No results for “" + query + "”.");
      show(items.map(function (item) {
        var a = document.createElement("a");
        a.href = item.url;
        var title = document.createElement("strong");
        title.textContent = (item.meta && item.meta.title) || item.url;
        var excerpt = document.createElement("span");
        excerpt.innerHTML = item.excerpt; // Pagefind's excerpt of our own pages, with <mark>
        a.append(title, excerpt);
        return a;
      }));
    }).catch(function () {
      message("Search is unavailable (the index did not load).");
    });
  }

  input.addEventListener("input", search);
  input.addEventListener("keydown", function (e) {
    if (e.key === "Escape") { input.value = ""; show([]); }
    if (e.key === "ArrowDown" && !box.hidden) {
      var first = box.querySelector("a");
      if (first) { e.preventDefault(); first.focus(); }
    }
  });
  document.addEventListener("keydown", function (e) {
    var typing = /^(INPUT|TEXTAREA|SELECT)$/.test((e.target && e.target.tagName) || "");
    if ((e.key === "/" && !typing) || (e.key === "k" && (e.ctrlKey || e.metaKey))) {
      e.preventDefault();
      input.focus();
    }
  });
  document.addEventListener("click", function (e) {
    if (!box.contains(e.target) && e.target !== input) box.hidden = true;
  });
})();
