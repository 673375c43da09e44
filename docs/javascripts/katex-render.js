// Typeset the math that pymdownx.arithmatex (generic mode) leaves in the page:
//   <span class="arithmatex">\( ... \)</span>  inline,  from $...$
//   <div class="arithmatex">\[ ... \]</div>     display, from $$...$$ or \begin{...}
// KaTeX itself is served from the site (assets/katex/, put there by docs/hooks/katex.py).
// `document$` is Material's page-load observable: it fires on every page, including
// pages reached by instant navigation.
document$.subscribe(({ body }) => {
  for (const element of body.querySelectorAll(".arithmatex")) {
    const source = element.textContent.trim().replace(/^\\[([]|\\[)\]]$/g, "");
    katex.render(source, element, {
      displayMode: element.tagName === "DIV",
      throwOnError: false, // a TeX error shows up red in the page instead of stopping the script
    });
  }
});
