//! Where the client's calls go ([`channel`]): one lazily connected channel for one URL, or the
//! balanced channel (`balancer`) over several endpoints when `AUTH_SERVICE_ADDRESS` names
//! several (a comma-separated list) or a `dns:///` name.
//!
//! A lazy connection reports ready until a call tries it, so a balancer left to itself keeps
//! an endpoint that refuses connections among the ready ones, and calls routed there fail
//! for as long as it is down. One task per client, [`maintain`], therefore owns the
//! balancer's set:
//!
//! - **Members**: the list's URLs, or every address the name resolves to, re-resolved every
//!   `AUTH_DNS_REFRESH` (a failed or empty resolution keeps the current members).
//! - **Health**: every `AUTH_HEALTH_CHECK_INTERVAL` each member is asked
//!   `grpc.health.v1.Health/Check` (the overall status, within the call deadline) on a
//!   connection of its own; a member whose previous check is still running is skipped, so
//!   one silent member delays no other's check. A member that does not answer `SERVING`
//!   leaves the rotation; it is asked again on every round and comes back, as a fresh
//!   connection, with its first `SERVING`.
//! - **Ejection**: a member whose endpoint failed a call in a way that proves the call was
//!   not processed (a refused connection, say) was already taken out by the balancer, before
//!   the call was retried elsewhere; it is then treated as a member that failed its check.
//! - **Failing open**: when no member is healthy, all of them stay in rotation, so calls fail
//!   fast with `UNAVAILABLE` and recover with the first replica that comes back, rather than
//!   waiting for a check: the first call a member serves then counts as a passed check, and
//!   the members still down leave the rotation at once.
//!
//! A replica that stops is out of rotation at once if it refuses connections or says GOAWAY
//! (ejection), and within one interval plus one check if it just stops answering. Each
//! member's place is in `auth_client_endpoint_in_rotation{endpoint}` (1 or 0), and its health
//! (its last check passed and no call ejected it since) in
//! `auth_client_endpoint_healthy{endpoint}` (1 or 0): failing open keeps unhealthy members in
//! rotation.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use tokio::sync::mpsc::{self, Sender, UnboundedReceiver, UnboundedSender};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{Interval, MissedTickBehavior};
use tonic::Request;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tonic_health::pb::health_client::HealthClient;
use tower::BoxError;
use tower::discover::Change;
use tower::util::MapErr;

use super::address::AuthAddress;
use super::balancer::{self, EndpointChange, EndpointService, Gate, Outcome, Report};
use super::endpoints::{EndpointTemplate, url_endpoint};
use super::health;
use super::{Transport, TransportError};

/// How the balancer's set is kept.
#[derive(Debug, Clone, Copy)]
pub(super) struct Settings {
    /// Every call's deadline, which also bounds a health check and a connection attempt.
    pub(super) deadline: Duration,
    /// How often every member's health is checked (`AUTH_HEALTH_CHECK_INTERVAL`).
    pub(super) health_check_interval: Duration,
    /// How often a `dns:///` name is re-resolved (`AUTH_DNS_REFRESH`).
    pub(super) dns_refresh: Duration,
}

/// A DNS lookup of the name's addresses.
type Resolve =
    Box<dyn FnMut() -> Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send>> + Send>;

/// Where the members come from.
enum Source {
    /// The URLs of a list, fixed.
    List(Vec<Endpoint>),
    /// A `dns:///` name, re-resolved every `refresh`; `template` makes each address an endpoint.
    Dns(Box<Dns>),
}

/// A `dns:///` source.
struct Dns {
    name: String,
    resolve: Resolve,
    template: EndpointTemplate,
    refresh: Duration,
}

/// One endpoint the balancer may use.
struct Member {
    endpoint: Endpoint,
    /// Health checks, on a connection of their own.
    health: HealthClient<Channel>,
    /// The last check's verdict; members start healthy, as a balancer would treat them.
    healthy: bool,
    /// Counts what calls reported (ejections, a call served on probation): a check started
    /// before the latest one says nothing about now.
    epoch: u64,
}

impl Member {
    fn new(endpoint: Endpoint) -> Self {
        let health = HealthClient::new(endpoint.connect_lazy());
        Self {
            endpoint,
            health,
            healthy: true,
            epoch: 0,
        }
    }

    /// The next check dials afresh: a reconnecting channel would first hand it the error of
    /// its last failed attempt, and a replica back up would be seen a round late.
    fn redial(&mut self) {
        self.health = HealthClient::new(self.endpoint.connect_lazy());
    }
}

/// The channel to auth-service for `address`, and, when it balances (a list or a `dns:///`
/// name), the task that keeps its endpoints, stopped when the last holder drops it.
pub(super) fn channel(
    address: AuthAddress,
    tls: Option<&ClientTlsConfig>,
    settings: Settings,
) -> anyhow::Result<(Transport, Option<Arc<AbortOnDrop>>)> {
    if settings.health_check_interval.is_zero() {
        bail!("the health-check interval must be positive");
    }
    match address {
        AuthAddress::Urls(urls) => {
            let endpoints = urls
                .into_iter()
                .map(|uri| url_endpoint(uri, tls, settings.deadline))
                .collect::<anyhow::Result<Vec<_>>>()?;
            match <[Endpoint; 1]>::try_from(endpoints) {
                // One URL: nothing to balance or to fail over to.
                Ok([endpoint]) => {
                    let channel = MapErr::new(endpoint.connect_lazy(), |error| {
                        TransportError::new(BoxError::from(error))
                    });
                    Ok((Transport::new(channel), None))
                }
                Err(endpoints) => Ok(balanced(Source::List(endpoints), settings)),
            }
        }
        AuthAddress::Dns { host, port } => {
            if settings.dns_refresh.is_zero() {
                bail!("the DNS refresh period must be positive");
            }
            let template = EndpointTemplate::new(&host, port, tls.cloned(), settings.deadline)?;
            let bound = settings.dns_refresh.max(Duration::from_secs(1));
            let source = Source::Dns(Box::new(Dns {
                resolve: lookup(host.clone(), port, bound),
                name: host,
                template,
                refresh: settings.dns_refresh,
            }));
            Ok(balanced(source, settings))
        }
    }
}

/// The system resolver's addresses for `name`, each lookup bounded by `bound`.
fn lookup(name: String, port: u16, bound: Duration) -> Resolve {
    Box::new(move || {
        let name = name.clone();
        Box::pin(async move {
            let lookup = tokio::net::lookup_host((name.as_str(), port));
            match tokio::time::timeout(bound, lookup).await {
                Ok(result) => result.map(Iterator::collect),
                Err(_) => Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "DNS lookup timed out",
                )),
            }
        })
    })
}

/// A channel balanced over what `source` names, and the task that keeps its endpoints.
fn balanced(source: Source, settings: Settings) -> (Transport, Option<Arc<AbortOnDrop>>) {
    let (channel, changes) = balancer::balanced();
    // At most two reports per service (served on probation, ejected), each from a service
    // this task made.
    let (reporter, reports) = mpsc::unbounded_channel();
    let task = tokio::spawn(maintain(source, changes, reporter, reports, settings));
    let channel = MapErr::new(channel, TransportError::new);
    (Transport::new(channel), Some(Arc::new(AbortOnDrop(task))))
}

/// Stops the task that keeps a balanced channel's endpoints when dropped.
pub(super) struct AbortOnDrop(pub(super) JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One member's check: its key, the member's epoch when it started, and the verdict.
type Checked = (String, u64, Result<(), String>);

/// Keeps the balancer behind `changes` equal to the healthy members of `source` (all of them
/// when none is healthy), taking in what its services report. Ends when the balancer
/// (the channel) is gone.
async fn maintain(
    source: Source,
    changes: Sender<EndpointChange>,
    reporter: UnboundedSender<Report>,
    mut reports: UnboundedReceiver<Report>,
    settings: Settings,
) {
    let mut members: BTreeMap<String, Member> = BTreeMap::new();
    let (mut dns, mut resolve_ticker) = match source {
        Source::List(endpoints) => {
            for endpoint in endpoints {
                members.insert(key_of(&endpoint), Member::new(endpoint));
            }
            (None, None)
        }
        Source::Dns(dns) => {
            let refresh = dns.refresh;
            (Some(*dns), Some(ticker(refresh)))
        }
    };
    // Members start healthy: the first check comes one interval after the start.
    let mut probe_ticker = ticker(settings.health_check_interval);
    probe_ticker.reset();
    let mut checks: JoinSet<Checked> = JoinSet::new();
    let mut checking: BTreeSet<String> = BTreeSet::new();
    let mut resolving: JoinSet<io::Result<Vec<SocketAddr>>> = JoinSet::new();
    let mut balanced = Balanced::new(reporter);
    loop {
        if balanced.sync(&members, &changes).await.is_err() {
            return;
        }
        tokio::select! {
            () = tick(&mut resolve_ticker), if resolving.is_empty() => {
                if let Some(dns) = &mut dns {
                    resolving.spawn((dns.resolve)());
                }
            }
            Some(resolved) = resolving.join_next() => {
                if let (Some(dns), Ok(resolved)) = (&dns, resolved) {
                    follow(dns, resolved, &mut members);
                }
            }
            _ = probe_ticker.tick() => {
                for (key, member) in &members {
                    if checking.insert(key.clone()) {
                        let (key, epoch) = (key.clone(), member.epoch);
                        let health = member.health.clone();
                        let deadline = settings.deadline;
                        checks.spawn(async move { (key, epoch, check(health, deadline).await) });
                    }
                }
            }
            Some(checked) = checks.join_next() => {
                if let Ok((key, epoch, verdict)) = checked {
                    checking.remove(&key);
                    judge(&mut members, &key, epoch, verdict);
                }
            }
            Some(report) = reports.recv() => {
                if balanced.reported(&report)
                    && let Some(member) = members.get_mut(&report.key)
                {
                    member.epoch += 1;
                    match report.outcome {
                        Outcome::Ejected(reason) => {
                            member.redial();
                            if member.healthy {
                                tracing::warn!(endpoint = %report.key, reason, "auth-service endpoint out of rotation until it passes a health check");
                                member.healthy = false;
                            }
                        }
                        Outcome::Served => {
                            tracing::info!(endpoint = %report.key, "auth-service endpoint served a call; back in rotation");
                            member.healthy = true;
                        }
                    }
                }
            }
            () = changes.closed() => return,
        }
    }
}

/// The key of an endpoint in the balancer: its URI's `host:port`.
fn key_of(endpoint: &Endpoint) -> String {
    endpoint
        .uri()
        .authority()
        .map_or_else(|| endpoint.uri().to_string(), ToString::to_string)
}

fn ticker(period: Duration) -> Interval {
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    ticker
}

async fn tick(ticker: &mut Option<Interval>) {
    match ticker {
        Some(ticker) => {
            ticker.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// Takes in a resolution of the name: new addresses become members, vanished ones stop being
/// members.
fn follow(
    dns: &Dns,
    resolved: io::Result<Vec<SocketAddr>>,
    members: &mut BTreeMap<String, Member>,
) {
    let name = &dns.name;
    let resolved: BTreeMap<String, SocketAddr> = match resolved {
        Ok(addrs) if addrs.is_empty() => {
            tracing::warn!(%name, "auth-service name resolved to no address; keeping the current ones");
            return;
        }
        Ok(addrs) => addrs.into_iter().map(|a| (a.to_string(), a)).collect(),
        Err(error) => {
            tracing::warn!(%name, %error, "cannot resolve auth-service name; retrying");
            return;
        }
    };
    members.retain(|key, _| {
        let keep = resolved.contains_key(key);
        if !keep {
            tracing::info!(%name, addr = %key, "auth-service endpoint removed (no longer resolved)");
        }
        keep
    });
    for (key, addr) in resolved {
        if members.contains_key(&key) {
            continue;
        }
        match dns.template.endpoint(addr) {
            Ok(endpoint) => {
                tracing::info!(%name, %addr, "auth-service endpoint added");
                members.insert(key, Member::new(endpoint));
            }
            Err(error) => {
                tracing::warn!(%name, %addr, error = format!("{error:#}"), "skipping address");
            }
        }
    }
}

/// Takes in one member's check, unless the member is gone or was ejected since it started.
fn judge(
    members: &mut BTreeMap<String, Member>,
    key: &str,
    epoch: u64,
    verdict: Result<(), String>,
) {
    let Some(member) = members.get_mut(key) else {
        return;
    };
    if member.epoch != epoch {
        return;
    }
    if verdict.is_err() {
        member.redial();
    }
    match verdict {
        Ok(()) if !member.healthy => {
            tracing::info!(endpoint = %key, "auth-service endpoint is serving again");
            member.healthy = true;
        }
        Err(reason) if member.healthy => {
            tracing::warn!(endpoint = %key, %reason, "auth-service endpoint failed its health check");
            member.healthy = false;
        }
        _ => {}
    }
}

async fn check(mut client: HealthClient<Channel>, deadline: Duration) -> Result<(), String> {
    let mut request = Request::new(health::request());
    request.set_timeout(deadline);
    match tokio::time::timeout(deadline, client.check(request)).await {
        Ok(Ok(response)) => health::verdict(response.get_ref()),
        Ok(Err(status)) => Err(format!("{:?}: {}", status.code(), status.message())),
        Err(_) => Err(format!("no answer within {deadline:?}")),
    }
}

/// Which members belong in rotation: the healthy ones, or every one when none is healthy.
fn rotation(health: impl IntoIterator<Item = (String, bool)>) -> BTreeSet<String> {
    let (healthy, failing): (Vec<_>, Vec<_>) = health.into_iter().partition(|(_, ok)| *ok);
    let chosen = if healthy.is_empty() { failing } else { healthy };
    chosen.into_iter().map(|(key, _)| key).collect()
}

/// A service in the balancer.
struct Inserted {
    /// Its gate: closed once a call ejected it, on probation while its member fails.
    gate: Gate,
    /// Whether its member was healthy when it was last synced.
    healthy: bool,
    /// Whether its ejection has been taken in: it is never used again.
    dead: bool,
}

/// What the balancer has been told.
struct Balanced {
    /// The services in the balancer, by key.
    inserted: BTreeMap<String, Inserted>,
    /// Where the services this makes report.
    reporter: UnboundedSender<Report>,
    /// Whether the last sync found no healthy member (logged once per change).
    all_failing: bool,
}

impl Balanced {
    fn new(reporter: UnboundedSender<Report>) -> Self {
        Self {
            inserted: BTreeMap::new(),
            reporter,
            all_failing: false,
        }
    }

    /// Takes in `report`; whether it is about the service now in the balancer (rather than
    /// one already replaced).
    fn reported(&mut self, report: &Report) -> bool {
        match self.inserted.get_mut(&report.key) {
            Some(inserted) if inserted.gate.same(&report.gate) => {
                match report.outcome {
                    Outcome::Ejected(_) => inserted.dead = true,
                    // It serves: its connection is good, so it stays (no fresh service).
                    Outcome::Served => inserted.healthy = true,
                }
                true
            }
            _ => false,
        }
    }

    /// Sends the balancer the inserts and removals that make its set the [`rotation`] of
    /// `members`. Fails when the balancer is gone.
    ///
    /// A member in rotation gets a fresh service (a new connection) when its service was
    /// ejected, or when it was kept in rotation while failing (no member was healthy) and is
    /// healthy again: the old one would hand the next call the error of its last failed
    /// connection attempt.
    async fn sync(
        &mut self,
        members: &BTreeMap<String, Member>,
        changes: &Sender<EndpointChange>,
    ) -> Result<(), ()> {
        let all_failing = !members.is_empty() && members.values().all(|m| !m.healthy);
        if all_failing && !self.all_failing {
            tracing::warn!(
                "no auth-service endpoint passes its health check; keeping them all in rotation"
            );
        }
        self.all_failing = all_failing;
        for (key, member) in members {
            metrics::gauge!("auth_client_endpoint_healthy", "endpoint" => key.clone())
                .set(if member.healthy { 1.0 } else { 0.0 });
        }
        let wanted = rotation(members.iter().map(|(k, m)| (k.clone(), m.healthy)));
        let gone: Vec<String> = self
            .inserted
            .keys()
            .filter(|key| !wanted.contains(*key))
            .cloned()
            .collect();
        for key in gone {
            self.inserted.remove(&key);
            in_rotation(&key, false);
            changes.send(Change::Remove(key)).await.map_err(drop)?;
        }
        for key in wanted {
            let Some(member) = members.get(&key) else {
                continue;
            };
            let (fresh, replace) = match self.inserted.get_mut(&key) {
                None => (true, false),
                Some(inserted) => {
                    let stale = inserted.dead || (member.healthy && !inserted.healthy);
                    if !member.healthy && inserted.healthy {
                        // Kept in rotation while failing: its next served call is reported.
                        inserted.gate.begin_probation();
                    }
                    inserted.healthy = member.healthy;
                    (stale, stale)
                }
            };
            if replace {
                // An insert alone would leave the old service in tower's ready set until the
                // new one is ready.
                changes
                    .send(Change::Remove(key.clone()))
                    .await
                    .map_err(drop)?;
            }
            if fresh {
                let service = EndpointService::new(
                    key.clone(),
                    &member.endpoint,
                    !member.healthy,
                    self.reporter.clone(),
                );
                let inserted = Inserted {
                    gate: service.gate(),
                    healthy: member.healthy,
                    dead: false,
                };
                self.inserted.insert(key.clone(), inserted);
                in_rotation(&key, true);
                changes
                    .send(Change::Insert(key, service))
                    .await
                    .map_err(drop)?;
            }
        }
        Ok(())
    }
}

/// Records whether the endpoint `key` is in rotation.
fn in_rotation(key: &str, yes: bool) {
    metrics::gauge!("auth_client_endpoint_in_rotation", "endpoint" => key.to_owned()).set(if yes {
        1.0
    } else {
        0.0
    });
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn keys(set: std::collections::BTreeSet<String>) -> Vec<String> {
        set.into_iter().collect()
    }

    #[test]
    fn the_rotation_is_the_healthy_members_or_all_when_none_is() {
        let health = |list: &[(&str, bool)]| {
            list.iter()
                .map(|(k, ok)| ((*k).to_owned(), *ok))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            keys(rotation(health(&[("a", true), ("b", false), ("c", true)]))),
            ["a", "c"]
        );
        assert_eq!(
            keys(rotation(health(&[("a", false), ("b", false)]))),
            ["a", "b"]
        );
        assert!(rotation(health(&[])).is_empty());
    }

    #[tokio::test]
    async fn dns_members_follow_the_resolved_addresses() {
        let a: SocketAddr = "10.0.0.1:50051".parse().unwrap();
        let b: SocketAddr = "10.0.0.2:50051".parse().unwrap();
        let mut answers = vec![
            Ok(vec![a]),
            Err(std::io::Error::other("resolver down")),
            Ok(vec![a, b]),
            Ok(vec![]),
            Ok(vec![b]),
        ]
        .into_iter();
        let resolve: Resolve = Box::new(move || {
            let answer = answers.next().unwrap_or_else(|| Ok(vec![b]));
            Box::pin(async move { answer })
        });
        let (tx, mut rx) = tokio::sync::mpsc::channel(16);
        let template =
            EndpointTemplate::new("auth", 50051, None, super::super::DEFAULT_DEADLINE).unwrap();
        let source = Source::Dns(Box::new(Dns {
            name: "auth".to_owned(),
            resolve,
            template,
            refresh: Duration::from_millis(5),
        }));
        let (reporter, reports) = mpsc::unbounded_channel();
        // No health check within the test: membership alone.
        let settings = Settings {
            deadline: super::super::DEFAULT_DEADLINE,
            health_check_interval: Duration::from_secs(3600),
            dns_refresh: Duration::from_millis(5),
        };
        let task = tokio::spawn(maintain(source, tx, reporter, reports, settings));

        let mut seen = Vec::new();
        while seen.len() < 3 {
            match rx.recv().await.unwrap() {
                Change::Insert(key, service) => {
                    assert_eq!(service.key(), key);
                    seen.push(format!("+{key}"));
                }
                Change::Remove(key) => seen.push(format!("-{key}")),
            }
        }
        assert_eq!(
            seen,
            ["+10.0.0.1:50051", "+10.0.0.2:50051", "-10.0.0.1:50051"]
        );

        drop(rx);
        tokio::time::timeout(Duration::from_secs(1), task)
            .await
            .expect("the task stops once the balancer is gone")
            .unwrap();
    }
}
