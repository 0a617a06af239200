# grimOS services: every developer and CI task. `just --list` is the help.
# On a machine without `just`, `cargo xtask <recipe>` installs it (and the other pinned
# tools) into ./.venv and runs the recipe.

set shell := ["bash", "-euo", "pipefail", "-c"]

# The pinned tools live inside the checkout: buf and protoc-gen-es in node_modules (from
# package-lock.json), the Python generators and just in .venv (from requirements-dev.txt).
export PATH := justfile_directory() / "node_modules/.bin" + ":" + justfile_directory() / ".venv/bin" + ":" + env_var("PATH")

# The released v1 API that `breaking` compares against; changed only by `freeze-api`.
baseline := "gen/baseline/grimos-v1.binpb"

# List the recipes.
default:
    @just --list

# Install the pinned tools into ./node_modules and ./.venv (npm, pip; nothing global).
setup:
    npm ci --no-audit --no-fund --loglevel=error
    test -x .venv/bin/python || python3 -m venv .venv
    .venv/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
    # The generated package too: the benchmark harness and the Python example import it.
    .venv/bin/pip install --quiet --disable-pip-version-check ./gen/python

# What `vendor` copies from pinned packages, committed and drift-gated like gen/.
vendored := "third_party/googleapis rust/user-service/assets/swagger-ui"

# Copy the vendored files byte for byte from their pinned packages: the googleapis protos (PyPI googleapis-common-protos) and Swagger UI (npm swagger-ui-dist).
vendor:
    .venv/bin/python tools/vendor.py

# Regenerate gen/ (Rust with its HTTP routes, Python, TypeScript, the OpenAPI document) from proto/, and Rust's google.rpc, after vendoring.
generate: vendor
    buf generate
    buf generate --template buf.gen.rpc.yaml

# Regenerate and fail if gen/ or a vendored copy differs from what is committed (the drift gate).
check-generated: generate
    #!/usr/bin/env bash
    set -euo pipefail
    drift=$(git status --porcelain --untracked-files=all -- gen/ {{vendored}})
    if [ -n "$drift" ]; then
        echo "gen/ or a vendored copy is stale: run 'just generate' and commit the result. Changed files:" >&2
        echo "$drift" >&2
        git --no-pager diff --stat -- gen/ {{vendored}} >&2
        exit 1
    fi
    echo "gen/ is up to date with proto/, and the vendored copies with their pinned packages"

# Lint everything: buf lint and format, rustfmt, clippy with warnings as errors.
lint:
    buf lint
    buf format --diff --exit-code
    cargo fmt --all --check
    cargo clippy --workspace --all-targets --locked -- -D warnings
    .venv/bin/python -m mypy --strict --no-incremental bench/run.py tests/hostile tests/schema tests/deploy/image.py
    .venv/bin/python -m mypy --strict --no-incremental tests/topology
    MYPYPATH=tests/hostile .venv/bin/python -m mypy --strict --no-incremental tests/observability

# `breaking` compares the module proto/ alone: the vendored googleapis module is not the API
# (the baseline image holds one module, and buf compares module by module).

# Fail if proto/ breaks wire, JSON or generated-code compatibility with the released v1 API.
breaking:
    buf breaking proto --against {{baseline}}

# Record the current proto/ as the released API (only on purpose, in its own commit).
freeze-api:
    buf build proto --exclude-source-info -o {{baseline}}

# Run every test: Rust (both API suites on SQLite, then on PostgreSQL), the generated clients, the gates, the API document and the examples against a live system.
test: test-rust test-api-postgres test-clients test-gates test-schema test-observability test-examples test-examples-tls

# Run the Rust workspace's tests with cargo-nextest; the PostgreSQL ones need GRIMOS_TEST_POSTGRES_URL.
test-rust *ARGS:
    #!/usr/bin/env bash
    set -euo pipefail
    # nextest, never `cargo test`: each test in a process of its own, and the hang timeout of
    # .config/nextest.toml. These machines ship it.
    if ! cargo nextest --version >/dev/null 2>&1; then
        echo "test-rust: cargo-nextest is missing (cargo install --locked cargo-nextest)" >&2
        exit 1
    fi
    # Without a server the PostgreSQL tests (which fail without one) are left out by the
    # `no-postgres` profile, and nextest's summary counts them as skipped; where
    # GRIMOS_REQUIRE_POSTGRES is set (CI), that is an error instead.
    profile=default
    if [ -z "${GRIMOS_TEST_POSTGRES_URL:-}" ]; then
        if [ -n "${GRIMOS_REQUIRE_POSTGRES:-}" ]; then
            echo "test-rust: GRIMOS_REQUIRE_POSTGRES is set but GRIMOS_TEST_POSTGRES_URL is not" >&2
            exit 1
        fi
        echo "test-rust: GRIMOS_TEST_POSTGRES_URL is unset: the PostgreSQL tests are SKIPPED" \
            "(export GRIMOS_TEST_POSTGRES_URL=\$(tools/test-postgres.sh) to run them)" >&2
        profile=no-postgres
    fi
    cargo nextest run --workspace --locked --no-fail-fast --profile "$profile" {{ARGS}}

# Run both services' API suites (tests/api) again with their databases on PostgreSQL, on the server of
# GRIMOS_TEST_POSTGRES_URL; skipped, saying so, when it is unset (an error where GRIMOS_REQUIRE_POSTGRES is set, as in CI).
test-api-postgres *ARGS:
    #!/usr/bin/env bash
    set -euo pipefail
    if [ -z "${GRIMOS_TEST_POSTGRES_URL:-}" ]; then
        if [ -n "${GRIMOS_REQUIRE_POSTGRES:-}" ]; then
            echo "test-api-postgres: GRIMOS_REQUIRE_POSTGRES is set but GRIMOS_TEST_POSTGRES_URL is not" >&2
            exit 1
        fi
        echo "test-api-postgres: SKIPPED (set GRIMOS_TEST_POSTGRES_URL to run it)"
        exit 0
    fi
    # spawn_app() puts every app's data on the backend GRIMOS_TEST_BACKEND names. A test named
    # for one backend (`sqlite`, `postgres`) makes its own database whatever that says, and has
    # run in test-rust already: nextest counts those as skipped here. `--workspace` with a
    # filter, not `-p ... --test api`, so that the test binaries test-rust built are reused
    # (a subset of packages unifies other features and rebuilds their dependencies).
    GRIMOS_TEST_BACKEND=postgres cargo nextest run --workspace --locked --no-fail-fast \
        -E '(binary_id(auth-service::api) | binary_id(user-service::api)) & not test(/sqlite|postgres/)' \
        {{ARGS}}

# Test the generated Python (fresh venv) and TypeScript packages, offline and against a private live system.
test-clients:
    #!/usr/bin/env bash
    set -euo pipefail
    venv=$(mktemp -d)
    trap 'rm -rf "$venv"' EXIT
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -c requirements-dev.txt \
        ./gen/python pytest mypy types-grpcio types-protobuf
    "$venv/bin/python" -m mypy --strict --no-incremental tests/python
    npm run --silent build --workspace @grimos/proto
    tsc -p tests/ts
    node tests/ts/dist/smoke.js
    # Live: every operation of the served /openapi.json over HTTP/JSON, gRPC and gRPC-Web
    # (tests/python/test_live.py, tests/ts/live.ts), from the descriptors, not from lists.
    tools/with-system.sh bash -c \
        '"$1" -m pytest -q -p no:cacheprovider tests/python && node tests/ts/dist/live.js' \
        test-clients "$venv/bin/python"

# The alert and recording rules and the Grafana dashboard of deploy/observability/ (Debian's
# `prometheus` package: promtool and Prometheus): `promtool check rules`, the rules' unit tests
# (`promtool test rules`), then a real Prometheus scraping a private split system (two
# auth-service replicas, user-service) under a short load must show every metric the rules and
# the dashboard name, and a value for every recording rule (tests/observability). About 40 s.

# Check the rules with promtool and their unit tests, and run a real Prometheus against a private system: every metric the rules and the dashboard name must be exported.
test-observability:
    cargo build --locked -q -p auth-service -p user-service
    timeout 180 .venv/bin/python -m pytest -q -p no:cacheprovider tests/observability

# Prove the breaking-change and drift gates reject bad input.
test-gates:
    .venv/bin/python -m pytest -q -p no:cacheprovider tests/gates

# The served OpenAPI document against a private system: headless Chromium checks that /docs
# renders every operation of /openapi.json, then schemathesis fuzzes every operation from it,
# signed in as a user and then as the admin of GRIMOS_ADMIN_EMAILS, about 70 s each
# (tests/schema/fuzz.py: `--max-time`; SCHEMA_SEED=N repeats a run). Any 5xx, any answer the
# document does not allow, or any schema-breaking request accepted fails it.

# Check /docs in headless Chromium and fuzz every operation of /openapi.json with schemathesis, against a private system.
test-schema *ARGS:
    GRIMOS_ADMIN_EMAILS=schema-admin@example.com tools/with-system.sh bash -c \
        'node tests/schema/docs_page.mjs && .venv/bin/python tests/schema/fuzz.py "$@"' test-schema {{ARGS}}

# The system is `just dev`'s by default, or USER_SERVICE_URL, AUTH_SERVICE_URL and WEB_ORIGIN
# (an origin user-service allows by CORS).
# Run every example client (Python, TS over gRPC and gRPC-Web, browser, Rust, buf curl) against a running system.
examples:
    #!/usr/bin/env bash
    set -euo pipefail
    export USER_SERVICE_URL=${USER_SERVICE_URL:-http://127.0.0.1:8080}
    export AUTH_SERVICE_URL=${AUTH_SERVICE_URL:-http://127.0.0.1:50051}
    export WEB_ORIGIN=${WEB_ORIGIN:-http://127.0.0.1:5173}
    for example in python ts web; do
        echo "== examples/run-$example.sh"
        examples/run-$example.sh
    done
    echo "== cargo run -p grimos-example-client"
    cargo run -q --locked -p grimos-example-client
    echo "== examples/buf-curl.sh"
    examples/buf-curl.sh

# Start a private system (two processes, fresh data, free ports), run every example against it, stop it.
test-examples:
    tools/with-system.sh just examples

# The same over TLS: a throwaway CA and certificate (the guide's openssl recipe), both services
# serving TLS only, and the Python and Rust examples calling https:// trusting GRIMOS_TLS_CA.
test-examples-tls:
    #!/usr/bin/env bash
    set -euo pipefail
    tls=$(mktemp -d)
    trap 'rm -rf "$tls"' EXIT
    openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 -days 1 \
        -subj /CN=grimos-test-ca -keyout "$tls/ca.key" -out "$tls/ca.pem" 2>/dev/null
    openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
        -subj /CN=server -keyout "$tls/server.key" -out "$tls/server.csr" 2>/dev/null
    openssl x509 -req -in "$tls/server.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca.key" -CAcreateserial \
        -days 1 -extfile <(printf 'subjectAltName=DNS:localhost,IP:127.0.0.1') \
        -out "$tls/server.pem" 2>/dev/null
    export GRIMOS_TLS_CERT=$tls/server.pem GRIMOS_TLS_KEY=$tls/server.key GRIMOS_TLS_CA=$tls/ca.pem
    tools/with-system.sh bash -c 'case $USER_SERVICE_URL in https://*) ;; *) exit 1;; esac
        echo "== examples/run-python.sh ($USER_SERVICE_URL)"; examples/run-python.sh
        echo "== cargo run -p grimos-example-client ($USER_SERVICE_URL)"
        cargo run -q --locked -p grimos-example-client'

# The hostile-client suite: release build, both services attacked on loopback while a normal client is timed; fails if a limit does not hold (`--no-assert`: measure only). Report in target/hostile/.
test-hostile *ARGS:
    .venv/bin/python tests/hostile/suite.py {{ARGS}}

# The multi-host topology test, as root: network namespaces on 10.213.0.0/24, 3 auth and 2 user replicas, PostgreSQL and nginx; restarts, a partition, scaling and a database restart under load. Figures in target/topology/.
test-topology *ARGS:
    .venv/bin/python tests/topology/topology.py {{ARGS}}

# Benchmark the system on loopback: release build, h2load and wrk; report in target/bench/ (see docs/BENCHMARKS.md).
bench *ARGS:
    .venv/bin/python bench/run.py {{ARGS}}

# The benchmark's smoke run for CI: 1-2 s per workload, 1k users; fails on any failed request.
bench-quick *ARGS:
    .venv/bin/python bench/run.py --quick {{ARGS}}

# The smoke run with both services on PostgreSQL, on the server of GRIMOS_TEST_POSTGRES_URL
# (tools/test-postgres.sh; CI sets it); skipped, saying so, when it is unset (an error where
# GRIMOS_REQUIRE_POSTGRES is set, as in CI).
bench-quick-postgres *ARGS:
    #!/usr/bin/env bash
    set -euo pipefail
    if [ -z "${GRIMOS_TEST_POSTGRES_URL:-}" ]; then
        if [ -n "${GRIMOS_REQUIRE_POSTGRES:-}" ]; then
            echo "bench-quick-postgres: GRIMOS_REQUIRE_POSTGRES is set but GRIMOS_TEST_POSTGRES_URL is not" >&2
            exit 1
        fi
        echo "bench-quick-postgres: SKIPPED (set GRIMOS_TEST_POSTGRES_URL to run it)"
        exit 0
    fi
    .venv/bin/python bench/run.py --quick --postgres "$GRIMOS_TEST_POSTGRES_URL" {{ARGS}}

# Build the container image localhost/grimos-services:latest with buildah from the release binaries (deploy/Containerfile; docs/deploy.md).
image:
    deploy/build-image.sh

# Build the image and start it as a container runtime would (read-only root, its user, entrypoint and env) and sign up, log in and call /me through it; cleans up after itself.
test-image:
    .venv/bin/python tests/deploy/image.py

# Write the secrets Compose and the Kubernetes dev overlay read (deploy/secrets/, deploy/k8s/overlays/dev/secrets/; git-ignored; existing files kept).
deploy-secrets:
    deploy/secrets.sh deploy/secrets
    deploy/secrets.sh deploy/k8s/overlays/dev/secrets

# Validate deploy/compose.yaml (Compose Specification) and the Kubernetes overlays (kubectl kustomize, strict schemas of the supported versions) and what they promise.
validate-deploy:
    .venv/bin/python -m pytest -q -p no:cacheprovider tests/deploy

# Everything CI runs, in order.
ci:
    #!/usr/bin/env bash
    set -euo pipefail
    # Each stage is timed; the light, independent Python/TypeScript stages run side by side.
    # Every load, fault and fuzz stage is bounded in time by its own recipe.
    times=()
    stage() {
        local name=$1 start=$SECONDS
        shift
        echo "== ci: $name"
        if ! "$@"; then
            echo "== ci: $name FAILED after $((SECONDS - start)) s" >&2
            exit 1
        fi
        times+=("$(printf '%-36s %5d s' "$name" $((SECONDS - start)))")
    }
    together() {
        local start=$SECONDS pids=() names=() logs=() failed=0
        for name in "$@"; do
            local log
            log=$(mktemp)
            # Each one's own time too, written beside its output.
            (s=$SECONDS; rc=0; just "$name" >"$log" 2>&1 || rc=$?; echo $((SECONDS - s)) >"$log.time"; exit $rc) &
            pids+=($!) names+=("$name") logs+=("$log")
        done
        for i in "${!pids[@]}"; do
            if ! wait "${pids[$i]}"; then failed=1; echo "== ci: ${names[$i]} FAILED" >&2; fi
            echo "== ci: ${names[$i]} (output, $(cat "${logs[$i]}.time") s)"; cat "${logs[$i]}"
            times+=("$(printf '  %-34s %5d s' "${names[$i]}" "$(cat "${logs[$i]}.time")")")
            rm -f "${logs[$i]}" "${logs[$i]}.time"
        done
        [ $failed -eq 0 ] || exit 1
        times+=("$(printf '%-36s %5d s' "$* (together)" $((SECONDS - start)))")
    }
    total=$SECONDS
    stage setup just setup
    stage check-generated just check-generated
    stage lint just lint
    stage breaking just breaking
    stage test-rust just test-rust
    stage test-api-postgres just test-api-postgres
    together test-clients test-gates test-schema validate-deploy test-observability
    stage test-examples just test-examples
    stage test-examples-tls just test-examples-tls
    stage bench-quick just bench-quick
    # After the benchmark, which built the release binaries the image is made of.
    stage test-image just test-image
    stage bench-quick-postgres just bench-quick-postgres
    stage test-hostile just test-hostile
    stage test-topology just test-topology
    echo "== ci: stage times"
    printf '   %s\n' "${times[@]}"
    printf '   %-36s %5d s\n' total $((SECONDS - total))

# The cargo-fuzz targets in fuzz/ (see fuzz/README.md), built on the nightly toolchain.
fuzz_targets := "json_body page_token field_mask access_token auth_address key_file"
cargo_fuzz_version := "0.13.2"

# Install the pinned cargo-fuzz into ./.venv/bin (unless it is there) and check the fuzz lockfile.
fuzz-setup:
    #!/usr/bin/env bash
    set -euo pipefail
    if [ "$(cargo-fuzz --version 2>/dev/null)" != "cargo-fuzz {{cargo_fuzz_version}}" ]; then
        cargo install --locked --quiet --root .venv cargo-fuzz@{{cargo_fuzz_version}}
    fi
    rustc +nightly --version
    if ! cargo fetch --locked --quiet --manifest-path fuzz/Cargo.toml; then
        echo "fuzz/Cargo.lock is stale (a service's dependencies changed): run 'just fuzz-lock' and commit it" >&2
        exit 1
    fi

# Rewrite fuzz/Cargo.lock from the workspace's Cargo.lock (same versions), plus libFuzzer's crates.
fuzz-lock:
    cp Cargo.lock fuzz/Cargo.lock
    cargo metadata --quiet --format-version 1 --manifest-path fuzz/Cargo.toml > /dev/null

# Build every fuzz target and run each from its seeds for SECONDS (and at most 2M inputs); CI's bounded run.
fuzz-ci SECONDS="10":
    #!/usr/bin/env bash
    set -euo pipefail
    start=$(date +%s)
    just fuzz-setup
    setup=$(date +%s)
    echo "fuzz-ci: cargo-fuzz ready in $((setup - start)) s"
    cargo +nightly fuzz build --sanitizer none
    built=$(date +%s)
    echo "fuzz-ci: targets built in $((built - setup)) s"
    for target in {{fuzz_targets}}; do
        just _fuzz-run "$target" {{SECONDS}} -runs=2000000
    done
    echo "fuzz-ci: {{fuzz_targets}} ran {{SECONDS}} s each; $(( $(date +%s) - start )) s in all (setup $((setup - start)) s, build $((built - setup)) s)"

# Fuzz TARGET for SECONDS (default 5 minutes), or every target in turn with TARGET=all; new inputs go to fuzz/corpus/.
fuzz TARGET="all" SECONDS="300": fuzz-setup
    #!/usr/bin/env bash
    set -euo pipefail
    targets="{{TARGET}}"
    [ "$targets" = all ] && targets="{{fuzz_targets}}"
    for target in $targets; do
        just _fuzz-run "$target" {{SECONDS}}
    done

# One target for SECONDS from fuzz/corpus/TARGET (what it found before) and its committed seeds.
_fuzz-run TARGET SECONDS *ARGS:
    #!/usr/bin/env bash
    set -euo pipefail
    case " {{fuzz_targets}} " in *" {{TARGET}} "*) ;; *) echo "no fuzz target {{TARGET}}; the targets: {{fuzz_targets}}" >&2; exit 2;; esac
    mkdir -p fuzz/corpus/{{TARGET}} fuzz/target
    log=fuzz/target/{{TARGET}}.log
    start=$(date +%s)
    if ! cargo +nightly fuzz run --sanitizer none {{TARGET}} fuzz/corpus/{{TARGET}} fuzz/seeds/{{TARGET}} -- \
        -max_total_time={{SECONDS}} -timeout=10 -print_final_stats=1 {{ARGS}} > "$log" 2>&1; then
        tail -n 60 "$log" >&2
        echo "fuzz: {{TARGET}} FAILED; the input is in fuzz/artifacts/{{TARGET}}/ (replay it with 'cargo +nightly fuzz run --sanitizer none {{TARGET}} FILE')" >&2
        exit 1
    fi
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    echo "fuzz: {{TARGET}}: ${runs:-?} inputs in $(( $(date +%s) - start )) s, no failure"

# Run the system: user-service on 127.0.0.1:8080 with an embedded auth-service (data in ./data).
run:
    cargo run --locked -p user-service

# auth-service on 127.0.0.1:50051, user-service on 127.0.0.1:8080, data in ./data/dev.
# Run both services as separate processes (the production topology), logs interleaved; Ctrl-C stops both.
dev:
    tools/dev.sh
