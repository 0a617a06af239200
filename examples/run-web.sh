#!/usr/bin/env bash
# Build the browser example (examples/web) and run its headless-Chromium test against a running
# system: USER_SERVICE_URL (user-service, gRPC-Web) and WEB_ORIGIN (an origin it allows by CORS;
# the test serves the page there). Usually run as: tools/with-system.sh examples/run-web.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
: "${USER_SERVICE_URL:?set USER_SERVICE_URL, or run: tools/with-system.sh examples/run-web.sh}"
: "${WEB_ORIGIN:?set WEB_ORIGIN (an origin in USER_CORS_ALLOWED_ORIGINS)}"

chromium=${CHROMIUM:-/usr/bin/chromium}
[ -x "$chromium" ] || { echo "no Chromium at $chromium: install Debian's package (apt-get install chromium) or set CHROMIUM" >&2; exit 1; }

npm run build --silent -w @grimos/proto
node_modules/.bin/tsc -p examples/web/tsconfig.json
node examples/web/build.mjs
node examples/web/test.mjs
