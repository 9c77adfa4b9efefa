//! The `metrics` scenarios' judge: Debian's own `prometheus` server, run on the host, scrapes
//! `pfn-auditor run --metrics` in the guest through a QEMU user-network port forward, and a PromQL
//! `rate()` over one of its counters must return a value above zero.
//!
//! The server comes from Debian 12's `prometheus` package, fetched through the private apt
//! configuration (`debian.rs`) and unpacked into the cache: installing the package would start a
//! system service; only its binary is needed.

use crate::debian::PrivateApt;
use crate::sh::{self, cache_dir};
use anyhow::{Context, Result, bail};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The guest's ports, forwarded from the host (tests/vm/guest/init.sh `run_metrics`): the daemon's
/// metrics, and the one the host connects to when it is done, so the guest stops its workload.
pub const GUEST_METRICS_PORT: u16 = 9477;
pub const GUEST_RELEASE_PORT: u16 = 9478;

/// What must return a value above zero: probe hits per second over the last 20 s (the scenario
/// runs a truncate and mmap storm, so the revocation hooks run all the time).
pub const QUERY: &str = "sum(rate(pfn_auditor_hook_hits_total[20s]))";

/// How long the host waits for Prometheus to see the rate (TCG guests answer slowly).
const WAIT: Duration = Duration::from_secs(120);

/// Host ports forwarded to the guest, and the server to scrape them with.
#[derive(Clone)]
pub struct Scrape {
    pub prometheus: PathBuf,
    pub metrics_port: u16,
    pub release_port: u16,
    /// target/vm-test/<kernel>/prometheus: config, data and log.
    pub dir: PathBuf,
}

impl Scrape {
    /// Fetches and unpacks Debian's prometheus (cached) and picks two free loopback ports.
    pub fn prepare(apt: &PrivateApt, dir: &Path) -> Result<Self> {
        Ok(Scrape {
            prometheus: prometheus_binary(apt)?,
            metrics_port: free_port()?,
            release_port: free_port()?,
            dir: dir.join("prometheus"),
        })
    }

    /// QEMU's user network (`restrict=on`: the guest reaches nothing outside; the forwards still
    /// work) on a virtio NIC, with the two host ports forwarded to the guest's 10.0.2.15.
    pub fn qemu_args(&self) -> Vec<String> {
        let fwd = |host: u16, guest: u16| format!("hostfwd=tcp:127.0.0.1:{host}-:{guest}");
        vec![
            "-netdev".into(),
            format!(
                "user,id=metrics,restrict=on,{},{}",
                fwd(self.metrics_port, GUEST_METRICS_PORT),
                fwd(self.release_port, GUEST_RELEASE_PORT)
            ),
            "-device".into(),
            "virtio-net-pci,netdev=metrics".into(),
        ]
    }

    /// Starts Prometheus against the forwarded metrics port, waits until `QUERY` returns a value
    /// above zero (or `WAIT` passes), stops it, and releases the guest. Returns the result line
    /// or why there is none.
    pub fn check(&self, kernel: &str) -> Result<String> {
        let result = self.scrape(kernel);
        // The guest's workload runs until this connection (or its own time limit).
        if let Ok(conn) = TcpStream::connect(("127.0.0.1", self.release_port)) {
            std::thread::sleep(Duration::from_secs(1));
            drop(conn);
        }
        result
    }

    fn scrape(&self, kernel: &str) -> Result<String> {
        let _ = std::fs::remove_dir_all(&self.dir);
        std::fs::create_dir_all(&self.dir)?;
        let config = self.dir.join("prometheus.yml");
        std::fs::write(&config, config_text(self.metrics_port, kernel))?;
        let web = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let log = std::fs::File::create(self.dir.join("prometheus.log"))?;
        let child = Command::new(&self.prometheus)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", self.dir.join("data").display()))
            .arg(format!("--web.listen-address={web}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {}", self.prometheus.display()))?;
        let server = Server(child);
        let deadline = Instant::now() + WAIT;
        let mut last = String::from("no answer from Prometheus");
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_secs(2));
            match query(web, QUERY) {
                Ok(Some(value)) if value > 0.0 => {
                    drop(server);
                    return Ok(format!("{QUERY} = {value}"));
                }
                Ok(Some(value)) => last = format!("{QUERY} = {value}"),
                Ok(None) => last = format!("{QUERY} is empty; up = {:?}", query(web, "up").ok().flatten()),
                Err(e) => last = format!("{e:#}"),
            }
        }
        drop(server);
        bail!("after {} s: {last} (log: {})", WAIT.as_secs(), self.dir.join("prometheus.log").display())
    }
}

/// Killed when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One scrape job with the fleet's labels (docs/fleet.md), every 2 s.
fn config_text(port: u16, kernel: &str) -> String {
    format!(
        "global:\n  scrape_interval: 2s\n  scrape_timeout: 2s\nscrape_configs:\n  - job_name: pfn-auditor\n    static_configs:\n      \
         - targets: ['127.0.0.1:{port}']\n        labels: {{ rig: vm-test, kernel: '{kernel}' }}\n"
    )
}

/// An instant query's first value (None: no series).
fn query(web: SocketAddr, promql: &str) -> Result<Option<f64>> {
    let url = format!("http://{web}/api/v1/query");
    let body = ureq::get(&url).query("query", promql).call().context("querying Prometheus")?.body_mut().read_to_string()?;
    let answer: serde_json::Value = serde_json::from_str(&body)?;
    if answer["status"] != "success" {
        bail!("Prometheus answered {body}");
    }
    // {"data":{"resultType":"vector","result":[{"metric":{},"value":[ts,"1.5"]}]}}
    Ok(answer["data"]["result"][0]["value"][1].as_str().and_then(|v| v.parse().ok()))
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Debian 12's prometheus binary (the release CI runs on; testing's build may need a newer C
/// library), unpacked from its .deb into the cache once.
fn prometheus_binary(apt: &PrivateApt) -> Result<PathBuf> {
    let deb = apt.download_from("prometheus", "bookworm")?;
    let version = deb.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let root = cache_dir().join("prometheus").join(version);
    let binary = root.join("usr/bin/prometheus");
    if !binary.exists() {
        std::fs::create_dir_all(&root)?;
        sh::run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root))?;
    }
    Ok(binary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_scrapes_the_forwarded_port_with_rig_and_kernel_labels() {
        let text = config_text(40123, "6.1");
        assert!(text.contains("- targets: ['127.0.0.1:40123']"), "{text}");
        assert!(text.contains("labels: { rig: vm-test, kernel: '6.1' }"), "{text}");
    }
}
