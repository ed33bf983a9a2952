//! The store grows with the hosts that join it (issue 13: the hosts named together form the
//! etcd cluster, up to five). A router whose store was found or made by weave (not given with
//! `--store-endpoints`) adds an etcd member of its own, on its host, while the store has fewer
//! than five; learners are promoted so that the voting members stay odd (1, 3, 5); and every
//! such router follows the voting members, so that it reaches the store through any of them.
//!
//! Why learners: etcd 3.5 lets one learner at a time copy the data without voting. A member
//! that votes before it has caught up (or never starts) can cost the store its quorum; two
//! voters are no safer than one. So a new member stays a learner until a second host joins, or
//! until the voters are even, and it is promoted only once etcd says it is in sync.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bollard::Docker;
use etcd::{Client, Member};
use tokio::sync::Notify;

use super::discovery::{self, StoreEndpoints};
use super::local_store::{self, LocalStoreError, MemberSpec};

/// The most members a store made by weave grows to; later hosts are its clients.
pub const MAX_MEMBERS: usize = 5;
/// How often a router looks at the store's members.
const TEND_EVERY: Duration = Duration::from_secs(10);

/// Whether this peer has a member of the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mine {
    /// None: it may add one.
    Absent,
    /// Added, never started (a join cut short): it is removed and added again.
    Unstarted(u64),
    Started,
}

/// This peer's member among `members`: named `me`, or added at `my_url` and not started yet
/// (etcd names a member only once it runs).
pub fn mine(members: &[Member], me: &str, my_url: &str) -> Mine {
    match members
        .iter()
        .find(|m| m.name == me || m.peer_urls.iter().any(|u| u == my_url))
    {
        None => Mine::Absent,
        Some(m) if m.name.is_empty() => Mine::Unstarted(m.id),
        Some(_) => Mine::Started,
    }
}

/// Whether a peer without a member adds one: the store has room.
pub fn has_room(members: &[Member]) -> bool {
    members.len() < MAX_MEMBERS
}

/// The learner to promote now, if any. A started learner is promoted when the voters are even
/// (it makes them odd), or when a new member is about to be added (etcd holds one learner at a
/// time; the new one's promotion then makes the voters odd again).
pub fn to_promote(members: &[Member], adding: bool) -> Option<u64> {
    let voters = members.iter().filter(|m| !m.is_learner).count();
    let learner = members
        .iter()
        .find(|m| m.is_learner && !m.name.is_empty())?;
    (voters % 2 == 0 || adding).then_some(learner.id)
}

/// The client URLs of the voting members, sorted: the endpoints to reach the store through.
pub fn voting_endpoints(members: &[Member]) -> Vec<String> {
    let mut urls: Vec<String> = members
        .iter()
        .filter(|m| !m.is_learner)
        .flat_map(|m| m.client_urls.iter().cloned())
        .collect();
    urls.sort();
    urls.dedup();
    urls
}

/// `--initial-cluster` for the member `added` (named `me`, at `my_url`): every member by name
/// and peer URL, as etcd answered the add.
pub fn initial_cluster(members: &[Member], added: u64, me: &str, my_url: &str) -> String {
    members
        .iter()
        .filter_map(|m| {
            if m.id == added {
                return Some(format!("{me}={my_url}"));
            }
            let url = m.peer_urls.first()?;
            let name = if m.name.is_empty() {
                format!("{:x}", m.id)
            } else {
                m.name.clone()
            };
            Some(format!("{name}={url}"))
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Whether `a` and `b` name the same endpoints, in any order.
fn same_endpoints(a: &[String], b: &[String]) -> bool {
    let mut a = a.to_vec();
    let mut b = b.to_vec();
    a.sort();
    b.sort();
    a == b
}

/// Why a round of tending did nothing.
#[derive(Debug, thiserror::Error)]
enum GrowthError {
    #[error(transparent)]
    Store(#[from] etcd::Error),
    #[error(transparent)]
    Member(#[from] LocalStoreError),
    #[error(transparent)]
    File(#[from] discovery::DiscoveryError),
}

/// What a router needs to grow the store and follow its members.
#[derive(Debug)]
pub struct Growth {
    pub store: Client,
    pub docker: Docker,
    pub image: String,
    pub data_dir: PathBuf,
    /// This peer's name, which its member is named after.
    pub me: String,
    /// This host's address, where the other members reach its member.
    pub addr: Ipv4Addr,
    /// Notified when the voting members differ from the endpoints in use: the router starts
    /// again on them (kept in `store.json`).
    pub rejoin: Arc<Notify>,
}

impl Growth {
    /// Tends the store for ever, or until the router is to start again on new endpoints.
    pub async fn tend(self) {
        loop {
            match self.round().await {
                Ok(true) => return,
                Ok(false) => {}
                Err(err) => {
                    tracing::debug!(error = %err, "store membership: nothing done this round")
                }
            }
            tokio::time::sleep(TEND_EVERY).await;
        }
    }

    /// One look at the members: joins, promotes, or follows. `Ok(true)` once a rejoin is due.
    async fn round(&self) -> Result<bool, GrowthError> {
        let members = self.store.members().await?;
        let my_url = local_store::member_url(self.addr);
        match mine(&members, &self.me, &my_url) {
            Mine::Absent if has_room(&members) => {
                if let Some(id) = to_promote(&members, true) {
                    self.store.promote_member(id).await?;
                    tracing::info!(member = %format!("{id:x}"), "store: promoted a learner to make room for this host's member");
                }
                self.join(&my_url).await?;
                return Ok(false);
            }
            Mine::Unstarted(id) => {
                tracing::info!(member = %format!("{id:x}"), "store: this host's member was added but never started; adding it again");
                self.store.remove_member(id).await?;
                return Ok(false);
            }
            Mine::Absent | Mine::Started => {}
        }
        if let Some(id) = to_promote(&members, false) {
            match self.store.promote_member(id).await {
                Ok(()) => {
                    tracing::info!(member = %format!("{id:x}"), "store: promoted a learner; the voting members are odd again")
                }
                // Not caught up yet: the next round tries again.
                Err(err) => tracing::debug!(error = %err, "store: learner not promoted yet"),
            }
        }
        let voting = voting_endpoints(&self.store.members().await?);
        if voting.is_empty() || same_endpoints(&voting, self.store.endpoints()) {
            return Ok(false);
        }
        discovery::save(
            &self.data_dir,
            &StoreEndpoints {
                endpoints: voting.clone(),
            },
        )?;
        tracing::info!(store = %voting.join(","), "store: its voting members changed; starting again on them");
        discovery::schedule_rejoin(&self.rejoin);
        Ok(true)
    }

    /// Adds this host's member as a learner and runs it; removes it from the store again when
    /// it does not come up.
    async fn join(&self, my_url: &str) -> Result<(), GrowthError> {
        let (added, members) = self.store.add_member(&[my_url.to_owned()], true).await?;
        let member = MemberSpec {
            name: &self.me,
            addr: self.addr,
            initial_cluster: initial_cluster(&members, added.id, &self.me, my_url),
            existing: true,
        };
        tracing::info!(member = %format!("{:x}", added.id), cluster = %member.initial_cluster, "store: added this host's member as a learner; starting it");
        let endpoint = local_store::client_url(self.addr);
        let started = local_store::start_member(
            &self.docker,
            &self.image,
            &self.data_dir,
            &member,
            local_store::wait_ready(&endpoint),
        )
        .await;
        if let Err(err) = started {
            let _ = self.store.remove_member(added.id).await;
            return Err(err.into());
        }
        tracing::info!(member = %format!("{:x}", added.id), "store: this host's member runs and copies the data");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: u64, name: &str, learner: bool) -> Member {
        Member {
            id,
            name: name.to_owned(),
            peer_urls: vec![format!("http://10.0.0.{id}:2380")],
            client_urls: if name.is_empty() {
                vec![]
            } else {
                vec![format!("http://10.0.0.{id}:2379")]
            },
            is_learner: learner,
        }
    }

    #[test]
    fn a_peer_finds_its_member_by_name_or_by_its_url_before_it_starts() {
        let members = [member(1, "a", false), member(2, "", true)];
        assert_eq!(mine(&members, "a", "http://x:2380"), Mine::Started);
        assert_eq!(
            mine(&members, "b", "http://10.0.0.2:2380"),
            Mine::Unstarted(2)
        );
        assert_eq!(mine(&members, "c", "http://10.0.0.3:2380"), Mine::Absent);
    }

    #[test]
    fn the_store_grows_to_five_members() {
        let four: Vec<Member> = (1..=4).map(|i| member(i, "m", false)).collect();
        assert!(has_room(&four));
        let mut five = four.clone();
        five.push(member(5, "m5", true));
        assert!(!has_room(&five));
    }

    #[test]
    fn learners_are_promoted_so_that_the_voters_stay_odd() {
        // (voters, learner, adding a member) -> promoted?
        let cases = [
            (1, None, false, None),
            (1, Some("b"), false, None), // 1 voter: the learner waits for a third host
            (1, Some("b"), true, Some(9)), // a third host comes: room for its learner
            (2, Some("c"), false, Some(9)), // 2 voters: the learner makes 3
            (2, None, false, None),
            (3, Some("d"), false, None),
            (3, Some("d"), true, Some(9)),
            (4, Some("e"), false, Some(9)),
            (1, Some(""), true, None), // not started: nothing to promote
        ];
        for (voters, learner, adding, want) in cases {
            let mut members: Vec<Member> = (1..=voters).map(|i| member(i, "v", false)).collect();
            if let Some(name) = learner {
                members.push(member(9, name, true));
            }
            assert_eq!(
                to_promote(&members, adding),
                want,
                "{voters} voters, learner {learner:?}, adding {adding}"
            );
        }
    }

    #[test]
    fn clients_follow_the_voting_members_only() {
        let members = [
            member(3, "c", false),
            member(1, "a", false),
            member(2, "b", true),
        ];
        assert_eq!(
            voting_endpoints(&members),
            vec!["http://10.0.0.1:2379", "http://10.0.0.3:2379"]
        );
        assert!(same_endpoints(
            &voting_endpoints(&members),
            &[
                "http://10.0.0.3:2379".to_owned(),
                "http://10.0.0.1:2379".to_owned()
            ]
        ));
    }

    #[test]
    fn the_new_member_is_named_in_the_initial_cluster_beside_the_others() {
        let members = [member(1, "a", false), member(2, "", true)];
        assert_eq!(
            initial_cluster(&members, 2, "b", "http://10.0.0.2:2380"),
            "a=http://10.0.0.1:2380,b=http://10.0.0.2:2380"
        );
    }
}
