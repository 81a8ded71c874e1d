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

// Big matrices (site_build/macros/scale.py): a head selector over each record's per-head <details>, and the
// heatmaps: hover names the cell, a click opens its number in the table (and the click panel) when it is shown;
// a wide matrix's table is on a page of its own, which the click opens at the cell (numbers/NAME.html#cell=1,40).
(function () {
  "use strict";
  var groups = Array.prototype.slice.call(document.querySelectorAll(".heads"));
  function show(group, head) {
    group.querySelectorAll(":scope > details.head").forEach(function (d) { d.open = d.dataset.head === head; });
    group.querySelectorAll(".head-pick button").forEach(function (b) {
      b.setAttribute("aria-pressed", b.dataset.head === head ? "true" : "false");
    });
  }
  groups.forEach(function (group) {
    var heads = group.querySelectorAll(":scope > details.head");
    var bar = document.createElement("div");
    bar.className = "head-pick";
    bar.setAttribute("role", "group");
    bar.setAttribute("aria-label", "Head");
    var open = null;
    heads.forEach(function (d) {
      if (d.open && open === null) open = d.dataset.head;
      var b = document.createElement("button");
      b.type = "button";
      b.dataset.head = d.dataset.head;
      b.textContent = "Head " + d.dataset.head;
      b.addEventListener("click", function () {
        // every selector of the page with this head follows, so the steps of one head read together
        groups.forEach(function (g) {
          if (g.querySelector(':scope > details.head[data-head="' + b.dataset.head + '"]')) show(g, b.dataset.head);
        });
      });
      bar.appendChild(b);
    });
    var note = group.querySelector(".heads-note");
    group.insertBefore(bar, note ? note.nextSibling : group.firstChild);
    group.classList.add("picked");
    show(group, open === null && heads.length ? heads[0].dataset.head : open);
  });

  function cellAt(img, e) {
    var box = img.getBoundingClientRect(), r = +img.dataset.r, c = +img.dataset.c;
    var row = Math.min(r - 1, Math.floor((e.clientY - box.top) / box.height * r));
    var col = Math.min(c - 1, Math.floor((e.clientX - box.left) / box.width * c));
    return img.dataset.t ? [col, null] : [r > 1 ? row : null, col];
  }
  function find(table, at) {  // the cell of (row, col) in this table, if the table shows it
    if (!table) return null;
    var tr = at[0] === null ? table.tBodies[0].rows[0] : table.querySelector('tr[data-i="' + at[0] + '"]');
    var k = 1;
    if (at[1] !== null) {
      var th = table.tHead.querySelector('th[data-j="' + at[1] + '"]');
      if (!th) return null;
      k = th.cellIndex;
    }
    return tr ? tr.cells[k] || null : null;
  }
  function parts(img) {  // the table under this heatmap, or the link to the page of its table
    var fig = img.closest("figure");
    return [fig && fig.querySelector("table.matrix[data-record]"), fig && fig.querySelector("p.numbers a")];
  }
  function open(cell) {
    var details = cell.closest("details");
    if (details) details.open = true;
    if (!cell.hasAttribute("tabindex")) cell.tabIndex = -1;
    cell.scrollIntoView({ block: "nearest", inline: "nearest" });
    cell.focus();
    cell.click();
  }
  document.querySelectorAll(".hm img[data-r]").forEach(function (img) {
    img.addEventListener("mousemove", function (e) {
      var at = cellAt(img, e), p = parts(img);
      img.title = (at[0] === null ? "" : "row " + at[0] + (at[1] === null ? "" : ", ")) +
        (at[1] === null ? "" : "column " + at[1]) + (find(p[0], at) ? ": click for its number" :
          p[1] ? ": click for its number, on the page of the table" : " (not in the table below)");
    });
    img.addEventListener("click", function (e) {
      var at = cellAt(img, e), p = parts(img), cell = find(p[0], at);
      if (cell) open(cell);
      else if (p[1]) location.href = p[1].href + "#cell=" + at.map(function (i) { return i === null ? "" : i; }).join(",");
    });
  });
  // Arriving at a table's page from a heatmap: open the cell (after every deferred script, the click panel's too).
  var target = /^#cell=(\d*),(\d*)$/.exec(location.hash);
  if (target) {
    document.addEventListener("DOMContentLoaded", function () {
      var at = [target[1], target[2]].map(function (i) { return i === "" ? null : +i; });
      var cell = find(document.querySelector("table.matrix[data-record]"), at);
      if (cell) open(cell);
    });
  }
})();
