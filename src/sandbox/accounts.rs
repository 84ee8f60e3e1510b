//! The sandbox's universe: two tenants ("acme" and "globex") and every credential, user, bot,
//! mailbox and operator the simulated upstreams know about.
//!
//! This is static data on purpose: handlers use it to authenticate and to enumerate the
//! entities they report on, and tests use the very same constants to build expected values,
//! so the two can never drift apart. `config_toml` (in `mod.rs`) points the gateway's
//! workspaces at these credentials.
//!
//! Every data series key built from these ids starts with `{provider}/{account}/...`, so two
//! accounts never share data even where their upstream ids would collide.

/// One tenant of the sandbox, with its identity on each of the five providers.
#[derive(Debug)]
pub struct Account {
    /// Sandbox account id; also the chatstats workspace id in `config_toml` ("acme", "globex").
    pub id: &'static str,
    /// message2give organisation, credentials and entities.
    pub message2give: Message2giveAccount,
    /// Chat-Tonic tenant, if the account uses Chat-Tonic.
    pub chat_tonic: Option<ChatTonicAccount>,
    /// Xenioo account, if the account uses Xenioo.
    pub xenioo: Option<XeniooAccount>,
    /// ConnectyCube application credentials.
    pub connectycube: ConnectyCubeAccount,
    /// Help Scout credentials and report filters.
    pub help_scout: HelpScoutAccount,
}

/// An account's message2give organisation.
#[derive(Debug)]
pub struct Message2giveAccount {
    /// Organisation id; requests may also address it as "self".
    pub org: &'static str,
    /// Value expected in the `x-token` header.
    pub token: &'static str,
    /// Value expected in the `x-mfa` header, when the organisation requires MFA.
    pub mfa: Option<&'static str>,
    /// User ids, in the order they are reported.
    pub users: &'static [&'static str],
    /// Chat contact teams (ccts) and their members.
    pub ccts: &'static [Cct],
    /// SMS survey ids.
    pub surveys: &'static [&'static str],
}

/// A message2give chat contact team: a named group of users with its own statistics.
#[derive(Debug)]
pub struct Cct {
    /// Team id, e.g. "cct-acme-front".
    pub id: &'static str,
    /// Ids of the member users (a user may belong to several teams).
    pub users: &'static [&'static str],
}

/// An account's Chat-Tonic tenant.
#[derive(Debug)]
pub struct ChatTonicAccount {
    /// The `{codename}` path segment of the tenant.
    pub codename: &'static str,
    /// Bearer token accepted for this codename.
    pub token: &'static str,
    /// Operators, in the order they are reported.
    pub operators: &'static [Operator],
}

/// A Chat-Tonic operator.
#[derive(Debug)]
pub struct Operator {
    /// Operator id as Chat-Tonic reports it.
    pub id: &'static str,
    /// Given name.
    pub given_name: &'static str,
    /// Family name.
    pub family_name: &'static str,
    /// Presence status; `None` means the upstream omits the field for this operator
    /// (the seed shows operators without it, so the gateway must cope).
    pub status: Option<&'static str>,
}

/// An account's Xenioo credentials and bots.
#[derive(Debug)]
pub struct XeniooAccount {
    /// Bearer account token.
    pub token: &'static str,
    /// Bots of the account, in the order they are reported.
    pub bots: &'static [Bot],
}

/// A Xenioo bot.
#[derive(Debug)]
pub struct Bot {
    /// Display name, reported as `BotName`.
    pub name: &'static str,
    /// Bot API key, usable as the `{APIKEY}` path segment.
    pub api_key: &'static str,
    /// Channels the bot is published on, reported as `ChannelName`.
    pub channels: &'static [&'static str],
}

/// An account's ConnectyCube credentials.
#[derive(Debug)]
pub struct ConnectyCubeAccount {
    /// Value expected in the `CB-Administration-API-Key` header.
    pub admin_api_key: &'static str,
}

/// An account's Help Scout credentials and report dimensions.
#[derive(Debug)]
pub struct HelpScoutAccount {
    /// A long-lived access token accepted as a Bearer token, if the account has one.
    pub access_token: Option<&'static str>,
    /// OAuth2 client-credentials pair `(client_id, client_secret)`, if the account has one.
    pub client: Option<(&'static str, &'static str)>,
    /// Mailbox ids (the `mailboxes` filter).
    pub mailboxes: &'static [i64],
    /// Tag ids (the `tags` filter).
    pub tags: &'static [i64],
    /// Folder ids (the `folders` filter).
    pub folders: &'static [i64],
}

/// The "acme" tenant: uses all five providers, message2give with MFA, Help Scout static token.
pub const ACME: Account = Account {
    id: "acme",
    message2give: Message2giveAccount {
        org: "org-acme",
        token: "m2g-acme-token",
        mfa: Some("m2g-acme-mfa"),
        users: &["u-acme-ana", "u-acme-ben", "u-acme-cal"],
        ccts: &[
            Cct {
                id: "cct-acme-front",
                users: &["u-acme-ana", "u-acme-ben"],
            },
            Cct {
                id: "cct-acme-back",
                users: &["u-acme-ben", "u-acme-cal"],
            },
        ],
        surveys: &["sv-acme-feedback", "sv-acme-promo"],
    },
    chat_tonic: Some(ChatTonicAccount {
        codename: "acme",
        token: "ct-acme-token",
        operators: &[
            Operator {
                id: "5ed96d95aef725fdfb",
                given_name: "Chamo",
                family_name: "Sac2",
                status: None,
            },
            Operator {
                id: "5f286ede4dbdcf209af",
                given_name: "Lucia",
                family_name: "Ortiz",
                status: Some("online"),
            },
            Operator {
                id: "60a1b2c3d4e5f6a7b8",
                given_name: "Marc",
                family_name: "Vidal",
                status: Some("away"),
            },
            Operator {
                id: "61f0e1d2c3b4a59687",
                given_name: "Noa",
                family_name: "Ruiz",
                status: Some("offline"),
            },
        ],
    }),
    xenioo: Some(XeniooAccount {
        token: "xen-acme-token",
        bots: &[
            Bot {
                name: "Acme Helper",
                api_key: "bot-acme-helper",
                channels: &["Facebook", "Telegram", "WebChat"],
            },
            Bot {
                name: "Acme Sales",
                api_key: "bot-acme-sales",
                channels: &["WebChat", "WhatsApp"],
            },
        ],
    }),
    connectycube: ConnectyCubeAccount {
        admin_api_key: "cc-acme-key",
    },
    help_scout: HelpScoutAccount {
        access_token: Some("hs-acme-token"),
        client: None,
        mailboxes: &[101, 102, 103],
        tags: &[7, 8],
        folders: &[11, 12],
    },
};

/// The "globex" tenant: no Chat-Tonic or Xenioo, message2give without MFA, Help Scout via
/// OAuth2 client credentials only (exercises the gateway's token flow).
pub const GLOBEX: Account = Account {
    id: "globex",
    message2give: Message2giveAccount {
        org: "org-globex",
        token: "m2g-globex-token",
        mfa: None,
        users: &["u-globex-dan", "u-globex-eva"],
        ccts: &[Cct {
            id: "cct-globex-all",
            users: &["u-globex-dan", "u-globex-eva"],
        }],
        surveys: &["sv-globex-main"],
    },
    chat_tonic: None,
    xenioo: None,
    connectycube: ConnectyCubeAccount {
        admin_api_key: "cc-globex-key",
    },
    help_scout: HelpScoutAccount {
        access_token: None,
        client: Some(("hs-globex-client", "hs-globex-secret")),
        mailboxes: &[201, 202],
        tags: &[9],
        folders: &[21],
    },
};

/// Every account of the sandbox.
pub const ACCOUNTS: &[Account] = &[ACME, GLOBEX];

/// The account with this sandbox id ("acme", "globex").
pub fn find(id: &str) -> Option<&'static Account> {
    ACCOUNTS.iter().find(|a| a.id == id)
}

/// The account whose message2give `x-token` this is (the MFA check is the caller's job,
/// because a wrong MFA and a wrong token may deserve different messages).
pub fn by_message2give_token(token: &str) -> Option<&'static Account> {
    ACCOUNTS.iter().find(|a| a.message2give.token == token)
}

/// The account whose Chat-Tonic tenant has this codename.
pub fn by_chat_tonic_codename(codename: &str) -> Option<&'static Account> {
    ACCOUNTS.iter().find(|a| {
        a.chat_tonic
            .as_ref()
            .is_some_and(|c| c.codename == codename)
    })
}

/// The account whose Xenioo account token this is.
pub fn by_xenioo_token(token: &str) -> Option<&'static Account> {
    ACCOUNTS
        .iter()
        .find(|a| a.xenioo.as_ref().is_some_and(|x| x.token == token))
}

/// The account whose ConnectyCube administration API key this is.
pub fn by_connectycube_key(key: &str) -> Option<&'static Account> {
    ACCOUNTS
        .iter()
        .find(|a| a.connectycube.admin_api_key == key)
}

/// The account whose static Help Scout access token this is (issued OAuth tokens live in
/// `SimState`, because they are created at run time).
pub fn by_help_scout_static_token(token: &str) -> Option<&'static Account> {
    ACCOUNTS
        .iter()
        .find(|a| a.help_scout.access_token == Some(token))
}

/// The account whose Help Scout OAuth2 client credentials these are.
pub fn by_help_scout_client(client_id: &str, client_secret: &str) -> Option<&'static Account> {
    ACCOUNTS
        .iter()
        .find(|a| a.help_scout.client == Some((client_id, client_secret)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_credential_identifies_exactly_its_own_account() {
        for account in ACCOUNTS {
            let m2g = by_message2give_token(account.message2give.token).map(|a| a.id);
            assert_eq!(m2g, Some(account.id));
            let cc = by_connectycube_key(account.connectycube.admin_api_key).map(|a| a.id);
            assert_eq!(cc, Some(account.id));
            if let Some(ct) = &account.chat_tonic {
                assert_eq!(
                    by_chat_tonic_codename(ct.codename).map(|a| a.id),
                    Some(account.id)
                );
            }
            if let Some(x) = &account.xenioo {
                assert_eq!(by_xenioo_token(x.token).map(|a| a.id), Some(account.id));
            }
            if let Some(t) = account.help_scout.access_token {
                assert_eq!(
                    by_help_scout_static_token(t).map(|a| a.id),
                    Some(account.id)
                );
            }
            if let Some((id, secret)) = account.help_scout.client {
                assert_eq!(
                    by_help_scout_client(id, secret).map(|a| a.id),
                    Some(account.id)
                );
            }
        }
    }

    #[test]
    fn unknown_or_mixed_credentials_identify_no_account() {
        assert!(by_message2give_token("nope").is_none());
        assert!(by_help_scout_client("hs-globex-client", "wrong").is_none());
        assert!(by_help_scout_static_token("hs-globex-secret").is_none());
        assert!(by_chat_tonic_codename("globex").is_none());
        assert!(find("initech").is_none());
    }
}
