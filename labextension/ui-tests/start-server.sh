#!/usr/bin/env bash
# Starts JupyterLab for the browser tests (Playwright's `webServer` runs this).
#
# - the repository's venv (../../.venv) unless JUPYTER points at another jupyter;
# - the small test model (SmolLM2-135M, 98 MB: fast, poor code) unless
#   COPILOT_TEST_MODEL names another catalogue id (e.g. qwen2.5-coder-1.5b for the
#   README screenshot);
# - a throw-away root dir, settings dir and workspaces dir: tests never touch the
#   user's notebooks or settings.
# Never use these flags on a real server: no token, no password.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
if [ -z "${JUPYTER:-}" ]; then
  if [ -x "$REPO/.venv/bin/jupyter" ]; then JUPYTER="$REPO/.venv/bin/jupyter"; else JUPYTER=jupyter; fi
fi
MODEL="${COPILOT_TEST_MODEL:-smollm2-135m}"
PORT="${COPILOT_TEST_PORT:-8888}"
TMP="$(mktemp -d -t copilot-ui-tests-XXXXXX)"
mkdir -p "$TMP/root" "$TMP/settings" "$TMP/workspaces"
# The course material of course.spec.ts, inside the root: citations can be opened.
cp -r "$HERE/course" "$TMP/root/course"

# Fetches the model into the user's data dir once (a no-op when it is there).
"$JUPYTER" copilot models pull "$MODEL"

exec "$JUPYTER" lab \
  --config "$HERE/jupyter_server_test_config.py" \
  --IdentityProvider.token='' --ServerApp.password='' \
  --allow-root --port "$PORT" --ServerApp.port_retries=0 \
  --ServerApp.open_browser=False \
  --ServerApp.root_dir="$TMP/root" \
  --LabApp.user_settings_dir="$TMP/settings" \
  --LabApp.workspaces_dir="$TMP/workspaces" \
  --CopilotApp.model="$MODEL" \
  --CopilotApp.course_material="$TMP/root/course" \
  --CopilotApp.course_index_dir="$TMP/course-index"
