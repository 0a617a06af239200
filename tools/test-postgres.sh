#!/usr/bin/env bash
# Make a local PostgreSQL server ready for the tests of the postgres:// backends, and print
# the URL to export as GRIMOS_TEST_POSTGRES_URL. Debian's packages: installs `postgresql` if
# no server is installed, creates and starts a cluster if none is running, and creates the
# role `grimos` (password `grimos`, CREATEDB: every test makes a database of its own).
#   export GRIMOS_TEST_POSTGRES_URL=$(tools/test-postgres.sh)
# Needs root or sudo. Progress goes to stderr; only the URL goes to stdout.
set -euo pipefail

# Everything but the URL goes to stderr: Debian's tools print to stdout (pg_ctlcluster says
# "Removed stale pid file." when a machine image kept one), and that would corrupt the URL.
# (A group, not `exec 3>&1`: the server would inherit the extra descriptor and keep a
# `$(tools/test-postgres.sh)` waiting for ever.)
{
    sudo=; [ "$(id -u)" -eq 0 ] || sudo=sudo
    as_postgres() {
        if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else sudo -u postgres "$@"; fi
    }

    if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
        echo "test-postgres: installing Debian's postgresql" >&2
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends postgresql >/dev/null
    fi

    # The first cluster (pg_lsclusters: version, name, port, status, ...); make one if none.
    cluster=$(pg_lsclusters --no-header 2>/dev/null | head -n 1)
    if [ -z "$cluster" ]; then
        version=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
        echo "test-postgres: creating cluster $version/main" >&2
        $sudo pg_createcluster "$version" main >/dev/null
        cluster=$(pg_lsclusters --no-header | head -n 1)
    fi
    read -r version name port status _ <<<"$cluster"
    if [ "$status" != online ]; then
        echo "test-postgres: starting cluster $version/$name on port $port" >&2
        $sudo pg_ctlcluster "$version" "$name" start
    fi

    # Wait until it accepts connections (a fresh start takes a moment).
    for _ in $(seq 50); do
        as_postgres psql -p "$port" -tAc 'SELECT 1' >/dev/null 2>&1 && break
        sleep 0.2
    done
    if [ "$(as_postgres psql -p "$port" -tAc "SELECT 1 FROM pg_roles WHERE rolname = 'grimos'")" != 1 ]; then
        as_postgres psql -p "$port" -q -c "CREATE ROLE grimos LOGIN PASSWORD 'grimos' CREATEDB"
    fi
    if [ "$(as_postgres psql -p "$port" -tAc "SELECT 1 FROM pg_database WHERE datname = 'grimos_test'")" != 1 ]; then
        as_postgres psql -p "$port" -q -c "CREATE DATABASE grimos_test OWNER grimos"
    fi
} >&2
echo "postgres://grimos:grimos@127.0.0.1:$port/grimos_test"
