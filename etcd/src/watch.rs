//! Watches: every change to some keys from a revision on, in order, surviving the member that
//! serves it (MULTIHOST.md §3.5, flaw 1: the prototype's agents exited when their watch broke).
//!
//! A [`Watch`] remembers the revision after the last event it delivered. When its stream ends,
//! errs, is cancelled, or goes quiet on a member that no longer answers or has no leader, it
//! opens a new one on the next member from that revision: no event is lost or repeated. When
//! that revision has been compacted, the events in between are gone and only a fresh list can
//! replace them: [`Error::Compacted`] says so, and the caller lists and watches again.

use std::collections::VecDeque;

use bytes::Bytes;
use http::StatusCode;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::time::{Instant, timeout_at};

use crate::client::{Answer, read_answer, root_cause};
use crate::kv::{KeyValue, Keys};
use crate::{Client, Error, wire};

/// What happened to a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Put,
    Delete,
}

/// A change to a key. For a delete, `kv` holds the key and the deleting revision
/// (`mod_revision`) only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    pub kv: KeyValue,
}

impl From<wire::EventWire> for Event {
    fn from(e: wire::EventWire) -> Self {
        Self {
            kind: if e.kind == "DELETE" {
                EventKind::Delete
            } else {
                EventKind::Put
            },
            kv: e.kv.into(),
        }
    }
}

/// A resuming watch of some keys. Read it with [`Watch::next`].
#[derive(Debug)]
pub struct Watch {
    client: Client,
    keys: Keys,
    /// The revision the next event will have at least: where a new stream starts.
    next_revision: i64,
    stream: Option<Stream>,
}

/// One open watch stream on one member.
#[derive(Debug)]
struct Stream {
    index: usize,
    endpoint: String,
    body: Incoming,
    /// Bytes of a message not complete yet.
    partial: Vec<u8>,
    /// Complete messages not read yet.
    lines: VecDeque<Vec<u8>>,
}

/// Why a stream could not be opened.
enum OpenError {
    Compacted(i64),
    Failed(String),
}

impl Stream {
    /// The next message, `Ok(None)` if none comes before `deadline`; `Err` when the stream is
    /// over, with why.
    async fn message(&mut self, deadline: Instant) -> Result<Option<wire::WatchResponse>, String> {
        loop {
            if let Some(line) = self.lines.pop_front() {
                return match serde_json::from_slice(&line) {
                    Ok(wire::StreamMessage::Result(r)) => Ok(Some(r)),
                    Ok(wire::StreamMessage::Error(status)) => {
                        Err(format!("{} (gRPC code {})", status.message, status.code))
                    }
                    Err(err) => Err(format!(
                        "unreadable message {:?}: {err}",
                        String::from_utf8_lossy(&line)
                    )),
                };
            }
            match timeout_at(deadline, self.body.frame()).await {
                Err(_) => return Ok(None),
                Ok(None) => return Err("the stream ended".to_owned()),
                Ok(Some(Err(err))) => return Err(root_cause(&err)),
                Ok(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        self.partial.extend_from_slice(&data);
                        self.lines.extend(wire::take_lines(&mut self.partial));
                    }
                }
            }
        }
    }
}

/// What a message on an open stream means for the watch.
#[derive(Debug, PartialEq, Eq)]
enum Read {
    /// Changes to deliver.
    Events(Vec<Event>),
    /// No change (a progress notification, a stray `created`).
    Nothing,
    /// etcd cancelled the watch because its revision is gone: only a re-list helps.
    Compacted(i64),
    /// etcd cancelled the watch for another reason: another member may take it.
    Cancelled(String),
}

fn read(r: wire::WatchResponse) -> Read {
    if r.canceled && r.compact_revision > 0 {
        Read::Compacted(r.compact_revision)
    } else if r.canceled {
        Read::Cancelled(format!("cancelled: {}", r.cancel_reason))
    } else if r.events.is_empty() {
        Read::Nothing
    } else {
        Read::Events(r.events.into_iter().map(Event::from).collect())
    }
}

impl Client {
    /// Watches `keys` from `start_revision` on (a list's revision + 1 misses nothing after the
    /// list; 0 is "from now"). The stream is open when this returns.
    ///
    /// etcd accepts a watch from a compacted revision and cancels it right after, so the
    /// compaction is usually reported by the first [`Watch::next`].
    ///
    /// # Errors
    /// [`Error::Compacted`] when `start_revision` is gone; [`Error::Unavailable`] when no member
    /// opens a stream.
    pub async fn watch(&self, keys: Keys, start_revision: i64) -> Result<Watch, Error> {
        let mut watch = Watch {
            client: self.clone(),
            keys,
            next_revision: start_revision,
            stream: None,
        };
        watch.stream = Some(watch.open(self.endpoint_list().current()).await?);
        Ok(watch)
    }
}

impl Watch {
    /// The revision a resumed stream would start from: one past the last event delivered.
    pub fn next_revision(&self) -> i64 {
        self.next_revision
    }

    /// The endpoint the stream is open on, if one is.
    pub fn endpoint(&self) -> Option<&str> {
        self.stream.as_ref().map(|s| s.endpoint.as_str())
    }

    /// The next events: one or more, in revision order, those of one transaction together.
    /// Waits for as long as nothing changes; a broken stream is resumed on another member
    /// without the caller seeing it.
    ///
    /// Cancel-safe, so it can be one branch of a `tokio::select!`: a batch is either returned
    /// or still in the watch, and a stream half-opened when the future is dropped is opened
    /// again from the same revision by the next call.
    ///
    /// # Errors
    /// [`Error::Compacted`]: list again, then watch from the list's revision + 1.
    /// [`Error::Unavailable`]: no member serves the watch now; calling again retries from the
    /// same revision.
    pub async fn next(&mut self) -> Result<Vec<Event>, Error> {
        let members = self.client.endpoints().len();
        let mut resumed = 0;
        let mut from = self.client.endpoint_list().current();
        loop {
            let stream = match &mut self.stream {
                Some(stream) => stream,
                None => {
                    let stream = self.open(from).await?;
                    self.stream.insert(stream)
                }
            };
            let idle = self.client.timeouts().watch_idle;
            let broken = match stream.message(Instant::now() + idle).await {
                Ok(Some(r)) => match read(r) {
                    Read::Events(events) => {
                        let last = events.last().map_or(0, |e| e.kv.mod_revision);
                        self.next_revision = self.next_revision.max(last + 1);
                        return Ok(events);
                    }
                    Read::Nothing => continue,
                    Read::Compacted(compacted) => {
                        self.stream = None;
                        return Err(Error::Compacted {
                            requested: self.next_revision,
                            compacted: Some(compacted),
                        });
                    }
                    Read::Cancelled(reason) => reason,
                },
                // Quiet: nothing changed, or the member is gone without closing the connection
                // (stopped, or cut off). Only asking it tells which.
                Ok(None) => match self.client.member_status(&stream.endpoint).await {
                    Ok(status) if status.has_leader() => continue,
                    Ok(_) => "the member has no leader".to_owned(),
                    Err(err) => err.to_string(),
                },
                Err(reason) => reason,
            };
            tracing::warn!(
                endpoint = %stream.endpoint,
                reason = %broken,
                next_revision = self.next_revision,
                "etcd watch broken; resuming on another member"
            );
            let endpoint = stream.endpoint.clone();
            from = stream.index + 1;
            self.stream = None;
            resumed += 1;
            // A stream that breaks as soon as it opens, on every member, must not spin.
            if resumed > members {
                return Err(Error::Unavailable {
                    call: "/v3/watch",
                    tried: vec![(endpoint, broken)],
                });
            }
        }
    }

    /// Opens a stream from `next_revision` on the first member that accepts, trying them in
    /// ring order from `from`.
    async fn open(&mut self, from: usize) -> Result<Stream, Error> {
        let urls = self.client.endpoints().to_vec();
        let mut tried = Vec::new();
        for k in 0..urls.len() {
            let index = (from + k) % urls.len();
            let endpoint = urls[index].clone();
            let deadline = Instant::now() + self.client.timeouts().request;
            match timeout_at(deadline, self.create(index, &endpoint, deadline)).await {
                Ok(Ok((stream, revision))) => {
                    self.client.endpoint_list().answered(index);
                    // "From now": the first event will come after the revision it began at.
                    if self.next_revision <= 0 {
                        self.next_revision = revision + 1;
                    }
                    return Ok(stream);
                }
                Ok(Err(OpenError::Compacted(compacted))) => {
                    return Err(Error::Compacted {
                        requested: self.next_revision,
                        compacted: Some(compacted),
                    });
                }
                Ok(Err(OpenError::Failed(reason))) => tried.push((endpoint, reason)),
                Err(_) => tried.push((
                    endpoint,
                    format!("no answer within {:?}", self.client.timeouts().request),
                )),
            }
        }
        Err(Error::Unavailable {
            call: "/v3/watch",
            tried,
        })
    }

    /// Asks one member for a stream and waits for its `created`, which comes with the revision
    /// the stream began at.
    async fn create(
        &self,
        index: usize,
        endpoint: &str,
        deadline: Instant,
    ) -> Result<(Stream, i64), OpenError> {
        let (key, range_end) = self.keys.wire();
        let request = wire::WatchRequest::CreateRequest(wire::WatchCreate {
            key,
            range_end,
            start_revision: self.next_revision,
        });
        let body = Bytes::from(serde_json::to_vec(&request).expect("requests serialise"));
        let response = self
            .client
            .open(endpoint, "/v3/watch", body, true)
            .await
            .map_err(OpenError::Failed)?;
        let status = response.status();
        if status != StatusCode::OK {
            let body = response.into_body().collect().await.map(|b| b.to_bytes());
            let reason = match read_answer(status, body.unwrap_or_default()) {
                Answer::Refused { message, .. } => message,
                Answer::Ok(_) => status.to_string(),
            };
            return Err(OpenError::Failed(reason));
        }
        let mut stream = Stream {
            index,
            endpoint: endpoint.to_owned(),
            body: response.into_body(),
            partial: Vec::new(),
            lines: VecDeque::new(),
        };
        match stream.message(deadline).await {
            Ok(Some(r)) if r.canceled && r.compact_revision > 0 => {
                Err(OpenError::Compacted(r.compact_revision))
            }
            Ok(Some(r)) if r.canceled => {
                Err(OpenError::Failed(format!("cancelled: {}", r.cancel_reason)))
            }
            // etcd sends `created` alone; events never ride on it.
            Ok(Some(r)) if r.created => Ok((stream, r.header.revision)),
            Ok(Some(r)) => Err(OpenError::Failed(format!("expected `created`, got {r:?}"))),
            Ok(None) => Err(OpenError::Failed("no `created` in time".to_owned())),
            Err(reason) => Err(OpenError::Failed(reason)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(json: &str) -> wire::WatchResponse {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn what_a_message_means() {
        let put = KeyValue {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
            create_revision: 3,
            mod_revision: 3,
            version: 1,
            lease: None,
        };
        let deleted = KeyValue {
            key: b"k".to_vec(),
            value: Vec::new(),
            create_revision: 0,
            mod_revision: 4,
            version: 0,
            lease: None,
        };
        let cases = [
            (
                r#"{"events":[{"kv":{"key":"aw==","value":"dg==","create_revision":"3","mod_revision":"3","version":"1"}},
                   {"type":"DELETE","kv":{"key":"aw==","mod_revision":"4"}}]}"#,
                Read::Events(vec![
                    Event {
                        kind: EventKind::Put,
                        kv: put,
                    },
                    Event {
                        kind: EventKind::Delete,
                        kv: deleted,
                    },
                ]),
            ),
            (r#"{"header":{"revision":"9"}}"#, Read::Nothing),
            (
                r#"{"created":true,"header":{"revision":"9"}}"#,
                Read::Nothing,
            ),
            (
                r#"{"canceled":true,"compact_revision":"7"}"#,
                Read::Compacted(7),
            ),
            (
                r#"{"canceled":true,"cancel_reason":"etcdserver: no leader"}"#,
                Read::Cancelled("cancelled: etcdserver: no leader".to_owned()),
            ),
        ];
        for (json, want) in cases {
            assert_eq!(read(response(json)), want, "{json}");
        }
    }
}
