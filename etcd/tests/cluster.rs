//! The client against three real etcd members, some of them killed or stopped: failover
//! between endpoints (MULTIHOST.md §3.5, flaw 2), watches that resume on another member (flaw 1),
//! bounded failure without quorum, and the cluster's status.

mod common;

use std::time::{Duration, Instant};

use common::{Cluster, TIMEOUTS, dead_endpoint};
use etcd::{Client, Error, Event, Keys, Watch};

/// The prototype's test: the first endpoint dead, the other two with quorum. It failed 8 times
/// in 9; here every one of 9 fresh clients must work, and a port with no etcd at all in front
/// changes nothing.
#[tokio::test]
async fn a_dead_first_endpoint_is_skipped_by_every_client() {
    let mut cluster = Cluster::start(3).await;
    cluster.kill(0);
    for attempt in 0..9 {
        let endpoints = if attempt % 3 == 2 {
            let mut e = vec![dead_endpoint()];
            e.extend(cluster.endpoints());
            e
        } else {
            cluster.endpoints()
        };
        let c = Client::with_timeouts(&endpoints, TIMEOUTS).unwrap();
        let key = format!("try/{attempt}");
        c.put(&key, "ok", None)
            .await
            .unwrap_or_else(|err| panic!("try {attempt}: {err}"));
        let got = c.get(&Keys::key(&key)).await.unwrap();
        assert_eq!(got.first().unwrap().value, b"ok", "try {attempt}");
        assert_ne!(c.current_endpoint(), cluster.endpoint(0), "try {attempt}");
    }
}

/// A member that accepts connections and never answers (stopped) costs the first request one
/// timeout; after that the client stays on the member that answered.
#[tokio::test]
async fn a_silent_first_endpoint_costs_one_timeout_then_nothing() {
    let mut cluster = Cluster::start(3).await;
    cluster.pause(0);
    let c = cluster.client();

    let started = Instant::now();
    c.put("k", "1", None).await.unwrap();
    let first = started.elapsed();
    assert!(first < TIMEOUTS.request * 2, "first request took {first:?}");
    assert_ne!(c.current_endpoint(), cluster.endpoint(0));

    let started = Instant::now();
    for i in 0..20 {
        c.put("k", i.to_string(), None).await.unwrap();
        c.get(&Keys::key("k")).await.unwrap();
    }
    let rest = started.elapsed();
    assert!(
        rest < Duration::from_secs(2),
        "40 requests took {rest:?}: back on the silent member?"
    );
    cluster.resume(0);
}

/// Without quorum nothing hangs: a write fails within one request timeout per member, and says
/// what each member did.
#[tokio::test]
async fn without_quorum_a_write_fails_in_bounded_time() {
    let mut cluster = Cluster::start(3).await;
    let c = cluster.client();
    c.put("k", "before", None).await.unwrap();
    cluster.kill(1);
    cluster.kill(2);

    let started = Instant::now();
    let err = c.put("k", "after", None).await.unwrap_err();
    let took = started.elapsed();
    assert!(took < TIMEOUTS.request * 4, "took {took:?}");
    let Error::Unavailable { tried, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!(tried.len(), 3, "{err}");

    // Quorum back: writes work again, on the same client.
    cluster.restart(1).await;
    c.put("k", "after", None).await.unwrap();
}

async fn next(watch: &mut Watch, within: Duration) -> Vec<Event> {
    tokio::time::timeout(within, watch.next())
        .await
        .unwrap_or_else(|_| panic!("no event within {within:?}"))
        .unwrap_or_else(|err| panic!("watch: {err}"))
}

/// The revisions of the events read until one at `revision` or later has come.
async fn revisions_until(watch: &mut Watch, revision: i64, within: Duration) -> Vec<i64> {
    let mut got: Vec<i64> = Vec::new();
    while got.last().is_none_or(|&r| r < revision) {
        got.extend(next(watch, within).await.iter().map(|e| e.kv.mod_revision));
    }
    got
}

/// etcd's own history of `keys` from revision `from` to `to`, read by a fresh watch on a
/// healthy member: what a resumed watch must have delivered. It is not simply the writes the
/// test made: a write that timed out on a failing member and was retried on another may have
/// been applied twice (see `Client`'s failover).
async fn history(c: &Client, keys: Keys, from: i64, to: i64) -> Vec<i64> {
    let mut reference = c.watch(keys, from).await.unwrap();
    revisions_until(&mut reference, to, Duration::from_secs(5)).await
}

/// The member a watch is on is killed: the watch goes on on another one, from the revision
/// after its last event, with nothing lost or repeated.
#[tokio::test]
async fn a_watch_resumes_on_another_member_when_its_member_is_killed() {
    let mut cluster = Cluster::start(3).await;
    let c = cluster.client();
    let listed = c.get(&Keys::prefix("/w/dns/")).await.unwrap();
    let mut watch = c
        .watch(Keys::prefix("/w/dns/"), listed.revision + 1)
        .await
        .unwrap();
    let on = cluster.index_of(watch.endpoint().unwrap());

    let r1 = c.put("/w/dns/a", "1", None).await.unwrap();
    let first = revisions_until(&mut watch, r1, Duration::from_secs(5)).await;
    assert_eq!(first, [r1]);

    cluster.kill(on);
    // Written while the watch has no stream; the writer fails over on its own.
    let r2 = c.put("/w/dns/b", "2", None).await.unwrap();
    let r3 = c.delete(&Keys::key("/w/dns/a")).await.unwrap().revision;

    let got = revisions_until(&mut watch, r3, Duration::from_secs(10)).await;
    let want = history(&c, Keys::prefix("/w/dns/"), r1 + 1, r3).await;
    assert_eq!(got, want, "nothing lost, nothing repeated");
    assert!(got.contains(&r2));
    assert_eq!(watch.next_revision(), r3 + 1);
    let now_on = cluster.index_of(watch.endpoint().unwrap());
    assert_ne!(now_on, on);

    // And it keeps going there.
    let r4 = c.put("/w/dns/c", "4", None).await.unwrap();
    assert_eq!(
        next(&mut watch, Duration::from_secs(5)).await[0]
            .kv
            .mod_revision,
        r4
    );
}

/// The member a watch is on stops answering without closing anything (SIGSTOP): the watch
/// notices when it has been quiet for `watch_idle` and the member does not answer a status,
/// and resumes elsewhere.
#[tokio::test]
async fn a_watch_leaves_a_member_that_stops_answering() {
    let mut cluster = Cluster::start(3).await;
    let c = cluster.client();
    let from = c.get(&Keys::key("/w/peers/z")).await.unwrap().revision + 1;
    let mut watch = c.watch(Keys::key("/w/peers/z"), from).await.unwrap();
    let on = cluster.index_of(watch.endpoint().unwrap());

    cluster.pause(on);
    let r = c.put("/w/peers/z", "vtep", None).await.unwrap();
    let started = Instant::now();
    let got = revisions_until(&mut watch, r, Duration::from_secs(15)).await;
    let took = started.elapsed();
    assert_eq!(got, history(&c, Keys::key("/w/peers/z"), from, r).await);
    assert!(
        took < TIMEOUTS.watch_idle + TIMEOUTS.request * 3,
        "resumed after {took:?}"
    );
    assert_ne!(cluster.index_of(watch.endpoint().unwrap()), on);
    cluster.resume(on);
}

#[tokio::test]
async fn status_and_members_of_three() {
    let cluster = Cluster::start(3).await;
    let c = cluster.client();
    let members = c.members().await.unwrap();
    assert_eq!(members.len(), 3);
    let mut urls: Vec<String> = members.iter().flat_map(|m| m.client_urls.clone()).collect();
    urls.sort();
    let mut want = cluster.endpoints();
    want.sort();
    assert_eq!(urls, want);

    let mut leaders = Vec::new();
    for endpoint in cluster.endpoints() {
        let s = c.member_status(&endpoint).await.unwrap();
        assert!(s.has_leader(), "{s:?}");
        assert!(members.iter().any(|m| m.id == s.member_id));
        leaders.push(s.leader);
    }
    leaders.dedup();
    assert_eq!(leaders.len(), 1, "one leader for all: {leaders:?}");
}

/// The watch's member loses its quorum: etcd ends the stream (the watch asks it to require a
/// leader), no other member can take the watch, and `next` says so in bounded time rather than
/// waiting on a member that will never deliver. Called again once quorum is back, it resumes
/// from where it was.
#[tokio::test]
async fn a_watch_without_quorum_anywhere_fails_then_resumes() {
    let mut cluster = Cluster::start(3).await;
    let c = cluster.client();
    let mut watch = c.watch(Keys::prefix("/w/"), 0).await.unwrap();
    let on = cluster.index_of(watch.endpoint().unwrap());
    let r1 = c.put("/w/a", "1", None).await.unwrap();
    assert_eq!(
        next(&mut watch, Duration::from_secs(5)).await[0]
            .kv
            .mod_revision,
        r1
    );

    let others: Vec<usize> = (0..3).filter(|&i| i != on).collect();
    for &i in &others {
        cluster.kill(i);
    }
    let started = Instant::now();
    let result = tokio::time::timeout(Duration::from_secs(30), watch.next())
        .await
        .expect("next() returned within 30 s");
    assert!(
        matches!(result, Err(Error::Unavailable { .. })),
        "{result:?}"
    );
    let took = started.elapsed();
    assert!(took < Duration::from_secs(20), "took {took:?}");

    cluster.restart(others[0]).await;
    let r2 = c.put("/w/b", "2", None).await.unwrap();
    let got = revisions_until(&mut watch, r2, Duration::from_secs(15)).await;
    assert_eq!(got, history(&c, Keys::prefix("/w/"), r1 + 1, r2).await);
    assert_eq!(watch.next_revision(), r2 + 1);
}

/// How a store grows with the hosts that join it: a member added as a learner copies the data,
/// is refused promotion only until it has caught up, then votes and serves; removed, it is gone
/// from the list.
#[tokio::test]
async fn a_learner_catches_up_is_promoted_serves_and_is_removed() {
    let mut cluster = Cluster::start(1).await;
    let c = cluster.client();
    for i in 0..50 {
        c.put(format!("k/{i}"), "v", None).await.unwrap();
    }
    let id = cluster.grow(true).await;
    let members = c.members().await.unwrap();
    assert_eq!(members.len(), 2, "{members:?}");
    let added = members.iter().find(|m| m.id == id).expect("the new member");
    assert!(added.is_learner, "{added:?}");

    let started = Instant::now();
    loop {
        match c.promote_member(id).await {
            Ok(()) => break,
            Err(Error::Refused { message, .. }) if started.elapsed() < Duration::from_secs(20) => {
                eprintln!("not promoted yet: {message}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(err) => panic!("promoting {id:x}: {err}\n{}", cluster.logs()),
        }
    }
    eprintln!("promoted after {:?}", started.elapsed());
    let members = c.members().await.unwrap();
    assert!(members.iter().all(|m| !m.is_learner), "{members:?}");

    let new = Client::with_timeouts([cluster.endpoint(1)], TIMEOUTS).unwrap();
    let got = new.get(&Keys::prefix("k/")).await.unwrap();
    assert_eq!(
        got.kvs.len(),
        50,
        "the new member serves the data it copied"
    );

    assert!(
        matches!(c.promote_member(id).await, Err(Error::Refused { .. })),
        "a voting member cannot be promoted again"
    );
    // etcd refuses to remove a member until the others have been connected for a few seconds
    // ("unhealthy cluster"); a caller retries.
    let started = Instant::now();
    while let Err(err) = c.remove_member(id).await {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "removing {id:x}: {err}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("removed after {:?}", started.elapsed());
    let members = c.members().await.unwrap();
    assert_eq!(members.len(), 1, "{members:?}");
    assert!(members.iter().all(|m| m.id != id));
}
