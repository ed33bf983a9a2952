//! The gateway's JSON: etcd's protobuf messages as grpc-gateway renders them, and the pure
//! functions that turn them into this crate's types.
//!
//! Three habits of that rendering decide the shapes here: 64-bit integers travel as strings
//! (`"revision":"2"`), bytes as base64, and every field at its zero value is left out (a failed
//! transaction has no `succeeded`, a put event no `type`, an unknown lease's keepalive no `TTL`).
//! So every field is optional with a zero default, and integers are read from either form.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Deserializer, Serialize};

/// A 64-bit integer field: read from `"12"` or `12`; absent is 0.
fn int<'de, D, T>(de: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: std::str::FromStr + TryFrom<u64> + TryFrom<i64> + Default,
    <T as std::str::FromStr>::Err: std::fmt::Display,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Text(String),
        Unsigned(u64),
        Signed(i64),
    }
    let out_of_range =
        |n: &dyn std::fmt::Display| serde::de::Error::custom(format!("{n} out of range"));
    match Option::<Either>::deserialize(de)? {
        None => Ok(T::default()),
        Some(Either::Text(s)) => s.parse().map_err(serde::de::Error::custom),
        Some(Either::Unsigned(n)) => T::try_from(n).map_err(|_| out_of_range(&n)),
        Some(Either::Signed(n)) => T::try_from(n).map_err(|_| out_of_range(&n)),
    }
}

/// A bytes field: base64 text; absent is empty.
fn b64<'de, D: Deserializer<'de>>(de: D) -> Result<Vec<u8>, D::Error> {
    match Option::<String>::deserialize(de)? {
        None => Ok(Vec::new()),
        Some(s) => B64.decode(s).map_err(serde::de::Error::custom),
    }
}

/// Bytes as the gateway wants them in a request.
pub(crate) fn encode(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

/// The end of the range that holds every key starting with `prefix`: the prefix with its last
/// byte below 0xff incremented and what follows dropped. A prefix of only 0xff bytes (or none)
/// has no such end; etcd reads `"\0"` as "to the end of the keyspace".
pub(crate) fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Header {
    #[serde(deserialize_with = "int")]
    pub(crate) cluster_id: u64,
    #[serde(deserialize_with = "int")]
    pub(crate) member_id: u64,
    #[serde(deserialize_with = "int")]
    pub(crate) revision: i64,
    #[serde(deserialize_with = "int")]
    pub(crate) raft_term: u64,
}

#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub(crate) struct Kv {
    #[serde(deserialize_with = "b64")]
    pub(crate) key: Vec<u8>,
    #[serde(deserialize_with = "b64")]
    pub(crate) value: Vec<u8>,
    #[serde(deserialize_with = "int")]
    pub(crate) create_revision: i64,
    #[serde(deserialize_with = "int")]
    pub(crate) mod_revision: i64,
    #[serde(deserialize_with = "int")]
    pub(crate) version: i64,
    #[serde(deserialize_with = "int")]
    pub(crate) lease: i64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RangeResponse {
    pub(crate) header: Header,
    pub(crate) kvs: Vec<Kv>,
    #[serde(deserialize_with = "int")]
    pub(crate) count: i64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct PutResponse {
    pub(crate) header: Header,
    pub(crate) prev_kv: Option<Kv>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct DeleteResponse {
    pub(crate) header: Header,
    #[serde(deserialize_with = "int")]
    pub(crate) deleted: i64,
    pub(crate) prev_kvs: Vec<Kv>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct OpResponse {
    pub(crate) response_range: Option<RangeResponse>,
    pub(crate) response_put: Option<PutResponse>,
    pub(crate) response_delete_range: Option<DeleteResponse>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct TxnResponse {
    pub(crate) header: Header,
    pub(crate) succeeded: bool,
    pub(crate) responses: Vec<OpResponse>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct CompactResponse {
    pub(crate) header: Header,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct LeaseGrantResponse {
    pub(crate) header: Header,
    #[serde(rename = "ID", deserialize_with = "int")]
    pub(crate) id: i64,
    #[serde(rename = "TTL", deserialize_with = "int")]
    pub(crate) ttl: i64,
    pub(crate) error: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct LeaseKeepAliveResponse {
    pub(crate) header: Header,
    #[serde(rename = "ID", deserialize_with = "int")]
    pub(crate) id: i64,
    #[serde(rename = "TTL", deserialize_with = "int")]
    pub(crate) ttl: i64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct LeaseRevokeResponse {
    pub(crate) header: Header,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct StatusResponse {
    pub(crate) header: Header,
    pub(crate) version: String,
    #[serde(rename = "dbSize", deserialize_with = "int")]
    pub(crate) db_size: i64,
    #[serde(deserialize_with = "int")]
    pub(crate) leader: u64,
    #[serde(rename = "raftIndex", deserialize_with = "int")]
    pub(crate) raft_index: u64,
    #[serde(rename = "raftTerm", deserialize_with = "int")]
    pub(crate) raft_term: u64,
    #[serde(rename = "raftAppliedIndex", deserialize_with = "int")]
    pub(crate) raft_applied_index: u64,
    pub(crate) errors: Vec<String>,
    #[serde(rename = "isLearner")]
    pub(crate) is_learner: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct MemberWire {
    #[serde(rename = "ID", deserialize_with = "int")]
    pub(crate) id: u64,
    pub(crate) name: String,
    #[serde(rename = "peerURLs")]
    pub(crate) peer_urls: Vec<String>,
    #[serde(rename = "clientURLs")]
    pub(crate) client_urls: Vec<String>,
    #[serde(rename = "isLearner")]
    pub(crate) is_learner: bool,
}

/// `MemberAdd`: the new member, and the list it makes (the new member's `--initial-cluster`).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct MemberAddResponse {
    pub(crate) member: MemberWire,
    pub(crate) members: Vec<MemberWire>,
}

#[derive(Debug, Serialize)]
pub(crate) struct MemberAddRequest<'a> {
    #[serde(rename = "peerURLs")]
    pub(crate) peer_urls: &'a [String],
    #[serde(rename = "isLearner")]
    pub(crate) is_learner: bool,
}

/// `MemberPromote` and `MemberRemove` name the member by id, a 64-bit integer sent as a string.
#[derive(Debug, Serialize)]
pub(crate) struct MemberIdRequest {
    #[serde(rename = "ID")]
    pub(crate) id: String,
}

/// An answer whose content is not needed, only that it came.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Ignored {}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct MemberListResponse {
    pub(crate) header: Header,
    pub(crate) members: Vec<MemberWire>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct EventWire {
    /// `"PUT"` is the zero value and so never appears.
    #[serde(rename = "type")]
    pub(crate) kind: String,
    pub(crate) kv: Kv,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct WatchResponse {
    pub(crate) header: Header,
    pub(crate) created: bool,
    pub(crate) canceled: bool,
    #[serde(deserialize_with = "int")]
    pub(crate) compact_revision: i64,
    pub(crate) cancel_reason: String,
    pub(crate) events: Vec<EventWire>,
}

/// The error the gateway answers a unary call with (and, nested, ends a stream with).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Status {
    /// A gRPC code: 14 Unavailable, 4 DeadlineExceeded, 11 OutOfRange...
    #[serde(alias = "grpc_code")]
    pub(crate) code: i32,
    pub(crate) message: String,
}

/// One message of a streaming call: a result, or the error that ends the stream.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum StreamMessage<T> {
    Result(T),
    Error(Status),
}

/// Takes the complete newline-delimited messages off the front of `buf`, leaving a partial one.
/// The gateway ends each message of a stream with `\n`; blank lines are skipped.
pub(crate) fn take_lines(buf: &mut Vec<u8>) -> Vec<Vec<u8>> {
    let mut lines = Vec::new();
    while let Some(end) = buf.iter().position(|&b| b == b'\n') {
        let line: Vec<u8> = buf.drain(..=end).collect();
        let line = &line[..line.len() - 1];
        if !line.iter().all(u8::is_ascii_whitespace) {
            lines.push(line.to_vec());
        }
    }
    lines
}

// Requests: only what this crate sends, with zero values left out as the gateway would.

#[derive(Debug, Default, Serialize)]
pub(crate) struct RangeRequest {
    pub(crate) key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) range_end: Option<String>,
    #[serde(skip_serializing_if = "is_zero")]
    pub(crate) revision: i64,
}

#[derive(Debug, Default, Serialize)]
pub(crate) struct PutRequest {
    pub(crate) key: String,
    pub(crate) value: String,
    #[serde(skip_serializing_if = "is_zero")]
    pub(crate) lease: i64,
}

#[derive(Debug, Default, Serialize)]
pub(crate) struct DeleteRequest {
    pub(crate) key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) range_end: Option<String>,
}

#[derive(Debug, Serialize)]
pub(crate) struct Compare {
    pub(crate) key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) range_end: Option<String>,
    /// EQUAL, GREATER, LESS, NOT_EQUAL.
    pub(crate) result: &'static str,
    /// VERSION, CREATE, MOD, VALUE, LEASE.
    pub(crate) target: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) version: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) create_revision: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) mod_revision: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) value: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) lease: Option<i64>,
}

#[derive(Debug, Serialize)]
pub(crate) enum RequestOp {
    #[serde(rename = "request_range")]
    Range(RangeRequest),
    #[serde(rename = "request_put")]
    Put(PutRequest),
    #[serde(rename = "request_delete_range")]
    DeleteRange(DeleteRequest),
}

#[derive(Debug, Default, Serialize)]
pub(crate) struct TxnRequest {
    pub(crate) compare: Vec<Compare>,
    pub(crate) success: Vec<RequestOp>,
    pub(crate) failure: Vec<RequestOp>,
}

#[derive(Debug, Serialize)]
pub(crate) struct WatchCreate {
    pub(crate) key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) range_end: Option<String>,
    pub(crate) start_revision: i64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum WatchRequest {
    CreateRequest(WatchCreate),
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends() {
        let cases: &[(&[u8], &[u8])] = &[
            (b"/weave/v1/dns/", b"/weave/v1/dns0"),
            (b"a", b"b"),
            (b"a\xff", b"b"),
            (b"a\xfe", b"a\xff"),
            (b"\xff\xff", b"\0"),
            (b"", b"\0"),
        ];
        for (prefix, end) in cases {
            assert_eq!(prefix_end(prefix), end.to_vec(), "{prefix:?}");
        }
    }

    #[test]
    fn integers_come_as_strings_numbers_or_not_at_all() {
        let cases = [
            (
                r#"{"revision":"42","member_id":"13668033151171901709"}"#,
                42,
                13668033151171901709,
            ),
            (r#"{"revision":42}"#, 42, 0),
            (r#"{}"#, 0, 0),
        ];
        for (json, revision, member) in cases {
            let header: Header = serde_json::from_str(json).unwrap();
            assert_eq!(
                (header.revision, header.member_id),
                (revision, member),
                "{json}"
            );
        }
        assert!(serde_json::from_str::<Header>(r#"{"revision":"x"}"#).is_err());
    }

    #[test]
    fn a_failed_txn_omits_succeeded_and_its_range_reads_the_owner() {
        let json = r#"{"header":{"revision":"4"},"responses":[{"response_range":{"header":
            {"revision":"4"},"kvs":[{"key":"Zm9v","create_revision":"4","mod_revision":"4",
            "version":"1","value":"YmFy"}],"count":"1"}}]}"#;
        let txn: TxnResponse = serde_json::from_str(json).unwrap();
        assert!(!txn.succeeded);
        let kvs = &txn.responses[0].response_range.as_ref().unwrap().kvs;
        assert_eq!(kvs[0].key, b"foo");
        assert_eq!(kvs[0].value, b"bar");
        assert_eq!(kvs[0].create_revision, 4);
    }

    #[test]
    fn watch_messages() {
        let put = r#"{"result":{"header":{"revision":"3"},"events":[{"kv":{"key":"Zm9v",
            "mod_revision":"3","value":"YmFy"}}]}}"#;
        let Ok(StreamMessage::Result(w)) =
            serde_json::from_str::<StreamMessage<WatchResponse>>(put)
        else {
            panic!("not a result")
        };
        assert_eq!(w.events[0].kind, "");
        assert_eq!(w.events[0].kv.mod_revision, 3);

        let compacted = r#"{"result":{"header":{},"canceled":true,"compact_revision":"2"}}"#;
        let Ok(StreamMessage::Result(w)) =
            serde_json::from_str::<StreamMessage<WatchResponse>>(compacted)
        else {
            panic!("not a result")
        };
        assert!(w.canceled);
        assert_eq!(w.compact_revision, 2);

        let error = r#"{"error":{"grpc_code":14,"http_code":503,"message":"no leader"}}"#;
        let Ok(StreamMessage::Error(s)) =
            serde_json::from_str::<StreamMessage<WatchResponse>>(error)
        else {
            panic!("not an error")
        };
        assert_eq!((s.code, s.message.as_str()), (14, "no leader"));
    }

    #[test]
    fn lines_are_taken_whole() {
        /// Input, the lines taken, what is left.
        type Case = (&'static [u8], &'static [&'static [u8]], &'static [u8]);
        let cases: &[Case] = &[
            (b"{a}\n{b}\n{c", &[b"{a}", b"{b}"], b"{c"),
            (b"{a}", &[], b"{a}"),
            (b"\n \n{a}\n", &[b"{a}"], b""),
            (b"", &[], b""),
        ];
        for (input, lines, rest) in cases {
            let mut buf = input.to_vec();
            assert_eq!(take_lines(&mut buf), lines.to_vec(), "{input:?}");
            assert_eq!(buf, rest.to_vec(), "{input:?}");
        }
    }

    #[test]
    fn requests_leave_zero_values_out() {
        let put = PutRequest {
            key: encode(b"k"),
            value: encode(b"v"),
            lease: 0,
        };
        assert_eq!(
            serde_json::to_string(&put).unwrap(),
            r#"{"key":"aw==","value":"dg=="}"#
        );
        let op = RequestOp::DeleteRange(DeleteRequest {
            key: encode(b"k"),
            range_end: None,
        });
        assert_eq!(
            serde_json::to_string(&op).unwrap(),
            r#"{"request_delete_range":{"key":"aw=="}}"#
        );
        let watch = WatchRequest::CreateRequest(WatchCreate {
            key: encode(b"k"),
            range_end: Some(encode(b"l")),
            start_revision: 7,
        });
        assert_eq!(
            serde_json::to_string(&watch).unwrap(),
            r#"{"create_request":{"key":"aw==","range_end":"bA==","start_revision":7}}"#
        );
    }
}
