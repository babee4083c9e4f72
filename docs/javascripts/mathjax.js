// MathJax for the math of the Markdown pages, which pymdownx.arithmatex wraps in .arithmatex as \(...\) and \[...\],
// and for the $...$ and $$...$$ of the rendered notebooks' Markdown cells (.jp-MarkdownOutput). The rest of each page
// (.md-typeset, the article) is left alone, so a dollar sign in prose or code stays a dollar sign.
window.MathJax = {
  tex: {
    inlineMath: [["\\(", "\\)"], ["$", "$"]],
    displayMath: [["\\[", "\\]"], ["$$", "$$"]],
    processEscapes: true,
    processEnvironments: true,
  },
  options: {
    ignoreHtmlClass: "md-typeset",
    processHtmlClass: "arithmatex|jp-MarkdownOutput",
  },
};

document$.subscribe(() => {
  MathJax.startup.output.clearCache();
  MathJax.typesetClear();
  MathJax.texReset();
  MathJax.typesetPromise();
});
