//! The runtime side of a configured workspace: its zone and one client per configured provider,
//! each a [`Source`] ([`Workspace::sources`]).
//! Built at start-up from [`crate::config`], and again for the workspaces a reload changes;
//! shared read-only by every request.

use std::collections::HashMap;
use std::sync::Arc;

use crate::cache::AccountKey;
use crate::error::{UpstreamError, UpstreamErrorKind};
use crate::providers::chat_tonic::ChatTonic;
use crate::providers::connectycube::ConnectyCube;
use crate::providers::help_scout::HelpScout;
use crate::providers::message2give::Message2Give;
use crate::providers::upstream::Upstream;
use crate::providers::xenioo::Xenioo;
use crate::providers::{Provider, Source};
use crate::series::Zone;

/// One workspace and its provider clients.
pub struct Workspace {
    pub id: String,
    pub name: String,
    pub zone: Zone,
    pub help_scout: Option<HelpScout>,
    /// Help Scout mailboxes applied when a query gives none.
    pub help_scout_mailboxes: Vec<i64>,
    pub connectycube: Option<ConnectyCube>,
    pub message2give: Option<Message2Give>,
    pub chat_tonic: Option<ChatTonic>,
    pub xenioo: Option<Xenioo>,
    /// The cache identity of each configured provider account.
    pub accounts: HashMap<Provider, AccountKey>,
    /// Distinct for every workspace built in this process ([`Workspace::next_generation`]):
    /// values derived from several of its accounts at once are kept under it, so a workspace
    /// a reload rebuilt never reads what its predecessor derived.
    pub generation: u64,
}

impl Workspace {
    /// A generation no workspace of this process had before.
    pub fn next_generation() -> u64 {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    /// Every configured provider, in `Provider` order.
    pub fn sources(&self) -> Vec<&dyn Source> {
        let configured: [Option<&dyn Source>; 5] = [
            self.help_scout.as_ref().map(|c| c as &dyn Source),
            self.connectycube.as_ref().map(|c| c as &dyn Source),
            self.message2give.as_ref().map(|c| c as &dyn Source),
            self.chat_tonic.as_ref().map(|c| c as &dyn Source),
            self.xenioo.as_ref().map(|c| c as &dyn Source),
        ];
        let mut sources: Vec<&dyn Source> = configured.into_iter().flatten().collect();
        sources.sort_by_key(|source| source.provider());
        sources
    }

    /// The HTTP side of every configured provider, in `Provider` order.
    pub fn upstreams(&self) -> Vec<&Upstream> {
        self.sources().into_iter().map(Source::upstream).collect()
    }

    /// True when the workspace has a client for `provider`.
    pub fn has(&self, provider: Provider) -> bool {
        self.accounts.contains_key(&provider)
    }

    /// The cache identity of a configured provider; a coded error (never a panic) when the
    /// workspace has no account there.
    pub fn account(&self, provider: Provider) -> Result<&AccountKey, UpstreamError> {
        self.accounts
            .get(&provider)
            .ok_or_else(|| not_configured(provider))
    }
}

/// A provider's part was asked of a workspace without that provider. Series only build parts
/// for configured providers, so this is an internal fault, reported as one.
pub fn not_configured(provider: Provider) -> UpstreamError {
    UpstreamError::new(provider, UpstreamErrorKind::NotConfigured)
}

/// The client of a configured provider, or the coded error [`not_configured`].
pub fn configured<T>(client: Option<&T>, provider: Provider) -> Result<&T, UpstreamError> {
    client.ok_or_else(|| not_configured(provider))
}

/// All workspaces, in configuration order, with lookup by id.
#[derive(Default)]
pub struct Registry {
    ordered: Vec<Arc<Workspace>>,
    by_id: HashMap<String, Arc<Workspace>>,
}

impl Registry {
    pub fn new(workspaces: Vec<Workspace>) -> Self {
        let ordered: Vec<Arc<Workspace>> = workspaces.into_iter().map(Arc::new).collect();
        let by_id = ordered.iter().map(|w| (w.id.clone(), w.clone())).collect();
        Self { ordered, by_id }
    }

    /// A registry of workspaces already shared: a reload keeps the unchanged ones as they
    /// are (their breakers, budgets and Xenioo call clocks with them).
    pub fn from_shared(ordered: Vec<Arc<Workspace>>) -> Self {
        let by_id = ordered.iter().map(|w| (w.id.clone(), w.clone())).collect();
        Self { ordered, by_id }
    }

    pub fn all(&self) -> &[Arc<Workspace>] {
        &self.ordered
    }

    /// Every configured upstream account, over all workspaces.
    pub fn accounts(&self) -> std::collections::HashSet<AccountKey> {
        self.ordered
            .iter()
            .flat_map(|w| w.accounts.values().cloned())
            .collect()
    }

    pub fn get(&self, id: &str) -> Option<&Arc<Workspace>> {
        self.by_id.get(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;
    use crate::error::code;
    use std::time::Duration;

    /// Nothing listens on the discard port: these clients are never called.
    const UNUSED: &str = "http://127.0.0.1:9";

    fn workspace_with(connectycube: bool, xenioo: bool) -> Workspace {
        let http = reqwest::Client::new();
        let mut accounts = HashMap::new();
        let connectycube = connectycube.then(|| {
            accounts.insert(
                Provider::ConnectyCube,
                AccountKey::new(Provider::ConnectyCube, &[UNUSED, "cc-key"]),
            );
            ConnectyCube::new(http.clone(), UNUSED.into(), Secret::new("cc-key"))
        });
        let xenioo = xenioo.then(|| {
            accounts.insert(
                Provider::Xenioo,
                AccountKey::new(Provider::Xenioo, &[UNUSED, "x-token"]),
            );
            Xenioo::new(
                http.clone(),
                UNUSED.into(),
                Secret::new("x-token"),
                Duration::from_secs(3600),
            )
        });
        Workspace {
            id: "w".into(),
            name: "W".into(),
            zone: Zone::utc(),
            help_scout: None,
            help_scout_mailboxes: Vec::new(),
            connectycube,
            message2give: None,
            chat_tonic: None,
            xenioo,
            accounts,
            generation: Workspace::next_generation(),
        }
    }

    #[test]
    fn the_sources_are_the_configured_providers_in_provider_order() {
        let both = workspace_with(true, true);
        let providers: Vec<Provider> = both.sources().iter().map(|s| s.provider()).collect();
        assert_eq!(providers, vec![Provider::Xenioo, Provider::ConnectyCube]);
        assert!(both.has(Provider::Xenioo) && both.has(Provider::ConnectyCube));
        assert!(!both.has(Provider::HelpScout));
        let finest: Vec<_> = both.sources().iter().map(|s| s.finest()).collect();
        assert_eq!(
            finest,
            vec![
                crate::providers::xenioo::FINEST,
                crate::providers::connectycube::FINEST
            ]
        );
        assert!(both.sources().iter().all(|s| !s.feeds().is_empty()));

        let one = workspace_with(true, false);
        assert_eq!(one.upstreams().len(), 1);
        assert!(!one.has(Provider::Xenioo));
    }

    #[test]
    fn a_provider_without_an_account_is_a_coded_error_not_a_panic() {
        let workspace = workspace_with(true, false);
        assert!(workspace.account(Provider::ConnectyCube).is_ok());
        let error = workspace
            .account(Provider::Xenioo)
            .expect_err("no Xenioo account");
        assert_eq!(error.provider, Provider::Xenioo);
        assert_eq!(error.code(), code::INTERNAL_SERVER_ERROR);
        let missing = configured(workspace.xenioo.as_ref(), Provider::Xenioo)
            .err()
            .expect("no Xenioo client");
        assert_eq!(missing, error);
    }
}
