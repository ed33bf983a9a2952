//! Interactive terminals through the proxy: `docker run -it` and `docker exec -it` in a real
//! pseudo-terminal (a private tmux server), with typing, terminal resizes and exit codes.

use std::cell::Cell;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use tempfile::TempDir;
use weave_tests::{Proxy, Scope, eventually, skip, test_image};

/// Covers a cold `docker run` on a loaded 2-core CI machine; a healthy run needs about a second.
const START_PATIENCE: Duration = Duration::from_secs(30);
/// How long a typed command may take to show its answer on the screen.
const ANSWER_PATIENCE: Duration = Duration::from_secs(10);
/// A resize is asynchronous (SIGWINCH → CLI → `POST …/resize` → the container's tty), so the
/// size is asked for again until it is right or this runs out.
const RESIZE_PATIENCE: Duration = Duration::from_secs(15);

const INITIAL: (u16, u16) = (100, 40);
const RESIZED: (u16, u16) = (123, 51);

#[test]
fn run_it_shell_types_resizes_and_exits_with_its_code() {
    let Some(()) = skip::require_tool("tmux", "-V", "tmux") else {
        return;
    };
    let image = test_image();
    let scope = Scope::new();
    let proxy = Proxy::start();
    let label = scope.label();
    let name = scope.name("run-it");
    let started = Instant::now();
    let term = Terminal::open(
        &scope.name("tty"),
        INITIAL,
        &proxy.host(),
        &[
            "run", "-it", "--rm", "--label", &label, "--name", &name, &image, "sh",
        ],
    );
    exercise_shell(&term);
    eprintln!("docker run -it through the proxy: {:?}", started.elapsed());
}

#[test]
fn exec_it_shell_types_resizes_and_exits_with_its_code() {
    let Some(()) = skip::require_tool("tmux", "-V", "tmux") else {
        return;
    };
    let image = test_image();
    let scope = Scope::new();
    let proxy = Proxy::start();
    let name = scope.name("exec-it");
    proxy
        .docker()
        .run_detached(&scope, "exec-it", &[], &image, &["sleep", "300"]);
    let started = Instant::now();
    let term = Terminal::open(
        &scope.name("tty"),
        INITIAL,
        &proxy.host(),
        &["exec", "-it", &name, "sh"],
    );
    exercise_shell(&term);
    eprintln!("docker exec -it through the proxy: {:?}", started.elapsed());
    // The exec's shell is gone, the container it ran in is not.
    let running = proxy
        .docker()
        .run(&["inspect", "--format", "{{.State.Running}}", &name])
        .ok();
    assert_eq!(running.out(), "true");
}

/// The whole interactive conversation: prompt, a command's answer, the initial size, a resize,
/// and `exit 3` coming back as the docker client's exit code.
fn exercise_shell(term: &Terminal) {
    eventually("the busybox prompt `/ #`", START_PATIENCE, || {
        term.screen_lines().iter().any(|l| l == "/ #").then_some(())
    });

    // The answer is not in the typed text, so seeing it proves the shell ran the command.
    term.type_line("echo answer:$((6*7))");
    eventually("the command's output `answer:42`", ANSWER_PATIENCE, || {
        term.screen_lines()
            .iter()
            .any(|l| l == "answer:42")
            .then_some(())
    });

    assert_eq!(
        term.pane_size(),
        INITIAL,
        "tmux made the pane it was asked for"
    );
    expect_tty_size(term, INITIAL);

    term.resize(RESIZED);
    assert_eq!(term.pane_size(), RESIZED, "tmux resized the pane");
    let resized = Instant::now();
    expect_tty_size(term, RESIZED);
    eprintln!("resize reached the container in {:?}", resized.elapsed());

    term.type_line("exit 3");
    let code = eventually("the docker client to exit", ANSWER_PATIENCE, || {
        term.exit_status()
    });
    assert_eq!(code, 3, "screen:\n{}", term.screen_lines().join("\n"));
}

/// Asks the container's tty for its size (`stty size` prints `rows cols`) until it reports
/// `(cols, rows)`, each question marked afresh so an earlier answer never counts.
fn expect_tty_size(term: &Terminal, (cols, rows): (u16, u16)) {
    let want = format!("{rows} {cols}");
    eventually(
        &format!("the container's tty to report `{want}` (rows cols)"),
        RESIZE_PATIENCE,
        || {
            let marker = term.marker("size");
            term.type_line(&format!("echo {marker}$(stty size)"));
            let seen = eventually("the shell to answer `stty size`", ANSWER_PATIENCE, || {
                term.screen_lines()
                    .iter()
                    .find_map(|l| l.strip_prefix(&marker).map(str::to_owned))
            });
            if seen != want {
                eprintln!("{marker} the tty says `{seen}`, waiting for `{want}`");
            }
            (seen == want).then_some(())
        },
    );
}

/// One docker CLI command running in the only pane of a private, detached tmux server.
///
/// The server has its own socket and an empty config, so a user's tmux (or another test's)
/// never sees or affects it; dropping this kills the server and with it the docker client.
#[derive(Debug)]
struct Terminal {
    _dir: TempDir,
    socket: PathBuf,
    session: String,
    /// Where the wrapper shell writes the docker client's exit code.
    exit_file: PathBuf,
    markers: Cell<u32>,
}

impl Terminal {
    /// Starts `docker ARGS` against `host` in a `cols`×`rows` terminal.
    fn open(session: &str, (cols, rows): (u16, u16), host: &str, args: &[&str]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("weave-tty")
            .tempdir()
            .expect("a temporary directory");
        let socket = dir.path().join("tmux.sock");
        let config = dir.path().join("tmux.conf");
        // No status line, so the pane is the whole window; a finished pane stays on screen
        // for the failure report.
        std::fs::write(&config, "set -g status off\nset -g remain-on-exit on\n")
            .expect("the tmux config is written");
        let exit_file = dir.path().join("exit-code");
        let term = Self {
            socket,
            session: session.to_owned(),
            exit_file,
            markers: Cell::new(0),
            _dir: dir,
        };
        let docker_host = format!("DOCKER_HOST={host}");
        let (cols, rows) = (cols.to_string(), rows.to_string());
        let mut command = vec![
            "-f",
            config.to_str().expect("temp paths are UTF-8"),
            "new-session",
            "-d",
            "-s",
            session,
            "-x",
            &cols,
            "-y",
            &rows,
            // Several arguments: tmux execs them as argv, so nothing needs shell quoting.
            // The exit code goes to a file because tmux's `pane_dead_status` is sometimes
            // still empty long after the client has exited (it reaps the pane late).
            "sh",
            "-c",
            r#"f=$1; shift; "$@"; echo $? >"$f.tmp" && mv "$f.tmp" "$f""#,
            "sh",
            term.exit_file.to_str().expect("temp paths are UTF-8"),
            "env",
            "-u",
            "DOCKER_CONTEXT",
            "-u",
            "DOCKER_TLS_VERIFY",
            &docker_host,
            "DOCKER_CLI_HINTS=false",
            "docker",
        ];
        command.extend_from_slice(args);
        term.tmux(&command);
        term
    }

    /// A prefix no earlier question in this terminal used: `{what}{n}:`.
    fn marker(&self, what: &str) -> String {
        let n = self.markers.get() + 1;
        self.markers.set(n);
        format!("{what}{n}:")
    }

    fn tmux(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("tmux runs");
        assert!(
            out.status.success(),
            "tmux {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn type_line(&self, text: &str) {
        self.tmux(&["send-keys", "-t", &self.session, "-l", text]);
        self.tmux(&["send-keys", "-t", &self.session, "Enter"]);
    }

    /// Every line of the pane, scrollback included, wrapped lines joined, trailing blanks cut.
    fn screen_lines(&self) -> Vec<String> {
        self.tmux(&["capture-pane", "-p", "-J", "-S", "-", "-t", &self.session])
            .lines()
            .map(|l| l.trim_end().to_owned())
            .collect()
    }

    fn resize(&self, (cols, rows): (u16, u16)) {
        let (cols, rows) = (cols.to_string(), rows.to_string());
        self.tmux(&[
            "resize-window",
            "-t",
            &self.session,
            "-x",
            &cols,
            "-y",
            &rows,
        ]);
    }

    /// The pane's size as tmux sees it: `(cols, rows)`.
    fn pane_size(&self) -> (u16, u16) {
        let size = self.tmux(&[
            "display-message",
            "-p",
            "-t",
            &self.session,
            "#{pane_width} #{pane_height}",
        ]);
        let mut parts = size
            .split_whitespace()
            .map(|n| n.parse().expect("a number"));
        (
            parts.next().expect("a width"),
            parts.next().expect("a height"),
        )
    }

    /// The docker client's exit code once it has exited.
    fn exit_status(&self) -> Option<i32> {
        let code = std::fs::read_to_string(&self.exit_file).ok()?;
        Some(code.trim().parse().expect("a numeric exit status"))
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let screen = Command::new("tmux")
                .arg("-S")
                .arg(&self.socket)
                .args(["capture-pane", "-p", "-J", "-S", "-", "-t", &self.session])
                .output();
            if let Ok(screen) = screen {
                eprintln!(
                    "--- terminal ---\n{}",
                    String::from_utf8_lossy(&screen.stdout)
                );
            }
        }
        let _ = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .arg("kill-server")
            .output();
    }
}
