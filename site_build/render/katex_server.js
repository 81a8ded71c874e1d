// Render math for the site build: one JSON request per stdin line,
// one JSON reply per stdout line, in the same order.
// Request: {"tex": "...", "display": true|false}
// Reply:   {"html": "..."} or {"error": "KaTeX parse error: ..."}
"use strict";
const path = require("path");
const readline = require("readline");

const root = process.argv[2] || process.cwd();
const output = process.argv[3] || "html"; // "html" or "htmlAndMathml"
const katex = require(require.resolve("katex", { paths: [root] }));

// The first line tells the caller which KaTeX version renders (cache key).
process.stdout.write(JSON.stringify({ version: katex.version }) + "\n");

const rl = readline.createInterface({ input: process.stdin, terminal: false });
const out = [];
let pending = null;

function flush() {
  pending = null;
  if (out.length) {
    process.stdout.write(out.join(""));
    out.length = 0;
  }
}

rl.on("line", (line) => {
  let reply;
  try {
    const req = JSON.parse(line);
    reply = {
      html: katex.renderToString(req.tex, {
        displayMode: !!req.display,
        throwOnError: true,
        output: output,
        strict: "ignore",
        // an untrusted \href, \url, \includegraphics or \htmlClass would not fail: KaTeX shows the command in red
        trust: (context) => {
          throw new Error(`${context.command} is not allowed in a formula (no links, images or HTML in math); ` +
                          "write it outside the formula");
        },
      }),
    };
  } catch (err) {
    reply = { error: String(err && err.message ? err.message : err) };
  }
  out.push(JSON.stringify(reply) + "\n");
  if (!pending) pending = setImmediate(flush);
});
rl.on("close", flush);
