"""Sphinx configuration of the course website (issue 16): `bash course.sh site` builds it into _site/html.

Every notebook page shows real outputs: myst-nb executes ../notebooks at build time (site/notebooks is a
symlink, nothing is copied) through jupyter-cache, so a rebuild without notebook changes executes nothing.
Environment (all optional):
  TLHELPERS_QUICK=1    quick mode (CI); the default is full mode, what a learner runs
  TL_SITE_CACHE        jupyter-cache folder, default $TLHELPERS_HOME/site-cache/MODE-HASH (outside the repo;
                       HASH: of tlhelpers/ and site/_kernel/, whose changes change the outputs too)
  TLHELPERS_WEIGHTS    defaults to "course" here: the offline course backbone, so the build downloads nothing
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
from datetime import date
from pathlib import Path

SITE = Path(__file__).resolve().parent
ROOT = SITE.parent
sys.path.insert(0, str(ROOT))

from tlhelpers import settings  # noqa: E402

REPO = "https://github.com/tl-course/transfer-learning-cv"
QUICK = settings.quick_mode()
MODE = "quick" if QUICK else "full"

# jupyter-cache keys on the notebooks' code only; the outputs also depend on tlhelpers and on the kernel's
# startup file, so those are part of the cache folder's name: changing either executes the notebooks again.
_digest = hashlib.sha256()
for _f in sorted([*(ROOT / "tlhelpers").rglob("*.py"), SITE / "_kernel" / "static_outputs.py"]):
    _digest.update(_f.relative_to(ROOT).as_posix().encode() + b"\0" + _f.read_bytes())
CACHE_KEY = f"{MODE}-{_digest.hexdigest()[:12]}"

# --- the environment of the notebook kernels (they inherit this process's variables)
os.environ.setdefault("TLHELPERS_WEIGHTS", "course")
os.environ.setdefault("TLHELPERS_OFFLINE", "1")
os.environ.pop("MPLBACKEND", None)  # CI exports Agg for nbval; the kernels need the inline backend for figures
# A private IPython profile whose startup file turns progress bars into text and the two widgets into a
# static rendering (site/_kernel/static_outputs.py); a writable copy, outside the repository.
ipython_dir = settings.cache_dir() / "site-ipython"
startup = ipython_dir / "profile_default" / "startup"
startup.mkdir(parents=True, exist_ok=True)
shutil.copyfile(SITE / "_kernel" / "static_outputs.py", startup / "00-tl-site.py")
os.environ["IPYTHONDIR"] = str(ipython_dir)

# --- site/notebooks is a symlink to ../notebooks (the notebooks are not copied). Sphinx resolves symlinks
# when it follows a link between pages, which would point a link to a notebook outside the source folder:
# map such a target back through the symlink, and a link to an included file to the page that includes it.
from sphinx.environment import BuildEnvironment  # noqa: E402

_NOTEBOOKS_REAL = (SITE / "notebooks").resolve()
_sphinx_relfn2path = BuildEnvironment.relfn2path


# Files of the repository that a site page (named by its docname) shows through `{include}`: a link to one
# (from a notebook or another included file, e.g. `../docs/which_model.md`) leads to its page. A link to any
# other file outside site/ (results .json, .png, other .md) becomes a download of that file.
PAGES = {
    "docs/CONTRIBUTING.md": "contributing",
    "docs/course_backbone.md": "course_backbone",
    "docs/instructor.md": "instructor",
    "docs/performance.md": "performance",
    "docs/which_model.md": "which_model",
    "benchmarks/results/perf.md": "perf_workflow",
    "benchmarks/results/peers.md": "peers",
}


def _relfn2path(self, filename, docname=None):
    rel, abs_fn = _sphinx_relfn2path(self, filename, docname)
    try:
        inner = Path(abs_fn).relative_to(_NOTEBOOKS_REAL)
    except ValueError:
        return rel, abs_fn
    target = SITE / "notebooks" / inner
    return Path(os.path.relpath(target, self.srcdir)).as_posix(), str(target)


_sphinx_path2doc = BuildEnvironment.path2doc


def _path2doc(self, filename):
    """The page that includes a repository file, for links to it (includes themselves use relfn2path)."""
    real = Path(filename).resolve()
    page = PAGES.get(real.relative_to(ROOT).as_posix()) if real.is_relative_to(ROOT) else None
    if page:
        return page
    if not Path(filename).is_relative_to(self.srcdir) and not real.is_relative_to(_NOTEBOOKS_REAL):
        return None
    return _sphinx_path2doc(self, filename)


BuildEnvironment.path2doc = _path2doc
BuildEnvironment.relfn2path = _relfn2path

# --- project
project = "Transfer learning for computer vision"
author = "the course's contributors"
copyright = f"{date.today().year}, {author} (MIT licence)"
extensions = ["myst_nb", "sphinx.ext.autodoc", "sphinx.ext.napoleon"]
root_doc = "index"
exclude_patterns = ["_build", "**/.ipynb_checkpoints", "_kernel", "notebooks/[!0-9]*"]
suppress_warnings = ["myst.header"]  # the notebooks' headings start at "#"; sub-headings may skip a level

# --- MyST and notebooks
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3
nb_execution_mode = "cache"
nb_execution_cache_path = os.environ.get("TL_SITE_CACHE") or str(settings.cache_dir() / "site-cache" / CACHE_KEY)
nb_execution_timeout = 1800
nb_execution_raise_on_error = True  # a failing notebook fails the build
nb_execution_show_tb = True  # ...and its traceback is printed in the build log
nb_output_stderr = "remove"  # warnings and logging: the build log, not the page
nb_render_markdown_format = "gfm"  # Markdown outputs (display(Markdown(...))) have tables
nb_merge_streams = True  # one output per stream, text progress bars collapsed to their final state (\r)
nb_ipywidgets_js = {}  # no widget JavaScript from a CDN: the widgets are rendered statically (see _kernel/)
nb_mime_priority_overrides = [("html", "application/vnd.jupyter.widget-view+json", None)]

# --- API reference
autodoc_default_options = {"members": True, "undoc-members": False, "show-inheritance": False}
autodoc_typehints = "description"
autodoc_member_order = "bysource"

# --- HTML
html_theme = "sphinx_book_theme"
html_title = "Transfer learning for CV"
html_baseurl = "https://tl-course.github.io/transfer-learning-cv/"
html_static_path = ["_static"]
html_css_files = ["custom.css"]
html_js_files = ["enlarge.js"]  # click a figure to see it at full size
html_favicon = "_static/favicon.svg"
html_last_updated_fmt = "%Y-%m-%d"
html_theme_options = {
    "repository_url": REPO,
    "repository_branch": "main",
    "path_to_docs": "site",
    "use_repository_button": True,
    "use_issues_button": True,
    "use_download_button": True,
    "home_page_in_toc": True,
    "show_toc_level": 2,
    "announcement": (
        f"The notebooks' outputs were computed when the site was built ({MODE} mode, on a CPU, with the "
        "offline course backbone), except two tables read from stored benchmark results: nb04's timing "
        "comparison and nb06's transfer table. The Performance and Course backbone pages are stored "
        "benchmark reports (benchmarks/results/). Run a notebook yourself with the Binder or Colab badge."
    ),
}
html_context = {"default_mode": "light"}

# --- the landing page's figures: one real output per notebook, copied from the executed notebooks
# (index of the image output to take; 0, the notebook's first figure, for a notebook not listed)
LANDING_FIGURES = {
    "00_welcome": 0,
    "01_feature_hierarchy": 0,
    "02_three_strategies": 0,
    "03_finetuning_simulator": 3,
    "04_cats_vs_dogs": 4,
    "05_embeddings": 0,
    "06_choosing_a_strategy": 3,
}


def write_executed_notebooks(app, exception) -> None:
    """After an HTML build: the executed notebooks (from the jupyter-cache) in _site/executed/, which the
    browser test counts figures in, and the landing page's figures in _static/landing/."""
    import base64

    import nbformat
    from jupyter_cache import get_cache

    if exception is not None or app.builder.format != "html":
        return
    cache = get_cache(app.config.nb_execution_cache_path)
    executed = Path(app.outdir).parent / "executed"
    executed.mkdir(parents=True, exist_ok=True)
    landing = Path(app.outdir) / "_static" / "landing"
    landing.mkdir(parents=True, exist_ok=True)
    for path in sorted((SITE / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        stem, index = path.stem, LANDING_FIGURES.get(path.stem, 0)
        _, nb = cache.merge_match_into_file(str(path))
        nbformat.write(nb, executed / f"{stem}.ipynb")
        pngs = [
            o["data"]["image/png"]
            for c in nb.cells
            if c.cell_type == "code"
            for o in c.get("outputs", [])
            if "image/png" in o.get("data", {})
        ]
        if len(pngs) <= index:
            raise RuntimeError(f"{stem}: the landing page wants its figure {index}, the notebook drew {len(pngs)}")
        (landing / f"{stem}.png").write_bytes(base64.b64decode(pngs[index]))


def unwrap_budget_line(app, docname, source) -> None:
    """The notebooks' budget line starts with a marker comment for tools/nbtool.py, `<!-- budget -->**Runtime**...`;
    a line that starts with an HTML comment is raw HTML in CommonMark, so its bold markers would show as `**`.
    Drop the markers from what the page renders (the notebooks keep them)."""
    if docname.startswith("notebooks/"):
        source[0] = source[0].replace("<!-- budget -->", "").replace("<!-- /budget -->", "")


def setup(app):
    app.connect("source-read", unwrap_budget_line)
    # the same sources give other outputs in the other mode or with another tlhelpers: read every page again
    app.add_config_value("tl_site_key", CACHE_KEY, "env")
    app.connect("build-finished", write_executed_notebooks)
