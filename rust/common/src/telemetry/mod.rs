//! Logging and tracing set-up: the global `tracing` subscriber, which writes logs to stderr
//! (plain text, or JSON with `GRIMOS_LOG_FORMAT=json`) and, when an OTLP endpoint is set
//! (`OTEL_EXPORTER_OTLP_ENDPOINT`), exports spans to it over OTLP/gRPC ([`init`]).
//!
//! The OpenTelemetry settings are the specification's environment variables, read by the
//! OpenTelemetry SDK itself: the endpoint, headers, timeout and compression by
//! `opentelemetry-otlp`; `OTEL_TRACES_SAMPLER`/`OTEL_TRACES_SAMPLER_ARG` by the SDK's trace
//! configuration; `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES` by its resource
//! detectors, the service's own name being the default for `service.name`. Without an
//! endpoint there is no exporter and no OpenTelemetry layer, and [`exporting`] is false, which
//! the span helpers ([`propagation`], [`client_span`], [`db_span`]) check first, so a request
//! pays for none of it.
//!
//! Never put a password, token or email in a span field: fields are exported as attributes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

mod propagation;
mod spans;

pub use propagation::{TRACEPARENT_HEADER, continue_trace, inject, record_trace_id};
pub use spans::{
    attribute, client_span, db_span, failed, int_attribute, record_grpc_code, rename, sampled,
};

/// The `tracing` target of spans that are never exported (a probe's request), whatever
/// their level.
pub const UNTRACED_TARGET: &str = "grimos::untraced";

/// Whether spans are exported (set once by [`init`]).
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// How long the stop waits for the last spans to be exported.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether this process exports spans: an OTLP endpoint was set when [`init`] ran.
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// The log line format, `GRIMOS_LOG_FORMAT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// `text` (the default): one human-readable line per event, the spans' fields in front.
    Text,
    /// `json`: one JSON object per line (`timestamp`, `level`, `fields`, `span`, `spans`),
    /// for log shippers.
    Json,
}

impl LogFormat {
    /// Reads `GRIMOS_LOG_FORMAT` (`text` when unset).
    pub fn from_env() -> anyhow::Result<Self> {
        match std::env::var("GRIMOS_LOG_FORMAT").as_deref() {
            Err(_) | Ok("" | "text") => Ok(Self::Text),
            Ok("json") => Ok(Self::Json),
            Ok(other) => anyhow::bail!("GRIMOS_LOG_FORMAT must be text or json, not {other:?}"),
        }
    }
}

/// What [`init`] set up; [`Telemetry::shutdown`] exports the spans still buffered.
#[must_use = "call shutdown() at the end, or the last spans are lost"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Exports the spans still buffered and stops the exporter (within 5 s): the last thing a
    /// service does on either way of stopping (SIGTERM's drain, SIGINT) or after a failed
    /// start.
    pub async fn shutdown(self) {
        let Some(provider) = self.provider else {
            return;
        };
        // The SDK blocks this thread while its exporter thread sends, on this runtime.
        let stopped =
            tokio::task::spawn_blocking(move || provider.shutdown_with_timeout(FLUSH_TIMEOUT))
                .await;
        match stopped {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(%error, "could not export the last spans"),
            Err(error) => tracing::warn!(%error, "could not export the last spans"),
        }
    }
}

/// A service binary's life: [`init`] for `service`, then `serve` (build the app and run it
/// until it stops), then [`Telemetry::shutdown`] however `serve` ended — either way of
/// stopping (SIGTERM's drain, SIGINT) or a failed start — so the spans still buffered are
/// exported before the process exits.
pub async fn run<F>(service: &'static str, serve: F) -> anyhow::Result<()>
where
    F: std::future::Future<Output = anyhow::Result<()>>,
{
    let telemetry = init(service)?;
    let served = serve.await;
    telemetry.shutdown().await;
    served
}

/// Installs the global subscriber for the service `service` (`auth-service`,
/// `user-service`: its `service.name` unless the OpenTelemetry settings name another): logs
/// as [`init_tracing`] writes them, in the `GRIMOS_LOG_FORMAT` format, and spans exported to
/// the OTLP endpoint when one is set. Must run inside the Tokio runtime (the exporter's
/// connection lives on it). Fails on a setting it cannot use.
pub fn init(service: &'static str) -> anyhow::Result<Telemetry> {
    let format = LogFormat::from_env()?;
    let provider = if otlp_endpoint_set() {
        Some(provider(service)?)
    } else {
        None
    };
    let otel = provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("grimos"))
            .with_location(false)
            .with_threads(false)
            .with_target(false)
            // What a request costs: no busy/idle timings, and no OpenTelemetry context made
            // current on every enter (spans take their parent from the `tracing` span tree,
            // and calls read the context from their span).
            .with_tracked_inactivity(false)
            .with_context_activation(false)
            // Our spans are at info; the libraries' debug and trace spans (h2, hyper) are not
            // worth exporting whatever RUST_LOG says, nor the probes' requests.
            .with_filter(
                Targets::new()
                    .with_default(LevelFilter::INFO)
                    .with_target(UNTRACED_TARGET, LevelFilter::OFF),
            )
    });
    let initialized = tracing_subscriber::registry()
        .with(log_layer(format))
        .with(otel)
        .try_init();
    if initialized.is_ok() && provider.is_some() {
        EXPORTING.store(true, Ordering::Relaxed);
    }
    Ok(Telemetry { provider })
}

/// Installs the global subscriber with logs only, as text: `RUST_LOG` filters (default
/// `info`), output goes to stderr, coloured only on a terminal (log collectors get plain
/// `key=value` text). Safe to call more than once (later calls do nothing), so tests and an
/// embedding process can all call it.
pub fn init_tracing() {
    let _ = tracing_subscriber::registry()
        .with(log_layer(LogFormat::Text))
        .try_init();
}

/// The log output, filtered by `RUST_LOG`.
fn log_layer<S>(format: LogFormat) -> Box<dyn tracing_subscriber::Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    use std::io::IsTerminal as _;
    // PostgreSQL's notices (such as "relation ... already exists, skipping" from the
    // migrator at every start) are not news at info.
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx::postgres::notice=warn"));
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false);
    match format {
        LogFormat::Text => fmt
            .with_ansi(std::io::stderr().is_terminal())
            .with_filter(filter)
            .boxed(),
        LogFormat::Json => fmt.json().with_ansi(false).with_filter(filter).boxed(),
    }
}

/// Whether the OpenTelemetry settings ask for spans: an OTLP endpoint (for all signals, or
/// for traces), and neither `OTEL_SDK_DISABLED=true` nor `OTEL_TRACES_EXPORTER=none`.
fn otlp_endpoint_set() -> bool {
    let set = |name: &str| std::env::var(name).is_ok_and(|value| !value.trim().is_empty());
    let is = |name: &str, wanted: &str| {
        std::env::var(name).is_ok_and(|value| value.trim().eq_ignore_ascii_case(wanted))
    };
    (set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
        && !is("OTEL_SDK_DISABLED", "true")
        && !is("OTEL_TRACES_EXPORTER", "none")
}

/// The tracer provider: a batching OTLP/gRPC exporter, the sampler from
/// `OTEL_TRACES_SAMPLER` (the SDK's default configuration reads it; unset, parent-based
/// always-on) and the resource from the environment.
fn provider(service: &'static str) -> anyhow::Result<SdkTracerProvider> {
    for name in [
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
    ] {
        if let Ok(protocol) = std::env::var(name)
            && !protocol.is_empty()
        {
            anyhow::ensure!(
                protocol == "grpc",
                "{name}={protocol:?}: spans are exported over OTLP/gRPC only (grpc)"
            );
            break;
        }
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .build()
        .context("OTEL_EXPORTER_OTLP_ENDPOINT")?;
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource(service))
        .build())
}

/// `service.name` and the other attributes of every span: `service.version` (this build),
/// then what the SDK's detectors read from `OTEL_RESOURCE_ATTRIBUTES` and
/// `OTEL_SERVICE_NAME` (the last winning for `service.name`, as the specification says),
/// and `service` as `service.name` when neither names one.
fn resource(service: &'static str) -> Resource {
    use opentelemetry_sdk::resource::{
        EnvResourceDetector, ResourceDetector, SdkProvidedResourceDetector,
        TelemetryResourceDetector,
    };
    let detectors: [Box<dyn ResourceDetector>; 3] = [
        Box::new(SdkProvidedResourceDetector),
        Box::new(TelemetryResourceDetector),
        Box::new(EnvResourceDetector::new()),
    ];
    let builder = Resource::builder_empty()
        .with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION"),
        ))
        .with_detectors(&detectors);
    // Without a name in the settings the SDK says `unknown_service:<executable>`.
    let unnamed = SdkProvidedResourceDetector
        .detect()
        .get(&opentelemetry::Key::new("service.name"))
        .is_none_or(|name| name.as_str().starts_with("unknown_service"));
    if unnamed {
        builder.with_service_name(service).build()
    } else {
        builder.build()
    }
}
