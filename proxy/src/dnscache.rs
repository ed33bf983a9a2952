//! The router's weaveDNS settings (its domain and address), which every create through the proxy
//! writes into the container, cached for [`DNS_TTL`] so that a create does not ask the router
//! twice over HTTP each time.
//!
//! A router restarted with other settings (`--dns-domain`, `--dns-listen-address`, `--no-dns`)
//! is seen by the creates that come at most [`DNS_TTL`] after it answers again. A router without
//! weaveDNS (404) is an answer and cached alike; a router that does not answer is not, so the
//! next create asks again.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use api::{DnsInfo, RouterClient, RouterError};
use tokio::time::Instant;

use crate::sync::lock;

/// How long one answer of the router is used.
pub const DNS_TTL: Duration = Duration::from_secs(1);

/// The router and its last answer; cheap to clone.
#[derive(Debug, Clone)]
pub struct DnsCache {
    router: RouterClient,
    /// The router's last answer, if any.
    last: Arc<Mutex<Option<Answered>>>,
}

/// When the router answered, and what (`None`: it runs without weaveDNS).
type Answered = (Instant, Option<DnsInfo>);

impl DnsCache {
    /// Asks `router`, at most once per [`DNS_TTL`].
    pub fn new(router: RouterClient) -> Self {
        Self {
            router,
            last: Arc::default(),
        }
    }

    /// weaveDNS's domain and address; `None` when the router runs without it.
    ///
    /// # Errors
    /// When the router is unreachable or answers something else (never cached).
    pub async fn dns(&self) -> Result<Option<DnsInfo>, RouterError> {
        let now = Instant::now();
        if let Some((asked, answer)) = &*lock(&self.last)
            && fresh(*asked, now)
        {
            return Ok(answer.clone());
        }
        let answer = self.router.dns().await?;
        *lock(&self.last) = Some((now, answer.clone()));
        Ok(answer)
    }
}

/// Whether an answer the router gave at `asked` may still be used at `now`.
pub fn fresh(asked: Instant, now: Instant) -> bool {
    now.saturating_duration_since(asked) < DNS_TTL
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_lives_for_the_ttl() {
        let asked = Instant::now();
        let ms = Duration::from_millis;
        let cases = [
            (ms(0), true),
            (ms(999), true),
            (DNS_TTL, false),
            (ms(5_000), false),
        ];
        for (age, want) in cases {
            assert_eq!(fresh(asked, asked + age), want, "{age:?}");
        }
        // A clock that reads earlier than the answer (never, with a monotonic one) is fresh.
        assert!(fresh(asked + ms(10), asked));
    }
}
