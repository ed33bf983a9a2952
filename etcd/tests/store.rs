//! The client against one real etcd member: reads, writes, transactions, leases, watches and
//! compaction.

mod common;

use std::time::Duration;

use common::Cluster;
use etcd::{CmpOp, Compare, Created, Error, EventKind, Keys, Op, OpResult, Txn};

#[tokio::test]
async fn reads_see_writes_with_their_revisions() {
    let cluster = Cluster::start(1).await;
    let c = cluster.client();

    let r1 = c.put("/w/peers/a", "va", None).await.unwrap();
    let r2 = c.put("/w/peers/b", "vb", None).await.unwrap();
    c.put("/w/peersx", "outside the prefix", None)
        .await
        .unwrap();
    assert!(r2 > r1);

    let one = c.get(&Keys::key("/w/peers/a")).await.unwrap();
    let kv = one.first().expect("key a");
    assert_eq!(
        (kv.value.as_slice(), kv.mod_revision, kv.create_revision),
        (&b"va"[..], r1, r1)
    );
    assert!(
        one.revision >= r2,
        "a read is at the store's current revision"
    );
    assert!(c.get(&Keys::key("/w/none")).await.unwrap().kvs.is_empty());

    let all = c.get(&Keys::prefix("/w/peers/")).await.unwrap();
    let keys: Vec<&[u8]> = all.kvs.iter().map(|kv| kv.key.as_slice()).collect();
    assert_eq!(keys, [&b"/w/peers/a"[..], b"/w/peers/b"]);

    // Overwrite, then read the past.
    c.put("/w/peers/a", "va2", None).await.unwrap();
    let then = c.get_at(&Keys::key("/w/peers/a"), r2).await.unwrap();
    assert_eq!(then.first().unwrap().value, b"va");
    let now = c.get(&Keys::key("/w/peers/a")).await.unwrap();
    assert_eq!(
        (
            now.first().unwrap().value.as_slice(),
            now.first().unwrap().version
        ),
        (&b"va2"[..], 2)
    );

    let d = c.delete(&Keys::key("/w/peers/a")).await.unwrap();
    assert_eq!(d.deleted, 1);
    let d = c.delete(&Keys::prefix("/w/")).await.unwrap();
    assert_eq!(d.deleted, 2, "b and peersx");
    assert!(c.get(&Keys::prefix("/w/")).await.unwrap().kvs.is_empty());
}

#[tokio::test]
async fn create_if_absent_has_one_winner_and_tells_the_others_who() {
    let cluster = Cluster::start(1).await;
    let c = cluster.client();
    let key = "/weave/v1/ipam/blocks/10.32.0.0-26";

    let claims = (0..6).map(|i| {
        let c = c.clone();
        tokio::spawn(async move { (i, c.create(key, format!("host-{i}"), None).await.unwrap()) })
    });
    let mut winners = Vec::new();
    let mut seen = Vec::new();
    for claim in claims {
        match claim.await.unwrap() {
            (i, Created::Created { revision }) => winners.push((i, revision)),
            (_, Created::Exists(owner)) => seen.push(owner),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one claim wins: {winners:?}");
    let (winner, revision) = winners[0];
    assert_eq!(seen.len(), 5);
    for owner in seen {
        assert_eq!(owner.value, format!("host-{winner}").into_bytes());
        assert_eq!(owner.create_revision, revision);
    }
}

#[tokio::test]
async fn a_transaction_takes_one_branch_at_one_revision() {
    let cluster = Cluster::start(1).await;
    let c = cluster.client();
    let rev = c.put("k", "1", None).await.unwrap();

    // Compare-and-swap on the revision read: the first succeeds, a stale one fails.
    let swap = |expected: i64, value: &'static str| {
        Txn::new()
            .when(Compare::mod_revision("k", CmpOp::Equal, expected))
            .then(Op::put("k", value))
            .then(Op::Get(Keys::key("k")))
            .otherwise(Op::Get(Keys::key("k")))
    };
    let ok = c.txn(swap(rev, "2")).await.unwrap();
    assert!(ok.succeeded);
    assert_eq!(ok.results.len(), 2);
    assert_eq!(ok.results[0], OpResult::Put);
    let OpResult::Get(read) = &ok.results[1] else {
        panic!("{ok:?}")
    };
    assert_eq!(read.first().unwrap().value, b"2");

    let stale = c.txn(swap(rev, "3")).await.unwrap();
    assert!(!stale.succeeded);
    let OpResult::Get(read) = &stale.results[0] else {
        panic!("{stale:?}")
    };
    assert_eq!(
        read.first().unwrap().value,
        b"2",
        "the failure branch read the winner"
    );

    let by_value = Txn::new()
        .when(Compare::value("k", CmpOp::Equal, "2"))
        .when(Compare::version("k", CmpOp::Greater, 1))
        .then(Op::Delete(Keys::key("k")));
    let done = c.txn(by_value).await.unwrap();
    assert!(done.succeeded);
    assert!(matches!(done.results[0], OpResult::Delete(ref d) if d.deleted == 1));
    assert!(c.get(&Keys::key("k")).await.unwrap().kvs.is_empty());
}

#[tokio::test]
async fn a_key_bound_to_a_lease_goes_when_the_lease_expires() {
    let cluster = Cluster::start(1).await;
    let c = cluster.client();
    let lease = c.grant(Duration::from_secs(2)).await.unwrap();
    assert_eq!(lease.ttl, Duration::from_secs(2));
    c.put("/w/alive/a", "since", Some(lease.id)).await.unwrap();
    let kv = c.get(&Keys::key("/w/alive/a")).await.unwrap();
    assert_eq!(kv.first().unwrap().lease, Some(lease.id));

    // No keepalive: gone within the TTL and etcd's expiry check (well under 2 s more).
    let started = std::time::Instant::now();
    while !c
        .get(&Keys::key("/w/alive/a"))
        .await
        .unwrap()
        .kvs
        .is_empty()
    {
        assert!(
            started.elapsed() < Duration::from_secs(6),
            "the key outlived its lease"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "gone too soon: {:?}",
        started.elapsed()
    );

    assert!(matches!(
        c.keep_alive(lease.id).await,
        Err(Error::LeaseNotFound { .. })
    ));
    assert!(matches!(
        c.put("/w/alive/a", "x", Some(lease.id)).await,
        Err(Error::LeaseNotFound { .. })
    ));
    assert!(matches!(
        c.revoke(lease.id).await,
        Err(Error::LeaseNotFound { .. })
    ));
}

#[tokio::test]
async fn keepalive_holds_a_lease_and_revoke_ends_it() {
    let cluster = Cluster::start(1).await;
    let c = cluster.client();
    let lease = c.grant(Duration::from_secs(2)).await.unwrap();
    c.put("/w/alive/b", "since", Some(lease.id)).await.unwrap();

    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(
            c.keep_alive(lease.id).await.unwrap(),
            Duration::from_secs(2)
        );
    }
    assert_eq!(
        c.get(&Keys::key("/w/alive/b")).await.unwrap().kvs.len(),
        1,
        "kept for 4 s"
    );

    c.revoke(lease.id).await.unwrap();
    assert!(
        c.get(&Keys::key("/w/alive/b"))
            .await
            .unwrap()
            .kvs
            .is_empty()
    );
}

#[tokio::test]
async fn a_watch_delivers_puts_and_deletes_in_order_from_its_revision() {
    let cluster = Cluster::start(1).await;
    let c = cluster.client();
    c.put("/w/dns/a", "1", None).await.unwrap();
    let listed = c.get(&Keys::prefix("/w/dns/")).await.unwrap();

    // Written between the list and the watch: the watch from the list's revision sees it.
    let r1 = c.put("/w/dns/b", "2", None).await.unwrap();
    let mut watch = c
        .watch(Keys::prefix("/w/dns/"), listed.revision + 1)
        .await
        .unwrap();
    let r2 = c.put("/w/other", "not watched", None).await.unwrap();
    let r3 = c.delete(&Keys::key("/w/dns/a")).await.unwrap().revision;
    let txn = Txn::new()
        .then(Op::put("/w/dns/c", "3"))
        .then(Op::put("/w/dns/d", "4"));
    let r4 = c.txn(txn).await.unwrap().revision;

    let mut got = Vec::new();
    while got.len() < 4 {
        let batch = tokio::time::timeout(Duration::from_secs(5), watch.next())
            .await
            .unwrap()
            .unwrap();
        got.extend(batch);
    }
    let seen: Vec<(EventKind, &[u8], &[u8], i64)> = got
        .iter()
        .map(|e| {
            (
                e.kind,
                e.kv.key.as_slice(),
                e.kv.value.as_slice(),
                e.kv.mod_revision,
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (EventKind::Put, &b"/w/dns/b"[..], &b"2"[..], r1),
            (EventKind::Delete, b"/w/dns/a", b"", r3),
            (EventKind::Put, b"/w/dns/c", b"3", r4),
            (EventKind::Put, b"/w/dns/d", b"4", r4),
        ]
    );
    assert!(r2 < r3);
    assert_eq!(watch.next_revision(), r4 + 1);

    // From now: nothing of the past.
    let mut now = c.watch(Keys::key("/w/dns/b"), 0).await.unwrap();
    let r5 = c.put("/w/dns/b", "5", None).await.unwrap();
    let batch = tokio::time::timeout(Duration::from_secs(5), now.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((batch.len(), batch[0].kv.mod_revision), (1, r5));
}

#[tokio::test]
async fn a_compacted_revision_is_reported_so_the_caller_lists_again() {
    let cluster = Cluster::start(1).await;
    let c = cluster.client();
    let old = c.put("/w/dns/x", "1", None).await.unwrap();
    c.put("/w/dns/x", "2", None).await.unwrap();
    let latest = c.put("/w/dns/x", "3", None).await.unwrap();
    c.compact(latest).await.unwrap();

    // etcd accepts the watch (`created`), then cancels it: the first `next` says why.
    let mut watch = c.watch(Keys::prefix("/w/dns/"), old).await.unwrap();
    match tokio::time::timeout(Duration::from_secs(5), watch.next())
        .await
        .unwrap()
    {
        Err(Error::Compacted {
            requested,
            compacted,
        }) => {
            assert_eq!((requested, compacted), (old, Some(latest)));
        }
        other => panic!("expected Compacted, got {other:?}"),
    }
    assert!(matches!(
        c.get_at(&Keys::key("/w/dns/x"), old).await,
        Err(Error::Compacted { requested, .. }) if requested == old
    ));

    // What the caller then does: list, and watch from the list's revision + 1.
    let listed = c.get(&Keys::prefix("/w/dns/")).await.unwrap();
    assert_eq!(listed.first().unwrap().value, b"3");
    let mut watch = c
        .watch(Keys::prefix("/w/dns/"), listed.revision + 1)
        .await
        .unwrap();
    let r = c.put("/w/dns/x", "4", None).await.unwrap();
    let batch = tokio::time::timeout(Duration::from_secs(5), watch.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(batch[0].kv.mod_revision, r);
}

#[tokio::test]
async fn status_and_members_of_one_member() {
    let cluster = Cluster::start(1).await;
    let c = cluster.client();
    let rev = c.put("k", "v", None).await.unwrap();

    let status = c.status().await.unwrap();
    assert!(
        status.version.starts_with("3.5."),
        "etcd {}",
        status.version
    );
    assert_eq!(
        status.leader, status.member_id,
        "a single member leads itself"
    );
    assert!(
        status.raft_term >= 1 && status.raft_index >= 1,
        "{status:?}"
    );
    assert_eq!(status.revision, rev);
    assert_eq!(status.endpoint, cluster.endpoint(0));

    let members = c.members().await.unwrap();
    assert_eq!(members.len(), 1);
    assert_eq!(members[0].id, status.member_id);
    assert_eq!(members[0].client_urls, [cluster.endpoint(0)]);
    assert!(members[0].name.ends_with("-m0"));
}

#[tokio::test]
async fn a_keepalive_task_holds_a_lease_until_dropped_and_reports_its_loss() {
    let cluster = Cluster::start(1).await;
    let c = cluster.client();
    let lease = c.grant(Duration::from_secs(2)).await.unwrap();
    c.put("/w/alive/c", "since", Some(lease.id)).await.unwrap();
    let mut keeper = c.keep_alive_every(lease.id, Duration::from_millis(500));
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        c.get(&Keys::key("/w/alive/c")).await.unwrap().kvs.len(),
        1,
        "kept for 4 s"
    );

    // Revoked behind its back (as `weave rmpeer --force` might): the task says so.
    c.revoke(lease.id).await.unwrap();
    let lost = tokio::time::timeout(Duration::from_secs(3), keeper.lost())
        .await
        .unwrap();
    assert!(
        matches!(lost, Error::LeaseNotFound { id } if id == lease.id.0),
        "{lost}"
    );

    // Dropped: the lease is left to expire.
    let lease = c.grant(Duration::from_secs(2)).await.unwrap();
    c.put("/w/alive/d", "since", Some(lease.id)).await.unwrap();
    drop(c.keep_alive_every(lease.id, Duration::from_millis(500)));
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(
        c.get(&Keys::key("/w/alive/d"))
            .await
            .unwrap()
            .kvs
            .is_empty()
    );
}

/// `next` dropped again and again while it waits (as a `select!` branch that loses would be)
/// loses and repeats nothing.
#[tokio::test]
async fn a_watch_loses_nothing_when_next_is_cancelled() {
    let cluster = Cluster::start(1).await;
    let c = cluster.client();
    let mut watch = c.watch(Keys::prefix("/w/n/"), 0).await.unwrap();
    let writer = {
        let c = c.clone();
        tokio::spawn(async move {
            let mut revisions = Vec::new();
            for i in 0..40 {
                revisions.push(c.put(format!("/w/n/{i}"), "v", None).await.unwrap());
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            revisions
        })
    };
    let mut seen = Vec::new();
    let started = std::time::Instant::now();
    while seen.len() < 40 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "only {} events",
            seen.len()
        );
        // Shorter than the gap between writes, so that most calls are cancelled mid-wait.
        if let Ok(batch) = tokio::time::timeout(Duration::from_millis(2), watch.next()).await {
            seen.extend(batch.unwrap().into_iter().map(|e| e.kv.mod_revision));
        }
    }
    assert_eq!(seen, writer.await.unwrap());
}
