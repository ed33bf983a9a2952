//! What weave's two long-running programs, the router (`weaver`) and the proxy (`weaveproxy`),
//! share as programs rather than as parts of the network: how they log, and how they space out
//! retries of a daemon that is not there.

use std::time::Duration;

use thiserror::Error;

/// A log filter that does not parse.
#[derive(Debug, Error)]
#[error("invalid log filter {directive:?}: {reason}")]
pub struct LogError {
    pub directive: String,
    pub reason: String,
}

/// Logs to stderr, filtered by `directive` (`RUST_LOG` syntax), with colours only on a terminal:
/// `docker logs` shows the log of a launched container as it was written.
///
/// # Errors
/// When `directive` does not parse.
pub fn init_logging(directive: &str) -> Result<(), LogError> {
    use std::io::IsTerminal;

    let filter = tracing_subscriber::EnvFilter::try_new(directive).map_err(|err| LogError {
        directive: directive.to_owned(),
        reason: err.to_string(),
    })?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
    Ok(())
}

/// Delays between attempts: from `first`, growing ×1.5 up to `max`, as the original's.
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// Starts at `first`, never longer than `max`.
    pub fn new(first: Duration, max: Duration) -> Self {
        Self {
            first,
            max,
            next: first,
        }
    }

    /// The delay before the next attempt; each call lengthens the following one.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = self.next.mul_f64(1.5).min(self.max);
        delay
    }

    /// It worked: the next failure starts over from the first delay.
    pub fn reset(&mut self) {
        self.next = self.first;
    }

    /// The longest delay.
    pub fn max(&self) -> Duration {
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_by_half_to_its_cap_and_starts_over_on_reset() {
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(3));
        let delays: Vec<u64> = (0..5)
            .map(|_| backoff.next_delay().as_millis() as u64)
            .collect();
        assert_eq!(delays, [1000, 1500, 2250, 3000, 3000]);
        backoff.reset();
        assert_eq!(backoff.next_delay(), Duration::from_secs(1));
    }

    #[test]
    fn a_bad_filter_is_named() {
        let err = init_logging("foo=notalevel").unwrap_err();
        assert_eq!(err.directive, "foo=notalevel");
    }
}
