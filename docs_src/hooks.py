"""mkdocs hooks for the offline docs site: point every page at the vendored scripts with relative URLs.

- `@@ASSETS@@` (written by the nbconvert config and mkdocs.yml) -> the page's relative path to `assets/`.
- Pages with plotly figures get the installed plotly package's plotly.min.js in <head> (before any AMD loader, so
  it sets `window.Plotly`).
- Pages with saved ipywidgets state get require.js at the end of <body> (after the UMD scripts that would trip over
  it), and an AMD alias `plotly` -> window.Plotly for figures saved inside widgets; the html-manager renderer is
  appended by nbconvert's script on DOMContentLoaded.
- MathJax 3 (vendored from npm) replaces nbconvert's MathJax 2 bootstrap.
"""
import posixpath, re

MATHJAX_CFG = ("<script>window.MathJax = {tex: {inlineMath: [['$', '$'], ['\\\\(', '\\\\)']], processEscapes: true},"
               " svg: {fontCache: 'global'}, options: {skipHtmlTags: ['script','noscript','style','textarea','pre','code']}};</script>")

def _prefix(page) -> str:
    depth = posixpath.dirname(page.file.dest_uri)
    return (posixpath.relpath(".", depth) + "/") if depth else ""

def on_post_page(output: str, page, config) -> str:
    assets = _prefix(page) + "assets"
    # nbconvert's MathJax 2 bootstrap -> MathJax 3 (config first, then the library)
    mathjax = MATHJAX_CFG + f'<script src="{assets}/vendor/tex-svg.js" defer></script>'
    output = re.sub(r'<script src="@@ASSETS@@/vendor/tex-svg.js">\s*</script>', lambda m: mathjax, output)
    output = output.replace('<script type="text/x-mathjax-config">', '<script type="text/plain">')
    output = output.replace("@@ASSETS@@", assets)
    head, body = [], []
    has_widgets = 'application/vnd.jupyter.widget-state+json' in output
    if "plotly-graph-div" in output or has_widgets:
        head.append(f'<script src="{assets}/vendor/plotly.min.js"></script>')
    if has_widgets:
        body.append(f'<script src="{assets}/vendor/require.js"></script>'
                    '<script>if (window.Plotly) define("plotly", [], function () { return window.Plotly; });</script>')
    if head: output = output.replace("</head>", "\n".join(head) + "\n</head>", 1)
    if body:
        i = output.rfind("</body>")
        output = output[:i] + "\n".join(body) + "\n" + output[i:]
    return output
