#!/usr/bin/env bash
# Build the generated TypeScript package (@grimos/proto) and the TypeScript example with the
# pinned tools in ./node_modules (from `just setup`), then run the example against the system
# at USER_SERVICE_URL (default http://127.0.0.1:8080) over gRPC and over gRPC-Web.
# For a private, throwaway system:
#   tools/with-system.sh examples/run-ts.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

[ -x node_modules/.bin/tsc ] || { echo "no node_modules: run 'just setup' (or 'cargo xtask setup') first" >&2; exit 1; }
npm run --silent build --workspace @grimos/proto
node_modules/.bin/tsc -p examples/ts
node examples/ts/dist/quickstart.js --transport grpc
node examples/ts/dist/quickstart.js --transport grpc-web
