// handstep: click (or focus + Enter) any number to see how it was computed.
// On the first click the page's data (its records and their inputs) loads, with the interpreter of the
// descriptions in engine/explain/ops.yaml (assets/explain/interpret.js and ops.js, the same descriptions
// the pages' calc() blocks come from) and KaTeX to typeset the lines. Pages read completely without it.
(function () {
  "use strict";
  var doc = document, root = doc.documentElement.dataset.root || "", main = doc.querySelector("[data-explain]");
  if (!main) return;
  var MINUS = "−";
  var D = null, X = null, panel, content, closer, from;
  var CELLS = "table.matrix td:not(.gap), .value-highlight";
  var SCRIPTS = [main.dataset.explain, root + "assets/explain/interpret.js", root + "assets/explain/ops.js",
    root + "katex/katex.min.js"];

  function esc(s) {
    return String(s).replace(/[&<>"]/g, function (c) { return "&#" + c.charCodeAt(0) + ";"; });
  }

  // -- records: flat values (base64 little-endian float64) with a shape -----------------------------------
  function vals(r) {
    if (!r.values) {
      if (!r.b) return null;
      var s = atob(r.b), dv = new DataView(new ArrayBuffer(s.length));
      for (var i = 0; i < s.length; i++) dv.setUint8(i, s.charCodeAt(i));
      r.values = [];
      for (i = 0; i < s.length; i += 8) r.values.push(dv.getFloat64(i, true));
    }
    return r.values;
  }
  function at(r, idx) {
    var o = 0;
    for (var k = 0; k < r.shape.length; k++) o = o * r.shape[k] + (idx[k] || 0);
    return vals(r)[o];
  }
  function prepare() {  // name every record and decode its values once, for the interpreter
    Object.keys(D.records).forEach(function (n) { var r = D.records[n]; r.name = n; vals(r); });
  }

  // -- loading: the page's data, the interpreter, its descriptions and KaTeX, in order ---------------------
  // load(done, n): run `done` once the first n scripts have loaded (all by default). A hover needs only the
  // page's data (n = 1): KaTeX and the interpreter load on the first click.
  var loaded = 0, busy = false, queue = [];
  function load(done, n) {
    queue.push([n || SCRIPTS.length, done]);
    pump();
  }
  function pump() {
    if (loaded >= 1 && !D) { D = window.HANDSTEP_DATA; prepare(); }
    if (loaded >= 2) X = window.HandstepExplain;
    var ready = queue.filter(function (q) { return loaded >= q[0]; });
    queue = queue.filter(function (q) { return loaded < q[0]; });
    ready.forEach(function (q) { q[1](); });
    if (busy || !queue.length) return;
    busy = true;
    var s = doc.createElement("script");
    s.src = SCRIPTS[loaded];
    s.onload = function () { busy = false; loaded++; pump(); };
    s.onerror = function () {
      if (content) content.innerHTML = "<p>The numbers for this page did not load.</p>";
      busy = false; queue = [];
    };
    doc.head.appendChild(s);
  }
  function tex(latex, display) {
    try {
      return window.katex.renderToString(latex, { displayMode: !!display, throwOnError: false, output: "htmlAndMathml" });
    } catch (e) { return "<code>" + esc(latex) + "</code>"; }
  }

  // -- keyboard: Tab reaches each table once (its first cell), arrow keys move between cells ---------------
  doc.querySelectorAll("table.matrix[data-record]").forEach(function (t) {
    if (!t.dataset.record) return;
    var first = t.querySelector("td:not(.gap)");
    if (first) first.tabIndex = 0;
  });
  doc.querySelectorAll(".value-highlight[data-record]").forEach(function (s) { s.tabIndex = 0; s.setAttribute("role", "button"); });
  function take(c) {  // roving tabindex: the cell last visited is the table's tab stop
    var old = c.closest("table").querySelector("td[tabindex='0']");
    if (old && old !== c) old.tabIndex = -1;
    c.tabIndex = 0;
  }
  function move(c, key) {
    var tr = c.parentNode, rows = tr.parentNode.rows, r = tr.sectionRowIndex, k = c.cellIndex;
    var dr = { ArrowDown: 1, ArrowUp: -1 }[key] || 0, dk = { ArrowRight: 1, ArrowLeft: -1 }[key] || 0;
    for (;;) {
      r += dr; k += dk;
      var x = rows[r] && rows[r].cells[k];
      if (!x) return;
      if (x.tagName === "TD" && !x.classList.contains("gap")) { take(x); x.focus(); return; }
    }
  }
  function exact(c) {  // the full-precision value, from the page's data, on hover and focus
    if (c.title || c.tagName !== "TD") return;
    load(function () { var k = where(c), r = D.records[k[0]]; if (r && r.values) c.title = String(at(r, k[1])); }, 1);
  }

  function cellOf(el) {
    var c = el && el.closest ? el.closest(CELLS) : null, host = c && c.closest("[data-record]");
    return host && host.dataset.record ? c : null;
  }
  function where(c) {
    var host = c.closest("[data-record]"), idx = host.dataset.at ? host.dataset.at.split(",").map(Number) : [];
    if (c.tagName === "TD") {
      var i = c.parentNode.dataset.i, th = host.tHead && host.tHead.rows[0].cells[c.cellIndex], j = th && th.dataset.j;
      if (i !== undefined) idx.push(+i);
      if (j !== undefined) idx.push(+j);
    }
    return [host.dataset.record, idx];
  }

  function links(name) {
    var urls = D.pages[name] || [];
    if (!urls.length) return " <em>(not shown on any page)</em>";
    return " on " + urls.map(function (u) {
      return '<a href="' + esc(root + u) + '">' + esc(D.titles[u]) + "</a>" + (main.dataset.page === u ? " (this page)" : "");
    }).join(", ");
  }

  function render(c) {
    var key = where(c), name = key[0], idx = key[1], rec = D.records[name], ex;
    if (!rec || !rec.values) {
      return "<p>The values of " + esc(name) + " are too large to ship with this page; they are in the site's trace file.</p>";
    }
    try { ex = X.explain(window.HANDSTEP_OPS, D.records, name, idx, D.vocab); }
    catch (e) { return "<p>" + esc(e.message) + "</p>"; }
    var value = at(rec, idx), seen = [], out = [];
    out.push('<h2 id="explain-title">' + tex(X.sub(rec, idx, window.HANDSTEP_OPS) + " = " + X.num(value), false) + "</h2>",
      "<p><code>" + esc(name) + "</code> [" + idx.join(", ") + "], exact value <code>" + esc(String(value)) + "</code></p>");
    if (rec.formula) out.push('<div class="explain-formula">' + tex(rec.formula, true) + "</div>");
    if (ex.text) out.push('<p class="calc-text">' + esc(ex.text) + "</p>");
    ex.lines.forEach(function (l) {  // laid out as the pages' calc() lines are (macros/numbers.py calc_line)
      var s = X.splitLine(l);
      out.push('<div class="calc-line explain-line" data-tex="' + esc(l) + '">' + (s[0] ? '<span class="calc-lhs">' +
        tex(s[0], true) + '</span><span class="calc-rhs">' + tex(s[1], true) + "</span>" : tex(l, true)) + "</div>");
    });
    ex.operands.forEach(function (o) { if (seen.indexOf(o[0]) < 0) seen.push(o[0]); });
    if (seen.length) {
      var sums = rec.op === "add" && rec.phase === "backward";
      out.push("<p>" + (sums ? "This gradient sums " + seen.length + " upstream contributions:" : "Computed from:") + "</p><ul>");
      seen.forEach(function (n) {
        var used = ex.operands.filter(function (o) { return o[0] === n; }), one = used.length === 1 ? used[0][1] : null;
        out.push("<li><code>" + esc(n) + "</code>" + (one ? " [" + one.join(", ") + "] = " + esc(X.num(at(D.records[n], one)).replace(/-/g, MINUS)) : ", " + used.length + " entries") + links(n) + "</li>");
      });
      out.push("</ul>");
    }
    return out.join("");
  }

  // -- the panel ----------------------------------------------------------------------------------------------
  function build() {
    panel = doc.createElement("div");
    panel.className = "explain-panel";
    panel.setAttribute("data-explain-panel", "");
    panel.setAttribute("role", "dialog");
    panel.setAttribute("aria-labelledby", "explain-title");
    panel.tabIndex = -1;
    panel.innerHTML = '<button type="button" class="explain-close" aria-label="Close">×</button><div class="explain-body"></div>';
    closer = panel.firstChild;
    content = panel.lastChild;
    closer.addEventListener("click", close);
    doc.body.appendChild(panel);
  }
  function open(c) {
    if (!panel) build();
    if (c.tagName === "TD") take(c);
    from = c;
    panel.hidden = false;
    content.innerHTML = "<p>Loading…</p>";
    closer.focus();
    load(function () { if (from === c) content.innerHTML = render(c); });
  }
  function close() {
    if (!panel || panel.hidden) return;
    panel.hidden = true;
    if (from) from.focus();
  }

  doc.addEventListener("click", function (e) {
    var c = cellOf(e.target);
    if (c) open(c);
  });
  doc.addEventListener("keydown", function (e) {
    if (e.key === "Escape" && panel && !panel.hidden) { e.preventDefault(); close(); return; }
    var c = cellOf(e.target);
    if (!c || c !== e.target) return;
    if (e.key === "Enter" || e.key === " ") { e.preventDefault(); open(c); }
    else if (c.tagName === "TD" && /^Arrow/.test(e.key)) { e.preventDefault(); move(c, e.key); }
  });
  // build --compare: opening a <details class="compare"> draws the other run's values, shaded by the change.
  doc.addEventListener("toggle", function (e) {
    var det = e.target, wrap = det.previousElementSibling, t = wrap && wrap.querySelector("table.matrix");
    if (!det.open || !det.hasAttribute("data-compare") || det.dataset.done || !t) return;
    det.dataset.done = "1";
    load(function () {
      var copy = t.cloneNode(true), cells = [], top = 0, rec = D.records[t.dataset.record];
      if (!rec || !rec.o) return;
      var other = { shape: rec.shape, b: rec.o };
      copy.querySelectorAll("td:not(.gap)").forEach(function (c) {
        var idx = where(c)[1], a = at(rec, idx), b = at(other, idx), d = a === b ? 0 : Math.abs(b - a);
        if (!isFinite(d)) d = 0;
        cells.push([c, b, d, b - a]);
        if (d > top) top = d;
      });
      cells.forEach(function (x) {
        x[0].className = x[2] ? "d" : "";
        x[0].textContent = x[1] === -Infinity ? MINUS + "∞" : x[1].toFixed(4).replace(/-/g, MINUS);
        if (x[2]) { x[0].style.setProperty("--d", (x[2] / top).toFixed(2)); x[0].title = "Δ " + x[3].toPrecision(3); }
      });
      copy.className = "cmp";
      copy.removeAttribute("data-record");
      if (copy.caption) copy.deleteCaption();
      var box = doc.createElement("div");
      box.className = "matrix-wrap";
      box.appendChild(copy);
      det.replaceChild(box, det.querySelector(".compare-note"));
    }, 1);
  }, true);
  doc.addEventListener("mouseover", function (e) { var c = cellOf(e.target); if (c) exact(c); });
  doc.addEventListener("focusin", function (e) {
    var c = cellOf(e.target);
    if (c && c.tagName === "TD") { take(c); exact(c); }
  });
})();
