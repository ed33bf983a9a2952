//! Keys and values: reads with the revision they were read at, puts, deletes, and
//! transactions, among them the create-if-absent that claims an IPAM block (MULTIHOST.md §4.2).

use crate::lease::LeaseId;
use crate::wire::{self, encode, prefix_end};
use crate::{Client, Error};

/// The keys a read, delete or watch is about: one key, or every key under a prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Keys {
    One(Vec<u8>),
    Prefix(Vec<u8>),
}

impl Keys {
    /// Just `key`.
    pub fn key(key: impl AsRef<[u8]>) -> Self {
        Self::One(key.as_ref().to_vec())
    }

    /// Every key that starts with `prefix`.
    pub fn prefix(prefix: impl AsRef<[u8]>) -> Self {
        Self::Prefix(prefix.as_ref().to_vec())
    }

    /// The request's `key` and `range_end`, base64.
    pub(crate) fn wire(&self) -> (String, Option<String>) {
        match self {
            Self::One(key) => (encode(key), None),
            Self::Prefix(prefix) => (encode(prefix), Some(encode(&prefix_end(prefix)))),
        }
    }
}

/// A key as stored, with its history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    /// The revision that created it (since its last deletion).
    pub create_revision: i64,
    /// The revision that last wrote it.
    pub mod_revision: i64,
    /// How many times it was written since its creation.
    pub version: i64,
    /// The lease it is bound to, if any.
    pub lease: Option<LeaseId>,
}

impl From<wire::Kv> for KeyValue {
    fn from(kv: wire::Kv) -> Self {
        Self {
            key: kv.key,
            value: kv.value,
            create_revision: kv.create_revision,
            mod_revision: kv.mod_revision,
            version: kv.version,
            lease: (kv.lease != 0).then_some(LeaseId(kv.lease)),
        }
    }
}

/// What a read found, and the store's revision it was read at: a watch from `revision + 1`
/// misses nothing that happened after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    pub revision: i64,
    /// In key order.
    pub kvs: Vec<KeyValue>,
}

impl Range {
    fn from_wire(r: wire::RangeResponse) -> Self {
        Self {
            revision: r.header.revision,
            kvs: r.kvs.into_iter().map(KeyValue::from).collect(),
        }
    }

    /// The first (for a single key, the only) key found.
    pub fn first(&self) -> Option<&KeyValue> {
        self.kvs.first()
    }
}

/// What a delete did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deleted {
    pub revision: i64,
    /// How many keys it deleted.
    pub deleted: i64,
}

/// The outcome of [`Client::create`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    /// The key was absent and now holds the value, written at `revision`.
    Created { revision: i64 },
    /// The key was there already: its owner (whoever wrote it; possibly this caller, when a
    /// retried request had in fact been applied).
    Exists(KeyValue),
}

/// How a [`Compare`] compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Equal,
    NotEqual,
    Greater,
    Less,
}

impl CmpOp {
    fn wire(self) -> &'static str {
        match self {
            Self::Equal => "EQUAL",
            Self::NotEqual => "NOT_EQUAL",
            Self::Greater => "GREATER",
            Self::Less => "LESS",
        }
    }
}

/// One condition of a [`Txn`].
#[derive(Debug)]
pub struct Compare(wire::Compare);

impl Compare {
    fn base(key: &[u8], op: CmpOp, target: &'static str) -> wire::Compare {
        wire::Compare {
            key: encode(key),
            range_end: None,
            result: op.wire(),
            target,
            version: None,
            create_revision: None,
            mod_revision: None,
            value: None,
            lease: None,
        }
    }

    /// `key` does not exist (its create revision is 0).
    pub fn absent(key: impl AsRef<[u8]>) -> Self {
        Self::create_revision(key, CmpOp::Equal, 0)
    }

    /// Compares `key`'s create revision.
    pub fn create_revision(key: impl AsRef<[u8]>, op: CmpOp, revision: i64) -> Self {
        let mut c = Self::base(key.as_ref(), op, "CREATE");
        c.create_revision = Some(revision);
        Self(c)
    }

    /// Compares `key`'s last-write revision (`Equal` to what was read: unchanged since).
    pub fn mod_revision(key: impl AsRef<[u8]>, op: CmpOp, revision: i64) -> Self {
        let mut c = Self::base(key.as_ref(), op, "MOD");
        c.mod_revision = Some(revision);
        Self(c)
    }

    /// Compares `key`'s version (its number of writes).
    pub fn version(key: impl AsRef<[u8]>, op: CmpOp, version: i64) -> Self {
        let mut c = Self::base(key.as_ref(), op, "VERSION");
        c.version = Some(version);
        Self(c)
    }

    /// Compares `key`'s value.
    pub fn value(key: impl AsRef<[u8]>, op: CmpOp, value: impl AsRef<[u8]>) -> Self {
        let mut c = Self::base(key.as_ref(), op, "VALUE");
        c.value = Some(encode(value.as_ref()));
        Self(c)
    }
}

/// One operation of a [`Txn`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Get(Keys),
    Put {
        key: Vec<u8>,
        value: Vec<u8>,
        lease: Option<LeaseId>,
    },
    Delete(Keys),
}

impl Op {
    /// Puts `value` at `key`, unbound.
    pub fn put(key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Self {
        Self::Put {
            key: key.as_ref().to_vec(),
            value: value.as_ref().to_vec(),
            lease: None,
        }
    }

    fn wire(&self) -> wire::RequestOp {
        match self {
            Self::Get(keys) => {
                let (key, range_end) = keys.wire();
                wire::RequestOp::Range(wire::RangeRequest {
                    key,
                    range_end,
                    revision: 0,
                })
            }
            Self::Put { key, value, lease } => wire::RequestOp::Put(wire::PutRequest {
                key: encode(key),
                value: encode(value),
                lease: lease.map_or(0, |l| l.0),
            }),
            Self::Delete(keys) => {
                let (key, range_end) = keys.wire();
                wire::RequestOp::DeleteRange(wire::DeleteRequest { key, range_end })
            }
        }
    }
}

/// A transaction: if every compare holds, the `then` operations, else the `otherwise` ones, all
/// at one revision.
#[derive(Debug, Default)]
pub struct Txn {
    compares: Vec<Compare>,
    then: Vec<Op>,
    otherwise: Vec<Op>,
}

impl Txn {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a condition.
    pub fn when(mut self, compare: Compare) -> Self {
        self.compares.push(compare);
        self
    }

    /// Adds an operation done when every condition holds.
    pub fn then(mut self, op: Op) -> Self {
        self.then.push(op);
        self
    }

    /// Adds an operation done when a condition fails.
    pub fn otherwise(mut self, op: Op) -> Self {
        self.otherwise.push(op);
        self
    }

    fn wire(self) -> wire::TxnRequest {
        wire::TxnRequest {
            compare: self.compares.into_iter().map(|c| c.0).collect(),
            success: self.then.iter().map(Op::wire).collect(),
            failure: self.otherwise.iter().map(Op::wire).collect(),
        }
    }
}

/// The result of one [`Op`] of a transaction, in the order of the branch that ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpResult {
    Get(Range),
    Put,
    Delete(Deleted),
}

/// What a transaction did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnResult {
    /// Every compare held, and the `then` branch ran.
    pub succeeded: bool,
    pub revision: i64,
    pub results: Vec<OpResult>,
}

impl TxnResult {
    fn from_wire(t: wire::TxnResponse) -> Self {
        let revision = t.header.revision;
        let results = t
            .responses
            .into_iter()
            .filter_map(|r| {
                if let Some(range) = r.response_range {
                    Some(OpResult::Get(Range::from_wire(range)))
                } else if r.response_put.is_some() {
                    Some(OpResult::Put)
                } else {
                    r.response_delete_range.map(|d| {
                        OpResult::Delete(Deleted {
                            revision: d.header.revision,
                            deleted: d.deleted,
                        })
                    })
                }
            })
            .collect();
        Self {
            succeeded: t.succeeded,
            revision,
            results,
        }
    }
}

/// The create-if-absent transaction's outcome, read from its result.
fn created(result: TxnResult) -> Result<Created, TxnResult> {
    if result.succeeded {
        return Ok(Created::Created {
            revision: result.revision,
        });
    }
    match result.results.first() {
        Some(OpResult::Get(range)) if !range.kvs.is_empty() => {
            Ok(Created::Exists(range.kvs[0].clone()))
        }
        _ => Err(result),
    }
}

impl Client {
    /// Reads `keys` at the current revision (linearizable: a member without quorum cannot
    /// answer, and the request moves on to one that can).
    ///
    /// # Errors
    /// [`Error::Unavailable`] when no member answers.
    pub async fn get(&self, keys: &Keys) -> Result<Range, Error> {
        self.range(keys, 0).await
    }

    /// Reads `keys` as they were at `revision`.
    ///
    /// # Errors
    /// [`Error::Compacted`] when that revision is gone; [`Error::Unavailable`].
    pub async fn get_at(&self, keys: &Keys, revision: i64) -> Result<Range, Error> {
        self.range(keys, revision).await
    }

    async fn range(&self, keys: &Keys, revision: i64) -> Result<Range, Error> {
        let (key, range_end) = keys.wire();
        let request = wire::RangeRequest {
            key,
            range_end,
            revision,
        };
        match self.call("/v3/kv/range", &request).await {
            Ok(r) => Ok(Range::from_wire(r)),
            Err(Error::Refused { code: 11, .. }) => Err(Error::Compacted {
                requested: revision,
                compacted: None,
            }),
            Err(err) => Err(err),
        }
    }

    /// Puts `value` at `key`, bound to `lease` if given (the key goes when the lease does).
    /// Returns the revision of the write.
    ///
    /// # Errors
    /// [`Error::LeaseNotFound`] when the lease has expired; [`Error::Unavailable`].
    pub async fn put(
        &self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
        lease: Option<LeaseId>,
    ) -> Result<i64, Error> {
        let request = wire::PutRequest {
            key: encode(key.as_ref()),
            value: encode(value.as_ref()),
            lease: lease.map_or(0, |l| l.0),
        };
        let r: wire::PutResponse = self
            .call("/v3/kv/put", &request)
            .await
            .map_err(|err| lease_error(err, lease))?;
        Ok(r.header.revision)
    }

    /// Deletes `keys`.
    ///
    /// # Errors
    /// [`Error::Unavailable`].
    pub async fn delete(&self, keys: &Keys) -> Result<Deleted, Error> {
        let (key, range_end) = keys.wire();
        let r: wire::DeleteResponse = self
            .call(
                "/v3/kv/deleterange",
                &wire::DeleteRequest { key, range_end },
            )
            .await?;
        Ok(Deleted {
            revision: r.header.revision,
            deleted: r.deleted,
        })
    }

    /// Runs a transaction.
    ///
    /// # Errors
    /// [`Error::Refused`] for a malformed one (the same key put twice); [`Error::Unavailable`].
    pub async fn txn(&self, txn: Txn) -> Result<TxnResult, Error> {
        let r: wire::TxnResponse = self.call("/v3/kv/txn", &txn.wire()).await?;
        Ok(TxnResult::from_wire(r))
    }

    /// Puts `value` at `key` only if `key` does not exist; if it does, says who has it. One
    /// transaction: `create_revision(key) == 0` then put, else read.
    ///
    /// # Errors
    /// [`Error::LeaseNotFound`]; [`Error::Unavailable`].
    pub async fn create(
        &self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
        lease: Option<LeaseId>,
    ) -> Result<Created, Error> {
        let key = key.as_ref();
        let txn = Txn::new()
            .when(Compare::absent(key))
            .then(Op::Put {
                key: key.to_vec(),
                value: value.as_ref().to_vec(),
                lease,
            })
            .otherwise(Op::Get(Keys::key(key)));
        let result = self.txn(txn).await.map_err(|err| lease_error(err, lease))?;
        // The read runs in the same revision as the failed compare, so the key is there; an
        // empty read would mean etcd broke its own transaction.
        created(result).map_err(|result| Error::Garbled {
            endpoint: self.current_endpoint().to_owned(),
            call: "/v3/kv/txn",
            reason: format!("create-if-absent failed but read nothing: {result:?}"),
        })
    }

    /// Discards the history before `revision`: watches and reads from before it get
    /// [`Error::Compacted`]. etcd members weave runs compact on their own; this is for tests
    /// and tools.
    ///
    /// # Errors
    /// [`Error::Refused`] when `revision` is already compacted or in the future.
    pub async fn compact(&self, revision: i64) -> Result<(), Error> {
        #[derive(serde::Serialize)]
        struct CompactionRequest {
            revision: i64,
            physical: bool,
        }
        // physical: answer once the data is gone, so a watch from before it sees the compaction.
        let _: wire::CompactResponse = self
            .call(
                "/v3/kv/compaction",
                &CompactionRequest {
                    revision,
                    physical: true,
                },
            )
            .await?;
        Ok(())
    }
}

/// etcd's "requested lease not found" (NotFound) as [`Error::LeaseNotFound`].
pub(crate) fn lease_error(err: Error, lease: Option<LeaseId>) -> Error {
    match (err, lease) {
        (
            Error::Refused {
                code: 5, message, ..
            },
            Some(id),
        ) if message.contains("lease not found") => Error::LeaseNotFound { id: id.0 },
        (err, _) => err,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str, value: &str) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: value.into(),
            create_revision: 3,
            mod_revision: 3,
            version: 1,
            lease: None,
        }
    }

    #[test]
    fn create_outcomes() {
        let range = |kvs: Vec<KeyValue>| OpResult::Get(Range { revision: 4, kvs });
        let cases = [
            (
                true,
                vec![OpResult::Put],
                Ok(Created::Created { revision: 4 }),
            ),
            (
                false,
                vec![range(vec![kv("b", "host-a")])],
                Ok(Created::Exists(kv("b", "host-a"))),
            ),
            (false, vec![range(vec![])], Err(())),
            (false, vec![], Err(())),
        ];
        for (succeeded, results, want) in cases {
            let result = TxnResult {
                succeeded,
                revision: 4,
                results,
            };
            assert_eq!(created(result.clone()).map_err(|_| ()), want, "{result:?}");
        }
    }

    #[test]
    fn keys_on_the_wire() {
        assert_eq!(Keys::key("a").wire(), (encode(b"a"), None));
        assert_eq!(
            Keys::prefix("a/").wire(),
            (encode(b"a/"), Some(encode(b"a0")))
        );
    }

    #[test]
    fn the_create_txn_compares_create_revision_with_zero() {
        let txn = Txn::new()
            .when(Compare::absent("k"))
            .then(Op::put("k", "v"))
            .otherwise(Op::Get(Keys::key("k")));
        let json = serde_json::to_value(txn.wire()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "compare": [{"key": "aw==", "result": "EQUAL", "target": "CREATE", "create_revision": 0}],
                "success": [{"request_put": {"key": "aw==", "value": "dg=="}}],
                "failure": [{"request_range": {"key": "aw=="}}],
            })
        );
    }

    #[test]
    fn lease_not_found_is_told_apart() {
        let refused = |code, message: &str| Error::Refused {
            endpoint: "e".into(),
            call: "/v3/kv/put",
            code,
            message: message.into(),
        };
        let lease = Some(LeaseId(7));
        let found = |err| matches!(lease_error(err, lease), Error::LeaseNotFound { id: 7 });
        assert!(found(refused(5, "etcdserver: requested lease not found")));
        assert!(!found(refused(5, "something else not found")));
        assert!(!found(refused(14, "etcdserver: requested lease not found")));
        assert!(!matches!(
            lease_error(refused(5, "etcdserver: requested lease not found"), None),
            Error::LeaseNotFound { .. }
        ));
    }
}
