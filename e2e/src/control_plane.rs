//! The control plane as a test acts on it: outages of the API server, and the API server's
//! request counts (`apiserver_request_total`).
//!
//! Against the emulator the suite causes outages itself ([`Cluster::outage`]). Against a real
//! cluster (`E2E_KUBECONFIG`) it can cause one kind: a restart, through the shell command in
//! `E2E_OUTAGE_COMMAND` ([`OUTAGE_COMMAND_ENV`]), which restarts kube-apiserver the way the
//! cluster allows (kind: `docker restart kind-control-plane`); the suite then waits for
//! `/readyz` as it does after the emulator's. Any other outage, or a restart without the
//! command, fails with [`OutageUnsupported`], whose message says what to do instead, and
//! [`Cluster::outage_or_skip`] prints that reason and returns [`OutageStep::Skipped`], so a test
//! skips only the step that needs the outage, visibly. With `E2E_REQUIRE_OUTAGES` set, a skip
//! is an error instead (for a run that must exercise every outage).
//!
//! ```ignore
//! match env.cluster.outage_or_skip("my_test", Outage::Restart { downtime }).await? {
//!     OutageStep::Done => { /* assert the operator recovered */ }
//!     OutageStep::Skipped(_) => {} // printed; the rest of the test still runs
//! }
//! ```
//!
//! Depends on `error`, `cluster` and `wait`.

use std::{fmt, time::Duration};

use anyhow::Context as _;
use kube_emulator::{RequestCounts, RequestLabels};

use crate::{
    cluster::Cluster,
    error::Result,
    wait::{Check, poll_until},
};

/// Environment variable that turns a skipped outage step into a failure.
pub const REQUIRE_OUTAGES_ENV: &str = "E2E_REQUIRE_OUTAGES";

/// Environment variable: a shell command (run with `sh -c`) that restarts the API server of
/// the real cluster under test, for an [`Outage::Restart`]. It must return once the API server
/// has gone down (or has already come back); [`DOWNTIME_ENV`] tells it how long the test wants
/// it down. Not used against the emulator.
pub const OUTAGE_COMMAND_ENV: &str = "E2E_OUTAGE_COMMAND";

/// Set for the [`OUTAGE_COMMAND_ENV`] command: the restart's downtime in whole seconds (rounded
/// up), for a command that can hold the API server down (`docker stop`, `sleep`, `docker start`).
pub const DOWNTIME_ENV: &str = "E2E_OUTAGE_DOWNTIME_SECONDS";

/// How long the suite waits for the emulator to serve again after an outage.
const EMULATOR_SERVING_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the suite waits for a real API server to serve again after the outage command
/// returned: a restarted kind node starts etcd, then kube-apiserver, which turns ready only
/// once its post-start hooks have run (often 30 s to a minute on a loaded machine).
const REAL_SERVING_TIMEOUT: Duration = Duration::from_secs(300);

/// How many answers in a row [`Cluster::wait_until_serving`] waits for.
const SERVING_STREAK: usize = 4;

/// An outage of the API server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outage {
    /// kube-apiserver restarts over its etcd: every connection and watch is cut, connection
    /// attempts are refused for `downtime`, then it serves again with every object,
    /// resourceVersion and uid kept, a fresh watch cache (a watch resuming from an older
    /// resourceVersion gets 410 Gone and the client relists) and fresh metrics.
    Restart { downtime: Duration },
    /// Every open connection, watches included, is cut; the API server keeps serving and its
    /// watch cache, so watches resume.
    DropConnections,
    /// Connection attempts are refused, and open connections cut, for `duration`; the API
    /// server "process" lives on, so watches resume afterwards.
    Refuse { duration: Duration },
}

impl fmt::Display for Outage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outage::Restart { downtime } => {
                write!(f, "an API server restart ({downtime:?} down)")
            }
            Outage::DropConnections => write!(f, "dropping the API server's connections"),
            Outage::Refuse { duration } => {
                write!(f, "the API server refusing connections for {duration:?}")
            }
        }
    }
}

/// Why an outage cannot be caused from the suite, and what to do instead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutageUnsupported {
    pub outage: Outage,
}

impl fmt::Display for OutageUnsupported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.outage {
            Outage::Restart { .. } => write!(
                f,
                "{} against a real cluster needs {OUTAGE_COMMAND_ENV}: a shell command that \
                 restarts its API server and returns once it has gone down (kind: \
                 {OUTAGE_COMMAND_ENV}='docker restart kind-control-plane'; see e2e/README.md), \
                 or run the test against the emulator (unset E2E_KUBECONFIG)",
                self.outage
            ),
            _ => write!(
                f,
                "{} is not possible against a real cluster (of the outages, only a restart is, \
                 through {OUTAGE_COMMAND_ENV}): run the test against the emulator (unset \
                 E2E_KUBECONFIG)",
                self.outage
            ),
        }
    }
}

impl std::error::Error for OutageUnsupported {}

/// How a test step that needs an outage went.
#[must_use = "a skipped outage step must be handled: skip what depends on it"]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OutageStep {
    /// The outage happened and the API server serves again.
    Done,
    /// The outage cannot be caused here (the reason was printed).
    Skipped(OutageUnsupported),
}

impl Cluster {
    /// Whether the suite can cause `outage` on this cluster: yes on the emulator; on a real
    /// cluster a restart if [`OUTAGE_COMMAND_ENV`] is set, nothing else (the error says what to
    /// do instead).
    pub fn outage_support(&self, outage: Outage) -> std::result::Result<(), OutageUnsupported> {
        support(
            self.emulator().is_some(),
            outage_command().is_some(),
            outage,
        )
    }

    /// Causes `outage` and returns once the API server serves again. Fails with
    /// [`OutageUnsupported`] (downcast the error to tell) where [`Cluster::outage_support`]
    /// says no.
    pub async fn outage(&self, outage: Outage) -> Result<()> {
        self.outage_support(outage)?;
        let timeout = match (self.emulator(), outage) {
            (Some(emulator), Outage::Restart { downtime }) => {
                emulator
                    .restart(downtime)
                    .await
                    .with_context(|| format!("cannot cause {outage}"))?;
                EMULATOR_SERVING_TIMEOUT
            }
            (Some(emulator), Outage::DropConnections) => {
                emulator.drop_connections();
                EMULATOR_SERVING_TIMEOUT
            }
            (Some(emulator), Outage::Refuse { duration }) => {
                emulator
                    .refuse_for(duration)
                    .await
                    .with_context(|| format!("cannot cause {outage}"))?;
                EMULATOR_SERVING_TIMEOUT
            }
            (None, Outage::Restart { downtime }) => {
                let command = outage_command().ok_or(OutageUnsupported { outage })?;
                run_outage_command(&command, downtime).await?;
                REAL_SERVING_TIMEOUT
            }
            (None, _) => return Err(OutageUnsupported { outage }.into()),
        };
        self.wait_until_serving(timeout)
            .await
            .with_context(|| format!("after {outage}"))
    }

    /// [`Cluster::outage`] where possible; otherwise prints why `test` skips this step and
    /// returns [`OutageStep::Skipped`] (or fails, with [`REQUIRE_OUTAGES_ENV`] set).
    pub async fn outage_or_skip(&self, test: &str, outage: Outage) -> Result<OutageStep> {
        match self.outage_support(outage) {
            Ok(()) => {
                self.outage(outage).await?;
                Ok(OutageStep::Done)
            }
            Err(unsupported) => {
                if std::env::var_os(REQUIRE_OUTAGES_ENV).is_some_and(|v| !v.is_empty()) {
                    return Err(anyhow::Error::new(unsupported)
                        .context(format!("{test}: {REQUIRE_OUTAGES_ENV} is set")));
                }
                eprintln!("SKIPPED STEP in {test}: {unsupported}");
                Ok(OutageStep::Skipped(unsupported))
            }
        }
    }

    /// Make the API server fail the next requests `fault` matches (its error Status, nothing
    /// stored) where the suite can: on the emulator. Elsewhere prints why `test` skips the step
    /// and returns false.
    pub fn inject_fault_or_skip(&self, test: &str, fault: kube_emulator::Fault) -> bool {
        match self.emulator() {
            Some(emulator) => {
                emulator.inject_fault(fault);
                true
            }
            None => {
                eprintln!(
                    "SKIPPED STEP in {test}: failing chosen requests of a real API server is not possible from a test"
                );
                false
            }
        }
    }

    /// Injected failures not served yet (0 on a real cluster).
    pub fn pending_faults(&self) -> u32 {
        self.emulator().map_or(0, |e| e.pending_faults())
    }

    /// Waits until the API server answers `/readyz` [`SERVING_STREAK`] times in a row through
    /// the suite's client (after an outage, caused here or out of band).
    ///
    /// One answer is not enough: the client pools connections, and a pooled connection the
    /// server cut may not be known to be closed yet. A request sent on it fails (hyper's
    /// `IncompleteMessage`) and the connection is discarded; the streak makes sure the requests
    /// a test sends next do not meet such a connection.
    pub async fn wait_until_serving(&self, timeout: Duration) -> Result<()> {
        let client = self.client();
        let streak = std::sync::atomic::AtomicUsize::new(0);
        poll_until("the API server to serve /readyz", timeout, || {
            let (client, streak) = (client.clone(), &streak);
            async move {
                use std::sync::atomic::Ordering::SeqCst;
                let request = http::Request::get("/readyz")
                    .body(Vec::new())
                    .context("cannot build the /readyz request")?;
                Ok(match client.request_text(request).await {
                    Ok(_) if streak.fetch_add(1, SeqCst) + 1 >= SERVING_STREAK => Check::Done(()),
                    Ok(_) => Check::NotYet(format!("{} answers in a row", streak.load(SeqCst))),
                    Err(e) => {
                        streak.store(0, SeqCst);
                        Check::NotYet(format!("{e}"))
                    }
                })
            }
        })
        .await
    }

    /// The API server's `apiserver_request_total`: the emulator's counters, or a scrape of a
    /// real API server's `/metrics` (needs `get` on the non-resource URL `/metrics`; with
    /// several API servers, the one answering; counting every client, controllers included).
    pub async fn api_request_counts(&self) -> Result<RequestCounts> {
        if let Some(emulator) = self.emulator() {
            return Ok(emulator.request_counts());
        }
        let request = http::Request::get("/metrics")
            .body(Vec::new())
            .context("cannot build the /metrics request")?;
        let text = self
            .client()
            .request_text(request)
            .await
            .context("GET /metrics from the API server")?;
        Ok(parse_request_counts(&text))
    }
}

/// [`Cluster::outage_support`]: the emulator causes every outage; a real cluster only a
/// restart, and only through the [`OUTAGE_COMMAND_ENV`] command.
fn support(
    emulator: bool,
    command: bool,
    outage: Outage,
) -> std::result::Result<(), OutageUnsupported> {
    match outage {
        _ if emulator => Ok(()),
        Outage::Restart { .. } if command => Ok(()),
        _ => Err(OutageUnsupported { outage }),
    }
}

/// The [`OUTAGE_COMMAND_ENV`] command, if set and not blank.
fn outage_command() -> Option<String> {
    std::env::var(OUTAGE_COMMAND_ENV)
        .ok()
        .filter(|c| !c.trim().is_empty())
}

/// Runs `command` with `sh -c` (output to the test's), [`DOWNTIME_ENV`] set to `downtime`;
/// fails unless it exits 0 within [`REAL_SERVING_TIMEOUT`] plus the downtime.
async fn run_outage_command(command: &str, downtime: Duration) -> Result<()> {
    let seconds = downtime.as_secs() + u64::from(downtime.subsec_nanos() > 0);
    eprintln!("{OUTAGE_COMMAND_ENV} ({DOWNTIME_ENV}={seconds}): {command}");
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .env(DOWNTIME_ENV, seconds.to_string())
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot run {OUTAGE_COMMAND_ENV} `{command}` with sh -c"))?;
    let status = tokio::time::timeout(REAL_SERVING_TIMEOUT + downtime, child.wait())
        .await
        .with_context(|| {
            format!(
                "{OUTAGE_COMMAND_ENV} `{command}` did not finish within {:?}",
                REAL_SERVING_TIMEOUT + downtime
            )
        })?
        .with_context(|| format!("waiting for {OUTAGE_COMMAND_ENV} `{command}`"))?;
    if !status.success() {
        anyhow::bail!("{OUTAGE_COMMAND_ENV} `{command}` failed: {status}");
    }
    Ok(())
}

/// The `apiserver_request_total` series of a Prometheus text exposition.
pub fn parse_request_counts(exposition: &str) -> RequestCounts {
    // Lines from a &str never fail to read, so neither does the parse.
    let samples = prometheus_parse::Scrape::parse(exposition.lines().map(|l| Ok(l.to_string())))
        .map(|s| s.samples)
        .unwrap_or_default();
    samples
        .into_iter()
        .filter(|s| s.metric == kube_emulator::REQUEST_TOTAL)
        .filter_map(|s| {
            let n = match s.value {
                prometheus_parse::Value::Counter(n) | prometheus_parse::Value::Untyped(n) => n,
                _ => return None,
            };
            let label = |k: &str| s.labels.get(k).unwrap_or_default().to_string();
            let labels = RequestLabels {
                verb: label("verb"),
                dry_run: label("dry_run"),
                group: label("group"),
                version: label("version"),
                resource: label("resource"),
                subresource: label("subresource"),
                scope: label("scope"),
                component: label("component"),
                code: label("code"),
            };
            // Counters are integers; the exposition writes them as floats.
            Some((labels, n.max(0.0).round() as u64))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_kube_apiserver_scrape() {
        let text = "\
# HELP apiserver_request_total [STABLE] Counter of apiserver requests broken out for each verb, dry run value, group, version, resource, scope, component, and HTTP response code.
# TYPE apiserver_request_total counter
apiserver_request_total{code=\"200\",component=\"apiserver\",dry_run=\"\",group=\"\",resource=\"configmaps\",scope=\"namespace\",subresource=\"\",verb=\"LIST\",version=\"v1\"} 7
apiserver_request_total{code=\"201\",component=\"apiserver\",dry_run=\"\",group=\"\",resource=\"serviceaccounts\",scope=\"resource\",subresource=\"token\",verb=\"POST\",version=\"v1\"} 2
# TYPE other_total counter
other_total 5
";
        let counts = parse_request_counts(text);
        assert_eq!(counts.total(), 9);
        assert_eq!(
            counts
                .sum(|l| l.verb == "LIST" && l.resource == "configmaps" && l.scope == "namespace"),
            7
        );
        assert_eq!(
            counts.sum(|l| l.subresource == "token" && l.code == "201"),
            2
        );
    }

    /// Every outage through the harness: on the emulator each happens and the API serves
    /// again; on a real cluster a restart happens through `E2E_OUTAGE_COMMAND` if it is set,
    /// and every other outage is refused with the reason, and the step is skipped.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn outages_happen_on_the_emulator_and_are_skipped_visibly_elsewhere() {
        use k8s_openapi::api::core::v1::Namespace;
        use kube::api::{Api, ListParams};

        let cluster = Cluster::connect().await.expect("cluster");
        let namespaces: Api<Namespace> = Api::all(cluster.client());
        for outage in [
            Outage::Restart {
                downtime: Duration::from_millis(200),
            },
            Outage::DropConnections,
            Outage::Refuse {
                duration: Duration::from_millis(200),
            },
        ] {
            match cluster.outage_support(outage) {
                Ok(()) => {
                    let step = cluster
                        .outage_or_skip("control_plane::tests", outage)
                        .await
                        .expect("outage");
                    assert_eq!(step, OutageStep::Done);
                }
                Err(unsupported) => {
                    let e = cluster.outage(outage).await.expect_err("unsupported");
                    assert_eq!(e.downcast_ref::<OutageUnsupported>(), Some(&unsupported));
                    if std::env::var_os(REQUIRE_OUTAGES_ENV).is_none() {
                        let step = cluster
                            .outage_or_skip("control_plane::tests", outage)
                            .await
                            .expect("skipped");
                        assert_eq!(step, OutageStep::Skipped(unsupported));
                    }
                }
            }
            cluster
                .wait_until_serving(Duration::from_secs(30))
                .await
                .expect("serving");
            namespaces
                .list(&ListParams::default())
                .await
                .expect("the API answers after the outage");
        }
        let counts = cluster.api_request_counts().await.expect("counts");
        assert!(
            counts.sum(|l| l.verb == "LIST" && l.resource == "namespaces") >= 1,
            "{counts:?}"
        );
        cluster.shutdown().await;
    }

    #[test]
    fn the_unsupported_message_says_what_to_do() {
        let restart = Outage::Restart {
            downtime: Duration::from_secs(2),
        };
        let text = OutageUnsupported { outage: restart }.to_string();
        assert!(
            text.contains("against a real cluster needs E2E_OUTAGE_COMMAND: "),
            "{text}"
        );
        assert!(text.contains("docker restart kind-control-plane"), "{text}");
        let text = OutageUnsupported {
            outage: Outage::DropConnections,
        }
        .to_string();
        assert!(
            text.contains("not possible against a real cluster") && text.contains("emulator"),
            "{text}"
        );
    }

    /// The emulator causes every outage; a real cluster a restart with the command, nothing
    /// else.
    #[test]
    fn a_real_cluster_restarts_only_through_the_command() {
        let restart = Outage::Restart {
            downtime: Duration::from_secs(1),
        };
        let refuse = Outage::Refuse {
            duration: Duration::from_secs(1),
        };
        for outage in [restart, refuse, Outage::DropConnections] {
            assert_eq!(support(true, false, outage), Ok(()), "{outage}");
        }
        assert_eq!(support(false, true, restart), Ok(()));
        let unsupported = |outage| Err(OutageUnsupported { outage });
        assert_eq!(support(false, false, restart), unsupported(restart));
        assert_eq!(support(false, true, refuse), unsupported(refuse));
        assert_eq!(
            support(false, true, Outage::DropConnections),
            unsupported(Outage::DropConnections)
        );
    }

    /// The command runs with `sh -c`, learns the downtime, and a failure says which command
    /// failed and how.
    #[tokio::test]
    async fn the_outage_command_gets_the_downtime_and_its_failure_is_reported() {
        run_outage_command(
            r#"test "$E2E_OUTAGE_DOWNTIME_SECONDS" = 3"#,
            Duration::from_millis(2500),
        )
        .await
        .expect("the downtime is passed, rounded up");
        let e = run_outage_command("echo restarting; exit 7", Duration::from_secs(1))
            .await
            .expect_err("exit 7");
        let text = format!("{e:#}");
        assert!(
            text.contains("E2E_OUTAGE_COMMAND `echo restarting; exit 7` failed")
                && text.contains('7'),
            "{text}"
        );
    }
}
