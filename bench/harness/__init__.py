"""grimOS services benchmark: `just bench` (full) and `just bench-quick` (CI smoke).

Builds release binaries, starts auth-service and user-service as separate processes on free
loopback ports with a fresh data directory, seeds users (real ones through the HTTP API, bulk
rows straight into the databases: SQLite files, or with `--postgres URL` a new PostgreSQL
database), then loads every workload on loopback with standard tools: h2load for gRPC unary
calls (pre-encoded request frames) and HTTP/1.1 at a fixed rate, wrk for HTTP. Each workload is
paired with a floor (a minimal tonic or axum server from the `grimos-bench` crate answering the
same shapes and sizes) loaded with the same tool and settings, and reported as a ratio to it,
with req/s, p50/p99 latency, CPU seconds per 1,000 requests and the RSS of every process
involved.

Every run is bounded in time, and every response is checked: h2load must report every
request done and 2xx, and, because gRPC errors are trailers-only responses (HTTP 200, no
DATA frame), the DATA bytes received must equal succeeded x the size of a success frame (taken
from one real call first); wrk must report no socket errors and no non-2xx responses. Where
user-service's /metrics counters exist they are compared before and after as a second check.
Any failed request, crashed service or tool error makes the script exit non-zero with a clear
message. Missed performance targets are printed (and recorded) but do not fail the run.

The modules, each importing only those above it:
- `common`: names, targets, settings, a result, the errors and the log line;
- `sampling`: /proc readers (CPU ticks, context switches, RSS);
- `tools`: h2load's and wrk's output parsed;
- `probes`: single HTTP and gRPC requests, health checks, user-service's /metrics;
- `processes`: builds, bounded tool runs, the system's children (`System`);
- `seed`: the databases (`SqliteStore`, `PostgresStore`) and the users (`Seeder`);
- `loads`: one workload loaded, measured and checked (`Loads`);
- `workloads`: the benchmark's workloads on a run (`Bench`);
- `scenarios`: the order of a run and its restarts;
- `report`: the Markdown report and the targets (one `table` helper for every table);
- `main`: the command line and the report files.

Runs with Python 3.11's standard library plus the generated `grimos-proto` package (and its
grpcio dependency): `.venv/bin/python bench/run.py [--quick] [--out target/bench/report.md]`.
"""
