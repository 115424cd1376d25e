#!/usr/bin/env bash
# The course's two commands (see README):
#   bash course.sh lab    set up (first time) and open the course in JupyterLab
#   bash course.sh test   set up (first time) and run the whole test suite, notebooks included
#   bash course.sh site   build the course website into _site/html (executes the notebooks; cached)
#   bash course.sh site serve   serve the built website on http://127.0.0.1:8000 (TL_SITE_PORT)
#   bash course.sh classroom [OUT]   build student/, instructor/ and autograder/ into OUT (default classroom/)
# Environment: TL_VENV (virtualenv folder, default .venv), TL_PYTHON (python to create it with),
# TL_TORCH (pip spec for PyTorch), TLHELPERS_ARCHIVE (a cifar10-jpg.tar.gz to use offline),
# TLHELPERS_HOME (data cache, default ~/.cache/tlhelpers).
set -euo pipefail
cd "$(dirname "$0")"
cmd=${1:-}
case "$cmd" in lab|test|site|classroom) ;; *) echo "usage: bash course.sh lab|test|site [serve]|classroom [OUT]" >&2; exit 2 ;; esac
shift

SITE_OUT=${TL_SITE_OUT:-_site}
if [ "$cmd" = site ] && [ "${1:-}" = serve ]; then
  if [ ! -f "$SITE_OUT/html/index.html" ]; then
    echo "no website in $SITE_OUT/html: build it first with: bash course.sh site" >&2; exit 1
  fi
  port=${TL_SITE_PORT:-8000}
  echo "==> serving $SITE_OUT/html on http://127.0.0.1:$port/ (Ctrl-C to stop)"
  exec "${TL_PYTHON:-python3}" -m http.server --bind 127.0.0.1 --directory "$SITE_OUT/html" "$port"
fi

VENV=${TL_VENV:-.venv}
PY=${TL_PYTHON:-python3}
TORCH=${TL_TORCH:-torch==2.14.1 torchvision==0.29.1}

if [ ! -x "$VENV/bin/python" ]; then
  echo "==> creating virtual environment $VENV"
  "$PY" -m venv "$VENV"
fi
VPY="$VENV/bin/python"
if ! "$VPY" -c "import torch, torchvision" 2>/dev/null; then
  echo "==> installing PyTorch ($TORCH)"
  "$VPY" -m pip install -q --disable-pip-version-check $TORCH
fi
if ! "$VPY" -c "import tlhelpers, nbval, jupyterlab" 2>/dev/null || [ ! -x "$VENV/bin/ruff" ]; then
  echo "==> installing the course package and its tools"
  "$VPY" -m pip install -q --disable-pip-version-check -e ".[dev]"
fi

# Data: the course's JPEG copy of CIFAR-10 if one is at hand (offline), else torchvision's download.
archive=${TLHELPERS_ARCHIVE:-../shared/data/cifar10-jpg.tar.gz}
if [ -f "$archive" ]; then
  "$VPY" -m tlhelpers prefetch --archive "$archive" --data-only
else
  "$VPY" -m tlhelpers prefetch || echo "==> continuing: see the lines above for what is missing"
fi

if [ "$cmd" = site ]; then
  if ! "$VPY" -c "import sphinx, myst_nb, sphinx_book_theme" 2>/dev/null; then
    echo "==> installing the website tools (pyproject.toml [site])"
    "$VPY" -m pip install -q --disable-pip-version-check -e ".[site]"
  fi
  # full mode unless TLHELPERS_QUICK=1; executed outputs are cached outside the repo (site/conf.py)
  echo "==> building the website into $SITE_OUT/html ($([ "${TLHELPERS_QUICK:-0}" = 1 ] && echo quick || echo full) mode)"
  "$VENV/bin/sphinx-build" -b html -d "$SITE_OUT/doctrees" site "$SITE_OUT/html" "$@"
  echo "==> built: $SITE_OUT/html/index.html (look at it: bash course.sh site serve)"
  exit 0
fi
if [ "$cmd" = classroom ]; then
  # docs/instructor.md: student and instructor notebooks and the autograder, from notebooks/ (never commit them)
  exec "$VPY" -m tlhelpers classroom build "${1:-classroom}"
fi
if [ "$cmd" = lab ]; then
  # JupyterLab refuses to start as root (containers, lab images) unless told it may
  root=(); [ "$(id -u)" = 0 ] && root=(--allow-root) && echo "==> running as root: starting JupyterLab with --allow-root"
  exec "$VENV/bin/jupyter" lab notebooks/00_welcome.ipynb "${root[@]}" "$@"
fi
echo "==> ruff: lint and format check (pyproject.toml [tool.ruff])"
"$VENV/bin/ruff" check .
"$VENV/bin/ruff" format --check .
export TLHELPERS_QUICK=${TLHELPERS_QUICK:-1}
exec "$VPY" -m pytest --nbval-lax --nbval-current-env --nbval-cell-timeout=600 tests notebooks "$@"
