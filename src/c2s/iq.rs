//! IQs the server answers itself: dispatch, resource binding, the legacy
//! session, ping and service discovery.

use super::session::{Session, Stage};
use crate::xmpp::errors::{Condition, ErrorType, StanzaError};
use crate::xmpp::jid::{Jid, Resource, Username};
use crate::xmpp::stanza::IqType;
use crate::xmpp::{ns, Element};

/// An empty `result` for `iq`.
pub(super) fn iq_result(iq: &Element) -> Element {
    Element::new("iq", ns::CLIENT)
        .with_attr("type", "result")
        .with_opt_attr("id", iq.attr("id"))
        .with_opt_attr("to", iq.attr("from"))
        .with_opt_attr("from", iq.attr("to"))
}

impl Session {
    pub(super) async fn on_iq(&mut self, iq: Element) {
        let kind = match IqType::of(&iq) {
            Some(kind) if kind.is_request() => kind,
            // Answers go back to the session that asked; the server asks nothing.
            Some(_) => {
                if let Some((user, resource)) = self.other_session(iq.attr("to")) {
                    self.route_iq(iq, &user, resource);
                }
                return;
            }
            None => return self.reply_error(&iq, StanzaError::bad_request("Invalid IQ type")),
        };
        if iq.attr("id").is_none() {
            return self.reply_error(&iq, StanzaError::bad_request("An IQ needs an id"));
        }
        if let Some((user, resource)) = self.other_session(iq.attr("to")) {
            return self.route_iq(iq, &user, resource);
        }
        let mut payloads = iq.children();
        let (Some(payload), None) = (payloads.next(), payloads.next()) else {
            return self.reply_error(
                &iq,
                StanzaError::bad_request("An IQ get or set carries exactly one child"),
            );
        };
        let payload = payload.clone();
        if let Some(account) = self.account_addressed(iq.attr("to")) {
            let own = self.user() == Some(&account);
            let disco = payload.is("query", ns::DISCO_INFO) && payload.attr("node").is_none();
            if disco && kind == IqType::Get {
                // RFC 6121 §8.5.1: only an account that exists answers.
                return match self.shared.store.get(&account).await {
                    Ok(Some(_)) => self.send(&iq_result(&iq).with_child(account_info())),
                    Ok(None) => self.reply_error(&iq, StanzaError::service_unavailable()),
                    Err(e) => {
                        tracing::error!(error = %e, "account lookup failed");
                        self.reply_error(&iq, StanzaError::internal("Please try again later"))
                    }
                };
            }
            if !own {
                return self.reply_error(&iq, StanzaError::service_unavailable());
            }
        }
        if !self.iq_is_for_server(iq.attr("to")) {
            return self.reply_error(&iq, StanzaError::service_unavailable());
        }
        let is_set = kind == IqType::Set;
        let logged_in = self.user().is_some();
        match (payload.ns(), payload.name(), is_set) {
            (ns::REGISTER, "query", _) => self.on_register(&iq, &payload).await,
            (ns::ROSTER, "query", _) if self.bound().is_some() => {
                self.on_roster(&iq, &payload).await
            }
            (ns::PARS, "preauth", true) if !logged_in => self.on_preauth(&iq, &payload).await,
            (ns::PING, "ping", false) => self.send(&iq_result(&iq)),
            (ns::BIND, "bind", true) => self.on_bind(&iq, &payload).await,
            (ns::SESSION, "session", true) if logged_in => self.send(&iq_result(&iq)),
            (ns::DISCO_INFO, "query", false) if payload.attr("node").is_none() => {
                let info = self.disco_info();
                self.send(&iq_result(&iq).with_child(info));
            }
            (ns::DISCO_ITEMS, "query", false) if payload.attr("node").is_none() => {
                self.send(&iq_result(&iq).with_child(Element::new("query", ns::DISCO_ITEMS)));
            }
            (ns::DISCO_ITEMS, "query", false) if payload.attr("node") == Some(ns::COMMANDS) => {
                if !logged_in {
                    return self.reply_error(&iq, StanzaError::service_unavailable());
                }
                let items = self.command_items().await;
                self.send(&iq_result(&iq).with_child(items));
            }
            (ns::COMMANDS, "command", true) => self.on_command(&iq, &payload).await,
            _ => self.reply_error(&iq, StanzaError::service_unavailable()),
        }
    }

    /// A `to` naming a session of a local user other than this stream: the
    /// user and resource, for routing (RFC 6120 §10.5.4).
    fn other_session(&self, to: Option<&str>) -> Option<(Username, String)> {
        let own = self.bound()?.jid.clone();
        let jid = Jid::parse(to?).ok()?;
        let full = jid.full()?;
        if full.bare.domain != self.shared.config.domain || full == own {
            return None;
        }
        Some((full.bare.local?, full.resource.as_str().to_owned()))
    }

    /// A `to` naming a local account's bare JID: that account.
    fn account_addressed(&self, to: Option<&str>) -> Option<Username> {
        let jid = Jid::parse(to?).ok()?;
        if jid.bare.domain != self.shared.config.domain || jid.resource.is_some() {
            return None;
        }
        jid.bare.local
    }

    /// An IQ to another session: stamped with this session's JID and sent to
    /// that resource, or `service-unavailable` when it is not bound (§8.5.3.1).
    fn route_iq(&mut self, mut iq: Element, user: &Username, resource: String) {
        let Some(from) = self.bound().map(|b| b.jid.to_string()) else {
            return;
        };
        let request = IqType::of(&iq).is_some_and(IqType::is_request);
        iq.set_attr("from", from);
        let sent = self.shared.directory.send_to(user, &[resource], &iq);
        if sent == 0 && request {
            self.reply_error(&iq, StanzaError::service_unavailable());
        }
    }

    /// IQs addressed to the domain, or to the user's own bare JID, are ours.
    fn iq_is_for_server(&self, to: Option<&str>) -> bool {
        let Some(to) = to else { return true };
        let Ok(jid) = Jid::parse(to) else {
            return false;
        };
        if jid.bare.domain != self.shared.config.domain || jid.resource.is_some() {
            return false;
        }
        match (&jid.bare.local, self.user()) {
            (None, _) => true,
            (Some(local), Some(user)) => local == user,
            (Some(_), None) => false,
        }
    }

    async fn on_bind(&mut self, iq: &Element, bind: &Element) {
        let user = match &self.stage {
            Stage::Authenticated(user) => user.clone(),
            Stage::Bound(_) => {
                return self.reply_error(
                    iq,
                    StanzaError::new(ErrorType::Cancel, Condition::NotAllowed)
                        .with_text("A resource is already bound on this stream"),
                )
            }
            Stage::Plain | Stage::Secured(_) => {
                return self.reply_error(
                    iq,
                    StanzaError::new(ErrorType::Auth, Condition::NotAuthorized),
                )
            }
        };
        let requested = bind
            .get_child("resource", ns::BIND)
            .map(Element::text)
            .filter(|r| !r.is_empty());
        let generated = || format!("usher-{}", crate::secrets::random_id(6));
        let Ok(resource) = Resource::parse(&requested.unwrap_or_else(generated)) else {
            return self.reply_error(iq, StanzaError::bad_request("Invalid resource"));
        };
        let jid = self.jid_of(&user).with_resource(resource);
        let reply = iq_result(iq).with_child(
            Element::new("bind", ns::BIND)
                .with_child(Element::new("jid", ns::BIND).with_text(jid.to_string())),
        );
        self.bind(user, jid);
        // A client may address its full JID from anywhere once it has it.
        self.shared.directory.until_announced().await;
        self.send(&reply);
    }

    fn disco_info(&self) -> Element {
        let mut query = Element::new("query", ns::DISCO_INFO).with_child(
            Element::new("identity", ns::DISCO_INFO)
                .with_attr("category", "server")
                .with_attr("type", "im")
                .with_attr("name", "usher"),
        );
        let mut features = vec![
            ns::DISCO_INFO,
            ns::DISCO_ITEMS,
            ns::PING,
            ns::COMMANDS,
            ns::ROSTER,
            ns::ROSTER_VER,
            ns::PRE_APPROVAL,
            // XEP-0160 offline messages.
            "msgoffline",
        ];
        if self.shared.config.allow_registration {
            features.push(ns::REGISTER);
        }
        for f in features {
            query.push_child(Element::new("feature", ns::DISCO_INFO).with_attr("var", f));
        }
        query
    }
}

/// disco#info of an account's bare JID (XEP-0030 §3.1, RFC 6121 §8.5.1).
fn account_info() -> Element {
    Element::new("query", ns::DISCO_INFO)
        .with_child(
            Element::new("identity", ns::DISCO_INFO)
                .with_attr("category", "account")
                .with_attr("type", "registered"),
        )
        .with_child(Element::new("feature", ns::DISCO_INFO).with_attr("var", ns::DISCO_INFO))
}
