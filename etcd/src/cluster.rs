//! The cluster as `weave status` will show it (MULTIHOST.md §4.6): its members, and each
//! member's view (leader, raft term and index, revision).

use serde::Serialize;

use crate::{Client, Error, wire};

/// A member of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub id: u64,
    /// Empty for a member added but not started yet.
    pub name: String,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
    pub is_learner: bool,
}

impl Member {
    fn from_wire(m: wire::MemberWire) -> Self {
        Self {
            id: m.id,
            name: m.name,
            peer_urls: m.peer_urls,
            client_urls: m.client_urls,
            is_learner: m.is_learner,
        }
    }
}

/// One member's status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The endpoint that answered.
    pub endpoint: String,
    /// The etcd version, `3.5.16`.
    pub version: String,
    pub cluster_id: u64,
    /// The member that answered.
    pub member_id: u64,
    /// The leader it follows; 0 when it has none (no quorum).
    pub leader: u64,
    pub raft_term: u64,
    pub raft_index: u64,
    pub raft_applied_index: u64,
    /// The store's revision as this member has it.
    pub revision: i64,
    pub db_size: i64,
    pub is_learner: bool,
    /// Alarms and other complaints (`NOSPACE`...).
    pub errors: Vec<String>,
}

impl Status {
    /// The member answered and follows a leader: it can serve writes.
    pub fn has_leader(&self) -> bool {
        self.leader != 0
    }

    fn from_wire(endpoint: &str, s: wire::StatusResponse) -> Self {
        Self {
            endpoint: endpoint.to_owned(),
            version: s.version,
            cluster_id: s.header.cluster_id,
            member_id: s.header.member_id,
            leader: s.leader,
            raft_term: s.raft_term,
            raft_index: s.raft_index,
            raft_applied_index: s.raft_applied_index,
            revision: s.header.revision,
            db_size: s.db_size,
            is_learner: s.is_learner,
            errors: s.errors,
        }
    }
}

#[derive(Debug, Serialize)]
struct Empty {}

impl Client {
    /// The cluster's members.
    ///
    /// # Errors
    /// [`Error::Unavailable`].
    pub async fn members(&self) -> Result<Vec<Member>, Error> {
        let r: wire::MemberListResponse = self.call("/v3/cluster/member/list", &Empty {}).await?;
        Ok(r.members.into_iter().map(Member::from_wire).collect())
    }

    /// Adds a member that will listen for its peers at `peer_urls`, as a learner (it copies
    /// the data but does not vote until promoted) when `learner`. Answers the new member and
    /// every member now, which is what the new member's `--initial-cluster` must name.
    ///
    /// # Errors
    /// [`Error::Unavailable`]; [`Error::Refused`] when a member already has those URLs or the
    /// cluster has no quorum to agree.
    pub async fn add_member(
        &self,
        peer_urls: &[String],
        learner: bool,
    ) -> Result<(Member, Vec<Member>), Error> {
        let request = wire::MemberAddRequest {
            peer_urls,
            is_learner: learner,
        };
        let r: wire::MemberAddResponse = self.call("/v3/cluster/member/add", &request).await?;
        Ok((
            Member::from_wire(r.member),
            r.members.into_iter().map(Member::from_wire).collect(),
        ))
    }

    /// Makes the learner `id` a voting member.
    ///
    /// # Errors
    /// [`Error::Refused`] while the learner has not caught up with the leader (try again), or
    /// when `id` is no learner.
    pub async fn promote_member(&self, id: u64) -> Result<(), Error> {
        let request = wire::MemberIdRequest { id: id.to_string() };
        let _: wire::Ignored = self.call("/v3/cluster/member/promote", &request).await?;
        Ok(())
    }

    /// Removes the member `id` from the cluster.
    ///
    /// # Errors
    /// [`Error::Refused`] when there is no such member.
    pub async fn remove_member(&self, id: u64) -> Result<(), Error> {
        let request = wire::MemberIdRequest { id: id.to_string() };
        let _: wire::Ignored = self.call("/v3/cluster/member/remove", &request).await?;
        Ok(())
    }

    /// The status of the member that answers (the current endpoint, else the next...).
    ///
    /// # Errors
    /// [`Error::Unavailable`].
    pub async fn status(&self) -> Result<Status, Error> {
        let r: wire::StatusResponse = self.call("/v3/maintenance/status", &Empty {}).await?;
        Ok(Status::from_wire(self.current_endpoint(), r))
    }

    /// The status of the member at `endpoint` (`http://host:port`, as [`Client::endpoints`] has them),
    /// without failing over: for a per-member view.
    ///
    /// # Errors
    /// [`Error::Unavailable`] when it does not answer.
    pub async fn member_status(&self, endpoint: &str) -> Result<Status, Error> {
        let r: wire::StatusResponse = self
            .call_one(endpoint, "/v3/maintenance/status", &Empty {})
            .await?;
        Ok(Status::from_wire(endpoint, r))
    }
}
