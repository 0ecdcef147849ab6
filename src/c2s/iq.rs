//! IQs the server answers itself: dispatch, resource binding, the legacy
//! session, ping and service discovery.

use super::session::{Session, Stage};
use crate::xmpp::errors::{Condition, ErrorType, StanzaError};
use crate::xmpp::jid::{Jid, Resource};
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
            // Answers to nothing we asked: drop them.
            Some(_) => return,
            None => return self.reply_error(&iq, StanzaError::bad_request("Invalid IQ type")),
        };
        if iq.attr("id").is_none() {
            return self.reply_error(&iq, StanzaError::bad_request("An IQ needs an id"));
        }
        let mut payloads = iq.children();
        let (Some(payload), None) = (payloads.next(), payloads.next()) else {
            return self.reply_error(
                &iq,
                StanzaError::bad_request("An IQ get or set carries exactly one child"),
            );
        };
        let payload = payload.clone();
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
            (ns::BIND, "bind", true) => self.on_bind(&iq, &payload),
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

    fn on_bind(&mut self, iq: &Element, bind: &Element) {
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
        self.send(&reply);
    }

    fn disco_info(&self) -> Element {
        let mut query = Element::new("query", ns::DISCO_INFO).with_child(
            Element::new("identity", ns::DISCO_INFO)
                .with_attr("category", "server")
                .with_attr("type", "im")
                .with_attr("name", "usher"),
        );
        let mut features = vec![ns::DISCO_INFO, ns::DISCO_ITEMS, ns::PING, ns::COMMANDS];
        if self.shared.config.allow_registration {
            features.push(ns::REGISTER);
        }
        for f in features {
            query.push_child(Element::new("feature", ns::DISCO_INFO).with_attr("var", f));
        }
        query
    }
}
