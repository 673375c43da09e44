// Typeset TeX with KaTeX for docs/hooks/katex.py, which starts this script as
//   node katex_render.js /path/to/katex.min.js
// and talks to it one line at a time: a request is a JSON list of [tex, displayMode] pairs,
// the answer a JSON list with, for each pair, {"html": ...} or {"error": ...}. KaTeX runs
// with throwOnError and strict "error", so TeX that KaTeX cannot typeset exactly is an error,
// never red text in a page.
const katex = require(process.argv[2]);
const readline = require("readline");

readline.createInterface({ input: process.stdin }).on("line", (line) => {
  const answers = JSON.parse(line).map(([tex, displayMode]) => {
    try {
      return { html: katex.renderToString(tex, { displayMode, throwOnError: true, strict: "error" }) };
    } catch (error) {
      return { error: error.message };
    }
  });
  process.stdout.write(JSON.stringify(answers) + "\n");
});
