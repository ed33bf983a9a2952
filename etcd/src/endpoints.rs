//! Which etcd member a request goes to: the endpoint list, the one that answered last, and the
//! order in which the others are tried when it stops answering.
//!
//! The design's prototype on `etcd-client` failed 8 times in 9 with a dead first endpoint
//! (MULTIHOST.md §3.5): its balancer kept choosing it. Here the choice is explicit: requests go
//! to the endpoint that answered last, and only a failure moves them on, to the next one in the
//! list, round the ring once.

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::Error;

/// The endpoints and the one in use.
#[derive(Debug)]
pub(crate) struct Endpoints {
    urls: Vec<String>,
    current: AtomicUsize,
}

impl Endpoints {
    /// # Errors
    /// When the list is empty or an endpoint is not an `http://host:port` address.
    pub(crate) fn new<I, S>(endpoints: I) -> Result<Self, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let urls = endpoints
            .into_iter()
            .map(|e| normalise(e.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        if urls.is_empty() {
            return Err(Error::NoEndpoints);
        }
        Ok(Self {
            urls,
            current: AtomicUsize::new(0),
        })
    }

    pub(crate) fn urls(&self) -> &[String] {
        &self.urls
    }

    pub(crate) fn current(&self) -> usize {
        self.current.load(Ordering::Relaxed) % self.urls.len()
    }

    /// Every endpoint once, the current one first: the order of a request's attempts.
    pub(crate) fn attempts(&self) -> impl Iterator<Item = (usize, &str)> {
        ring(self.current(), self.urls.len()).map(|i| (i, self.urls[i].as_str()))
    }

    /// `i` answered: later requests start there. A concurrent request that saw another endpoint
    /// answer may overwrite it; either one works, which is all that matters.
    pub(crate) fn answered(&self, i: usize) {
        self.current.store(i, Ordering::Relaxed);
    }
}

/// The indices of a ring of `len` from `start`, each once.
fn ring(start: usize, len: usize) -> impl Iterator<Item = usize> {
    (0..len).map(move |k| (start + k) % len)
}

/// `host:port`, `http://host:port` or `http://host:port/` to `http://host:port`. TLS is for
/// later (MULTIHOST.md §4.5); an `https://` endpoint is refused rather than spoken to in plain.
fn normalise(endpoint: &str) -> Result<String, Error> {
    let bad = |reason: &str| Error::BadEndpoint {
        endpoint: endpoint.to_owned(),
        reason: reason.to_owned(),
    };
    let e = endpoint.trim().trim_end_matches('/');
    let authority = match e.split_once("://") {
        Some(("http", rest)) => rest,
        Some((scheme, _)) => return Err(bad(&format!("scheme {scheme} is not supported"))),
        None => e,
    };
    if authority.is_empty() || authority.contains('/') {
        return Err(bad("not host:port"));
    }
    let uri: http::Uri = format!("http://{authority}/")
        .parse()
        .map_err(|err: http::uri::InvalidUri| bad(&err.to_string()))?;
    if uri.port_u16().is_none() {
        return Err(bad("no port"));
    }
    Ok(format!("http://{authority}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_normalised() {
        let cases = [
            ("127.0.0.1:2379", Some("http://127.0.0.1:2379")),
            ("http://10.0.0.1:2379/", Some("http://10.0.0.1:2379")),
            (" host-a:2379 ", Some("http://host-a:2379")),
            ("http://[::1]:2379", Some("http://[::1]:2379")),
            ("https://10.0.0.1:2379", None),
            ("10.0.0.1", None),
            ("http://10.0.0.1:2379/v3", None),
            ("", None),
        ];
        for (input, want) in cases {
            assert_eq!(normalise(input).ok().as_deref(), want, "{input:?}");
        }
    }

    #[test]
    fn an_empty_list_is_refused() {
        assert!(matches!(
            Endpoints::new(Vec::<String>::new()),
            Err(Error::NoEndpoints)
        ));
    }

    #[test]
    fn attempts_go_round_the_ring_from_the_one_that_answered() {
        let e = Endpoints::new(["a:1", "b:1", "c:1"]).unwrap();
        let order = |e: &Endpoints| e.attempts().map(|(i, _)| i).collect::<Vec<_>>();
        assert_eq!(order(&e), [0, 1, 2]);
        e.answered(2);
        assert_eq!(order(&e), [2, 0, 1]);
        assert_eq!(e.attempts().next().unwrap().1, "http://c:1");
        e.answered(1);
        assert_eq!(order(&e), [1, 2, 0]);
    }
}
