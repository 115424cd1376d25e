#!/usr/bin/env bash
# The course's commands (see README; `bash course.sh help` prints the usage below).
# Environment: TL_VENV (virtualenv folder, default .venv), TL_PYTHON (python to create it with),
# TL_TORCH (pip spec for PyTorch), TLHELPERS_ARCHIVE (a cifar10-jpg.tar.gz to use offline),
# TLHELPERS_HOME (data cache, default ~/.cache/tlhelpers).
set -euo pipefail
cd "$(dirname "$0")"

usage() {
  cat <<'USAGE'
usage: bash course.sh COMMAND [ARGS...]

  lab          set up (first time) and open the course in JupyterLab, at notebooks/00_welcome.ipynb
  test         set up (first time) and run the whole test suite: ruff, tests, every notebook in quick
               mode, and the browser tests where Chromium is found (about 16-18 min on 2 cores)
  doctor       set up (first time) and check this machine: versions, device, settings, cached data
               and weights, with a remedy for anything missing (exit 0 ready, 1 not ready)
  site         build the course website into _site/html (executes the notebooks; cached)
  site serve   serve the built website on http://127.0.0.1:8000 (TL_SITE_PORT)
  classroom    build the classroom kit (student/, instructor/, autograder/) into classroom/,
               or into the folder given after it; see docs/instructor.md
  help         this message

The first setup creates .venv and downloads PyTorch: about 5.5 GB (the CUDA build) on x86_64 Linux
from PyPI. On a machine without an NVIDIA GPU, the CPU-only build is much smaller:
  TL_TORCH="torch==2.14.1 torchvision==0.29.1 --index-url https://download.pytorch.org/whl/cpu" bash course.sh lab
Environment: TL_VENV (default .venv), TL_PYTHON, TL_TORCH, TLHELPERS_ARCHIVE, TLHELPERS_HOME (README, Settings).
USAGE
}

cmd=${1:-}
case "$cmd" in
  lab|test|doctor|site|classroom) ;;
  help|-h|--help) usage; exit 0 ;;
  *) usage >&2; echo >&2
     if [ -n "$cmd" ]; then echo "error: unknown command '$cmd': see the usage above" >&2
     else echo "error: no command given: see the usage above" >&2; fi
     exit 2 ;;
esac
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
  if [ -z "${TL_TORCH:-}" ] && [ "$(uname -sm)" = "Linux x86_64" ]; then
    echo "    this is the CUDA build from PyPI: about 5.5 GB to download and install. Without an NVIDIA GPU, stop"
    echo "    (Ctrl-C) and use the CPU-only build instead (see README):"
    echo "    TL_TORCH=\"$TORCH --index-url https://download.pytorch.org/whl/cpu\" bash course.sh $cmd"
  fi
  "$VPY" -m pip install --disable-pip-version-check --progress-bar on $TORCH  # no -q: the download is large
fi
extras=dev
[ "$cmd" = test ] && extras=dev,e2e  # Playwright, for the browser tests (they skip, saying why, without Chromium)
if ! "$VPY" -c "import tlhelpers, nbval, jupyterlab" 2>/dev/null || [ ! -x "$VENV/bin/ruff" ] ||
  { [ "$cmd" = test ] && ! "$VPY" -c "import playwright" 2>/dev/null; }; then
  echo "==> installing the course package and its tools (.[$extras])"
  "$VPY" -m pip install -q --disable-pip-version-check -e ".[$extras]"
fi
if [ "$cmd" = doctor ]; then
  exec "$VPY" -m tlhelpers doctor "$@"
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
  # The file browser shows the whole course (README, tlhelpers/, notebooks/); the first page is notebook 00.
  # (A file argument would make its folder, notebooks/, the root, and the printed links go to /lab.)
  echo "==> JupyterLab opens at notebooks/00_welcome.ipynb: use the http://127.0.0.1:... link it prints below"
  exec "$VENV/bin/jupyter" lab --ServerApp.root_dir="$PWD" --LabApp.default_url=/lab/tree/notebooks/00_welcome.ipynb \
    "${root[@]}" "$@"
fi
echo "==> ruff: lint and format check (pyproject.toml [tool.ruff])"
"$VENV/bin/ruff" check .
"$VENV/bin/ruff" format --check .
export TLHELPERS_QUICK=${TLHELPERS_QUICK:-1}
exec "$VPY" -m pytest --nbval-lax --nbval-current-env --nbval-cell-timeout=600 tests notebooks "$@"
