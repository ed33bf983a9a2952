//! The docker CLI's streaming commands through the proxy: stdin, attach, exec, logs, events.

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::time::{Duration, Instant};

use weave_tests::{Docker, Proxy, Scope, test_image};

#[test]
fn stdin_eof_reaches_the_container() {
    let image = test_image();
    let proxy = Proxy::start();
    let out = proxy
        .docker()
        .run_with_stdin(&["run", "-i", "--rm", &image, "cat"], Some(b"hi\n"))
        .ok();
    assert_eq!(out.stdout, "hi\n");
}

#[test]
fn exec_with_stdin_and_exit_codes() {
    let image = test_image();
    let scope = Scope::new();
    let proxy = Proxy::start();
    let docker = proxy.docker();
    let name = scope.name("exec");
    docker.run_detached(&scope, "exec", &[], &image, &["sleep", "300"]);
    let out = docker
        .run_with_stdin(
            &["exec", "-i", &name, "sh", "-c", "tr a-z A-Z"],
            Some(b"shout\n"),
        )
        .ok();
    assert_eq!(out.stdout, "SHOUT\n");
    let out = docker.run(&["exec", &name, "sh", "-c", "echo out; echo err >&2; exit 3"]);
    assert_eq!(
        (out.code, out.stdout.as_str(), out.stderr.as_str()),
        (3, "out\n", "err\n")
    );
    let out = docker.run(&["exec", &name, "nosuchprogram"]);
    let direct = Docker::daemon().run(&["exec", &name, "nosuchprogram"]);
    assert_eq!(out.code, direct.code, "{out:?} vs {direct:?}");
}

#[test]
fn attach_to_a_running_container() {
    let image = test_image();
    let scope = Scope::new();
    let proxy = Proxy::start();
    let docker = proxy.docker();
    let name = scope.name("attach");
    docker.run_detached(
        &scope,
        "attach",
        &["-i"],
        &image,
        &[
            "sh",
            "-c",
            "while read line; do [ $line = quit ] && exit 7; echo got:$line; done",
        ],
    );
    // Interactive, as a person types: a line goes in, its echo comes back, then `quit`.
    let mut attach = docker
        .command(&["attach", &name])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = attach.stdin.take().unwrap();
    let mut lines = BufReader::new(attach.stdout.take().unwrap()).lines();
    for word in ["one", "two"] {
        writeln!(stdin, "{word}").unwrap();
        assert_eq!(lines.next().unwrap().unwrap(), format!("got:{word}"));
    }
    writeln!(stdin, "quit").unwrap();
    assert_eq!(attach.wait().unwrap().code(), Some(7));
}

#[test]
fn logs_follow_streams_live() {
    let image = test_image();
    let scope = Scope::new();
    let proxy = Proxy::start();
    let docker = proxy.docker();
    let name = scope.name("logs");
    docker.run_detached(
        &scope,
        "logs",
        &[],
        &image,
        &[
            "sh",
            "-c",
            "echo first; while [ ! -e /tmp/go ]; do sleep 0.05; done; echo second; sleep 300",
        ],
    );
    let (mut follow, mut lines) = docker.spawn_lines(&["logs", "-f", &name]);
    assert_eq!(lines.next().unwrap().unwrap(), "first");
    let written = Instant::now();
    docker.run(&["exec", &name, "touch", "/tmp/go"]).ok();
    assert_eq!(lines.next().unwrap().unwrap(), "second");
    let delay = written.elapsed();
    follow.kill().unwrap();
    follow.wait().unwrap();
    assert!(
        delay < Duration::from_secs(1),
        "line arrived after {delay:?}"
    );
}

#[test]
fn events_stream_live() {
    let image = test_image();
    let scope = Scope::new();
    let proxy = Proxy::start();
    let docker = proxy.docker();
    let name = scope.name("events");
    let label = scope.label();
    let filter = format!("label={label}");
    // From a moment before the create: the daemon replays what happened since, so a
    // subscription that reaches it after the create (a loaded machine) still gets the event.
    // Without `--since` it did not, and the read below waited for ever (a CI run, Docker 26).
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
        .saturating_sub(1)
        .to_string();
    let (mut events, mut lines) = docker.spawn_lines(&[
        "events",
        "--since",
        &since,
        "--filter",
        &filter,
        "--format",
        "{{.Action}}",
    ]);
    let sent = Instant::now();
    Docker::daemon()
        .run(&["create", "--label", &label, "--name", &name, &image, "true"])
        .ok();
    // The stream has no end while `docker events` runs: a line read now was relayed live, not
    // held back until the response ended.
    assert_eq!(lines.next().unwrap().unwrap(), "create");
    eprintln!("the create event arrived after {:?}", sent.elapsed());
    events.kill().unwrap();
    events.wait().unwrap();
}
