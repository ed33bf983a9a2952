//! Membership: this peer's record and its liveness mark in the store, and the other peers'
//! records, liveness and blocks followed into the [`View`], the flood list of the VXLAN port
//! kept equal to the other peers' endpoints.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use daemon::Backoff;
use etcd::{Created, EventKind};
use ipnet::Ipv4Net;
use tokio::sync::watch;

use super::keys::{self, Alive, BlockOwner, PeerRecord};
use super::mirror::{Change, mirror};
use super::{Mesh, View};
use crate::http_api::ApiState;

/// The flood list a peer wants: every other peer's endpoint, each once, in order. Its own
/// endpoint is left out even under another name (a re-launch with a new name leaves the old
/// record until `rmpeer`; flooding to oneself would loop).
pub fn flood_list(
    peers: &BTreeMap<String, PeerRecord>,
    me: &str,
    my_vtep: Ipv4Addr,
) -> Vec<Ipv4Addr> {
    let mut vteps: Vec<Ipv4Addr> = peers
        .iter()
        .filter(|(name, peer)| name.as_str() != me && peer.vtep != my_vtep)
        .map(|(_, peer)| peer.vtep)
        .collect();
    vteps.sort_unstable();
    vteps.dedup();
    vteps
}

/// Keeps `peers/<me>` written and `alive/<me>` bound to a live lease, for ever: a lost lease
/// (the store was away longer than its TTL) is replaced by a new one.
pub(super) async fn register(mesh: Mesh) {
    let config = mesh.config().clone();
    let store = mesh.store().clone();
    let record = keys::write(&PeerRecord {
        nickname: config.nickname.clone(),
        vtep: config.vtep,
        mtu: config.mtu,
    });
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    loop {
        let registered = async {
            store.put(keys::peer(&config.name), &record, None).await?;
            let lease = store.grant(config.lease_ttl).await?;
            let since = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            store
                .put(
                    keys::alive(&config.name),
                    keys::write(&Alive { since }),
                    Some(lease.id),
                )
                .await?;
            // A third of the TTL, etcd's own habit: two keepalives may be lost in a row.
            Ok::<_, etcd::Error>(store.keep_alive_every(lease.id, config.lease_ttl / 3))
        }
        .await;
        match registered {
            Ok(mut keepalive) => {
                tracing::info!(peer = %config.name, vtep = %config.vtep, "registered in the store");
                backoff.reset();
                let err = keepalive.lost().await;
                tracing::warn!(error = %err, "store lease lost; registering again");
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot register in the store; retrying");
                tokio::time::sleep(backoff.next_delay()).await;
            }
        }
    }
}

/// Follows the peers, their liveness and the blocks into the view, and the peers into the flood
/// list.
pub(super) async fn follow(mesh: Mesh, state: ApiState) {
    let me = mesh.config().name.clone();
    let my_vtep = mesh.config().vtep;
    let (wanted_tx, wanted_rx) = watch::channel(None::<Vec<Ipv4Addr>>);
    tokio::spawn(keep_flood_list(mesh.clone(), wanted_rx));

    let peers = {
        let mesh = mesh.clone();
        mirror(mesh.store().clone(), keys::peers(), move |change| {
            let mut view = mesh.lock();
            note_store(&mut view, &change);
            apply(
                &mut view.peers,
                &change,
                |key| keys::name_under(key, &keys::peers()).map(str::to_owned),
                keys::read::<PeerRecord>,
            );
            let wanted = flood_list(&view.peers, &me, my_vtep);
            drop(view);
            if !matches!(change, Change::Unreachable(_)) {
                wanted_tx.send_if_modified(|w| {
                    let changed = w.as_ref() != Some(&wanted);
                    *w = Some(wanted);
                    changed
                });
            }
        })
    };
    let alive = {
        let mesh = mesh.clone();
        mirror(mesh.store().clone(), keys::alive_prefix(), move |change| {
            let mut view = mesh.lock();
            let mut marks = view.alive.iter().map(|n| (n.clone(), ())).collect();
            apply(
                &mut marks,
                &change,
                |key| keys::name_under(key, &keys::alive_prefix()).map(str::to_owned),
                |v| keys::read::<Alive>(v).map(|_| ()),
            );
            view.alive = marks.into_keys().collect();
        })
    };
    let (nudge, nudged) = watch::channel(());
    tokio::spawn(keep_blocks(mesh.clone(), state, nudged));
    let blocks = {
        let mesh = mesh.clone();
        mirror(mesh.store().clone(), keys::blocks(), move |change| {
            let mut view = mesh.lock();
            apply(&mut view.blocks, &change, keys::parse_block, |v| {
                keys::read::<BlockOwner>(v).map(|o| o.peer)
            });
            if !matches!(change, Change::Unreachable(_)) {
                nudge.send_replace(());
            }
        })
    };
    tokio::join!(peers, alive, blocks);
}

/// What to do about the blocks this host's allocator owns, given the store's owners: those
/// another peer owns now (taken over by `rmpeer --force` while this host was away) are given
/// up; those the store has no owner for (its data was lost) are claimed again.
pub(super) fn reconcile_blocks(
    owned: &[Ipv4Net],
    store: &BTreeMap<Ipv4Net, String>,
    me: &str,
) -> (Vec<Ipv4Net>, Vec<Ipv4Net>) {
    let lost = owned
        .iter()
        .filter(|b| store.get(b).is_some_and(|owner| owner != me))
        .copied()
        .collect();
    let missing = owned
        .iter()
        .filter(|b| !store.contains_key(b))
        .copied()
        .collect();
    (lost, missing)
}

/// Brings the allocator's blocks in line with the store's after every change to the blocks.
async fn keep_blocks(mesh: Mesh, state: ApiState, mut nudged: watch::Receiver<()>) {
    let me = mesh.config().name.clone();
    while nudged.changed().await.is_ok() {
        let Ok((owned, in_use)) =
            state.read(|alloc| (alloc.owned_blocks(), alloc.unowned_blocks_in_use()))
        else {
            continue;
        };
        // Addresses given out before this host joined (or found on its containers at start)
        // must not be given out again by another host: their blocks become this host's, where
        // no one else has them.
        for block in in_use {
            let value = keys::write(&BlockOwner { peer: me.clone() });
            match mesh.store().create(keys::block(block), value, None).await {
                Ok(Created::Created { .. }) => {
                    tracing::info!(%block, "claimed the block of addresses given out before joining");
                    let _ = state.update(|alloc| alloc.add_block(block));
                }
                Ok(Created::Exists(kv)) => {
                    let owner = keys::read::<BlockOwner>(&kv.value).map(|o| o.peer);
                    if owner.as_deref() == Some(me.as_str()) {
                        let _ = state.update(|alloc| alloc.add_block(block));
                    } else {
                        let owner = owner.map(|o| mesh.describe(&o)).unwrap_or_default();
                        tracing::error!(%block, %owner, "this host holds addresses in a block another peer owns: they may be given out twice; detach those containers, or `weave rmpeer` that peer if it is gone");
                    }
                }
                Err(err) => {
                    tracing::warn!(%block, error = %err, "cannot claim the block of addresses given out before joining; will retry");
                }
            }
        }
        let store = mesh.lock().blocks.clone();
        let (lost, missing) = reconcile_blocks(&owned, &store, &me);
        for block in lost {
            let owner = store
                .get(&block)
                .map(|o| mesh.describe(o))
                .unwrap_or_default();
            tracing::error!(%block, %owner, "another peer took over a block this peer owned; allocating no more in it");
            let _ = state.update(|alloc| alloc.remove_block(block));
        }
        for block in missing {
            let value = keys::write(&BlockOwner { peer: me.clone() });
            match mesh.store().create(keys::block(block), value, None).await {
                Ok(Created::Created { .. }) => {
                    tracing::warn!(%block, "the store had lost this peer's block; claimed it again");
                }
                Ok(Created::Exists(_)) => nudged.mark_changed(),
                Err(err) => {
                    tracing::warn!(%block, error = %err, "cannot claim this peer's block again; will retry")
                }
            }
        }
    }
}

/// How often the store's health is asked for `weave status`.
const HEALTH_EVERY: Duration = Duration::from_secs(3);

/// Asks the store how it is, for `weave status`, for ever.
pub(super) async fn watch_store_health(mesh: Mesh) {
    loop {
        let store = mesh.store();
        let status = store.status().await;
        let members = match &status {
            Ok(s) if s.has_leader() => store.members().await.ok(),
            _ => None,
        };
        let line = store_health(status.as_ref(), members.as_deref());
        mesh.lock().store_health = Some(line);
        tokio::time::sleep(HEALTH_EVERY).await;
    }
}

/// The store line of `weave status`: how many members, which leads, the revision; or what is
/// wrong.
pub(super) fn store_health(
    status: Result<&etcd::Status, &etcd::Error>,
    members: Option<&[etcd::Member]>,
) -> String {
    match status {
        Err(err) => format!("UNREACHABLE: {err}"),
        Ok(s) if !s.has_leader() => format!(
            "NO QUORUM: the member at {} has no leader; allocation goes on in owned blocks",
            s.endpoint
        ),
        Ok(s) => {
            let leader = members
                .and_then(|m| m.iter().find(|m| m.id == s.leader))
                .map_or_else(|| format!("{:x}", s.leader), |m| m.name.clone());
            let count = members.map_or_else(|| "?".to_owned(), |m| m.len().to_string());
            let learners = match members.map_or(0, |m| m.iter().filter(|m| m.is_learner).count()) {
                0 => String::new(),
                n => format!(" ({n} learning)"),
            };
            format!(
                "{count} member(s){learners}, leader {leader}, revision {}, quorum",
                s.revision
            )
        }
    }
}

/// Programs the flood list whenever the wanted one changes, retrying a failure.
async fn keep_flood_list(mesh: Mesh, mut wanted: watch::Receiver<Option<Vec<Ipv4Addr>>>) {
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    while wanted.changed().await.is_ok() {
        loop {
            let Some(vteps) = wanted.borrow_and_update().clone() else {
                break;
            };
            match mesh.inner.dataplane.set_flood(&vteps).await {
                Ok(()) => {
                    tracing::info!(peers = vteps.len(), "flood list programmed");
                    backoff.reset();
                    break;
                }
                Err(err) => {
                    tracing::warn!(error = %err, "programming the flood list failed; retrying");
                    tokio::time::sleep(backoff.next_delay()).await;
                }
            }
        }
    }
}

/// Records whether the store answers.
fn note_store(view: &mut View, change: &Change<'_>) {
    view.store_error = match change {
        Change::Unreachable(err) => Some(err.to_string()),
        _ => None,
    };
}

/// Applies a mirror's change to a map keyed by what `key` reads from a store key. Keys or
/// values that do not read are skipped: they are not ours to act on.
pub(super) fn apply<K: Ord, V>(
    map: &mut BTreeMap<K, V>,
    change: &Change<'_>,
    key: impl Fn(&[u8]) -> Option<K>,
    value: impl Fn(&[u8]) -> Option<V>,
) {
    match change {
        Change::Listed(kvs) => {
            *map = kvs
                .iter()
                .filter_map(|kv| Some((key(&kv.key)?, value(&kv.value)?)))
                .collect();
        }
        Change::Events(events) => {
            for event in *events {
                let Some(k) = key(&event.kv.key) else {
                    continue;
                };
                match event.kind {
                    EventKind::Put => match value(&event.kv.value) {
                        Some(v) => {
                            map.insert(k, v);
                        }
                        None => {
                            map.remove(&k);
                        }
                    },
                    EventKind::Delete => {
                        map.remove(&k);
                    }
                }
            }
        }
        Change::Unreachable(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etcd::{Event, KeyValue};

    fn peer(nick: &str, vtep: &str) -> PeerRecord {
        PeerRecord {
            nickname: nick.into(),
            vtep: vtep.parse().unwrap(),
            mtu: 1376,
        }
    }

    #[test]
    fn the_flood_list_is_every_other_endpoint_once() {
        let me: Ipv4Addr = "198.51.100.1".parse().unwrap();
        let peers: BTreeMap<String, PeerRecord> = [
            ("a".to_owned(), peer("h1", "198.51.100.1")),
            ("b".to_owned(), peer("h2", "198.51.100.3")),
            ("c".to_owned(), peer("h3", "198.51.100.2")),
            ("d".to_owned(), peer("h3-again", "198.51.100.2")),
            ("old-a".to_owned(), peer("h1", "198.51.100.1")),
        ]
        .into();
        let want: Vec<Ipv4Addr> = ["198.51.100.2", "198.51.100.3"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        assert_eq!(flood_list(&peers, "a", me), want);
        assert!(flood_list(&BTreeMap::new(), "a", me).is_empty());
    }

    fn kv(key: &str, value: &str) -> KeyValue {
        KeyValue {
            key: key.as_bytes().to_vec(),
            value: value.as_bytes().to_vec(),
            create_revision: 1,
            mod_revision: 1,
            version: 1,
            lease: None,
        }
    }

    #[test]
    fn changes_apply_to_the_copy_and_garbage_is_skipped() {
        let mut map: BTreeMap<String, String> = BTreeMap::new();
        let key = |k: &[u8]| keys::name_under(k, "/p/").map(str::to_owned);
        let value = |v: &[u8]| (!v.is_empty()).then(|| String::from_utf8_lossy(v).into_owned());
        let listed = [kv("/p/a", "1"), kv("/p/b", ""), kv("/p/x/y", "2")];
        apply(&mut map, &Change::Listed(&listed), key, value);
        assert_eq!(map, [("a".to_owned(), "1".to_owned())].into());
        let events = [
            Event {
                kind: EventKind::Put,
                kv: kv("/p/c", "3"),
            },
            Event {
                kind: EventKind::Delete,
                kv: kv("/p/a", ""),
            },
            Event {
                kind: EventKind::Put,
                kv: kv("/p/c", ""),
            },
            Event {
                kind: EventKind::Put,
                kv: kv("/p/d", "4"),
            },
        ];
        apply(&mut map, &Change::Events(&events), key, value);
        assert_eq!(map, [("d".to_owned(), "4".to_owned())].into());
    }

    #[test]
    fn blocks_taken_over_are_given_up_and_lost_ones_claimed_again() {
        let net = |t: &str| -> Ipv4Net { t.parse().unwrap() };
        let (a, b, c) = (
            net("10.32.0.0/26"),
            net("10.32.0.64/26"),
            net("10.32.0.128/26"),
        );
        let store: BTreeMap<Ipv4Net, String> =
            [(a, "me".to_owned()), (b, "other".to_owned())].into();
        assert_eq!(
            reconcile_blocks(&[a, b, c], &store, "me"),
            (vec![b], vec![c])
        );
        assert_eq!(reconcile_blocks(&[a], &store, "me"), (vec![], vec![]));
    }

    #[test]
    fn the_store_line_says_members_leader_or_what_is_wrong() {
        let status = |leader| etcd::Status {
            endpoint: "http://198.51.100.1:2379".into(),
            version: "3.5.16".into(),
            cluster_id: 1,
            member_id: 7,
            leader,
            raft_term: 2,
            raft_index: 9,
            raft_applied_index: 9,
            revision: 42,
            db_size: 20480,
            is_learner: false,
            errors: vec![],
        };
        let member = |id, name: &str| etcd::Member {
            id,
            name: name.into(),
            peer_urls: vec![],
            client_urls: vec![],
            is_learner: false,
        };
        let members = [member(7, "m0"), member(8, "m1"), member(9, "m2")];
        assert_eq!(
            store_health(Ok(&status(8)), Some(&members)),
            "3 member(s), leader m1, revision 42, quorum"
        );
        let mut learning = members.to_vec();
        learning[2].is_learner = true;
        assert_eq!(
            store_health(Ok(&status(8)), Some(&learning)),
            "3 member(s) (1 learning), leader m1, revision 42, quorum"
        );
        assert!(
            store_health(Ok(&status(0)), None)
                .starts_with("NO QUORUM: the member at http://198.51.100.1:2379")
        );
        let err = etcd::Error::NoEndpoints;
        assert_eq!(
            store_health(Err(&err), None),
            "UNREACHABLE: no etcd endpoint given"
        );
    }
}
