#!/usr/bin/env bash
# Refresh docs/console/*.png: the browser test's walk through the console (SQLite run),
# with a screenshot of each page. Needs /usr/bin/chromium (apt-get install chromium).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
CONSOLE_SCREENSHOTS="$PWD/docs/console" .venv/bin/pytest tests/console/test_browser.py -k sqlite -q
ls -1 docs/console/*.png
