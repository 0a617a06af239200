#!/usr/bin/env bash
# Builds the image TAG (default localhost/grimos-services:latest) with buildah from release
# binaries: `cargo build --release` (a no-op when they are fresh), the context
# (deploy/image-context.sh, in the target dir's image/context), the runtime base
# localhost/grimos-runtime:latest (deploy/Containerfile's `runtime` stage), then the image on it.
#
# buildah's storage and isolation come from its configuration and environment; where the
# overlay driver or user namespaces are missing (CI), STORAGE_DRIVER=vfs BUILDAH_ISOLATION=chroot.
#
# Usage: deploy/build-image.sh [TAG]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

tag=${1:-localhost/grimos-services:latest}
cargo build --release --locked -p auth-service -p user-service
target=$(cargo metadata --format-version 1 --no-deps --locked |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
context=$target/image/context
deploy/image-context.sh "$context" "$target/release"
# buildah resolves `FROM ${BASE}` to an image, never to a stage of this file, so the base is
# built and tagged first.
buildah bud --quiet --target runtime -f deploy/Containerfile -t localhost/grimos-runtime:latest "$context"
buildah bud --quiet -f deploy/Containerfile -t "$tag" "$context"
echo "build-image: $tag"
