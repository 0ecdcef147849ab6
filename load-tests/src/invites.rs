//! Where the `register` and `race` scenarios get invites: a file of invite
//! URIs (any server, Prosody included), or usher's admin API, minted before
//! the timed phase.

use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};

use usher::admin::proto::admin_client::AdminClient;
use usher::admin::proto::{CreateInviteRequest, InviteKind};

/// The preauth token of an invite URI (`xmpp:…?register;preauth=TOKEN;…`),
/// or the line itself when it is a bare token.
pub fn token_of(line: &str) -> Option<String> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    if !line.starts_with("xmpp:") {
        return Some(line.to_owned());
    }
    usher::invites::uri::token_of(line).map(str::to_owned)
}

/// One token per non-empty line; a line that is neither a token nor an
/// invite URI with a preauth parameter is an error naming its number.
pub fn read_file(path: &Path) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the invites file {}", path.display()))?;
    let mut tokens = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if trimmed.starts_with("xmpp:") && token_of(trimmed).is_none() {
            bail!(
                "{}:{}: an invite URI without preauth=TOKEN",
                path.display(),
                n + 1
            );
        }
        if trimmed.contains(char::is_whitespace) {
            bail!("{}:{}: not an invite URI or token", path.display(), n + 1);
        }
        tokens.extend(token_of(trimmed));
    }
    if tokens.is_empty() {
        bail!("{}: no invites in it", path.display());
    }
    Ok(tokens)
}

/// Mints `count` invites of `uses` uses each through usher's admin API.
pub async fn mint(
    url: &str,
    token_file: &Path,
    count: usize,
    uses: u32,
) -> anyhow::Result<Vec<String>> {
    let token = std::fs::read_to_string(token_file)
        .with_context(|| format!("cannot read the admin token from {}", token_file.display()))?;
    let attach =
        usher::bearer::Attach::new(&token).context("the admin token cannot be sent as a header")?;
    // The CLI's rule: the token goes in clear to a loopback address only
    // (this tool has no TLS settings: it reaches nodes on this machine).
    let channel = usher::admin::tls::endpoint(url, None, None)?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .map_err(|e| anyhow!("cannot reach the admin API at {url}: {e}"))?;
    let client = AdminClient::with_interceptor(channel, attach);
    let kind = if uses > 1 {
        InviteKind::Group
    } else {
        InviteKind::Account
    };
    // Up to MINT_IN_FLIGHT calls at once over the one HTTP/2 channel: the
    // ledger batches concurrent proposals, so a million invites take minutes,
    // not the hour one-at-a-time would.
    const MINT_IN_FLIGHT: usize = 64;
    let mut tokens = Vec::with_capacity(count);
    let mut in_flight = tokio::task::JoinSet::new();
    let mut started = 0;
    while tokens.len() < count {
        while started < count && in_flight.len() < MINT_IN_FLIGHT {
            let mut client = client.clone();
            in_flight.spawn(async move {
                client
                    .create_invite(CreateInviteRequest {
                        kind: kind as i32,
                        max_uses: Some(uses),
                        ..Default::default()
                    })
                    .await
                    .map(|r| r.into_inner().token)
            });
            started += 1;
        }
        let Some(done) = in_flight.join_next().await else {
            break;
        };
        let token = done
            .context("a minting task failed")?
            .map_err(|s| anyhow!("minting an invite: {}", s.message()))?;
        tokens.push(token);
    }
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_come_out_of_every_uri_form() {
        assert_eq!(
            token_of("xmpp:example.org?register;preauth=abc-123;ibr=y").as_deref(),
            Some("abc-123")
        );
        assert_eq!(
            token_of("xmpp:alice@example.org?roster;preauth=XyZ").as_deref(),
            Some("XyZ")
        );
        assert_eq!(token_of("  bare-token ").as_deref(), Some("bare-token"));
        assert_eq!(token_of("xmpp:example.org?register"), None);
        assert_eq!(token_of("# comment"), None);
    }
}
