"""Open every page of the built docs in headless Chromium and report what does not fit.

    python .ci/check_docs_layout.py [SITE_DIR] [--width 1280]

For each HTML page of the site (default `site/`, as `mkdocs build` leaves it), at a window
1280 px wide, with every `<details>` opened and the fonts (KaTeX's too) loaded, it reports:

- an element of the content column that scrolls sideways (a code block with lines longer than
  the column, a display equation or a table wider than it) or is cut off;
- an element that sticks out of the content column;
- a page that scrolls sideways as a whole.

It prints one line per problem and exits with status 1 if there is any. It drives Debian's
`chromium` with `chromium-driver` (`apt-get install chromium chromium-driver`) through
Selenium, with the paths given explicitly so that Selenium never tries to download a browser
or a driver, and with Chromium's background networking off: nothing leaves the machine.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run",
         "--hide-scrollbars"]
SLACK_PX = 1  # sub-pixel rounding

# Runs in the page; calls back with a list of problem descriptions.
CHECK = """
const done = arguments[arguments.length - 1];
const slack = arguments[0];
for (const d of document.querySelectorAll("details")) d.open = true;
document.fonts.ready.then(() => requestAnimationFrame(() => {
  const problems = [];
  const name = (el) => {
    const text = (el.textContent || "").trim().replace(/\\s+/g, " ").slice(0, 70);
    const cls = (el.getAttribute("class") || "").trim().split(/\\s+/).slice(0, 2).join(".");
    return `<${el.tagName.toLowerCase()}${cls ? "." + cls : ""}> "${text}"`;
  };
  const doc = document.documentElement;
  if (doc.scrollWidth > window.innerWidth + slack)
    problems.push(`the page is ${doc.scrollWidth} px wide in a ${window.innerWidth} px window`);
  // the column between the sidebars; the article's own margins are part of it (Material
  // lets tables and admonition titles reach into them)
  const column = document.querySelector(".md-content");
  const article = document.querySelector("article.md-content__inner");
  if (column && article) {
    const { left, right } = column.getBoundingClientRect();
    const flagged = [];
    // not checked inside: SVG drawings (KaTeX clips its long stretchy paths itself) and
    // KaTeX's MathML, which is for screen readers and visually hidden
    const skip = article.querySelectorAll("svg, .katex-mathml");
    for (const el of article.querySelectorAll("*")) {
      if (flagged.some((f) => f.contains(el))) continue;  // one report per overflowing block
      if ([...skip].some((s) => s !== el && s.contains(el)) || el.matches(".katex-mathml"))
        continue;
      const overflow = getComputedStyle(el).overflowX;
      if (el.scrollWidth > el.clientWidth + slack && el.clientWidth > 0
          && overflow !== "visible") {
        const how = overflow === "hidden" || overflow === "clip" ? "is cut off" : "scrolls";
        problems.push(`${name(el)} ${how}: ${el.scrollWidth} px of content in ` +
                      `${el.clientWidth} px`);
        flagged.push(el);
        continue;
      }
      const r = el.getBoundingClientRect();
      if (r.width > 0 && (r.right > right + slack || r.left < left - slack)) {
        problems.push(`${name(el)} sticks out of the content column: ` +
                      `${Math.round(r.left)}..${Math.round(r.right)} px, column ` +
                      `${Math.round(left)}..${Math.round(right)} px`);
        flagged.push(el);
      }
    }
  }
  done(problems);
}));
"""


def browser(width: int) -> webdriver.Chrome:
    missing = [name for name in ("chromium", "chromedriver") if shutil.which(name) is None]
    if missing:
        sys.exit(f"{' and '.join(missing)} not found: apt-get install chromium chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in [*FLAGS, f"--window-size={width},1000"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=shutil.which("chromedriver")),
                              options=options)
    driver.set_script_timeout(30)
    return driver


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("site", nargs="?", default="site", type=Path)
    parser.add_argument("--width", type=int, default=1280)
    args = parser.parse_args()
    pages = sorted(p for p in args.site.rglob("*.html") if p.name != "404.html")
    if not pages:
        sys.exit(f"{args.site}: no HTML pages (build the docs first: mkdocs build)")
    start, failures = time.perf_counter(), 0
    driver = browser(args.width)
    try:
        inner = driver.execute_script("return window.innerWidth")
        for page in pages:
            driver.get(page.resolve().as_uri())
            for problem in driver.execute_async_script(CHECK, SLACK_PX):
                print(f"{page.relative_to(args.site)}: {problem}")
                failures += 1
    finally:
        driver.quit()
    print(f"{len(pages)} pages checked at {inner} px in {time.perf_counter() - start:.0f} s: "
          f"{failures} element(s) wider than their container")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
