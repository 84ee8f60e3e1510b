//! The sandbox's universe: two tenants ("acme" and "globex") and every credential, user, bot,
//! mailbox and operator the simulated upstreams know about, plus up to [`MAX_GENERATED`]
//! generated tenants (`gen-00001`, ...) for fan-out tests and benchmarks.
//!
//! This is static data on purpose: handlers use it to authenticate and to enumerate the
//! entities they report on, and tests use the very same constants to build expected values,
//! so the two can never drift apart. `config_toml` (in `mod.rs`) points the gateway's
//! workspaces at these credentials; `generated_config_toml` at the generated ones.
//!
//! A generated account is a pure function of its number (its id, credentials and entities
//! are spelled from it), built once per process on first use. A sandbox started with
//! `--accounts N` authenticates the first N of them: its call middleware runs each request
//! inside [`serving`], and the `by_*` credential lookups refuse generated accounts beyond N.
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

/// The account with this sandbox id ("acme", "globex", or a generated `gen-00042`), whether
/// or not a sandbox serves it: the truth functions answer for any account.
pub fn find(id: &str) -> Option<&'static Account> {
    ACCOUNTS
        .iter()
        .find(|a| a.id == id)
        .or_else(|| generated_index(id).and_then(generated))
}

/// The account whose message2give `x-token` this is (the MFA check is the caller's job,
/// because a wrong MFA and a wrong token may deserve different messages).
pub fn by_message2give_token(token: &str) -> Option<&'static Account> {
    ACCOUNTS
        .iter()
        .find(|a| a.message2give.token == token)
        .or_else(|| served_by(token, "m2g-", "-token", |a| a.message2give.token == token))
}

/// The account whose Chat-Tonic tenant has this codename.
pub fn by_chat_tonic_codename(codename: &str) -> Option<&'static Account> {
    let has_codename = |a: &Account| {
        a.chat_tonic
            .as_ref()
            .is_some_and(|c| c.codename == codename)
    };
    ACCOUNTS
        .iter()
        .find(|a| has_codename(a))
        .or_else(|| served_by(codename, "", "", has_codename))
}

/// The account whose Xenioo account token this is.
pub fn by_xenioo_token(token: &str) -> Option<&'static Account> {
    let has_token = |a: &Account| a.xenioo.as_ref().is_some_and(|x| x.token == token);
    ACCOUNTS
        .iter()
        .find(|a| has_token(a))
        .or_else(|| served_by(token, "xen-", "-token", has_token))
}

/// The account whose ConnectyCube administration API key this is.
pub fn by_connectycube_key(key: &str) -> Option<&'static Account> {
    ACCOUNTS
        .iter()
        .find(|a| a.connectycube.admin_api_key == key)
        .or_else(|| served_by(key, "cc-", "-key", |a| a.connectycube.admin_api_key == key))
}

/// The account whose static Help Scout access token this is (issued OAuth tokens live in
/// `SimState`, because they are created at run time).
pub fn by_help_scout_static_token(token: &str) -> Option<&'static Account> {
    let has_token = |a: &Account| a.help_scout.access_token == Some(token);
    ACCOUNTS
        .iter()
        .find(|a| has_token(a))
        .or_else(|| served_by(token, "hs-", "-token", has_token))
}

/// The account whose Help Scout OAuth2 client credentials these are (generated accounts have
/// none: they use static tokens).
pub fn by_help_scout_client(client_id: &str, client_secret: &str) -> Option<&'static Account> {
    ACCOUNTS
        .iter()
        .find(|a| a.help_scout.client == Some((client_id, client_secret)))
}

// ---- generated accounts ----------------------------------------------------------------------

/// The most generated accounts a sandbox may serve. Each is built once per process and kept
/// for its life (handlers hold `&'static Account`s), so this also bounds that memory (well
/// under 2 KiB an account).
pub const MAX_GENERATED: usize = 10_000;

/// The id of generated account `number` (1-based): `gen-00001`, `gen-00002`, ...; also its
/// workspace id in the generated config and its Chat-Tonic codename.
pub fn generated_id(number: usize) -> String {
    format!("gen-{number:05}")
}

/// The number of a generated account id, only for its exact spelling (so `gen-1` and
/// `gen-+0001` name nothing) and within [`MAX_GENERATED`].
fn generated_index(id: &str) -> Option<usize> {
    let number: usize = id.strip_prefix("gen-")?.parse().ok()?;
    ((1..=MAX_GENERATED).contains(&number) && generated_id(number) == id).then_some(number)
}

/// Generated account `number` (1..=[`MAX_GENERATED`]), built on first use.
///
/// Its credentials are spelled from its id (`cc-gen-00042-key`, `m2g-gen-00042-token`, ...):
/// every even-numbered account's message2give organisation requires MFA, and every account
/// has Chat-Tonic (two operators), Xenioo (one bot on one channel, so a snapshot stays small),
/// ConnectyCube and a static Help Scout token, with one mailbox, tag and folder.
pub fn generated(number: usize) -> Option<&'static Account> {
    if !(1..=MAX_GENERATED).contains(&number) {
        return None;
    }
    static BUILT: std::sync::OnceLock<std::sync::RwLock<Vec<&'static Account>>> =
        std::sync::OnceLock::new();
    let built = BUILT.get_or_init(Default::default);
    if let Some(account) = built
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .get(number - 1)
    {
        return Some(account);
    }
    let mut built = built
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    // Built in order, so that account n always sits at n - 1.
    while built.len() < number {
        let next = build_generated(built.len() + 1);
        built.push(next);
    }
    built.get(number - 1).copied()
}

fn build_generated(number: usize) -> &'static Account {
    fn leak(text: String) -> &'static str {
        Box::leak(text.into_boxed_str())
    }
    fn leak_all<T>(items: Vec<T>) -> &'static [T] {
        Box::leak(items.into_boxed_slice())
    }
    let id = leak(generated_id(number));
    let users = leak_all(vec![leak(format!("u-{id}-a")), leak(format!("u-{id}-b"))]);
    Box::leak(Box::new(Account {
        id,
        message2give: Message2giveAccount {
            org: leak(format!("org-{id}")),
            token: leak(format!("m2g-{id}-token")),
            mfa: number
                .is_multiple_of(2)
                .then(|| leak(format!("m2g-{id}-mfa"))),
            users,
            ccts: leak_all(vec![Cct {
                id: leak(format!("cct-{id}-all")),
                users,
            }]),
            surveys: leak_all(vec![leak(format!("sv-{id}-main"))]),
        },
        chat_tonic: Some(ChatTonicAccount {
            codename: id,
            token: leak(format!("ct-{id}-token")),
            operators: leak_all(vec![
                Operator {
                    id: leak(format!("op-{id}-1")),
                    given_name: "Ana",
                    family_name: leak(format!("Gen{number}")),
                    status: Some("online"),
                },
                Operator {
                    id: leak(format!("op-{id}-2")),
                    given_name: "Ben",
                    family_name: leak(format!("Gen{number}")),
                    status: None,
                },
            ]),
        }),
        xenioo: Some(XeniooAccount {
            token: leak(format!("xen-{id}-token")),
            bots: leak_all(vec![Bot {
                name: leak(format!("Bot {id}")),
                api_key: leak(format!("bot-{id}")),
                channels: &["WebChat"],
            }]),
        }),
        connectycube: ConnectyCubeAccount {
            admin_api_key: leak(format!("cc-{id}-key")),
        },
        help_scout: HelpScoutAccount {
            access_token: Some(leak(format!("hs-{id}-token"))),
            client: None,
            mailboxes: &[1],
            tags: &[1],
            folders: &[1],
        },
    }))
}

tokio::task_local! {
    /// How many generated accounts the sandbox answering the current request serves.
    static SERVED: usize;
}

/// Runs `request` (a provider handler) as the sandbox that serves the first `generated`
/// generated accounts: the `by_*` lookups inside it find no generated account beyond them.
///
/// A task-local rather than a parameter because every provider handler authenticates through
/// these lookups, and the served count belongs to the sandbox, not to any one handler.
pub async fn serving<F: std::future::Future>(generated: usize, request: F) -> F::Output {
    SERVED.scope(generated, request).await
}

/// The generated account that `credential` (`{prefix}{id}{suffix}`) names, when the sandbox
/// answering the current request serves it and `matches` confirms the credential. Outside a
/// request (tests of this module), every generated account is served.
fn served_by(
    credential: &str,
    prefix: &str,
    suffix: &str,
    matches: impl Fn(&Account) -> bool,
) -> Option<&'static Account> {
    let id = credential.strip_prefix(prefix)?.strip_suffix(suffix)?;
    let number = generated_index(id)?;
    let served = SERVED.try_with(|served| *served).unwrap_or(MAX_GENERATED);
    if number > served {
        return None;
    }
    generated(number).filter(|account| matches(account))
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
    fn every_generated_credential_identifies_exactly_its_own_account() {
        for number in [1, 2, 999, MAX_GENERATED] {
            let account = generated(number).expect("in range");
            assert_eq!(account.id, generated_id(number));
            assert_eq!(find(account.id).map(|a| a.id), Some(account.id));
            let m2g = by_message2give_token(account.message2give.token).map(|a| a.id);
            assert_eq!(m2g, Some(account.id));
            assert_eq!(account.message2give.mfa.is_some(), number.is_multiple_of(2));
            let cc = by_connectycube_key(account.connectycube.admin_api_key).map(|a| a.id);
            assert_eq!(cc, Some(account.id));
            let ct = account
                .chat_tonic
                .as_ref()
                .expect("every generated one has it");
            assert_eq!(
                by_chat_tonic_codename(ct.codename).map(|a| a.id),
                Some(account.id)
            );
            let xen = account.xenioo.as_ref().expect("every generated one has it");
            assert_eq!(by_xenioo_token(xen.token).map(|a| a.id), Some(account.id));
            let hs = account.help_scout.access_token.expect("a static token");
            assert_eq!(
                by_help_scout_static_token(hs).map(|a| a.id),
                Some(account.id)
            );
        }
        assert!(std::ptr::eq(
            generated(7).expect("in range"),
            generated(7).expect("in range")
        ));
    }

    #[test]
    fn generated_ids_are_spelled_one_way_and_bounded() {
        assert!(generated(0).is_none());
        assert!(generated(MAX_GENERATED + 1).is_none());
        for id in [
            "gen-1",
            "gen-+0001",
            "gen-00000",
            "gen-10001",
            "gen-",
            "xgen-00001",
        ] {
            assert!(find(id).is_none(), "{id}");
        }
        assert!(by_connectycube_key("cc-gen-00001-key-extra").is_none());
        assert!(by_message2give_token("m2g-gen-00001-mfa").is_none());
    }

    #[tokio::test]
    async fn a_sandbox_authenticates_only_the_generated_accounts_it_serves() {
        let (within, beyond, acme) = serving(3, async {
            (
                by_connectycube_key("cc-gen-00003-key").map(|a| a.id),
                by_connectycube_key("cc-gen-00004-key").map(|a| a.id),
                by_connectycube_key(ACME.connectycube.admin_api_key).map(|a| a.id),
            )
        })
        .await;
        assert_eq!(within, Some("gen-00003"));
        assert_eq!(beyond, None);
        assert_eq!(acme, Some("acme"));
        let none_generated = serving(0, async { by_xenioo_token("xen-gen-00001-token") }).await;
        assert!(none_generated.is_none());
        assert!(find("gen-00004").is_some(), "the truth knows every account");
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
