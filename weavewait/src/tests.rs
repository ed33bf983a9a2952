//! The decisions and the wait loop against a scripted fake kernel; exit codes and messages.

use std::collections::VecDeque;

use super::*;

fn link(name: &str, up: bool) -> LinkState {
    LinkState {
        name: name.to_owned(),
        up,
    }
}

fn route(destination: [u8; 4], prefix_len: u8, table: u32) -> Route4 {
    Route4 {
        destination: destination.into(),
        prefix_len,
        table,
    }
}

#[test]
fn link_readiness() {
    assert!(link_ready(&link("ethwe", true), "ethwe"));
    assert!(!link_ready(&link("ethwe", false), "ethwe"));
    assert!(!link_ready(&link("eth0", true), "ethwe"));
    assert!(!link_ready(&link("ethwe0", true), "ethwe"));
}

#[test]
fn multicast_route_readiness() {
    let cases = [
        (vec![], false),
        (vec![route([224, 0, 0, 0], 4, MAIN_TABLE)], true),
        (
            vec![
                route([0, 0, 0, 0], 0, MAIN_TABLE),
                route([10, 32, 0, 0], 12, MAIN_TABLE),
                route([224, 0, 0, 0], 4, MAIN_TABLE),
            ],
            true,
        ),
        (vec![route([224, 0, 0, 0], 8, MAIN_TABLE)], false),
        (vec![route([224, 0, 0, 0], 4, 255)], false),
        (vec![route([225, 0, 0, 0], 4, MAIN_TABLE)], false),
        (vec![route([10, 32, 0, 0], 12, MAIN_TABLE)], false),
    ];
    for (routes, expected) in cases {
        assert_eq!(mcast_route_ready(&routes), expected, "{routes:?}");
    }
}

/// What happens in the fake kernel while the loop sleeps in `wait`.
#[derive(Debug, Clone, Copy)]
enum Then {
    /// `ethwe` appears (moved in), down.
    Appears,
    /// `ethwe` is set up.
    Up,
    /// The multicast route is added.
    Route,
    /// A notification for something unrelated.
    Unrelated,
    /// A signal arrives.
    Signal(i32),
}

#[derive(Debug, Default)]
struct Fake {
    link: Option<LinkState>,
    routes: Vec<Route4>,
    script: VecDeque<Then>,
    pending: VecDeque<i32>,
    calls: Vec<String>,
    subscribed: Option<Mode>,
}

impl Fake {
    fn new(script: &[Then]) -> Self {
        Self {
            script: script.iter().copied().collect(),
            ..Self::default()
        }
    }
}

impl Links for Fake {
    fn link(&mut self, name: &str) -> io::Result<Option<LinkState>> {
        self.calls.push(format!("link {name}"));
        Ok(self.link.clone().filter(|l| l.name == name))
    }

    fn ipv4_routes(&mut self) -> io::Result<Vec<Route4>> {
        self.calls.push("routes".to_owned());
        Ok(self.routes.clone())
    }
}

impl Host for Fake {
    fn subscribe(&mut self, mode: Mode) -> io::Result<()> {
        self.calls.push("subscribe".to_owned());
        self.subscribed = Some(mode);
        Ok(())
    }

    fn wait(&mut self) -> io::Result<Wake> {
        assert!(self.subscribed.is_some(), "waited without a subscription");
        self.calls.push("wait".to_owned());
        let then = self
            .script
            .pop_front()
            .expect("the loop waited after the script ran out: it would hang");
        Ok(match then {
            Then::Appears => {
                self.link = Some(link("ethwe", false));
                Wake::Changed
            }
            Then::Up => {
                self.link = Some(link("ethwe", true));
                Wake::Changed
            }
            Then::Route => {
                self.routes.push(route([224, 0, 0, 0], 4, MAIN_TABLE));
                Wake::Changed
            }
            Then::Unrelated => Wake::Changed,
            Then::Signal(signo) => Wake::Signal(signo),
        })
    }

    fn pending_signal(&mut self) -> io::Result<Option<i32>> {
        Ok(self.pending.pop_front())
    }
}

fn run_fake(mode: Mode, fake: &mut Fake) -> (Result<(), Stop>, Vec<String>) {
    let mut lines = Vec::new();
    let result = wait_ready(mode, fake, &mut |line| lines.push(line.to_owned()));
    (result, lines)
}

#[test]
fn subscribes_before_the_first_check() {
    let mut fake = Fake::new(&[Then::Appears, Then::Up]);
    let (result, _) = run_fake(Mode::Interface, &mut fake);
    assert!(result.is_ok());
    assert_eq!(
        fake.calls,
        [
            "subscribe",
            "link ethwe",
            "wait",
            "link ethwe",
            "wait",
            "link ethwe"
        ]
    );
    assert_eq!(fake.subscribed, Some(Mode::Interface));
}

#[test]
fn an_interface_already_up_needs_no_wait() {
    let mut fake = Fake::new(&[]);
    fake.link = Some(link("ethwe", true));
    let (result, lines) = run_fake(Mode::Interface, &mut fake);
    assert!(result.is_ok());
    assert_eq!(fake.calls, ["subscribe", "link ethwe"]);
    assert_eq!(lines, ["ready"]);
}

#[test]
fn nomcast_ignores_routes() {
    let mut fake = Fake::new(&[Then::Unrelated, Then::Up]);
    let (result, lines) = run_fake(Mode::Interface, &mut fake);
    assert!(result.is_ok());
    assert!(
        !fake.calls.iter().any(|c| c == "routes"),
        "{:?}",
        fake.calls
    );
    assert_eq!(
        lines,
        ["ethwe absent; waiting", "ethwe absent; waiting", "ready"]
    );
}

#[test]
fn mcast_waits_for_the_route_after_the_interface() {
    let mut fake = Fake::new(&[Then::Appears, Then::Up, Then::Unrelated, Then::Route]);
    let (result, lines) = run_fake(Mode::InterfaceAndMulticast, &mut fake);
    assert!(result.is_ok());
    assert_eq!(fake.subscribed, Some(Mode::InterfaceAndMulticast));
    assert_eq!(
        lines,
        [
            "ethwe absent; waiting",
            "ethwe down; waiting",
            "ethwe up, no 224.0.0.0/4 route; waiting",
            "ethwe up, no 224.0.0.0/4 route; waiting",
            "ready",
        ]
    );
    assert!(fake.script.is_empty());
}

#[test]
fn a_route_before_the_interface_is_not_enough() {
    let mut fake = Fake::new(&[Then::Route, Then::Appears, Then::Up]);
    let (result, lines) = run_fake(Mode::InterfaceAndMulticast, &mut fake);
    assert!(result.is_ok());
    assert_eq!(lines.last().map(String::as_str), Some("ready"));
    assert_eq!(lines.len(), 4, "{lines:?}");
}

#[test]
fn terminating_signals_end_the_wait() {
    for signo in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGQUIT] {
        let mut fake = Fake::new(&[Then::Appears, Then::Signal(signo)]);
        let (result, _) = run_fake(Mode::Interface, &mut fake);
        assert!(
            matches!(result, Err(Stop::Signal(s)) if s == signo),
            "{signo}"
        );
    }
}

#[test]
fn other_signals_are_discarded() {
    let mut fake = Fake::new(&[
        Then::Signal(libc::SIGUSR1),
        Then::Signal(libc::SIGWINCH),
        Then::Signal(libc::SIGCHLD),
        Then::Up,
    ]);
    let (result, lines) = run_fake(Mode::Interface, &mut fake);
    assert!(result.is_ok());
    assert!(
        lines.contains(&format!("ignoring signal {}", libc::SIGUSR1)),
        "{lines:?}"
    );
}

#[test]
fn a_term_pending_at_exec_time_is_honoured() {
    let mut fake = Fake::new(&[Then::Up]);
    fake.pending = [libc::SIGWINCH, libc::SIGTERM].into();
    let (result, _) = run_fake(Mode::Interface, &mut fake);
    assert!(matches!(result, Err(Stop::Signal(libc::SIGTERM))));

    let mut fake = Fake::new(&[Then::Up]);
    fake.pending = [libc::SIGWINCH].into();
    let (result, _) = run_fake(Mode::Interface, &mut fake);
    assert!(result.is_ok());
    assert!(fake.pending.is_empty(), "the pending signals were drained");
}

#[test]
fn noop_touches_nothing() {
    let mut fake = Fake::new(&[]);
    let (result, lines) = run_fake(Mode::Noop, &mut fake);
    assert!(result.is_ok());
    assert!(fake.calls.is_empty(), "{:?}", fake.calls);
    assert!(lines.is_empty());
}

#[test]
fn query_failures_stop_the_wait() {
    struct Broken;
    impl Links for Broken {
        fn link(&mut self, _: &str) -> io::Result<Option<LinkState>> {
            Err(io::Error::from_raw_os_error(libc::EPROTONOSUPPORT))
        }
        fn ipv4_routes(&mut self) -> io::Result<Vec<Route4>> {
            unreachable!("the link is checked first")
        }
    }
    impl Host for Broken {
        fn subscribe(&mut self, _: Mode) -> io::Result<()> {
            Ok(())
        }
        fn wait(&mut self) -> io::Result<Wake> {
            unreachable!("the failed check ends the loop")
        }
        fn pending_signal(&mut self) -> io::Result<Option<i32>> {
            Ok(None)
        }
    }
    let result = wait_ready(Mode::InterfaceAndMulticast, &mut Broken, &mut |_| {});
    assert!(
        matches!(&result, Err(Stop::Failed(e)) if e.raw_os_error() == Some(libc::EPROTONOSUPPORT)),
        "{result:?}"
    );
}

#[test]
fn signal_exit_codes() {
    assert_eq!(signal_exit_code(libc::SIGTERM), 143);
    assert_eq!(signal_exit_code(libc::SIGINT), 130);
    assert_eq!(signal_exit_code(libc::SIGHUP), 129);
    assert_eq!(signal_exit_code(libc::SIGQUIT), 131);
    assert!(!terminates(libc::SIGUSR1));
    assert!(!terminates(libc::SIGCHLD));
    assert!(!terminates(libc::SIGPIPE));
}

#[test]
fn exec_errors_map_to_exit_codes() {
    let cases = [
        (io::Error::from_raw_os_error(libc::ENOENT), 127),
        (io::Error::from_raw_os_error(libc::EACCES), 126),
        (io::Error::from_raw_os_error(libc::ENOEXEC), 126),
        (io::Error::from_raw_os_error(libc::E2BIG), 1),
        (io::Error::from_raw_os_error(libc::ENOMEM), 1),
        (io::Error::new(io::ErrorKind::InvalidInput, "nul byte"), 1),
    ];
    for (err, code) in cases {
        assert_eq!(exec_exit_code(&err), code, "{err}");
    }
}

#[test]
fn exec_failure_messages() {
    let cases = [
        (
            "foo",
            libc::ENOENT,
            r#"weavewait: exec: "foo": executable file not found in $PATH"#,
        ),
        (
            "/bin/nope",
            libc::ENOENT,
            r#"weavewait: exec: "/bin/nope": no such file or directory"#,
        ),
        (
            "/etc/passwd",
            libc::EACCES,
            r#"weavewait: exec: "/etc/passwd": permission denied"#,
        ),
        (
            "./data",
            libc::ENOEXEC,
            r#"weavewait: exec: "./data": exec format error"#,
        ),
        (
            "two\nlines",
            libc::ENOENT,
            r#"weavewait: exec: "two\nlines": executable file not found in $PATH"#,
        ),
    ];
    for (program, errno, expected) in cases {
        let message =
            exec_failure_message(OsStr::new(program), &io::Error::from_raw_os_error(errno));
        assert_eq!(message, expected);
        assert!(!message.contains('\n'));
    }
}

#[test]
fn everything_after_argv0_is_the_command() {
    let args = |list: &[&str]| list.iter().map(OsString::from).collect::<Vec<_>>();
    assert_eq!(split_command(&[]), None);

    let command = args(&["sh", "-c", "echo ok"]);
    let (program, rest) = split_command(&command).unwrap();
    assert_eq!((program, rest), (OsStr::new("sh"), &command[1..]));

    // No option parsing: a leading `--` or `-s` is the program's business.
    let command = args(&["--", "-s"]);
    let (program, rest) = split_command(&command).unwrap();
    assert_eq!((program, rest), (OsStr::new("--"), &command[1..]));
}

#[test]
fn usage_is_one_line() {
    assert!(usage_message().starts_with("weavewait: "));
    assert!(!usage_message().contains('\n'));
}
