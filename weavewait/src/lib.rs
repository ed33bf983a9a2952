//! weavewait: the container's first program, which waits for weave's interface and then `exec`s the
//! real one (see `prog/weavewait` and `net/if.go` in Weave Net).
//!
//! The proxy prepends `/w/w` to every weave container's command. As PID 1 it blocks until `ethwe`
//! is UP (and, for the multicast build, until an IPv4 route to `224.0.0.0/4` exists), then replaces
//! itself with its arguments through `execvp`: same PID, environment, argv and stdio; the program
//! starts with an empty signal mask, and weavewait never sets a signal to `SIG_IGN` (std's runtime
//! ignores SIGPIPE, and std's `exec` puts it back to the default). It does not fork and does not
//! supervise, so there is nothing to reap.
//!
//! Three builds of one library, each installed as `w` in its own directory of the volume:
//!
//! | binary              | installed as   | waits for                      |
//! |---------------------|----------------|--------------------------------|
//! | `weavewait`         | `/w/w`         | `ethwe` UP and `224.0.0.0/4`   |
//! | `weavewait-nomcast` | `/w-nomcast/w` | `ethwe` UP                     |
//! | `weavewait-noop`    | `/w-noop/w`    | nothing                        |
//!
//! Waiting: signals are blocked and read from a `signalfd` before anything else; a `NETLINK_ROUTE`
//! socket subscribes to link (and IPv4 route) changes *before* the current state is read, so no
//! change can slip between the check and the wait; then `poll` sleeps on both descriptors. No
//! polling loop, no timeout (the original has none either).
//!
//! Signals while waiting: SIGTERM, SIGINT, SIGHUP and SIGQUIT end weavewait with `128 + signo`, so
//! `docker stop` of a container still waiting for its network returns at once (a PID 1 without a
//! handler would simply never see SIGTERM, and Docker would wait 10 s and SIGKILL it). Every other
//! signal except the synchronous fault signals is read and discarded.
//!
//! Exit status, when the program is not run: 127 when it is not found, 126 when it cannot be
//! executed (EACCES, ENOEXEC), 1 for any other failure, 2 when no program is given (usage), and
//! `128 + signo` for a terminating signal while waiting. Each failure prints exactly one line to
//! stderr starting `weavewait:`; the not-found line keeps the original's wording
//! (`exec: "foo": executable file not found in $PATH`). Otherwise weavewait prints nothing, unless
//! `WEAVEWAIT_DEBUG` is set to a non-empty value (then it narrates the wait on stderr).
//!
//! Static build (the binaries are bind-mounted into arbitrary images: scratch, busybox, musl,
//! glibc). glibc is linked in statically; nothing here calls into NSS (no user or host lookups),
//! which is the part of static glibc that does not work:
//!
//! ```text
//! RUSTFLAGS='-C target-feature=+crt-static' \
//!     cargo build --release -p weavewait --target x86_64-unknown-linux-gnu
//! ```
//!
//! `scripts/build-weavewait.sh` runs exactly that and lays the binaries out as
//! `target/weavewait/{w,w-nomcast,w-noop}/w`.

#![forbid(unsafe_code)]

mod netlink;
mod system;

use std::ffi::{OsStr, OsString};
use std::io;
use std::net::Ipv4Addr;
use std::os::unix::process::CommandExt;
use std::process::Command;

use nix::errno::Errno;
use nix::sys::signal::{SigSet, SigmaskHow, sigprocmask};

pub use system::System;

/// The interface the weave proxy moves into the container.
pub const INTERFACE: &str = "ethwe";

/// The multicast route the proxy adds last, as the sign that the attach is complete.
pub const MCAST_DESTINATION: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 0);

/// The prefix length of [`MCAST_DESTINATION`]'s route.
pub const MCAST_PREFIX_LEN: u8 = 4;

/// The routing table the proxy adds the multicast route to (`RT_TABLE_MAIN`).
pub const MAIN_TABLE: u32 = libc::RT_TABLE_MAIN as u32;

/// Exit status for "no program given".
pub const USAGE_EXIT: i32 = 2;

/// The environment variable that turns on narration of the wait on stderr.
pub const DEBUG_ENV: &str = "WEAVEWAIT_DEBUG";

/// Which build this is: what to wait for before the exec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `/w-noop/w`: exec at once (host and `container:` network modes, which never get `ethwe`).
    Noop,
    /// `/w-nomcast/w`: wait for `ethwe` UP.
    Interface,
    /// `/w/w`: wait for `ethwe` UP and the `224.0.0.0/4` route.
    InterfaceAndMulticast,
}

impl Mode {
    /// Whether this build needs IPv4 route change notifications, not just link ones.
    pub fn wants_routes(self) -> bool {
        self == Mode::InterfaceAndMulticast
    }
}

/// A network link as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkState {
    /// `IFLA_IFNAME`.
    pub name: String,
    /// `IFF_UP`: administratively up. The proxy adds the addresses before it sets the link up, so
    /// "up" already implies "addressed"; carrier does not matter.
    pub up: bool,
}

/// An IPv4 route as the kernel reports it (only the fields the decision needs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route4 {
    /// `RTA_DST`; `0.0.0.0` for a default route, which carries no `RTA_DST`.
    pub destination: Ipv4Addr,
    /// `rtm_dst_len`.
    pub prefix_len: u8,
    /// `RTA_TABLE`, or `rtm_table` when the attribute is absent.
    pub table: u32,
}

/// Whether `link` is the wanted interface and is up.
pub fn link_ready(link: &LinkState, want: &str) -> bool {
    link.name == want && link.up
}

/// Whether the multicast route the proxy adds is among `routes`. The device is not checked, as in
/// the original: the route is the attach's last step, and only the proxy adds it.
pub fn mcast_route_ready(routes: &[Route4]) -> bool {
    routes.iter().any(|r| {
        r.destination == MCAST_DESTINATION
            && r.prefix_len == MCAST_PREFIX_LEN
            && r.table == MAIN_TABLE
    })
}

/// How far the attach has got, as seen from inside the container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// No `ethwe` yet.
    NoInterface,
    /// `ethwe` exists but is not up.
    InterfaceDown,
    /// `ethwe` is up; the multicast route is still missing (multicast build only).
    NoMulticastRoute,
    /// Everything this build waits for is there.
    Ready,
}

/// The kernel state the readiness decision needs; the seam that lets it be tested without root.
pub trait Links {
    /// The link called `name`, or `None` when there is none.
    fn link(&mut self, name: &str) -> io::Result<Option<LinkState>>;
    /// Every IPv4 route, in all tables.
    fn ipv4_routes(&mut self) -> io::Result<Vec<Route4>>;
}

/// Reads the current state and decides how far the attach has got for `mode`.
pub fn progress(mode: Mode, links: &mut impl Links) -> io::Result<Progress> {
    if mode == Mode::Noop {
        return Ok(Progress::Ready);
    }
    match links.link(INTERFACE)? {
        None => return Ok(Progress::NoInterface),
        Some(link) if !link_ready(&link, INTERFACE) => return Ok(Progress::InterfaceDown),
        Some(_) => {}
    }
    if mode.wants_routes() && !mcast_route_ready(&links.ipv4_routes()?) {
        return Ok(Progress::NoMulticastRoute);
    }
    Ok(Progress::Ready)
}

/// What ended one wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// Something changed (or notifications were lost): read the state again.
    Changed,
    /// This signal arrived.
    Signal(i32),
}

/// Everything the wait loop needs from the kernel besides the state queries.
pub trait Host: Links {
    /// Starts receiving change notifications for what `mode` waits for. Called before the first
    /// state query, so that a change between the query and the wait is never lost.
    fn subscribe(&mut self, mode: Mode) -> io::Result<()>;
    /// Sleeps until a change notification or a signal.
    fn wait(&mut self) -> io::Result<Wake>;
    /// A signal that is already pending, without sleeping.
    fn pending_signal(&mut self) -> io::Result<Option<i32>>;
}

/// Why weavewait stopped instead of running the program.
#[derive(Debug)]
pub enum Stop {
    /// A terminating signal arrived while waiting.
    Signal(i32),
    /// Reading the network state failed.
    Failed(io::Error),
}

impl From<io::Error> for Stop {
    fn from(err: io::Error) -> Self {
        Stop::Failed(err)
    }
}

/// Whether `signo` ends the wait (rather than being discarded). These are the signals that
/// `docker stop`, `docker kill` defaults, a terminal and a hangup send.
pub fn terminates(signo: i32) -> bool {
    matches!(
        signo,
        libc::SIGTERM | libc::SIGINT | libc::SIGHUP | libc::SIGQUIT
    )
}

/// The exit status for ending on `signo` (the shell's convention, and tini's).
pub fn signal_exit_code(signo: i32) -> i32 {
    128 + signo
}

/// Subscribes, then checks, then waits, until `mode` is satisfied or a terminating signal comes.
/// `log` receives a line at each step (shown only with `WEAVEWAIT_DEBUG`).
pub fn wait_ready(mode: Mode, host: &mut impl Host, log: &mut dyn FnMut(&str)) -> Result<(), Stop> {
    if mode == Mode::Noop {
        return Ok(());
    }
    host.subscribe(mode)?;
    loop {
        let now = progress(mode, host)?;
        log(describe(now));
        if now == Progress::Ready {
            break;
        }
        match host.wait()? {
            Wake::Changed => {}
            Wake::Signal(signo) if terminates(signo) => return Err(Stop::Signal(signo)),
            Wake::Signal(signo) => log(&format!("ignoring signal {signo}")),
        }
    }
    // A SIGTERM that arrived after the last wait is still only pending: once the exec clears the
    // mask it would be lost on a PID 1 (no handler), so it has to be honoured here.
    while let Some(signo) = host.pending_signal()? {
        if terminates(signo) {
            return Err(Stop::Signal(signo));
        }
    }
    Ok(())
}

fn describe(progress: Progress) -> &'static str {
    match progress {
        Progress::NoInterface => "ethwe absent; waiting",
        Progress::InterfaceDown => "ethwe down; waiting",
        Progress::NoMulticastRoute => "ethwe up, no 224.0.0.0/4 route; waiting",
        Progress::Ready => "ready",
    }
}

/// The program and its arguments: everything after `argv[0]` belongs to the program (no options).
pub fn split_command(args: &[OsString]) -> Option<(&OsStr, &[OsString])> {
    let (program, rest) = args.split_first()?;
    Some((program.as_os_str(), rest))
}

/// Replaces this process with `program` (PATH lookup; `argv[0]` passed as given; environment and
/// stdio untouched); returns only on failure.
///
/// The signal mask is emptied here: std's `exec` resets SIGPIPE (which its runtime ignores) to
/// the default, but leaves the mask alone, and a mask survives `execve`. A signal that arrives
/// between the last drain of the signalfd and this unblocking is delivered with its default
/// action: it ends weavewait, or is dropped if weavewait is a namespace's PID 1; the window is
/// a few system calls long.
pub fn exec_program(program: &OsStr, args: &[OsString]) -> io::Error {
    if let Err(errno) = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None) {
        return errno.into();
    }
    Command::new(program).args(args).exec()
}

/// The exit status for a failed exec: 127 not found, 126 not executable, 1 otherwise.
/// (glibc's `execvp` hands a file the kernel rejects with ENOEXEC to `/bin/sh`, as POSIX says; in
/// an image without a shell the error reported is then the shell's ENOENT.)
pub fn exec_exit_code(err: &io::Error) -> i32 {
    match err.raw_os_error() {
        Some(libc::ENOENT) => 127,
        Some(libc::EACCES | libc::ENOEXEC) => 126,
        _ => 1,
    }
}

/// The one line printed for a failed exec, in the original's (and runc's) words.
pub fn exec_failure_message(program: &OsStr, err: &io::Error) -> String {
    let name = program.to_string_lossy();
    let why = match err.raw_os_error() {
        Some(libc::ENOENT) if !name.contains('/') => {
            "executable file not found in $PATH".to_owned()
        }
        Some(code) => lowercase_first(Errno::from_raw(code).desc()),
        None => err.to_string(),
    };
    // Debug formatting quotes the name and escapes control characters: always one line.
    format!("weavewait: exec: {name:?}: {why}")
}

fn lowercase_first(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map(|first| first.to_lowercase().chain(chars).collect())
        .unwrap_or_default()
}

/// The usage line for an empty command.
pub fn usage_message() -> &'static str {
    "weavewait: usage: w PROGRAM [ARGUMENT...] (no program given)"
}

/// The whole program: wait as `mode` says, then exec the arguments, or exit with a status.
pub fn run(mode: Mode) -> ! {
    std::process::exit(run_status(mode))
}

fn run_status(mode: Mode) -> i32 {
    let debug = std::env::var_os(DEBUG_ENV).is_some_and(|v| !v.is_empty());
    let mut log = |line: &str| {
        if debug {
            eprintln!("weavewait: debug: {line}");
        }
    };
    // Signals first: a SIGTERM that came before the mask was set would be lost on a PID 1.
    let mut host = match mode {
        Mode::Noop => None,
        _ => match System::new() {
            Ok(host) => Some(host),
            Err(err) => {
                eprintln!("weavewait: setting up signals: {err}");
                return 1;
            }
        },
    };
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let Some((program, rest)) = split_command(&args) else {
        eprintln!("{}", usage_message());
        return USAGE_EXIT;
    };
    if let Some(host) = host.as_mut() {
        match wait_ready(mode, host, &mut log) {
            Ok(()) => {}
            Err(Stop::Signal(signo)) => {
                log(&format!("signal {signo} while waiting; exiting"));
                return signal_exit_code(signo);
            }
            Err(Stop::Failed(err)) => {
                eprintln!("weavewait: waiting for {INTERFACE}: {err}");
                return 1;
            }
        }
    }
    // Close-on-exec already; closing the signalfd and sockets here is just tidier.
    drop(host);
    log(&format!("exec {:?}", program.to_string_lossy()));
    let err = exec_program(program, rest);
    eprintln!("{}", exec_failure_message(program, &err));
    exec_exit_code(&err)
}

#[cfg(test)]
mod tests;
