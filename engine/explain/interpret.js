// The interpreter of ops.yaml in JavaScript: the twin of interpret.py, for the click panel in the browser.
// Same expression language, same lazy bindings, same number formatting: for any element both give the
// same LaTeX lines, text and operands (tests/engine/test_explain_parity.py runs both on several configs).
// A record here is {name, op, shape, axes, meta, symbol, formula, values: flat row-major array}.
(function (root) {
  "use strict";
  var INF = Infinity;

  function ExplainError(message) { this.message = message; }
  ExplainError.prototype = Object.create(Error.prototype);

  function Ref(record, index, value) { this.record = record; this.index = index; this.value = value; }
  function val(v) { return v instanceof Ref ? v.value : v; }

  // -- numbers as LaTeX ---------------------------------------------------------------------------------------
  function sci(mantissa, e) {
    if (mantissa.indexOf(".") >= 0) mantissa = mantissa.replace(/0+$/, "").replace(/\.$/, "");
    if (mantissa === "1" || mantissa === "-1") return mantissa.slice(0, -1) + "10^{" + e + "}";
    return mantissa + "\\times10^{" + e + "}";
  }
  function num(x) {
    x = Number(val(x));
    if (x === INF) return "\\infty";
    if (x === -INF) return "-\\infty";
    if (x !== x) return "\\mathrm{NaN}";
    if (x === 0) return "0";
    var a = Math.abs(x);
    if (a >= 1e-3 && a < 1e5) return x.toFixed(4);
    var p = x.toExponential(2).split("e");
    return sci(p[0], Number(p[1]));
  }
  function exact(x) {
    x = Number(val(x));
    if (x === 0 || !isFinite(x)) return num(x);
    var p = Math.abs(x).toExponential().split("e"), ds = p[0].replace(".", ""), e = Number(p[1]);
    var neg = x < 0 ? "-" : "";
    if (e >= -4 && e < 6) {
      var whole, frac;
      if (e >= 0) {
        whole = ds.slice(0, e + 1);
        while (whole.length < e + 1) whole += "0";
        frac = ds.slice(e + 1);
      } else {
        whole = "0";
        frac = new Array(-e).join("0") + ds;
      }
      return neg + whole + (frac ? "." + frac : "");
    }
    return sci(neg + ds.charAt(0) + (ds.length > 1 ? "." + ds.slice(1) : ""), e);
  }
  function integer(x) { var v = Math.trunc(Number(val(x))); return String(v === 0 ? 0 : v); }
  // A config word in a sentence: in quotes, isolated (U+2068..U+2069) so right-to-left text stays inside.
  function quote(w) { return "\u201c\u2068" + w + "\u2069\u201d"; }
  function par(x) { var s = num(x); return s.charAt(0) === "-" ? "(" + s + ")" : s; }
  var LATEX = { "\\": "\\textbackslash{}", "{": "\\{", "}": "\\}", "$": "\\$", "&": "\\&", "#": "\\#",
    "^": "\\textasciicircum{}", "_": "\\_", "%": "\\%", "~": "\\textasciitilde{}", "<": "\\textless{}",
    ">": "\\textgreater{}" };
  function latexEscape(s) { return Array.from(String(s)).map(function (c) { return LATEX[c] || c; }).join(""); }
  function latexText(s) { return "\\text{" + latexEscape(s) + "}"; }

  // A display line cut after its first relation (= or :) outside any group: [lhs, rest], or ["", tex] when there
  // is none (interpret.py's split_line).
  function splitLine(tex) {
    var depth = 0, k = 0;
    while (k < tex.length) {
      var c = tex.charAt(k);
      if (c === "\\") {
        var word = /^\\(?:[A-Za-z]+|[\s\S])/.exec(tex.slice(k)), name = word ? word[0] : "\\";
        if (name === "\\begin") return ["", tex];  // an environment (aligned, ...) lays out its own lines
        depth += name === "\\left" ? 1 : name === "\\right" ? -1 : 0;
        k += name.length;
        continue;
      }
      depth += c === "{" ? 1 : c === "}" ? -1 : 0;
      if ((c === "=" || c === ":") && depth === 0 && tex.slice(0, k).trim()) {
        var rest = tex.slice(k + 1).replace(/^(?:\s|\\ |\\quad\b)+/, "");
        return rest ? [tex.slice(0, k + 1).trim(), rest] : ["", tex];
      }
      k++;
    }
    return ["", tex];
  }

  // -- the expression language ---------------------------------------------------------------------------------
  var TOKEN = /\s*(?:(\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)|([A-Za-z_]\w*)|("[^"]*"|'[^']*')|(`[^`]*`)|(\*\*|\/\/|==|!=|<=|>=|[-+*/%<>()[\],:.]))/y;
  var NAME = /[A-Za-z_]\w*/y;
  var KEYWORDS = { "if": 1, "else": 1, "for": 1, "in": 1, "and": 1, "or": 1, "not": 1 };
  var BINARY = { or: 1, and: 2, "==": 4, "!=": 4, "<": 4, "<=": 4, ">": 4, ">=": 4, "+": 5, "-": 5, "*": 6,
    "/": 6, "//": 6, "%": 6, "**": 8 };

  function Parser(text, pos) {
    this.text = text; this.pos = this.lastEnd = pos || 0; this.tok = null; this.advance();
  }
  Parser.prototype.advance = function () {
    this.lastEnd = this.pos;
    if (this.pos >= this.text.length || !this.text.slice(this.pos).trim()) { this.tok = null; return; }
    TOKEN.lastIndex = this.pos;
    var m = TOKEN.exec(this.text);
    if (!m) { this.tok = ["bad", this.text.slice(this.pos).trim().charAt(0)]; return; }
    this.pos = TOKEN.lastIndex;
    var kinds = ["num", "name", "str", "tpl", "op"];
    for (var k = 1; k <= 5; k++) {
      if (m[k] !== undefined) {
        var kind = kinds[k - 1];
        if (kind === "name" && KEYWORDS[m[k]]) kind = "op";
        this.tok = [kind, m[k]];
        return;
      }
    }
  };
  Parser.prototype.is = function (t) { return this.tok !== null && this.tok[0] === "op" && this.tok[1] === t; };
  Parser.prototype.expect = function (t) {
    if (!this.is(t)) throw new ExplainError("expected '" + t + "' in " + this.text);
    this.advance();
  };
  Parser.prototype.expression = function () {
    var node = this.binary(0);
    if (this.is("if")) {
      this.advance();
      var cond = this.binary(0);
      this.expect("else");
      return ["ifelse", cond, node, this.expression()];
    }
    return node;
  };
  Parser.prototype.binary = function (minPrec) {
    var left;
    if (this.is("not")) { this.advance(); left = ["not", this.binary(3)]; }
    else if (this.is("-")) { this.advance(); left = ["neg", this.binary(7)]; }
    else left = this.postfix(this.primary());
    while (this.tok !== null && this.tok[0] === "op" && BINARY[this.tok[1]] !== undefined) {
      var op = this.tok[1], prec = BINARY[op];
      if (prec < minPrec) break;
      this.advance();
      left = ["bin", op, left, this.binary(op === "**" ? prec : prec + 1)];
    }
    return left;
  };
  Parser.prototype.primary = function () {
    if (this.tok === null || this.tok[0] === "bad") {
      throw new ExplainError("unexpected " + (this.tok === null ? "end" : this.tok[1]) + " in " + this.text);
    }
    var kind = this.tok[0], text = this.tok[1];
    this.advance();
    if (kind === "num") return ["const", Number(text)];
    if (kind === "str") return ["const", text.slice(1, -1)];
    if (kind === "tpl") return ["tpl", parseTemplate(text.slice(1, -1))];
    if (kind === "name") return ["name", text];
    if (text === "(") { var inner = this.expression(); this.expect(")"); return inner; }
    if (text === "[") {
      if (this.is("]")) { this.advance(); return ["list", []]; }
      var first = this.expression();
      if (this.is("for")) {
        this.advance();
        var names = [this.name()];
        while (this.is(",")) { this.advance(); names.push(this.name()); }
        this.expect("in");
        var source = this.binary(0), cond = null;
        if (this.is("if")) { this.advance(); cond = this.binary(0); }
        this.expect("]");
        return ["comp", first, names, source, cond];
      }
      var items = [first];
      while (this.is(",")) { this.advance(); items.push(this.expression()); }
      this.expect("]");
      return ["list", items];
    }
    throw new ExplainError("unexpected " + text + " in " + this.text);
  };
  Parser.prototype.name = function () {
    if (this.tok === null || this.tok[0] !== "name") throw new ExplainError("expected a name in " + this.text);
    var n = this.tok[1];
    this.advance();
    return n;
  };
  Parser.prototype.call = function (node) {
    this.expect("(");
    var args = [];
    while (!this.is(")")) { args.push(this.expression()); if (!this.is(")")) this.expect(","); }
    this.advance();
    return ["call", node, args];
  };
  Parser.prototype.postfix = function (node) {
    for (;;) {
      if (this.is("(")) node = this.call(node);
      else if (this.is("[")) {
        this.advance();
        var lo = this.is(":") ? null : this.expression();
        if (this.is(":")) {
          this.advance();
          var hi = this.is("]") ? null : this.expression();
          this.expect("]");
          node = ["slice", node, lo, hi];
        } else { this.expect("]"); node = ["index", node, lo]; }
      } else if (this.is(".")) { this.advance(); node = ["attr", node, this.name()]; }
      else return node;
    }
  };

  var PARSED = {}, TEMPLATES = {};
  function parse(text) {
    text = String(text);
    if (!PARSED.hasOwnProperty(text)) {
      var p = new Parser(text);
      var node = p.expression();
      if (p.tok !== null) throw new ExplainError("unexpected " + p.tok[1] + " in " + text);
      PARSED[text] = node;
    }
    return PARSED[text];
  }
  function parseTemplate(text) {
    if (TEMPLATES.hasOwnProperty(text)) return TEMPLATES[text];
    var parts = [], buf = "", pos = 0, p, name;
    while (pos < text.length) {
      var ch = text.charAt(pos);
      if (ch !== "@") { buf += ch; pos++; continue; }
      if (text.charAt(pos + 1) === "@") { buf += "@"; pos += 2; continue; }
      if (buf) { parts.push(buf); buf = ""; }
      NAME.lastIndex = pos + 1;
      name = NAME.exec(text);
      if (text.charAt(pos + 1) === "(") {
        p = new Parser(text, pos + 1); parts.push(p.primary()); pos = p.lastEnd;
      } else if (name && text.charAt(NAME.lastIndex) === "(") {
        p = new Parser(text, NAME.lastIndex); parts.push(p.call(["name", name[0]])); pos = p.lastEnd;
      } else if (name) {
        parts.push(["name", name[0]]); pos = NAME.lastIndex;
      } else throw new ExplainError("'@' must be followed by '(', a name or '@' in " + text);
    }
    if (buf) parts.push(buf);
    TEMPLATES[text] = parts;
    return parts;
  }

  // -- evaluation --------------------------------------------------------------------------------------------------
  function truthy(v) {
    v = val(v);
    if (typeof v === "number") return v !== 0 && v === v;
    if (Array.isArray(v)) return v.length > 0;
    return !!v;
  }
  function arith(op, a, b) {
    a = val(a); b = val(b);
    var la = Array.isArray(a), lb = Array.isArray(b);
    if (la || lb) {
      if (la && lb) {
        if (a.length !== b.length) throw new ExplainError("lists of lengths " + a.length + " and " + b.length);
        return a.map(function (x, k) { return arith(op, x, b[k]); });
      }
      return la ? a.map(function (x) { return arith(op, x, b); }) : b.map(function (y) { return arith(op, a, y); });
    }
    if (typeof a === "string" || typeof b === "string") {
      if (op === "+" && typeof a === "string" && typeof b === "string") return a + b;
      throw new ExplainError("cannot apply " + op + " to text");
    }
    switch (op) {
      case "+": return a + b;
      case "-": return a - b;
      case "*": return a * b;
      case "/": return a / b;
      case "//": return Math.floor(a / b);
      case "%": return a % b;
      case "**": return Math.pow(a, b);
    }
    throw new ExplainError("unknown operator " + op);
  }
  function same(a, b) {
    a = val(a); b = val(b);
    if (Array.isArray(a) && Array.isArray(b)) {
      return a.length === b.length && a.every(function (x, k) { return same(x, b[k]); });
    }
    return a === b;
  }
  function compare(op, a, b) {
    if (op === "==") return same(a, b);
    if (op === "!=") return !same(a, b);
    a = val(a); b = val(b);
    switch (op) {
      case "<": return a < b;
      case "<=": return a <= b;
      case ">": return a > b;
      case ">=": return a >= b;
    }
  }
  function map(f) {
    return function apply(x) { x = val(x); return Array.isArray(x) ? x.map(apply) : f(Number(x)); };
  }
  function seqSum(xs) { var t = 0; for (var k = 0; k < xs.length; k++) t += Number(val(xs[k])); return t; }

  function Element(ops, record, inputs, index, vocab) {
    var self = this;
    this.ops = ops; this.desc = ops.ops[record.op]; this.out = record; this.vocab = vocab;
    if (!this.desc) throw new ExplainError("no explanation for op " + record.op);
    this.operands = []; this.lets = this.desc.let || {}; this.values = {}; this.busy = {};
    this.names = { i: index.slice(), out: record, x: inputs.slice(), meta: record.meta || {}, inf: INF,
      MAX_TERMS: ops.max_terms };
    inputs.forEach(function (r, k) { self.names["x" + k] = r; });
    this.functions = {
      sqrt: map(Math.sqrt), exp: map(Math.exp), log: map(Math.log), tanh: map(Math.tanh), abs: map(Math.abs),
      cos: map(Math.cos), sin: map(Math.sin),
      max: function (xs) { return Math.max.apply(null, xs.map(function (v) { return Number(val(v)); })); },
      min: function (xs) { return Math.min.apply(null, xs.map(function (v) { return Number(val(v)); })); },
      sum: seqSum, mean: function (xs) { return seqSum(xs) / xs.length; },
      prod: function (xs) { var p = 1; xs.forEach(function (v) { p *= Number(val(v)); }); return p; },
      len: function (xs) { return xs.length; }, all: function (xs) { return xs.every(truthy); },
      range: function (n) { var a = []; for (var k = 0; k < val(n); k++) a.push(k); return a; },
      zip: function () {
        var ls = Array.prototype.slice.call(arguments), n = Math.min.apply(null, ls.map(function (l) { return l.length; }));
        var out = [];
        for (var k = 0; k < n; k++) out.push(ls.map(function (l) { return l[k]; }));
        return out;
      },
      cat: function () { return Array.prototype.concat.apply([], Array.prototype.slice.call(arguments)); },
      join: function (sep, xs) { return xs.join(sep); },
      shape: function (r) { return r.shape.slice(); },
      indices: function (r) {
        var out = [[]];
        r.shape.forEach(function (n) {
          var next = [];
          out.forEach(function (p) { for (var k = 0; k < n; k++) next.push(p.concat([k])); });
          out = next;
        });
        return out;
      },
      value: function (r, idx) { return at(r, idx.map(function (k) { return Math.trunc(val(k)); })); },
      row: function (r, prefix) {
        var out = [], n = r.shape[r.shape.length - 1];
        for (var k = 0; k < n; k++) out.push(self.element(r, prefix.concat([k])));
        return out;
      },
      einsum: function (spec, records) { return self.einsum(spec, records); },
      word: function (v) { var k = Math.trunc(val(v)); return k >= 0 && k < self.vocab.length ? self.vocab[k] : "<ignored>"; },
      text: latexText, num: num, par: par, exact: exact, "int": integer,
      sub: function (ref, index) { return self.sub(ref, index); },
      sumline: function (lhs, terms, total) { return self.sumline(lhs, terms, total); },
      plural: function (n) { return val(n) === 1 ? "" : "s"; }, quote: quote
    };
  }
  function offset(r, idx) { var o = 0; for (var k = 0; k < r.shape.length; k++) o = o * r.shape[k] + idx[k]; return o; }
  function at(r, idx) { return r.values[offset(r, idx)]; }

  Element.prototype.explain = function () {
    var result = Number(val(this.get("result")));
    if (this.desc.reads) this.eval(parse(this.desc.reads));
    var lines = this.lines(this.desc.lines || []);
    var text = this.lines(this.desc.text === undefined ? "" : this.desc.text);
    return { result: result, lines: lines, text: text.length ? text[0] : "", operands: this.operands };
  };
  Element.prototype.lines = function (entries) {
    var out = [], self = this;
    (Array.isArray(entries) ? entries : [entries]).forEach(function (entry) {
      if (entry !== null && typeof entry === "object") {
        var branch = truthy(self.eval(parse(entry["if"]))) ? entry.then : entry["else"];
        if (branch !== undefined && branch !== null) out.push.apply(out, self.lines(branch));
      } else out.push(self.render(String(entry)));
    });
    return out;
  };
  Element.prototype.get = function (name, scope) {
    if (scope && Object.prototype.hasOwnProperty.call(scope, name)) return scope[name];
    if (Object.prototype.hasOwnProperty.call(this.values, name)) return this.values[name];
    if (Object.prototype.hasOwnProperty.call(this.lets, name)) {
      if (this.busy[name]) throw new ExplainError(this.out.op + ": '" + name + "' depends on itself");
      this.busy[name] = true;
      this.values[name] = this.eval(parse(this.lets[name]));
      delete this.busy[name];
      return this.values[name];
    }
    if (Object.prototype.hasOwnProperty.call(this.names, name)) return this.names[name];
    throw new ExplainError(this.out.op + ": unknown name '" + name + "'");
  };
  Element.prototype.eval = function (node, scope) {
    var self = this, kind = node[0];
    switch (kind) {
      case "const": return node[1];
      case "name": return this.get(node[1], scope);
      case "tpl": return this.renderParts(node[1], scope);
      case "list": return node[1].map(function (n) { return self.eval(n, scope); });
      case "comp": {
        var out = [], names = node[2];
        this.eval(node[3], scope).forEach(function (item) {
          var local = Object.assign({}, scope || {});
          if (names.length === 1) local[names[0]] = item;
          else names.forEach(function (n, k) { local[n] = item[k]; });
          if (node[4] === null || truthy(self.eval(node[4], local))) out.push(self.eval(node[1], local));
        });
        return out;
      }
      case "ifelse": return this.eval(truthy(this.eval(node[1], scope)) ? node[2] : node[3], scope);
      case "not": return !truthy(this.eval(node[1], scope));
      case "neg": return arith("-", 0, this.eval(node[1], scope));
      case "bin": {
        var op = node[1];
        if (op === "and" || op === "or") {
          var left = this.eval(node[2], scope);
          if (truthy(left) === (op === "or")) return left;
          return this.eval(node[3], scope);
        }
        var a = this.eval(node[2], scope), b = this.eval(node[3], scope);
        if (["==", "!=", "<", "<=", ">", ">="].indexOf(op) >= 0) return compare(op, a, b);
        return arith(op, a, b);
      }
      case "call": {
        var f = node[1][0] === "name" ? this.functions[node[1][1]] : undefined;
        if (!f) throw new ExplainError(this.out.op + ": unknown function " + node[1][1]);
        return f.apply(null, node[2].map(function (n) { return self.eval(n, scope); }));
      }
      case "index": {
        var base = this.eval(node[1], scope), key = this.eval(node[2], scope);
        if (Array.isArray(base)) {
          var k = Math.trunc(val(key));
          if (k < -base.length || k >= base.length) throw new ExplainError(this.out.op + ": index " + k + " outside a list of " + base.length);
          return base[k < 0 ? base.length + k : k];
        }
        return this.element(base, key);
      }
      case "slice": {
        var list = this.eval(node[1], scope);
        var lo = node[2] === null ? undefined : Math.trunc(val(this.eval(node[2], scope)));
        var hi = node[3] === null ? undefined : Math.trunc(val(this.eval(node[3], scope)));
        return list.slice(lo, hi);
      }
      case "attr": {
        var obj = this.eval(node[1], scope);
        if (obj && obj.values === undefined && obj.op === undefined) return obj[node[2]] === undefined ? null : obj[node[2]];
        if (["name", "op", "symbol", "formula"].indexOf(node[2]) >= 0) return obj[node[2]];
        throw new ExplainError(this.out.op + ": no attribute " + node[2]);
      }
    }
    throw new ExplainError("unknown node " + kind);
  };
  Element.prototype.element = function (record, index) {
    var shape = record.shape, idx = index.map(function (k) { return Math.trunc(val(k)); });
    if (idx.length > shape.length) idx = idx.slice(idx.length - shape.length);
    if (idx.length !== shape.length || idx.some(function (k, d) { return k < 0 || k >= shape[d]; })) {
      throw new ExplainError(this.out.op + ": index [" + idx.join(", ") + "] outside " + record.name + " of shape [" + shape.join(", ") + "]");
    }
    if (record.values === undefined || record.values === null) {
      throw new ExplainError("The values of " + record.name + " are too large to ship with this page; they are in the site's trace file.");
    }
    var ref = new Ref(record, idx, at(record, idx));
    if (record !== this.out) this.operands.push([record.name, idx]);
    return ref;
  };
  Element.prototype.einsum = function (spec, records) {
    var self = this, p = spec.split("->"), specs = p[0].split(","), out = p[1], joined = specs.join("");
    var letters = {}, sizes = {}, free = [], k;
    for (k = 0; k < out.length; k++) letters[out.charAt(k)] = Math.trunc(this.names.i[k]);
    for (k = 0; k < joined.length; k++) {
      var ch = joined.charAt(k);
      if (out.indexOf(ch) < 0 && free.indexOf(ch) < 0) free.push(ch);
    }
    specs.forEach(function (s, j) { for (var c = 0; c < s.length; c++) sizes[s.charAt(c)] = records[j].shape[c]; });
    var total = 1, terms = [];
    free.forEach(function (c) { total *= sizes[c]; });
    for (var t = 0; t < total; t++) {
      for (var rem = t, f = free.length - 1; f >= 0; f--) {
        letters[free[f]] = rem % sizes[free[f]];
        rem = Math.floor(rem / sizes[free[f]]);
      }
      terms.push(specs.map(function (s, j) {
        return self.element(records[j], s.split("").map(function (c) { return letters[c]; }));
      }));
    }
    return terms;
  };
  Element.prototype.sub = function (ref, index) {
    if (ref instanceof Ref) return symbolAt(this.ops, ref.record, ref.index);
    return symbolAt(this.ops, ref, index.map(function (k) { return Math.trunc(val(k)); }));
  };
  // `{Q}_{h=0,t=2,d=5}`: a record's symbol with an element's index (no batch index for one text); a symbol with a
  // subscript of its own is parenthesised, `{(W_1)}_{c=0,f=3}`, so the two subscripts cannot run together.
  function symbolAt(ops, record, idx) {
    var letters = ops.axis_letters, parts = [], used = {};
    record.axes.forEach(function (ax, d) {
      if (ax === "batch" && record.shape[0] === 1) return;
      var letter = letters[ax] || ax;
      while (used[letter]) letter += "'";  // two axes of one kind (W_O is C × C): c, then c'
      used[letter] = true;
      parts.push(letter + "=" + idx[d]);
    });
    if (!parts.length) return record.symbol;
    var symbol = record.symbol.indexOf("_") >= 0 ? "(" + record.symbol + ")" : record.symbol;  // (W_1)_{c=0}, not W_{1c=0}
    return "{" + symbol + "}_{" + parts.join(",") + "}";
  }
  Element.prototype.sumline = function (lhs, terms, total) {
    var n = terms.length, most = this.ops.max_terms;
    if (n > most) terms = terms.slice(0, 8).concat(["\\cdots\\ (\\text{" + (n - 12) + " more terms})"], terms.slice(-4));
    if (!terms.length) terms = ["0"];
    return lhs + " = " + terms.map(function (t) { return "{" + t + "}"; }).join(" + ") + " = " + num(total);
  };
  Element.prototype.render = function (template) { return this.renderParts(parseTemplate(template), null); };
  Element.prototype.renderParts = function (parts, scope) {
    var self = this;
    return parts.map(function (part) {
      if (typeof part === "string") return part;
      var v = self.eval(part, scope);
      return typeof v === "string" ? v : (v === null || v === undefined ? "" : num(v));
    }).join("");
  };

  // explain(ops, records, name, index, vocab) -> {result, lines (LaTeX), text, operands: [[name, index]]}
  function explain(ops, records, name, index, vocab) {
    var rec = records[name];
    if (!rec) throw new ExplainError("no data for " + name);
    var inputs = (rec.inputs || []).filter(function (n) { return records[n]; }).map(function (n) { return records[n]; });
    return new Element(ops, rec, inputs, index, vocab).explain();
  }

  var api = { explain: explain, sub: function (record, index, ops) { return symbolAt(ops, record, index); }, num: num, exact: exact, par: par, latexText: latexText, splitLine: splitLine, ExplainError: ExplainError };
  if (typeof module !== "undefined" && module.exports) module.exports = api;
  else root.HandstepExplain = api;
})(this);
