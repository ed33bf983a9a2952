//! TLS settings copied from the running Docker daemon, so that the proxy is reached exactly as
//! the daemon is: its `--tls*` flags from its command line in `/proc`, else from its
//! `daemon.json`. The parsing is pure; [`detect`] reads `/proc` and the config file.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// The daemon's TLS, as the proxy should serve it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonTls {
    /// `--tlsverify`: client certificates signed by `ca` are required.
    pub verify: bool,
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The dockerd flags that matter here, from its command line and then its config file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DaemonFlags {
    pub hosts: Vec<String>,
    pub config_file: Option<PathBuf>,
    pub tls: Option<bool>,
    pub tlsverify: Option<bool>,
    pub tlscacert: Option<PathBuf>,
    pub tlscert: Option<PathBuf>,
    pub tlskey: Option<PathBuf>,
}

/// Where dockerd reads its config when not told otherwise.
pub const DEFAULT_CONFIG: &str = "/etc/docker/daemon.json";
/// The socket a dockerd without `-H` serves.
const DEFAULT_SOCKET: &str = "/var/run/docker.sock";

/// Reads dockerd's arguments (without `argv[0]`), as Go's flag package takes them: `--flag
/// value`, `--flag=value`, and booleans as `--flag` or `--flag=false`.
pub fn parse_args(args: &[String]) -> DaemonFlags {
    let mut flags = DaemonFlags::default();
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let Some(body) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else {
            continue;
        };
        let (name, inline) = match body.split_once('=') {
            Some((name, value)) => (name, Some(value.to_owned())),
            None => (body, None),
        };
        let boolean = || inline.as_deref().is_none_or(|v| v == "true" || v == "1");
        let mut value = || inline.clone().or_else(|| iter.next().cloned());
        match name {
            "tls" => flags.tls = Some(boolean()),
            "tlsverify" => flags.tlsverify = Some(boolean()),
            "tlscacert" => flags.tlscacert = value().map(PathBuf::from),
            "tlscert" => flags.tlscert = value().map(PathBuf::from),
            "tlskey" => flags.tlskey = value().map(PathBuf::from),
            "H" | "host" => flags.hosts.extend(value()),
            "config-file" => flags.config_file = value().map(PathBuf::from),
            _ => {}
        }
    }
    flags
}

/// Fills what the command line left unset from `daemon.json` (the command line wins, as
/// dockerd refuses the same setting in both anyway).
pub fn merge_config(flags: &mut DaemonFlags, config: &Value) {
    let text = |key: &str| config.get(key).and_then(Value::as_str).map(PathBuf::from);
    let boolean = |key: &str| config.get(key).and_then(Value::as_bool);
    flags.tls = flags.tls.or_else(|| boolean("tls"));
    flags.tlsverify = flags.tlsverify.or_else(|| boolean("tlsverify"));
    flags.tlscacert = flags.tlscacert.take().or_else(|| text("tlscacert"));
    flags.tlscert = flags.tlscert.take().or_else(|| text("tlscert"));
    flags.tlskey = flags.tlskey.take().or_else(|| text("tlskey"));
    if flags.hosts.is_empty()
        && let Some(hosts) = config.get("hosts").and_then(Value::as_array)
    {
        flags.hosts = hosts
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect();
    }
}

/// Whether a daemon with these flags serves `docker_host` (a unix path compared by name, so a
/// daemon on another socket is not taken for the default one).
pub fn serves(flags: &DaemonFlags, docker_host: &str) -> bool {
    let wanted = normalise_host(docker_host);
    if flags.hosts.is_empty() {
        return wanted == normalise_host(DEFAULT_SOCKET);
    }
    flags.hosts.iter().any(|h| normalise_host(h) == wanted)
}

fn normalise_host(host: &str) -> String {
    let host = host.trim();
    if host.is_empty() || host == "fd://" {
        return normalise_host(DEFAULT_SOCKET);
    }
    let path = host.strip_prefix("unix://").unwrap_or(host);
    if path.starts_with('/') {
        // /var/run is /run on every current distribution.
        return path.strip_prefix("/var").unwrap_or(path).to_owned();
    }
    host.strip_prefix("tcp://").unwrap_or(host).to_owned()
}

/// The daemon's TLS, if it serves TLS: `--tlsverify` implies `--tls`, and missing files default
/// to `cert_dir` (`DOCKER_CERT_PATH`, else `~/.docker`), as dockerd's own defaults do.
pub fn tls_of(flags: &DaemonFlags, cert_dir: &Path) -> Option<DaemonTls> {
    let verify = flags.tlsverify == Some(true);
    if !verify && flags.tls != Some(true) {
        return None;
    }
    let file =
        |set: &Option<PathBuf>, name: &str| set.clone().unwrap_or_else(|| cert_dir.join(name));
    Some(DaemonTls {
        verify,
        ca: file(&flags.tlscacert, "ca.pem"),
        cert: file(&flags.tlscert, "cert.pem"),
        key: file(&flags.tlskey, "key.pem"),
    })
}

/// Why the daemon's settings could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    #[error("no dockerd process is visible in {0}")]
    NoDaemon(String),
    #[error("{count} dockerd processes are running and none serves {docker_host}")]
    Ambiguous { count: usize, docker_host: String },
}

/// Finds the dockerd that serves `docker_host` among the processes in `proc` and returns its
/// TLS (`None` when it serves plain HTTP). Config files are read under `host_root`.
///
/// # Errors
/// When no dockerd is visible, or several are and none serves `docker_host`.
pub fn detect(
    proc: &Path,
    host_root: &Path,
    docker_host: &str,
    cert_dir: &Path,
) -> Result<Option<DaemonTls>, DetectError> {
    let mut daemons = Vec::new();
    for entry in fs::read_dir(proc).into_iter().flatten().flatten() {
        let dir = entry.path();
        let is_pid = entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()));
        if !is_pid
            || fs::read_to_string(dir.join("comm"))
                .map(|c| c.trim().to_owned())
                .ok()
                != Some("dockerd".to_owned())
        {
            continue;
        }
        let Ok(cmdline) = fs::read(dir.join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .skip(1)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let mut flags = parse_args(&args);
        let config = flags
            .config_file
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG));
        let under_root = host_root.join(config.strip_prefix("/").unwrap_or(&config));
        if let Some(json) = fs::read(under_root)
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        {
            merge_config(&mut flags, &json);
        }
        daemons.push(flags);
    }
    let chosen = match daemons.iter().find(|d| serves(d, docker_host)) {
        Some(daemon) => daemon,
        None if daemons.len() == 1 => &daemons[0],
        None if daemons.is_empty() => {
            return Err(DetectError::NoDaemon(proc.display().to_string()));
        }
        None => {
            return Err(DetectError::Ambiguous {
                count: daemons.len(),
                docker_host: docker_host.to_owned(),
            });
        }
    };
    Ok(tls_of(chosen, cert_dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn dockerd_flags_are_read_in_every_spelling() {
        let flags = parse_args(&args(
            "-H unix:///run/a.sock --host=tcp://0.0.0.0:2376 --tlsverify --tlscacert=/tls/ca.pem \
             --tlscert /tls/server-cert.pem --tlskey=/tls/server-key.pem --debug \
             --config-file /etc/d.json",
        ));
        assert_eq!(
            flags,
            DaemonFlags {
                hosts: args("unix:///run/a.sock tcp://0.0.0.0:2376"),
                config_file: Some("/etc/d.json".into()),
                tls: None,
                tlsverify: Some(true),
                tlscacert: Some("/tls/ca.pem".into()),
                tlscert: Some("/tls/server-cert.pem".into()),
                tlskey: Some("/tls/server-key.pem".into()),
            }
        );
        assert_eq!(parse_args(&args("--tls=false")).tls, Some(false));
        assert_eq!(parse_args(&args("--tls")).tls, Some(true));
    }

    #[test]
    fn the_command_line_wins_over_daemon_json() {
        let mut flags = parse_args(&args("--tlscert /cli/cert.pem"));
        let config = serde_json::json!({
            "tlsverify": true, "tlscacert": "/json/ca.pem", "tlscert": "/json/cert.pem",
            "tlskey": "/json/key.pem", "hosts": ["unix:///var/run/docker.sock"]
        });
        merge_config(&mut flags, &config);
        assert_eq!(flags.tlscert, Some("/cli/cert.pem".into()));
        assert_eq!(flags.tlscacert, Some("/json/ca.pem".into()));
        assert_eq!(flags.tlsverify, Some(true));
        assert_eq!(flags.hosts, args("unix:///var/run/docker.sock"));
    }

    #[test]
    fn a_daemon_is_matched_to_the_socket_the_client_uses() {
        let default = parse_args(&[]);
        let systemd = parse_args(&args("-H fd:// --containerd=/run/containerd.sock"));
        let other = parse_args(&args("-H unix:///tmp/d26/docker.sock"));
        let tcp = parse_args(&args("-H tcp://0.0.0.0:2376"));
        let cases = [
            (&default, "unix:///var/run/docker.sock", true),
            (&default, "/run/docker.sock", true),
            (&systemd, "unix:///var/run/docker.sock", true),
            (&other, "unix:///var/run/docker.sock", false),
            (&other, "unix:///tmp/d26/docker.sock", true),
            (&tcp, "tcp://0.0.0.0:2376", true),
            (&tcp, "unix:///var/run/docker.sock", false),
        ];
        for (flags, host, want) in cases {
            assert_eq!(serves(flags, host), want, "{flags:?} {host}");
        }
    }

    #[test]
    fn tls_is_on_with_tls_or_tlsverify_and_files_default_to_the_cert_dir() {
        let dir = Path::new("/root/.docker");
        assert_eq!(tls_of(&parse_args(&[]), dir), None);
        assert_eq!(tls_of(&parse_args(&args("--tlsverify=false")), dir), None);
        let verify = tls_of(
            &parse_args(&args("--tlsverify --tlscacert=/tls/ca.pem")),
            dir,
        );
        assert_eq!(
            verify,
            Some(DaemonTls {
                verify: true,
                ca: "/tls/ca.pem".into(),
                cert: "/root/.docker/cert.pem".into(),
                key: "/root/.docker/key.pem".into(),
            })
        );
        assert!(!tls_of(&parse_args(&args("--tls")), dir).unwrap().verify);
    }

    #[test]
    fn detection_reads_proc_and_picks_the_daemon_that_serves_the_client() {
        let proc = tempfile::tempdir().unwrap();
        let root = tempfile::tempdir().unwrap();
        let daemon = |pid: &str, cmdline: &str| {
            let dir = proc.path().join(pid);
            fs::create_dir_all(&dir).unwrap();
            fs::write(dir.join("comm"), "dockerd\n").unwrap();
            fs::write(dir.join("cmdline"), cmdline.replace(' ', "\0") + "\0").unwrap();
        };
        let certs = Path::new("/certs");
        assert!(matches!(
            detect(
                proc.path(),
                root.path(),
                "unix:///var/run/docker.sock",
                certs
            ),
            Err(DetectError::NoDaemon(_))
        ));
        daemon("10", "/usr/sbin/dockerd");
        fs::create_dir_all(root.path().join("etc/docker")).unwrap();
        fs::write(
            root.path().join("etc/docker/daemon.json"),
            r#"{"tls": true, "tlscert": "/j/cert.pem", "tlskey": "/j/key.pem"}"#,
        )
        .unwrap();
        let found = detect(
            proc.path(),
            root.path(),
            "unix:///var/run/docker.sock",
            certs,
        )
        .unwrap()
        .unwrap();
        assert_eq!(found.cert, PathBuf::from("/j/cert.pem"));
        assert!(!found.verify);

        daemon(
            "20",
            "dockerd -H unix:///tmp/x.sock --tlsverify --tlscacert /x/ca.pem",
        );
        let other = detect(proc.path(), root.path(), "unix:///tmp/x.sock", certs)
            .unwrap()
            .unwrap();
        assert!(other.verify);
        assert_eq!(other.ca, PathBuf::from("/x/ca.pem"));
        assert!(matches!(
            detect(proc.path(), root.path(), "tcp://10.0.0.1:2375", certs),
            Err(DetectError::Ambiguous { count: 2, .. })
        ));
    }
}
