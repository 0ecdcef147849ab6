//! `usher-load chat`: N pairs of logged-in users exchanging chat messages.
//! Each pair is one worker: a sends to b's bare JID, b answers to the full JID
//! it came from, a reads the answer; one exchange is two messages routed by
//! the server, timed from a's send to a's receipt of the answer. With two or
//! more `--addr`s, a and b of a pair log in to different nodes (round-robin),
//! so every message crosses nodes.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context as _};
use tokio::sync::Mutex;
use usher::xmpp::{ns, Element};
use usher_load::client::Mech;
use usher_load::Client;

use crate::{run_closed_loop_as, Target};

struct Pair {
    a: Client,
    b: Client,
    b_bare: String,
}

pub struct Options {
    pub pairs: usize,
    pub exchanges: usize,
    pub prefix: String,
    pub password: String,
    pub invite: Option<String>,
    pub json: bool,
}

/// Logs in as `user` on the next node, sends initial presence (bare-JID
/// messages go to available resources only) and reads up to its own echo.
async fn online(target: &Target, user: &str, password: &str) -> anyhow::Result<(Client, String)> {
    let (mut c, jid) = Client::login(
        target.addr(),
        &target.domain,
        &target.trust,
        Mech::ScramSha1,
        user,
        password,
    )
    .await?;
    c.send(&Element::new("presence", ns::CLIENT)).await?;
    // RFC 6121 §4.2.2: the server sends the presence back to its sender.
    c.wait_for(|e| e.name() == "presence" && e.attr("from") == Some(jid.as_str()))
        .await
        .context("no echo of the initial presence")?;
    Ok((c, jid))
}

async fn message_with_id(c: &mut Client, id: &str) -> anyhow::Result<Element> {
    let m = c
        .wait_for(|e| e.name() == "message" && e.attr("id") == Some(id))
        .await?;
    if m.attr("type") == Some("error") {
        bail!(
            "bounced: {}",
            usher_load::client::error_condition(&m).unwrap_or_default()
        );
    }
    Ok(m)
}

pub async fn run(target: Arc<Target>, options: Options, deadline: Instant) -> anyhow::Result<()> {
    let mut pairs = Vec::with_capacity(options.pairs);
    for p in 0..options.pairs {
        let (ua, ub) = (
            format!("{}a{p}", options.prefix),
            format!("{}b{p}", options.prefix),
        );
        for u in [&ua, &ub] {
            target
                .ensure_account(
                    Mech::ScramSha1,
                    u,
                    &options.password,
                    options.invite.as_deref(),
                )
                .await?;
        }
        let (a, _) = online(&target, &ua, &options.password).await?;
        let (b, b_full) = online(&target, &ub, &options.password).await?;
        let b_bare = b_full.split('/').next().unwrap_or_default().to_owned();
        pairs.push(Pair { a, b, b_bare });
    }
    let pool = Arc::new(Mutex::new(pairs));
    let label = format!("chat exchange pairs={}", options.pairs);
    run_closed_loop_as(
        label,
        options.json,
        options.exchanges,
        options.pairs,
        deadline,
        move |i| {
            let pool = pool.clone();
            async move {
                let Some(mut pair) = pool.lock().await.pop() else {
                    bail!("no idle pair");
                };
                let result = exchange(&mut pair, i).await;
                pool.lock().await.push(pair);
                result
            }
        },
    )
    .await
}

async fn exchange(pair: &mut Pair, i: usize) -> anyhow::Result<()> {
    let id = format!("m{i}");
    let hello = Element::new("message", ns::CLIENT)
        .with_attr("type", "chat")
        .with_attr("to", pair.b_bare.clone())
        .with_attr("id", id.clone())
        .with_child(Element::new("body", ns::CLIENT).with_text(format!("hello {i}")));
    pair.a.send(&hello).await?;
    let got = message_with_id(&mut pair.b, &id).await?;
    let Some(from) = got.attr("from") else {
        bail!("a routed message without from");
    };
    let back = format!("r{i}");
    let reply = Element::new("message", ns::CLIENT)
        .with_attr("type", "chat")
        .with_attr("to", from)
        .with_attr("id", back.clone())
        .with_child(Element::new("body", ns::CLIENT).with_text(format!("re {i}")));
    pair.b.send(&reply).await?;
    message_with_id(&mut pair.a, &back).await?;
    Ok(())
}
