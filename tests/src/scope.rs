//! Names, labels and guaranteed cleanup for everything a test creates in the daemon.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::cli::Docker;
use crate::daemon::target_daemon;

/// One test's namespace in the daemon; dropping it removes everything labelled with its id.
#[derive(Debug)]
pub struct Scope {
    id: String,
    docker: Docker,
}

impl Scope {
    /// A fresh scope with an id unique to this process and moment.
    pub fn new() -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let id = format!(
            "{:x}{:x}{}",
            std::process::id(),
            nanos % 0xffff,
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        Self {
            id,
            docker: Docker::new(target_daemon()),
        }
    }

    /// A name for a container, network or volume: `wvt-<id>-<what>`.
    pub fn name(&self, what: &str) -> String {
        format!("wvt-{}-{what}", self.id)
    }

    /// The label every created object carries: `weave-test=<id>`.
    pub fn label(&self) -> String {
        format!("weave-test={}", self.id)
    }

    /// The label as a JSON object, `{"weave-test": "<id>"}`, for API bodies and filters.
    pub fn labels(&self) -> serde_json::Value {
        serde_json::json!({ "weave-test": self.id })
    }

    /// `--label weave-test=<id>`, ready to splice into a docker command line.
    pub fn label_args(&self) -> [String; 2] {
        ["--label".to_owned(), self.label()]
    }
}

impl Default for Scope {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        let filter = format!("label={}", self.label());
        let list = |args: &[&str]| -> Vec<String> {
            self.docker
                .run(args)
                .stdout
                .split_whitespace()
                .map(str::to_owned)
                .collect()
        };
        let containers = list(&["ps", "-aq", "--filter", &filter]);
        if !containers.is_empty() {
            let mut args = vec!["rm", "-f", "-v"];
            args.extend(containers.iter().map(String::as_str));
            self.docker.run(&args);
        }
        for (kind, remove) in [("network", "rm"), ("volume", "rm")] {
            let found = list(&[kind, "ls", "-q", "--filter", &filter]);
            if !found.is_empty() {
                let mut args = vec![kind, remove];
                args.extend(found.iter().map(String::as_str));
                self.docker.run(&args);
            }
        }
        let images = list(&["image", "ls", "-q", "--filter", &filter]);
        if !images.is_empty() {
            let mut args = vec!["rmi", "-f"];
            args.extend(images.iter().map(String::as_str));
            self.docker.run(&args);
        }
    }
}
