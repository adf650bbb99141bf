# Shared set-up for scripts/start and scripts/test (sourced, not run).
# Idempotent: a second run reuses the venv, pip's wheel cache (llama-cpp-python is
# compiled once, ~5 min on 2 cores) and the node_modules folder.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3}"
VENV="${JUPYTER_COPILOT_VENV:-$ROOT/.venv}"
EXTRAS="${1:-local,lab,hf}"

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }

if [ ! -x "$VENV/bin/python" ]; then
  say "creating the virtual environment $VENV"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
fi
export PATH="$VENV/bin:$PATH"

if ! command -v node >/dev/null 2>&1; then
  echo "Node.js (>= 18) is needed to build the JupyterLab extension: apt-get install nodejs npm" >&2
  exit 1
fi

# pip's output minus the noise of this machine's index settings; a failing install
# stops the set-up with pip's own error (a pipeline would otherwise hide it).
pip_install() {
  local log status=0
  log="$(mktemp)"
  python -m pip install -q "$@" >"$log" 2>&1 || status=$?
  grep -v "is ignored" "$log" >&2 || true
  rm -f "$log"
  if [ "$status" != 0 ]; then echo "pip install $* failed (exit $status)" >&2; exit "$status"; fi
}

say "installing jupyterlab-campus-copilot[$EXTRAS] (first run compiles llama.cpp: about 5 minutes)"
# JupyterLab is needed at build time (hatch-jupyter-builder runs jlpm).
pip_install "jupyterlab>=4.6,<5" "hatchling>=1.21" "hatch-jupyter-builder>=0.9" editables
# llama-cpp-python is an sdist here: build it in pip's own isolated build
# environment (it needs scikit-build-core), before our editable install, which
# runs without isolation so that it can use the JupyterLab installed above.
case ",$EXTRAS," in *,local,*) pip_install "llama-cpp-python>=0.3.2" ;; esac
pip_install --no-build-isolation -e ".[$EXTRAS]"
# From outside the checkout: the source tree itself would import from the cwd.
(cd / && python -c "import jupyter_copilot") || { echo "installation failed" >&2; exit 1; }
# Editable installs do not copy the labextension into share/: link it.
jupyter labextension develop --overwrite . >/dev/null
jupyter server extension enable --sys-prefix jupyter_copilot >/dev/null 2>&1 || true

# Jupyter refuses to run as root unless told; sessions and CI run as root.
ROOT_FLAGS=()
if [ "$(id -u)" = "0" ]; then ROOT_FLAGS=(--allow-root); fi
