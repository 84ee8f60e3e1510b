//! The runtime side of a configured workspace: its zone and one client per configured provider.
//! Built once at start-up from [`crate::config`]; shared read-only by every request.

use std::collections::HashMap;
use std::sync::Arc;

use crate::cache::AccountKey;
use crate::providers::chat_tonic::ChatTonic;
use crate::providers::connectycube::ConnectyCube;
use crate::providers::help_scout::HelpScout;
use crate::providers::message2give::Message2Give;
use crate::providers::upstream::Upstream;
use crate::providers::xenioo::Xenioo;
use crate::providers::Provider;
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
}

impl Workspace {
    /// The HTTP side of every configured provider, in `Provider` order.
    pub fn upstreams(&self) -> Vec<&Upstream> {
        let mut upstreams = Vec::new();
        if let Some(client) = &self.help_scout {
            upstreams.push(client.upstream());
        }
        if let Some(client) = &self.connectycube {
            upstreams.push(client.upstream());
        }
        if let Some(client) = &self.message2give {
            upstreams.push(client.upstream());
        }
        if let Some(client) = &self.chat_tonic {
            upstreams.push(client.upstream());
        }
        if let Some(client) = &self.xenioo {
            upstreams.push(client.upstream());
        }
        upstreams.sort_by_key(|u| u.provider());
        upstreams
    }

    /// True when the workspace has a client for `provider`.
    pub fn has(&self, provider: Provider) -> bool {
        match provider {
            Provider::Message2Give => self.message2give.is_some(),
            Provider::ChatTonic => self.chat_tonic.is_some(),
            Provider::Xenioo => self.xenioo.is_some(),
            Provider::ConnectyCube => self.connectycube.is_some(),
            Provider::HelpScout => self.help_scout.is_some(),
        }
    }

    /// The cache identity of a configured provider.
    pub fn account(&self, provider: Provider) -> &AccountKey {
        self.accounts
            .get(&provider)
            .expect("parts are built only for configured providers")
    }
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

    pub fn all(&self) -> &[Arc<Workspace>] {
        &self.ordered
    }

    pub fn get(&self, id: &str) -> Option<&Arc<Workspace>> {
        self.by_id.get(id)
    }
}
