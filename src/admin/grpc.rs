//! The gRPC admin service (tonic): maps requests onto `Issuer` and its
//! errors onto gRPC status codes. Every call needs the bearer token.

use tonic::{Request, Response, Status};

use super::proto::admin_server::{Admin, AdminServer};
use super::proto::{
    self, CreateInviteRequest, GetAccountOriginRequest, GetInviteRequest, ListInviteEventsRequest,
    ListInviteEventsResponse, ListInvitesRequest, ListInvitesResponse, RevokeInviteRequest,
};
use crate::invites::model::InviteStatus;
use crate::invites::{EventFilter, EventKind, InviteKind, Token};
use crate::issuing::history::{HistoryEntry, OriginView};
use crate::issuing::{InviteView, IssueError, Issuer, ListFilter, NewInvite};
use crate::xmpp::jid::Username;

const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 1000;

impl From<IssueError> for Status {
    fn from(e: IssueError) -> Status {
        match e {
            IssueError::InvalidArgument(m) => Status::invalid_argument(m),
            IssueError::FailedPrecondition(m) => Status::failed_precondition(m),
            IssueError::Conflict(m) => Status::already_exists(m),
            IssueError::ResourceExhausted(m) => Status::resource_exhausted(m),
            IssueError::NotFound => Status::not_found("no such invite"),
            IssueError::Unavailable(e) => Status::unavailable(e.to_string()),
            IssueError::Storage(m) => Status::unavailable(m),
        }
    }
}

fn kind_from_proto(k: i32) -> Result<Option<InviteKind>, Status> {
    match proto::InviteKind::try_from(k) {
        Ok(proto::InviteKind::Unspecified) => Ok(None),
        Ok(proto::InviteKind::Account) => Ok(Some(InviteKind::Account)),
        Ok(proto::InviteKind::Reset) => Ok(Some(InviteKind::Reset)),
        Ok(proto::InviteKind::Contact) => Ok(Some(InviteKind::Contact)),
        Ok(proto::InviteKind::Group) => Ok(Some(InviteKind::Group)),
        Err(_) => Err(Status::invalid_argument(format!("unknown invite kind {k}"))),
    }
}

fn kind_to_proto(k: InviteKind) -> proto::InviteKind {
    match k {
        InviteKind::Account => proto::InviteKind::Account,
        InviteKind::Reset => proto::InviteKind::Reset,
        InviteKind::Contact => proto::InviteKind::Contact,
        InviteKind::Group => proto::InviteKind::Group,
    }
}

fn state_from_proto(s: i32) -> Result<Option<InviteStatus>, Status> {
    match proto::InviteState::try_from(s) {
        Ok(proto::InviteState::Unspecified) => Ok(None),
        Ok(proto::InviteState::Active) => Ok(Some(InviteStatus::Active)),
        Ok(proto::InviteState::Expired) => Ok(Some(InviteStatus::Expired)),
        Ok(proto::InviteState::Revoked) => Ok(Some(InviteStatus::Revoked)),
        Ok(proto::InviteState::UsedUp) => Ok(Some(InviteStatus::UsedUp)),
        Err(_) => Err(Status::invalid_argument(format!(
            "unknown invite state {s}"
        ))),
    }
}

fn state_to_proto(s: InviteStatus) -> proto::InviteState {
    match s {
        InviteStatus::Active => proto::InviteState::Active,
        InviteStatus::Expired => proto::InviteState::Expired,
        InviteStatus::Revoked => proto::InviteState::Revoked,
        InviteStatus::UsedUp => proto::InviteState::UsedUp,
    }
}

fn to_proto(v: InviteView) -> proto::Invite {
    let pending = v.invite.pending();
    let remaining = v.invite.remaining();
    let minted_by = v.invite.minted_by.map(String::from).unwrap_or_default();
    let tree = v
        .invite
        .tree
        .map(|t| t.as_str().to_owned())
        .unwrap_or_default();
    let s = v.invite.spec;
    proto::Invite {
        token: s.token.as_str().to_owned(),
        kind: kind_to_proto(s.kind) as i32,
        username: s.username.map(String::from).unwrap_or_default(),
        inviter: s.inviter.map(String::from).unwrap_or_default(),
        allow_registration: s.allow_registration,
        max_uses: s.max_uses,
        uses: v.invite.uses,
        pending,
        roles: s.roles,
        groups: s.groups,
        created_at_ms: s.created_at,
        expires_at_ms: s.expires_at,
        created_by: s.created_by.unwrap_or_default(),
        state: state_to_proto(v.status) as i32,
        uri: v.uri,
        landing_url: v.landing_url.unwrap_or_default(),
        remaining,
        minted_by,
        tree,
    }
}

fn event_to_proto(e: HistoryEntry) -> proto::InviteEvent {
    let mut out = proto::InviteEvent {
        seq: e.seq.unwrap_or(0),
        at_ms: e.at,
        token: e.token.as_str().to_owned(),
        inviter: e.inviter.clone().unwrap_or_default(),
        event: e.name().to_owned(),
        ..Default::default()
    };
    match e.event {
        Some(EventKind::Created {
            kind,
            roles,
            groups,
        }) => {
            out.kind = kind_to_proto(kind) as i32;
            out.roles = roles;
            out.groups = groups;
        }
        Some(
            EventKind::Reserved {
                reservation,
                account,
                node,
                path,
            }
            | EventKind::Redeemed {
                reservation,
                account,
                node,
                path,
            },
        ) => {
            out.reservation = reservation.to_string();
            out.account = account;
            out.node = node;
            out.path = path.as_str().to_owned();
        }
        Some(EventKind::Released {
            reservation,
            account,
        }) => {
            out.reservation = reservation.to_string();
            out.account = account;
        }
        Some(EventKind::Revoked) | None => {}
    }
    out
}

fn origin_to_proto(v: OriginView) -> proto::AccountOrigin {
    let mut out = proto::AccountOrigin {
        username: v.username,
        has_origin: v.origin.is_some(),
        tree_size: v.tree_size,
        tree_limit: v.tree_limit,
        live_invites: v.live_invites,
        invite_quota: v.invite_quota,
        minting_blocked_until_ms: v.minting_blocked_until.unwrap_or(0),
        admin: v.admin,
        ..Default::default()
    };
    if let Some(o) = v.origin {
        out.invite = o.invite.as_str().to_owned();
        out.inviter = o.inviter.map(String::from).unwrap_or_default();
        out.tree = o.tree.as_str().to_owned();
        out.depth = o.depth;
        out.registered_at_ms = o.registered_at;
        out.chain_started_at_ms = o.chain_started;
    }
    out
}

fn nonempty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

fn token(s: &str) -> Result<Token, Status> {
    Token::parse(s).ok_or_else(|| Status::not_found("no such invite"))
}

pub struct AdminService {
    pub invites: Issuer,
    /// Account removal and quarantine, as the client streams do them.
    pub registrar: std::sync::Arc<crate::registration::Registrar>,
    /// `None` on a standalone node.
    pub cluster: Option<super::cluster::ClusterAdmin>,
}

impl AdminService {
    fn cluster(&self) -> Result<&super::cluster::ClusterAdmin, Status> {
        self.cluster
            .as_ref()
            .ok_or_else(|| Status::failed_precondition("this node is not part of a cluster"))
    }
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn create_invite(
        &self,
        request: Request<CreateInviteRequest>,
    ) -> Result<Response<proto::Invite>, Status> {
        let r = request.into_inner();
        let req = NewInvite {
            kind: kind_from_proto(r.kind)?,
            username: Some(r.username),
            inviter: Some(r.inviter),
            allow_registration: r.allow_registration,
            max_uses: r.max_uses,
            unlimited: r.unlimited,
            roles: r.roles,
            groups: r.groups,
            ttl: r.ttl_seconds.map(std::time::Duration::from_secs),
            created_by: Some("admin-api".into()),
            as_user: nonempty(r.as_user),
        };
        Ok(Response::new(to_proto(self.invites.create(req).await?)))
    }

    async fn get_invite(
        &self,
        request: Request<GetInviteRequest>,
    ) -> Result<Response<proto::Invite>, Status> {
        let t = token(&request.into_inner().token)?;
        Ok(Response::new(to_proto(self.invites.get(&t).await?)))
    }

    async fn list_invites(
        &self,
        request: Request<ListInvitesRequest>,
    ) -> Result<Response<ListInvitesResponse>, Status> {
        let r = request.into_inner();
        let filter = ListFilter {
            kind: kind_from_proto(r.kind)?,
            status: state_from_proto(r.state)?,
        };
        let size = match r.page_size as usize {
            0 => DEFAULT_PAGE,
            n => n.min(MAX_PAGE),
        };
        let (page, next) = self
            .invites
            .list(&filter, size, Some(&r.page_token))
            .await?;
        Ok(Response::new(ListInvitesResponse {
            invites: page.into_iter().map(to_proto).collect(),
            next_page_token: next.unwrap_or_default(),
        }))
    }

    async fn revoke_invite(
        &self,
        request: Request<RevokeInviteRequest>,
    ) -> Result<Response<proto::Invite>, Status> {
        let t = token(&request.into_inner().token)?;
        Ok(Response::new(to_proto(self.invites.revoke(&t).await?)))
    }

    async fn list_invite_events(
        &self,
        request: Request<ListInviteEventsRequest>,
    ) -> Result<Response<ListInviteEventsResponse>, Status> {
        let r = request.into_inner();
        let filter = EventFilter {
            token: match nonempty(r.token) {
                Some(t) => Some(token(&t)?),
                None => None,
            },
            inviter: nonempty(r.inviter),
            account: nonempty(r.account),
            since: r.since_ms,
            until: r.until_ms,
        };
        let size = match r.page_size as usize {
            0 => DEFAULT_PAGE,
            n => n.min(MAX_PAGE),
        };
        let (events, next) = self.invites.events(filter, &r.page_token, size).await?;
        Ok(Response::new(ListInviteEventsResponse {
            events: events.into_iter().map(event_to_proto).collect(),
            next_page_token: next.unwrap_or_default(),
        }))
    }

    async fn cluster_status(
        &self,
        _request: Request<proto::ClusterStatusRequest>,
    ) -> Result<Response<proto::ClusterStatusResponse>, Status> {
        Ok(Response::new(self.cluster()?.status().await))
    }

    async fn add_node(
        &self,
        request: Request<proto::AddNodeRequest>,
    ) -> Result<Response<proto::AddNodeResponse>, Status> {
        let r = request.into_inner();
        self.cluster()?.add(r.node_id, &r.addr).await?;
        Ok(Response::new(proto::AddNodeResponse {}))
    }

    async fn remove_node(
        &self,
        request: Request<proto::RemoveNodeRequest>,
    ) -> Result<Response<proto::RemoveNodeResponse>, Status> {
        let id = request.into_inner().node_id;
        self.cluster()?.remove(id).await?;
        Ok(Response::new(proto::RemoveNodeResponse {}))
    }

    async fn set_isolated(
        &self,
        request: Request<proto::SetIsolatedRequest>,
    ) -> Result<Response<proto::SetIsolatedResponse>, Status> {
        self.cluster()?.set_isolated(request.into_inner().isolated);
        Ok(Response::new(proto::SetIsolatedResponse {}))
    }

    async fn get_account_origin(
        &self,
        request: Request<GetAccountOriginRequest>,
    ) -> Result<Response<proto::AccountOrigin>, Status> {
        let name = request.into_inner().username;
        let user = Username::parse(&name)
            .map_err(|e| Status::invalid_argument(format!("username '{name}': {e}")))?;
        Ok(Response::new(origin_to_proto(
            self.invites.origin(&user).await?,
        )))
    }

    async fn remove_account(
        &self,
        request: Request<proto::RemoveAccountRequest>,
    ) -> Result<Response<proto::RemoveAccountResponse>, Status> {
        let user = username_arg(&request.into_inner().username)?;
        self.registrar
            .remove_account(&user)
            .await
            .map_err(lifecycle_status)?;
        Ok(Response::new(proto::RemoveAccountResponse {}))
    }

    async fn lift_quarantine(
        &self,
        request: Request<proto::LiftQuarantineRequest>,
    ) -> Result<Response<proto::LiftQuarantineResponse>, Status> {
        let user = username_arg(&request.into_inner().username)?;
        let lifted = self
            .registrar
            .lift_quarantine(&user)
            .await
            .map_err(lifecycle_status)?;
        Ok(Response::new(proto::LiftQuarantineResponse { lifted }))
    }
}

fn username_arg(name: &str) -> Result<Username, Status> {
    Username::parse(name).map_err(|e| Status::invalid_argument(format!("username '{name}': {e}")))
}

fn lifecycle_status(e: crate::registration::LifecycleError) -> Status {
    use crate::registration::LifecycleError::*;
    match e {
        NoAccount => Status::not_found("no such account"),
        Contended => Status::aborted(e.to_string()),
        Store(e) => Status::unavailable(format!("account storage: {e}")),
        Ledger(e) => Status::unavailable(format!("invite ledger: {e}")),
    }
}

/// Open connections the admin port takes (operators, scripts).
const CAP: crate::capped_incoming::Cap = crate::capped_incoming::Cap {
    max: 64,
    per_address: 16,
    loopback_exempt: true,
};

/// How long an admin connection lives; the CLI makes one per command.
const MAX_CONNECTION_AGE: std::time::Duration = std::time::Duration::from_secs(600);

/// Serves the admin API on a bound listener until `shutdown` resolves,
/// inside TLS if `tls` is given.
pub async fn serve(
    listener: tokio::net::TcpListener,
    service: AdminService,
    token: String,
    tls: Option<tonic::transport::ServerTlsConfig>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    let check = crate::bearer::Check::new(token, "a valid admin bearer token is required");
    let mut server = crate::capped_incoming::server()
        // Before HTTP/2 is up no ping goes, and the admin port asks for no
        // certificate: an age limit gives a silent connection's place back.
        .max_connection_age(MAX_CONNECTION_AGE)
        .max_connection_age_grace(std::time::Duration::from_secs(30));
    if let Some(tls) = tls {
        server = server.tls_config(tls)?;
    }
    server
        .add_service(AdminServer::with_interceptor(service, check))
        .serve_with_incoming_shutdown(
            crate::capped_incoming::incoming(listener, CAP, "admin"),
            shutdown,
        )
        .await
}
