//! Where the client's calls go ([`channel`]): one lazily connected channel for one URL, or a
//! channel balanced over several endpoints when `AUTH_SERVICE_ADDRESS` names several (a
//! comma-separated list) or a `dns:///` name.
//!
//! tonic's balancer keeps an endpoint that refuses connections among the ready ones (a lazy
//! connection reports ready until a call tries it), so calls routed there fail with
//! `UNAVAILABLE` for as long as it is down: about a third of all calls with one of two
//! replicas stopped. One task per client, [`maintain`], therefore owns the balancer's set:
//!
//! - **Members**: the list's URLs, or every address the name resolves to, re-resolved every
//!   `refresh` (a failed or empty resolution keeps the current members).
//! - **Health**: every [`PROBE_INTERVAL`] each member is asked `grpc.health.v1.Health/Check`
//!   (the overall status, within the call deadline) on a connection of its own. A member that
//!   does not answer `SERVING` leaves the rotation at once; it is asked again on every round
//!   and comes back with its first `SERVING`.
//! - **Failing open**: when no member is healthy, all of them stay in rotation, so calls fail
//!   fast with `UNAVAILABLE` and recover with the first replica that comes back, rather than
//!   waiting for a probe.
//!
//! A replica that dies is out of rotation within one interval plus one probe (a refused
//! connection fails at once); calls routed to it before then still fail, and are not retried
//! (see the client's invariants).

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use tokio::sync::mpsc::Sender;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{Interval, MissedTickBehavior};
use tonic::Request;
use tonic::transport::channel::Change;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tonic_health::pb::health_client::HealthClient;

use super::address::AuthAddress;
use super::endpoints::{EndpointTemplate, url_endpoint};
use super::health;

/// How often every member's health is checked.
const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// Room for changes queued while no call drives the balancer.
const CHANGES_CAPACITY: usize = 1024;

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
    /// The last check's verdict; members start healthy, as tonic's balancer would treat them.
    healthy: bool,
}

impl Member {
    fn new(endpoint: Endpoint) -> Self {
        let health = HealthClient::new(endpoint.connect_lazy());
        Self {
            endpoint,
            health,
            healthy: true,
        }
    }
}

/// The channel to auth-service for `address`, and, when it balances (a list or a `dns:///`
/// name), the task that keeps its endpoints, stopped when the last holder drops it.
pub(super) fn channel(
    address: AuthAddress,
    tls: Option<&ClientTlsConfig>,
    deadline: Duration,
    dns_refresh: Duration,
) -> anyhow::Result<(Channel, Option<Arc<AbortOnDrop>>)> {
    match address {
        AuthAddress::Urls(urls) => {
            let endpoints = urls
                .into_iter()
                .map(|uri| url_endpoint(uri, tls, deadline))
                .collect::<anyhow::Result<Vec<_>>>()?;
            match <[Endpoint; 1]>::try_from(endpoints) {
                // One URL: nothing to balance or to fail over to.
                Ok([endpoint]) => Ok((endpoint.connect_lazy(), None)),
                Err(endpoints) => Ok(balanced(Source::List(endpoints), deadline)),
            }
        }
        AuthAddress::Dns { host, port } => {
            if dns_refresh.is_zero() {
                bail!("the DNS refresh period must be positive");
            }
            let template = EndpointTemplate::new(&host, port, tls.cloned(), deadline)?;
            let source = Source::Dns(Box::new(Dns {
                resolve: lookup(host.clone(), port, dns_refresh.max(Duration::from_secs(1))),
                name: host,
                template,
                refresh: dns_refresh,
            }));
            Ok(balanced(source, deadline))
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
fn balanced(source: Source, deadline: Duration) -> (Channel, Option<Arc<AbortOnDrop>>) {
    let (channel, changes) = Channel::balance_channel::<String>(CHANGES_CAPACITY);
    let task = tokio::spawn(maintain(source, changes, deadline, PROBE_INTERVAL));
    (channel, Some(Arc::new(AbortOnDrop(task))))
}

/// Stops the task that keeps a balanced channel's endpoints when dropped.
pub(super) struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Keeps the balancer behind `changes` equal to the healthy members of `source` (all of them
/// when none is healthy). Ends when the balancer (the channel) is gone.
async fn maintain(
    source: Source,
    changes: Sender<Change<String, Endpoint>>,
    deadline: Duration,
    probe_every: Duration,
) {
    let mut members: BTreeMap<String, Member> = BTreeMap::new();
    let (mut dns, mut resolve_ticker) = match source {
        Source::List(endpoints) => {
            for endpoint in endpoints {
                members.insert(endpoint.uri().to_string(), Member::new(endpoint));
            }
            (None, None)
        }
        Source::Dns(dns) => {
            let Dns {
                name,
                resolve,
                template,
                refresh,
            } = *dns;
            (Some((name, resolve, template)), Some(ticker(refresh)))
        }
    };
    // Members start healthy: the first check comes one interval after the start.
    let mut probe_ticker = ticker(probe_every);
    probe_ticker.reset();
    let mut balanced = Balanced::default();
    loop {
        if balanced.sync(&members, &changes).await.is_err() {
            return;
        }
        tokio::select! {
            () = tick(&mut resolve_ticker) => {
                if let Some((name, resolve, template)) = &mut dns {
                    follow(name, resolve, template, &mut members).await;
                }
            }
            _ = probe_ticker.tick() => probe_all(&mut members, deadline).await,
            () = changes.closed() => return,
        }
    }
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

/// Re-resolves `name`: new addresses become members, vanished ones stop being members.
async fn follow(
    name: &str,
    resolve: &mut Resolve,
    template: &EndpointTemplate,
    members: &mut BTreeMap<String, Member>,
) {
    let resolved: BTreeMap<String, SocketAddr> = match resolve().await {
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
        match template.endpoint(addr) {
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

/// Checks every member's health at once; each check is bounded by `deadline`.
async fn probe_all(members: &mut BTreeMap<String, Member>, deadline: Duration) {
    let mut checks = JoinSet::new();
    for (key, member) in members.iter() {
        let key = key.clone();
        let health = member.health.clone();
        checks.spawn(async move { (key, check(health, deadline).await) });
    }
    while let Some(result) = checks.join_next().await {
        let Ok((key, verdict)) = result else { continue };
        let Some(member) = members.get_mut(&key) else {
            continue;
        };
        if verdict.is_err() {
            // The next check dials afresh: a reconnecting channel would first hand it the
            // error of this failed attempt, and a replica back up would be seen a round late.
            member.health = HealthClient::new(member.endpoint.connect_lazy());
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

/// What the balancer has been told.
#[derive(Default)]
struct Balanced {
    /// The endpoints in the balancer, each with whether it was healthy when inserted.
    keys: BTreeMap<String, bool>,
    /// Whether the last sync found no healthy member (logged once per change).
    all_failing: bool,
}

impl Balanced {
    /// Sends the balancer the inserts and removals that make its set the [`rotation`] of
    /// `members`. Fails when the balancer is gone.
    ///
    /// A member kept in rotation while failing (no member was healthy) is inserted again, as
    /// a fresh connection, once it is healthy: tonic's reconnecting service would otherwise
    /// hand the next call the error of its last failed connection attempt.
    async fn sync(
        &mut self,
        members: &BTreeMap<String, Member>,
        changes: &Sender<Change<String, Endpoint>>,
    ) -> Result<(), ()> {
        let all_failing = !members.is_empty() && members.values().all(|m| !m.healthy);
        if all_failing && !self.all_failing {
            tracing::warn!(
                "no auth-service endpoint passes its health check; keeping them all in rotation"
            );
        }
        self.all_failing = all_failing;
        let wanted = rotation(members.iter().map(|(k, m)| (k.clone(), m.healthy)));
        let gone: Vec<String> = self
            .keys
            .keys()
            .filter(|key| !wanted.contains(*key))
            .cloned()
            .collect();
        for key in gone {
            self.keys.remove(&key);
            changes.send(Change::Remove(key)).await.map_err(drop)?;
        }
        for key in wanted {
            let Some(member) = members.get(&key) else {
                continue;
            };
            let (fresh, replace) = match self.keys.get(&key) {
                None => (true, false),
                Some(&inserted_healthy) => {
                    let revived = member.healthy && !inserted_healthy;
                    (revived, revived)
                }
            };
            if replace {
                // An insert alone would leave the old service in tower's ready set until
                // it had served (failed) one more call.
                changes
                    .send(Change::Remove(key.clone()))
                    .await
                    .map_err(drop)?;
            }
            if fresh {
                changes
                    .send(Change::Insert(key.clone(), member.endpoint.clone()))
                    .await
                    .map_err(drop)?;
            }
            self.keys.insert(key, member.healthy);
        }
        Ok(())
    }
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
        // No health check within the test: membership alone.
        let task = tokio::spawn(maintain(
            source,
            tx,
            super::super::DEFAULT_DEADLINE,
            Duration::from_secs(3600),
        ));

        let mut seen = Vec::new();
        while seen.len() < 3 {
            match rx.recv().await.unwrap() {
                Change::Insert(key, endpoint) => {
                    assert_eq!(endpoint.uri().to_string(), format!("http://{key}/"));
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
