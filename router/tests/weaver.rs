//! The real `weaver` binary: flags, the unix-socket listener, readiness, SIGTERM, and state kept
//! across a restart — spoken to with the exact bytes curl sends for the `weave` script's calls.

use std::io::{Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// One HTTP/1.1 exchange over the unix socket, shaped like `curl -X <method> [-d <form>]`.
fn http(socket: &Path, method: &str, path: &str, form: Option<&str>) -> Option<(u16, String)> {
    let mut stream = UnixStream::connect(socket).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:6784\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\nConnection: close\r\n"
    );
    if let Some(body) = form {
        request.push_str(&format!(
            "Content-Length: {}\r\nContent-Type: application/x-www-form-urlencoded\r\n\r\n{body}",
            body.len()
        ));
    } else {
        request.push_str("\r\n");
    }
    stream.write_all(request.as_bytes()).ok()?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply).ok()?;
    let (head, body) = reply.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((status, body.to_owned()))
}

/// Polls `probe` every 20 ms until it yields, failing the test after `patience`.
fn eventually<T>(what: &str, patience: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + patience;
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

struct Weaver {
    child: Child,
}

impl Weaver {
    fn start(socket: &Path, data_dir: &Path, extra: &[&str]) -> Self {
        let child = Command::new(env!("CARGO_BIN_EXE_weaver"))
            .arg("--http-addr")
            .arg(socket)
            .arg("--data-dir")
            .arg(data_dir)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let weaver = Self { child };
        eventually("weaver to be ready", Duration::from_secs(10), || {
            http(socket, "GET", "/status", None).filter(|(status, _)| *status == 200)
        });
        weaver
    }

    fn terminate(mut self) -> ExitStatus {
        let pid = self.child.id().to_string();
        let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(killed.success());
        eventually("weaver to exit", Duration::from_secs(5), || {
            self.child.try_wait().unwrap()
        })
    }
}

impl Drop for Weaver {
    fn drop(&mut self) {
        // Only reached when a test failed before `terminate`; never leave the process behind.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn weaver_serves_ipam_on_a_unix_socket_and_keeps_it_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("weave.sock");
    let data = dir.path().join("data");
    let flags = [
        "--ipalloc-range",
        "10.2.0.0/16",
        "--ipalloc-default-subnet",
        "10.2.3.0/24",
    ];

    let weaver = Weaver::start(&socket, &data, &flags);
    let ok = |status, body: &str| Some((status, body.to_owned()));
    assert_eq!(
        http(&socket, "GET", "/ipinfo/defaultsubnet", None),
        ok(200, "10.2.3.0/24")
    );
    assert_eq!(
        http(&socket, "POST", "/ip/c1", Some("check-alive=true")),
        ok(200, "10.2.3.1/24")
    );
    assert_eq!(
        http(
            &socket,
            "PUT",
            "/ip/c2/10.2.3.2/24",
            Some("check-alive=true")
        ),
        ok(204, "")
    );
    let status = weaver.terminate();
    assert!(status.success(), "weaver exited with {status} on SIGTERM");
    assert!(data.join("ipam.json").exists());

    // A stale socket file from the previous run is replaced, and the state is back.
    assert!(socket.exists());
    let weaver = Weaver::start(&socket, &data, &flags);
    assert_eq!(http(&socket, "GET", "/ip/c1", None), ok(200, "10.2.3.1/24"));
    assert_eq!(
        http(&socket, "POST", "/ip/c3", Some("check-alive=true")),
        ok(200, "10.2.3.3/24")
    );
    assert!(weaver.terminate().success());
}

#[test]
fn weaver_refuses_a_default_subnet_outside_the_range() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_weaver"))
        .arg("--http-addr")
        .arg(dir.path().join("weave.sock"))
        .arg("--data-dir")
        .arg(dir.path())
        .args([
            "--ipalloc-range",
            "10.2.0.0/16",
            "--ipalloc-default-subnet",
            "10.3.0.0/24",
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(
            "default subnet 10.3.0.0/24 does not overlap with the allocation range 10.2.0.0/16"
        ),
        "{stderr}"
    );
}
