// handstep: click (or focus + Enter) any number to see how it was computed.
// The page's data (its records and their inputs) loads on the first click; the arithmetic
// is recomputed here exactly as engine/explain.py does it. Pages read completely without it.
(function () {
  "use strict";
  var MINUS = "−", MAX_TERMS = 24;
  var SHORT = { batch: "b", heads: "h", tokens: "t", keys: "s", d_model: "c", head_dim: "d", d_ff: "f",
    qkv: "n", vocab: "v", positions: "p", step: "k" };

  function esc(s) {
    return String(s).replace(/[&<>"]/g, function (c) { return "&#" + c.charCodeAt(0) + ";"; });
  }
  function num(x) {
    if (x === -Infinity) return MINUS + "∞";
    if (x === 0) return "0";
    var a = Math.abs(x), s;
    if (a >= 1e-3 && a < 1e5) s = x.toFixed(4);
    else { var p = x.toExponential(2).split("e"); s = p[0] + "×10<sup>" + (+p[1]) + "</sup>"; }
    return s.replace(/-/g, MINUS);
  }
  function par(x) { var s = num(x); return s.charAt(0) === MINUS ? "(" + s + ")" : s; }
  function sum(a) { var t = 0; for (var i = 0; i < a.length; i++) t += a[i]; return t; }

  // -- records: flat values (base64 little-endian float64) with a shape --------
  function vals(r) {
    if (!r.v) {
      if (!r.b) throw new Error("The values of " + r.name + " are too large to ship with this page; they are in the site's trace.json.");
      var s = atob(r.b), dv = new DataView(new ArrayBuffer(s.length));
      for (var i = 0; i < s.length; i++) dv.setUint8(i, s.charCodeAt(i));
      r.v = [];
      for (i = 0; i < s.length; i += 8) r.v.push(dv.getFloat64(i, true));
    }
    return r.v;
  }
  function off(r, idx) { var o = 0; for (var k = 0; k < r.shape.length; k++) o = o * r.shape[k] + (idx[k] || 0); return o; }
  function at(r, idx) { return vals(r)[off(r, idx)]; }
  function row(r, pre) { var n = r.shape[r.shape.length - 1], o = off(r, pre); return vals(r).slice(o, o + n); }
  function sub(r, idx) {
    var parts = [];
    r.axes.forEach(function (ax, k) { if (!(ax === "batch" && r.shape[0] === 1)) parts.push((SHORT[ax] || ax) + "=" + idx[k]); });
    return '<span class="sym">' + (r.symbol || esc(r.name)) + "</span>" + (parts.length ? "<sub>" + parts.join(",") + "</sub>" : "");
  }
  function joinSum(terms, result, lhs) {
    var n = terms.length;
    if (n > MAX_TERMS) terms = terms.slice(0, 8).concat(["⋯ (" + (n - 12) + " more terms)"], terms.slice(-4));
    return lhs + " = " + (terms.length ? terms.join(" + ") : "0") + " = " + num(result);
  }
  function range(n) { var a = []; for (var i = 0; i < n; i++) a.push(i); return a; }

  // -- the einsum element: every product that sums to one output entry -------
  function einsumTerms(spec, ins, index) {
    var p = spec.split("->"), specs = p[0].split(","), out = p[1], joined = specs.join(""), letters = {}, sizes = {}, free = [];
    for (var k = 0; k < out.length; k++) letters[out[k]] = index[k];
    for (k = 0; k < joined.length; k++) if (out.indexOf(joined[k]) < 0 && free.indexOf(joined[k]) < 0) free.push(joined[k]);
    specs.forEach(function (s, i) { for (var c = 0; c < s.length; c++) sizes[s[c]] = ins[i].shape[c]; });
    var total = 1, terms = [];
    free.forEach(function (ch) { total *= sizes[ch]; });
    for (var t = 0; t < total; t++) {
      for (var rem = t, f = free.length - 1; f >= 0; f--) { letters[free[f]] = rem % sizes[free[f]]; rem = Math.floor(rem / sizes[free[f]]); }
      var v = 1, factors = specs.map(function (s, i) { return [ins[i], s.split("").map(function (ch) { return letters[ch]; })]; });
      factors.forEach(function (fa) { v *= at(fa[0], fa[1]); });
      terms.push([v, factors]);
    }
    return terms;
  }

  function contraction(ex, rec, ins, idx, bias) {
    var terms = einsumTerms(rec.meta.einsum, ins, idx), total = 0;
    var shown = terms.filter(function (t) { return t[0] !== 0 || t[1].every(function (f) { return at(f[0], f[1]) !== 0; }); });
    terms.forEach(function (t) { total += t[0]; t[1].forEach(function (f) { ex.o(f[0], f[1]); }); });
    var tex = shown.map(function (t) { return t[1].map(function (f) { return par(at(f[0], f[1])); }).join(" · "); });
    var first = (shown[0] || terms[0] || [0, []])[1], c = idx[idx.length - 1];
    var pattern = first.map(function (f) { return sub(f[0], f[1]); }).join(" · ") + (terms.length > 1 ? " + ⋯" : "");
    if (bias) { var b = at(bias, [c]); total += b; tex.push(par(b)); ex.o(bias, [c]); pattern += " + " + sub(bias, [c]); }
    ex.result = total;
    ex.lines.push(sub(rec, idx) + " = " + pattern, joinSum(tex, total, sub(rec, idx)));
    ex.text = "sum of " + terms.length + " product" + (terms.length !== 1 ? "s" : "") + (bias ? " plus a bias" : "");
  }

  function same(ex, rec, src, idx, sidx, text) {
    ex.o(src, sidx); ex.result = at(src, sidx);
    ex.lines.push(sub(rec, idx) + " = " + sub(src, sidx) + " = " + num(ex.result));
    ex.text = text;
  }
  function target(D, targets, bt) { var y = at(targets, bt); return [y, y >= 0 ? D.vocab[y] : "<ignored>"]; }
  // A config word in HTML, isolated (<bdi>) so that right-to-left text or a bidi control such as U+202E
  // in it cannot reorder the rest of the line.
  function bdi(w) { return "<bdi>" + esc(w) + "</bdi>"; }
  function word(w) { return "“" + bdi(w) + "”"; }
  function gelu(D, u) { return Math.tanh(D.gelu[0] * (u + D.gelu[1] * u * u * u)); }

  // One handler per op kind, as in engine/explain.py's HANDLERS.
  var H = {
    matmul: function (ex, rec, ins, idx) { contraction(ex, rec, ins, idx); },
    linear: function (ex, rec, ins, idx) { contraction(ex, rec, ins.slice(0, 2), idx, ins[2]); },
    add: function (ex, rec, ins, idx) {
      var ps = ins.map(function (r) { return [r, idx.slice(idx.length - r.shape.length)]; });
      ex.result = 0;
      ps.forEach(function (p) { ex.o(p[0], p[1]); ex.result += at(p[0], p[1]); });
      ex.lines.push(sub(rec, idx) + " = " + ps.map(function (p) { return sub(p[0], p[1]); }).join(" + ") + " = " +
        ps.map(function (p) { return par(at(p[0], p[1])); }).join(" + ") + " = " + num(ex.result));
      ex.text = "a sum of " + ps.map(function (p) { return p[0].name; }).join(" and ");
    },
    mean: function (ex, rec, ins, idx) {
      var r = row(ins[0], idx), s = sum(r);
      r.forEach(function (_, c) { ex.o(ins[0], idx.concat([c])); });
      ex.result = s / r.length;
      ex.lines.push(joinSum(r.map(par), s, "Σ<sub>c</sub> x<sub>c</sub>"), sub(rec, idx) + " = " + num(s) + " / " + r.length + " = " + num(ex.result));
      ex.text = "the mean of the " + r.length + " entries of row (" + idx.join(", ") + ")";
    },
    "var": function (ex, rec, ins, idx) {
      var r = row(ins[0], idx), mu = at(ins[1], idx), sq = r.map(function (v) { return (v - mu) * (v - mu); }), s = sum(sq);
      r.forEach(function (_, c) { ex.o(ins[0], idx.concat([c])); });
      ex.o(ins[1], idx);
      ex.result = s / r.length;
      ex.lines.push("μ = " + num(mu), joinSum(r.map(function (v) { return "(" + num(v) + " − " + par(mu) + ")<sup>2</sup>"; }), s, "Σ<sub>c</sub> (x<sub>c</sub> − μ)<sup>2</sup>"),
        sub(rec, idx) + " = " + num(s) + " / " + r.length + " = " + num(ex.result));
      ex.text = "the mean squared distance from the row mean";
    },
    normalize: function (ex, rec, ins, idx) {
      var bt = idx.slice(0, -1), v = at(ins[0], idx), mu = at(ins[1], bt), s2 = at(ins[2], bt), sd = Math.sqrt(s2 + rec.meta.eps);
      ex.o(ins[0], idx); ex.o(ins[1], bt); ex.o(ins[2], bt);
      ex.result = (v - mu) / sd;
      ex.lines.push(sub(rec, idx) + " = (x − μ) / √(σ² + ε) = (" + num(v) + " − " + par(mu) + ") / √(" + num(s2) + " + " + num(rec.meta.eps) + ") = " + num(v - mu) + " / " + num(sd) + " = " + num(ex.result));
      ex.text = "subtract the row mean, divide by the row standard deviation";
    },
    affine: function (ex, rec, ins, idx) {
      var c = idx[idx.length - 1], v = at(ins[0], idx), g = at(ins[1], [c]), b = at(ins[2], [c]);
      ex.o(ins[0], idx); ex.o(ins[1], [c]); ex.o(ins[2], [c]);
      ex.result = g * v + b;
      ex.lines.push(sub(rec, idx) + " = γ<sub>" + c + "</sub> x̂ + β<sub>" + c + "</sub> = " + num(g) + " · " + par(v) + " + " + par(b) + " = " + num(ex.result));
      ex.text = "scale by the learned weight, shift by the learned bias";
    },
    split_heads: function (ex, rec, ins, idx) {
      var D = rec.shape[3], C = rec.shape[1] * D, base = (rec.meta.part || 0) * C + idx[1] * D, col = base + idx[3];
      same(ex, rec, ins[0], idx, [idx[0], idx[2], col], "column " + col + " of " + ins[0].name + ": head " + idx[1] + " takes columns " + base + ".." + (base + D - 1));
    },
    merge_heads: function (ex, rec, ins, idx) {
      var D = ins[0].shape[3], c = idx[2];
      same(ex, rec, ins[0], idx, [idx[0], Math.floor(c / D), idx[1], c % D], "head " + Math.floor(c / D) + ", dimension " + (c % D));
    },
    merge_qkv: function (ex, rec, ins, idx) {
      var C = rec.shape[2] / 3, part = Math.floor(idx[2] / C), c = idx[2] % C, src = ins[part], D = src.shape[3];
      same(ex, rec, src, idx, [idx[0], Math.floor(c / D), idx[1], c % D], "the " + "QKV"[part] + " block, head " + Math.floor(c / D));
    },
    scale: function (ex, rec, ins, idx) {
      var v = at(ins[0], idx);
      ex.o(ins[0], idx);
      ex.result = v * rec.meta.factor;
      ex.lines.push(sub(rec, idx) + " = " + sub(ins[0], idx) + " / " + num(1 / rec.meta.factor) + " = " + num(v) + " / " + num(1 / rec.meta.factor) + " = " + num(ex.result));
      ex.text = "divided by the square root of the head size";
    },
    causal_mask: function (ex, rec, ins, idx) {
      var t = idx[idx.length - 2], s = idx[idx.length - 1];
      ex.o(ins[0], idx);
      ex.result = s <= t ? at(ins[0], idx) : -Infinity;
      ex.lines.push(sub(rec, idx) + " = " + (s <= t ? sub(ins[0], idx) + " = " + num(ex.result) + " (s = " + s + " ≤ t = " + t + ": visible)" : MINUS + "∞ (s = " + s + " > t = " + t + ": a future token, hidden)"));
      ex.text = s <= t ? "kept" : "masked: the key comes after the query";
    },
    softmax: function (ex, rec, ins, idx) {
      var pre = idx.slice(0, -1), r = row(ins[0], pre), k = idx[idx.length - 1], m = Math.max.apply(null, r);
      var e = r.map(function (v) { return Math.exp(v - m); }), total = sum(e);
      r.forEach(function (_, j) { ex.o(ins[0], pre.concat([j])); });
      ex.result = e[k] / total;
      ex.lines.push("row max m = " + num(m), joinSum(e.map(num), total, "Σ<sub>j</sub> e<sup>x<sub>j</sub> − m</sup>"),
        sub(rec, idx) + " = e<sup>x<sub>" + k + "</sub> − m</sup> / Σ<sub>j</sub> e<sup>x<sub>j</sub> − m</sup> = " + num(e[k]) + " / " + num(total) + " = " + num(ex.result));
      ex.text = "exponentiate the row, divide by the sum";
    },
    gelu: function (ex, rec, ins, idx, D) {
      var u = at(ins[0], idx), t = gelu(D, u);
      ex.o(ins[0], idx);
      ex.result = 0.5 * u * (1 + t);
      ex.lines.push("u = " + num(u) + ", tanh(√(2/π) (u + 0.044715 u³)) = " + num(t), sub(rec, idx) + " = ½ · " + par(u) + " · (1 + " + par(t) + ") = " + num(ex.result));
      ex.text = "GELU, tanh approximation";
    },
    gather: function (ex, rec, ins, idx, D) {
      var y = target(D, ins[1], idx);
      ex.o(ins[1], idx);
      if (y[0] < 0) { ex.result = 0; ex.lines.push(sub(rec, idx) + " = 0 (padding: no target)"); return; }
      ex.o(ins[0], idx.concat([y[0]]));
      ex.result = at(ins[0], idx.concat([y[0]]));
      ex.lines.push("y = " + y[0] + " (" + word(y[1]) + "), " + sub(rec, idx) + " = " + sub(ins[0], idx.concat([y[0]])) + " = " + num(ex.result));
      ex.text = "the probability given to the right next word, " + y[1];
      ex.html = esc("the probability given to the right next word, ") + bdi(y[1]);
    },
    cross_entropy: function (ex, rec, ins, idx, D) {
      var y = target(D, ins[1], idx);
      ex.o(ins[1], idx);
      if (y[0] < 0) { ex.result = 0; ex.lines.push(sub(rec, idx) + " = 0 (padding: ignored)"); return; }
      var r = row(ins[0], idx), m = Math.max.apply(null, r), lse = m + Math.log(sum(r.map(function (v) { return Math.exp(v - m); })));
      r.forEach(function (_, v) { ex.o(ins[0], idx.concat([v])); });
      ex.result = lse - r[y[0]];
      ex.lines.push(joinSum(r.map(function (v) { return "e<sup>" + num(v) + "</sup>"; }), Math.exp(lse), "Σ<sub>v</sub> e<sup>logit<sub>v</sub></sup>"),
        sub(rec, idx) + " = log " + num(Math.exp(lse)) + " − logit<sub>" + word(y[1]) + "</sub> = " + num(lse) + " − " + par(r[y[0]]) + " = " + num(ex.result));
      ex.text = "minus the log-probability of " + y[1];
      ex.html = esc("minus the log-probability of ") + bdi(y[1]);
    },
    loss_mean: function (ex, rec, ins) {
      var per = ins[0], tg = ins[1], xs = [];
      vals(tg).forEach(function (y, o) {
        if (y < 0) return;
        var i = [], rem = o;
        for (var k = tg.shape.length - 1; k >= 0; k--) { i.unshift(rem % tg.shape[k]); rem = Math.floor(rem / tg.shape[k]); }
        ex.o(per, i); xs.push(at(per, i));
      });
      var s = sum(xs);
      ex.result = s / xs.length;
      ex.lines.push(joinSum(xs.map(num), s, "Σ<sub>t</sub> ℓ<sub>t</sub>"), sub(rec, []) + " = " + num(s) + " / " + xs.length + " = " + num(ex.result));
      ex.text = "the mean over " + xs.length + " target positions";
    },
    cross_entropy_backward: function (ex, rec, ins, idx, D) {
      var bt = idx.slice(0, -1), y = target(D, ins[1], bt), n = vals(ins[1]).filter(function (v) { return v >= 0; }).length, v = idx[idx.length - 1];
      ex.o(ins[0], idx); ex.o(ins[1], bt);
      if (y[0] < 0) { ex.result = 0; ex.lines.push(sub(rec, idx) + " = 0 (padding)"); return; }
      var p = at(ins[0], idx), hit = v === y[0] ? 1 : 0;
      ex.result = (p - hit) / n;
      ex.lines.push(sub(rec, idx) + " = (p − [v = y]) / N = (" + num(p) + " − " + hit + ") / " + n + " = " + num(ex.result) + " (v = " + word(D.vocab[v]) + (hit ? ", the target" : "") + ")");
      ex.text = "predicted probability minus the one-hot target, over the number of targets";
    },
    layernorm_backward: function (ex, rec, ins, idx) {
      var bt = idx.slice(0, -1), c = idx[idx.length - 1], g = row(ins[0], bt), x = row(ins[1], bt), n = g.length;
      var rstd = 1 / Math.sqrt(at(ins[2], bt) + rec.meta.eps), mg = sum(g) / n, mgx = sum(g.map(function (v, j) { return v * x[j]; })) / n;
      g.forEach(function (_, j) { ex.o(ins[0], bt.concat([j])); });
      x.forEach(function (_, j) { ex.o(ins[1], bt.concat([j])); });
      ex.o(ins[2], bt);
      ex.result = rstd * (g[c] - mg - x[c] * mgx);
      ex.lines.push("mean(g) = " + num(mg) + ", mean(g ⊙ x̂) = " + num(mgx) + ", 1/√(σ² + ε) = " + num(rstd),
        sub(rec, idx) + " = " + num(rstd) + " · (" + par(g[c]) + " − " + par(mg) + " − " + par(x[c]) + " · " + par(mgx) + ") = " + num(ex.result));
      ex.text = "LayerNorm backward for one element of the row";
    },
    gelu_backward: function (ex, rec, ins, idx, D) {
      var g = at(ins[0], idx), u = at(ins[1], idx), t = gelu(D, u);
      var d = 0.5 * (1 + t) + 0.5 * u * (1 - t * t) * D.gelu[0] * (1 + 3 * D.gelu[1] * u * u);
      ex.o(ins[0], idx); ex.o(ins[1], idx);
      ex.result = g * d;
      ex.lines.push("u = " + num(u) + ", tanh(·) = " + num(t) + ", GELU′(u) = " + num(d), sub(rec, idx) + " = " + par(g) + " · " + par(d) + " = " + num(ex.result));
      ex.text = "upstream gradient times the GELU slope at u";
    },
    softmax_backward: function (ex, rec, ins, idx) {
      var pre = idx.slice(0, -1), k = idx[idx.length - 1], g = row(ins[0], pre), y = row(ins[1], pre);
      var dot = sum(g.map(function (v, j) { return v * y[j]; })), terms = [];
      g.forEach(function (_, j) { ex.o(ins[0], pre.concat([j])); });
      y.forEach(function (v, j) { ex.o(ins[1], pre.concat([j])); if (v !== 0) terms.push(num(v) + " · " + par(g[j])); });
      ex.result = y[k] * (g[k] - dot);
      ex.lines.push(joinSum(terms, dot, "Σ<sub>j</sub> y<sub>j</sub> g<sub>j</sub>"), sub(rec, idx) + " = y<sub>" + k + "</sub> (g<sub>" + k + "</sub> − Σ y g) = " + num(y[k]) + " · (" + par(g[k]) + " − " + par(dot) + ") = " + num(ex.result));
      ex.text = "softmax backward: y times (g minus the y-weighted mean of g)";
    },
    mask_backward: function (ex, rec, ins, idx) {
      var t = idx[idx.length - 2], s = idx[idx.length - 1];
      ex.o(ins[0], idx);
      ex.result = s <= t ? at(ins[0], idx) : 0;
      ex.lines.push(s <= t ? sub(rec, idx) + " = " + sub(ins[0], idx) + " = " + num(ex.result) : sub(rec, idx) + " = 0 (s > t: the masked score never reached the loss)");
      ex.text = "passed through where visible, zero where masked";
    },
    embedding: function (ex, rec, ins, idx, D) {
      if (ins.length === 2) {
        var i = at(ins[1], idx.slice(0, 2));
        ex.o(ins[1], idx.slice(0, 2)); ex.o(ins[0], [i, idx[2]]);
        ex.result = at(ins[0], [i, idx[2]]);
        ex.lines.push(sub(rec, idx) + " = W<sub>te</sub>[" + i + " (" + word(D.vocab[i]) + "), " + idx[2] + "] = " + num(ex.result));
      } else {
        ex.o(ins[0], idx); ex.result = at(ins[0], idx);
        ex.lines.push(sub(rec, idx) + " = W<sub>pe</sub>[" + idx[0] + ", " + idx[1] + "] = " + num(ex.result));
      }
      ex.text = "a row lookup: no arithmetic";
    },
    embedding_backward: function (ex, rec, ins, idx, D) {
      var g = ins[0], r = idx[0], c = idx[1], hits = [], where, whereHtml;
      if (ins.length === 2) {
        vals(ins[1]).forEach(function (v, o) { if (v === r) hits.push([Math.floor(o / ins[1].shape[1]), o % ins[1].shape[1]]); });
        where = "positions where the input is " + D.vocab[r];
        whereHtml = esc("positions where the input is ") + bdi(D.vocab[r]);
      } else {
        if (r < g.shape[1]) hits = range(g.shape[0]).map(function (b) { return [b, r]; });
        where = "position " + r + " of every text";
      }
      var xs = hits.map(function (bt) { ex.o(g, bt.concat([c])); return at(g, bt.concat([c])); });
      ex.result = sum(xs);
      ex.lines.push(hits.length ? joinSum(xs.map(par), ex.result, sub(rec, idx)) : sub(rec, idx) + " = 0 (no " + (ins.length === 2 ? "input uses this word" : "text is this long") + ")");
      ex.text = "scatter-add over the " + hits.length + " " + where;
      ex.html = esc("scatter-add over the " + hits.length + " ") + (whereHtml || esc(where));
    },
    l2_grad: function (ex, rec, ins, idx) {
      var g = at(ins[0], idx), p = at(ins[1], idx);
      ex.o(ins[0], idx); ex.o(ins[1], idx);
      ex.result = g + rec.meta.wd * p;
      ex.lines.push(sub(rec, idx) + " = ∇θ + λθ = " + num(g) + " + " + num(rec.meta.wd) + " · " + par(p) + " = " + num(ex.result));
      ex.text = "gradient plus L2 weight decay";
    },
    adam_m: function (ex, rec, ins, idx) {
      var g = at(ins[0], idx), b = rec.meta.beta, v2 = rec.op === "adam_v";
      ex.o(ins[0], idx);
      ex.result = (1 - b) * (v2 ? g * g : g);
      ex.lines.push(sub(rec, idx) + " = β · " + (v2 ? "v" : "m") + "<sub>" + (rec.meta.step - 1) + "</sub> + (1 − β) g" + (v2 ? "²" : "") + " = " + num(b) + " · 0 + " + num(1 - b) + " · " + par(g) + (v2 ? "<sup>2</sup>" : "") + " = " + num(ex.result));
      ex.text = (v2 ? "second" : "first") + " moment; it starts at zero";
    },
    adam_m_hat: function (ex, rec, ins, idx) {
      var v = at(ins[0], idx), b = rec.meta.beta, t = rec.meta.step, d = 1 - Math.pow(b, t);
      ex.o(ins[0], idx);
      ex.result = v / d;
      ex.lines.push(sub(rec, idx) + " = " + num(v) + " / (1 − " + num(b) + "<sup>" + t + "</sup>) = " + num(v) + " / " + num(d) + " = " + num(ex.result));
      ex.text = "bias correction";
    },
    adamw_update: function (ex, rec, ins, idx) {
      var p = at(ins[0], idx), m = at(ins[1], idx), v = at(ins[2], idx), M = rec.meta;
      ins.forEach(function (r) { ex.o(r, idx); });
      var step = M.lr * m / (Math.sqrt(v) + M.eps), dec = p * (1 - M.lr * M.wd);
      ex.result = dec - step;
      ex.lines.push("m̂ = " + num(m) + ", √v̂ = " + num(Math.sqrt(v)) + ", η m̂ / (√v̂ + ε) = " + num(M.lr) + " · " + num(m) + " / (" + num(Math.sqrt(v)) + " + " + num(M.eps) + ") = " + num(step));
      if (rec.op === "adamw_update") ex.lines.push("θ (1 − ηλ) = " + num(p) + " · (1 − " + num(M.lr) + " · " + num(M.wd) + ") = " + num(dec));
      ex.lines.push(sub(rec, idx) + " = " + num(dec) + " − " + par(step) + " = " + num(ex.result));
      ex.text = "the Adam step" + (M.wd ? " after decoupled weight decay" : "");
    },
    sgd_buf: function (ex, rec, ins, idx) {
      ex.o(ins[0], idx); ex.result = at(ins[0], idx);
      ex.lines.push(sub(rec, idx) + " = g = " + num(ex.result) + " (first step: the buffer starts at the gradient)");
    },
    sgd_update: function (ex, rec, ins, idx) {
      var p = at(ins[0], idx), g = at(ins[1], idx), lr = rec.meta.lr;
      ex.o(ins[0], idx); ex.o(ins[1], idx);
      ex.result = p - lr * g;
      ex.lines.push(sub(rec, idx) + " = θ − η g = " + num(p) + " − " + num(lr) + " · " + par(g) + " = " + num(ex.result));
      ex.text = "a step against the gradient";
    },
    param: function (ex, rec, ins, idx, D) {
      // Given, not computed: parameters at init, inputs, run summaries.
      var v = at(rec, idx);
      ex.lines.push(rec.op === "input" ? sub(rec, idx) + " = " + v + " (" + word(v >= 0 ? D.vocab[v] : "<ignored>") + ")" : sub(rec, idx) + " = " + num(v));
      ins.forEach(function (r) { if (r.shape.join() === rec.shape.join()) ex.o(r, idx); });
      ex.text = { param: "drawn at initialisation", input: "from the tokenizer" }[rec.op] || "";
    }
  };
  H.mul = H.sum = H.matmul;
  H.adam_v = H.adam_m;
  H.adam_v_hat = H.adam_m_hat;
  H.adam_update = H.adamw_update;
  H.input = H.forward = H.train_loss = H.train_prob = H.param;

  function prep(D, name) {  // name the record and look up its typeset symbol and formula
    var r = D.records[name];
    if (r.name === undefined) { r.name = name; r.symbol = D.html[r.s] || ""; r.formula = D.html[r.f] || ""; }
    return r;
  }

  // explain(data, name, index) -> {result, operands: [[name, index]], lines (HTML), text}
  function explain(D, name, index) {
    var rec = D.records[name];
    if (!rec) throw new Error("no data for " + name);
    var h = H[rec.op];
    if (!h) throw new Error("no explanation for op " + rec.op);
    var ins = rec.inputs.filter(function (n) { return D.records[n]; }).map(function (n) { return prep(D, n); });
    prep(D, name);
    var ex = { name: name, index: index, op: rec.op, result: at(rec, index), operands: [], lines: [], text: "" };
    ex.o = function (r, i) { ex.operands.push([r.name, i.slice()]); };
    h(ex, rec, ins, index, D);
    delete ex.o;
    return ex;
  }

  if (typeof module !== "undefined" && module.exports) { module.exports = { explain: explain }; return; }
  if (typeof document === "undefined") return;

  // -- the panel ----------------------------------------------------------------
  var doc = document, root = doc.documentElement.dataset.root || "", main = doc.querySelector("[data-explain]");
  if (!main) return;
  var D = null, waiting = [], loading = false, panel, content, closer, from;
  var CELLS = "table.matrix td:not(.gap), .value-highlight";

  // Keyboard: Tab reaches each table once (its first cell), arrow keys move between cells.
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
    load(function () { var k = where(c), r = D.records[k[0]]; if (r && r.b) c.title = String(at(r, k[1])); });
  }

  function load(done) {
    if (D) return done();
    waiting.push(done);
    if (loading) return;
    loading = true;
    var s = doc.createElement("script");
    s.src = main.dataset.explain;
    s.onload = function () { D = window.HANDSTEP_DATA; waiting.splice(0).forEach(function (f) { f(); }); };
    s.onerror = function () { if (content) content.innerHTML = "<p>The numbers for this page did not load.</p>"; loading = false; waiting = []; };
    doc.head.appendChild(s);
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
    var key = where(c), name = key[0], idx = key[1], rec, ex;
    try { ex = explain(D, name, idx); } catch (e) { return "<p>" + esc(e.message) + "</p>"; }
    rec = D.records[name];
    var full = String(at(rec, idx)), seen = [], out = [];
    out.push('<h2 id="explain-title">' + sub(rec, idx) + " = " + num(at(rec, idx)) + "</h2>",
      "<p><code>" + esc(name) + "</code> [" + idx.join(", ") + "], exact value <code>" + esc(full) + "</code></p>");
    if (rec.formula) out.push('<div class="explain-formula">' + rec.formula + "</div>");
    if (ex.text) out.push('<p class="calc-text">' + (ex.html || esc(ex.text)) + "</p>");
    ex.lines.forEach(function (l) { out.push('<p class="explain-line">' + l + "</p>"); });
    ex.operands.forEach(function (o) { if (seen.indexOf(o[0]) < 0) seen.push(o[0]); });
    if (seen.length) {
      var sums = rec.op === "add" && rec.phase === "backward";
      out.push("<p>" + (sums ? "This gradient sums " + seen.length + " upstream contributions:" : "Computed from:") + "</p><ul>");
      seen.forEach(function (n) {
        var used = ex.operands.filter(function (o) { return o[0] === n; }), one = used.length === 1 ? used[0][1] : null;
        out.push("<li><code>" + esc(n) + "</code>" + (one ? " [" + one.join(", ") + "] = " + num(at(D.records[n], one)) : ", " + used.length + " entries") + links(n) + "</li>");
      });
      out.push("</ul>");
    }
    return out.join("");
  }

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
    });
  }, true);
  doc.addEventListener("mouseover", function (e) { var c = cellOf(e.target); if (c) exact(c); });
  doc.addEventListener("focusin", function (e) {
    var c = cellOf(e.target);
    if (c && c.tagName === "TD") { take(c); exact(c); }
  });
})();
