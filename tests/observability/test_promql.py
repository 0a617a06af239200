"""The PromQL name reader that the Prometheus gate relies on (offline, milliseconds)."""

from __future__ import annotations

from pathlib import Path

from promql import dashboard_exprs, metric_names

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy/observability/grafana-dashboard.json"


def test_names_are_read_past_functions_matchers_ranges_and_grouping() -> None:
    expr = """
      histogram_quantile(0.99, sum by (server, le) (
        rate(grpc_server_request_duration_seconds_bucket{rpc!~"/grpc\\\\..*", code=~"2|4"}[5m])))
      > on (server) group_left (version) grimos_build_info offset 5m
      and sum without (state) (db_pool_connections{state="in_use"}) / ignoring (state) db_pool_max_connections
      or vector(0) * 1e9 + time() - grimos:requests:rate5m{protocol='http'}
      unless {__name__="auth_revocations"}
    """
    assert metric_names(expr) == {
        "grpc_server_request_duration_seconds_bucket",
        "grimos_build_info",
        "db_pool_connections",
        "db_pool_max_connections",
        "grimos:requests:rate5m",
        "auth_revocations",
    }


def test_label_values_strings_and_grafana_variables_are_not_names() -> None:
    expr = 'sum by (rpc) (rate(auth_client_requests_total{code="Unavailable", rpc=~"$rpc"}[$__rate_interval]))'
    assert metric_names(expr) == {"auth_client_requests_total"}
    assert metric_names('label_replace(up, "x", "not_a_metric", "", "")') == {"up"}


def test_a_misspelt_name_is_read_as_it_is_written() -> None:
    # The gate compares these names with what Prometheus scraped: a typo must reach it.
    assert metric_names("rate(http_request_total[5m])") == {"http_request_total"}


def test_every_dashboard_query_names_at_least_one_metric() -> None:
    queries = list(dashboard_exprs(DASHBOARD))
    assert len(queries) >= 30
    for title, expr in queries:
        if expr.strip() != "0.001":  # the SLO line
            assert metric_names(expr), f"{title}: {expr}"
