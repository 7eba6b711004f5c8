# Sourced by the other scripts: a .venv with exactly what uv.lock says, dev tools included.
# uv itself (the version pinned in pyproject.toml's [tool.uv]) is installed with pip into
# .venv-uv on first use; after that, re-syncs only when pyproject.toml or uv.lock changes.
PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "Python 3.11 or newer is needed (found: $("$PYTHON" --version 2>&1)); set PYTHON=..." >&2
  exit 1
fi
UV_PIN=$("$PYTHON" -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["tool"]["uv"]["required-version"])')
if [ ! -x .venv-uv/bin/uv ] || [ "$(.venv-uv/bin/uv --version | cut -d' ' -f2)" != "${UV_PIN#==}" ]; then
  echo "== installing uv${UV_PIN} into .venv-uv"
  "$PYTHON" -m venv --clear .venv-uv
  .venv-uv/bin/python -m pip install --quiet --disable-pip-version-check "uv${UV_PIN}"
fi
stamp=".venv/.synced-$(cat pyproject.toml uv.lock | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "== installing the locked dependencies and dev tools into .venv (uv sync --locked)"
  # --locked: install uv.lock as it is (what --frozen does), and stop if pyproject.toml no
  # longer matches it: re-lock with `.venv-uv/bin/uv lock`, never a silent re-resolve.
  UV_PYTHON_DOWNLOADS=never .venv-uv/bin/uv sync --locked --extra dev --python "$PYTHON" --quiet
  rm -f .venv/.synced-* && touch "$stamp"
fi
