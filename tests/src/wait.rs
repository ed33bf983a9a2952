//! Bounded polling for states that become true eventually, or must stay true for a while; never a
//! bare sleep.

use std::time::{Duration, Instant};

/// How often a condition is checked while waiting for it.
const INTERVAL: Duration = Duration::from_millis(20);
/// How often a condition is checked while it must hold: it is checked for the whole window, often
/// with a call to the daemon each time, so less eagerly.
const HOLD_INTERVAL: Duration = Duration::from_millis(50);

/// Polls `check` until it returns `Some`, or gives `None` once `patience` is spent: for tests that
/// observe several things first and assert after, so that one failure does not hide the others.
pub fn poll<T>(patience: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + patience;
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(INTERVAL);
    }
}

/// Polls `check` until it returns `Some`, or panics with `what` after `patience`.
#[track_caller]
pub fn eventually<T>(what: &str, patience: Duration, check: impl FnMut() -> Option<T>) -> T {
    let Some(value) = poll(patience, check) else {
        panic!("timed out after {patience:?} waiting for {what}");
    };
    value
}

/// Asserts that `check` holds at every poll for `window`: the bounded "nothing happens yet" side
/// of [`eventually`].
#[track_caller]
pub fn holds_for(what: &str, window: Duration, mut check: impl FnMut() -> bool) {
    let end = Instant::now() + window;
    while Instant::now() < end {
        assert!(check(), "{what} stopped holding");
        std::thread::sleep(HOLD_INTERVAL);
    }
}
