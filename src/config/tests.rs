//! End-to-end tests of [`Config::from_toml_str`]: text in, typed config or message out.

use super::*;

/// SPEC §6 verbatim (comments included), with every credential taken from the
/// environment.
const SPEC_CONFIG: &str = r#"
[server]
listen = "127.0.0.1:8080"

[cache]
max_bytes = 268435456
live_ttl_secs = 60
history_ttl_secs = 86400

[[clients]]                      # none = open access (logged as a warning)
name = "dashboard"
key = "${DASHBOARD_KEY}"         # sent as `Authorization: Bearer <key>` or `x-api-key`
workspaces = ["acme"]            # or ["*"]
scopes = ["read"]                # "read", "export" (mutations), "admin"

[[workspaces]]
id = "acme"
name = "Acme Support"
time_zone = "Australia/Sydney"

[workspaces.message2give]
base_url = "https://api.app.message2give.com/2019-01-23"   # default
organisation = "self"
token = "${M2G_TOKEN}"
mfa = "${M2G_MFA}"               # optional

[workspaces.chat_tonic]
base_url = "https://example.invalid"                     # required
codename = "acme"
access_token = "${CHAT_TONIC_TOKEN}"

[workspaces.xenioo]
base_url = "https://publicapi.xenioo.com"                 # default
account_token = "${XENIOO_TOKEN}"
min_call_interval_secs = 3600                             # default; the throttle

[workspaces.connectycube]
base_url = "https://api.connectycube.com"                 # default
admin_api_key = "${CONNECTYCUBE_ADMIN_KEY}"

[workspaces.help_scout]
base_url = "https://api.helpscout.net"                    # default
access_token = "${HELP_SCOUT_TOKEN}"                      # or client_id + client_secret
mailboxes = [123]                                         # optional default filter
"#;

/// Distinctive values, so a test can search any output for them.
const SECRETS: [(&str, &str); 7] = [
    ("DASHBOARD_KEY", "dash-key-Q7xR2"),
    ("M2G_TOKEN", "m2g-token-Z9pL4"),
    ("M2G_MFA", "m2g-mfa-K3vB8"),
    ("CHAT_TONIC_TOKEN", "ct-token-W5nJ1"),
    ("XENIOO_TOKEN", "xen-token-H2cF6"),
    ("CONNECTYCUBE_ADMIN_KEY", "cc-admin-T8mD3"),
    ("HELP_SCOUT_TOKEN", "hs-token-Y4gS7"),
];

fn env(name: &str) -> Option<String> {
    SECRETS
        .iter()
        .find(|(key, _)| *key == name)
        .map(|(_, value)| (*value).to_owned())
}

fn no_env(_: &str) -> Option<String> {
    None
}

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml_str(text, &env)
}

/// The message of the error `text` must produce.
fn error_of(text: &str) -> String {
    match parse(text) {
        Ok(config) => panic!("expected an error, got {config:?}"),
        Err(err) => err.to_string(),
    }
}

const ONE_WORKSPACE: &str = "[[workspaces]]\nid = \"acme\"\n";

/// A minimal valid file with `extra` appended after one workspace `acme`.
fn with_workspace(extra: &str) -> String {
    format!("{ONE_WORKSPACE}{extra}")
}

fn url(text: &str) -> BaseUrl {
    BaseUrl::parse(text).expect("test URL is valid")
}

#[test]
fn the_spec_example_parses_with_credentials_from_the_environment() {
    let config = parse(SPEC_CONFIG).expect("the SPEC §6 example is valid");

    assert_eq!(
        config.server.listen,
        "127.0.0.1:8080".parse().expect("addr")
    );
    assert_eq!(config.cache.max_bytes, 268_435_456);
    assert_eq!(config.cache.live_ttl(), Duration::from_secs(60));
    assert_eq!(config.cache.history_ttl(), Duration::from_secs(86_400));

    assert_eq!(config.clients.len(), 1);
    let client = &config.clients[0];
    assert_eq!(client.name, "dashboard");
    assert_eq!(client.key.expose(), "dash-key-Q7xR2");
    assert_eq!(client.workspaces, ["acme"]);
    assert_eq!(client.scopes, [Scope::Read]);

    assert_eq!(config.workspaces.len(), 1);
    let ws = &config.workspaces[0];
    assert_eq!(ws.id, "acme");
    assert_eq!(ws.name, "Acme Support");
    assert_eq!(ws.time_zone, Zone::Named(chrono_tz::Australia::Sydney));

    let m2g = ws.message2give.as_ref().expect("message2give configured");
    assert_eq!(
        m2g.base_url,
        url("https://api.app.message2give.com/2019-01-23")
    );
    assert_eq!(m2g.organisation, "self");
    assert_eq!(m2g.token.expose(), "m2g-token-Z9pL4");
    assert_eq!(m2g.mfa.as_ref().map(Secret::expose), Some("m2g-mfa-K3vB8"));

    let chat_tonic = ws.chat_tonic.as_ref().expect("chat_tonic configured");
    assert_eq!(chat_tonic.base_url.as_str(), "https://example.invalid");
    assert_eq!(chat_tonic.codename, "acme");
    assert_eq!(chat_tonic.access_token.expose(), "ct-token-W5nJ1");

    let xenioo = ws.xenioo.as_ref().expect("xenioo configured");
    assert_eq!(xenioo.base_url, url("https://publicapi.xenioo.com"));
    assert_eq!(xenioo.account_token.expose(), "xen-token-H2cF6");
    assert_eq!(xenioo.min_call_interval(), Duration::from_secs(3_600));

    let connectycube = ws.connectycube.as_ref().expect("connectycube configured");
    assert_eq!(connectycube.base_url, url("https://api.connectycube.com"));
    assert_eq!(connectycube.admin_api_key.expose(), "cc-admin-T8mD3");

    let help_scout = ws.help_scout.as_ref().expect("help_scout configured");
    assert_eq!(
        help_scout.base_url.join("/v2/reports"),
        "https://api.helpscout.net/v2/reports"
    );
    assert_eq!(
        help_scout.auth,
        HelpScoutAuth::AccessToken(Secret::new("hs-token-Y4gS7"))
    );
    assert_eq!(help_scout.mailboxes, [123]);
}

#[test]
fn a_file_with_only_a_workspace_id_gets_every_default() {
    let config = Config::from_toml_str(ONE_WORKSPACE, &no_env).expect("valid");

    assert_eq!(
        config.server,
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            graphiql: true,
            introspection: true,
            cors_origins: vec![],
        }
    );
    assert_eq!(
        config.cache,
        CacheConfig {
            max_bytes: 268_435_456,
            live_ttl_secs: 60,
            history_ttl_secs: 86_400,
            answer_max_bytes: 16_777_216,
        }
    );
    assert_eq!(
        config.limits,
        LimitsConfig {
            max_depth: 15,
            max_aliases: 30,
            max_root_fields: 20,
            max_document_bytes: 32_768,
            max_cost: 20_000,
            requests_per_minute: 600,
            safelist: None,
            upstream_timeout_ms: 10_000,
            max_subscriptions_per_client: 20,
            upstream_timeouts_ms: ProviderTimeouts::default(),
            upstream_max_retries: 2,
            upstream_retry_backoff_ms: 100,
            upstream_retry_max_wait_ms: 5_000,
            upstream_retry_budget_percent: 20,
            circuit_failure_threshold: 5,
            circuit_cooldown_ms: 30_000,
            upstream_concurrency: 16,
            upstream_concurrency_per_provider: ProviderConcurrency::default(),
        }
    );
    assert_eq!(config.limits.upstream_timeout(), Duration::from_secs(10));
    assert!(config.clients.is_empty());
    assert_eq!(
        config.workspaces,
        [WorkspaceConfig {
            id: "acme".to_owned(),
            name: "acme".to_owned(),
            time_zone: Zone::Named(chrono_tz::UTC),
            message2give: None,
            chat_tonic: None,
            xenioo: None,
            connectycube: None,
            help_scout: None,
        }]
    );
}

#[test]
fn provider_tables_with_only_credentials_get_the_default_urls_and_settings() {
    let config = parse(&with_workspace(
        r#"
[workspaces.message2give]
token = "t"
[workspaces.xenioo]
account_token = "t"
[workspaces.connectycube]
admin_api_key = "k"
[workspaces.help_scout]
client_id = "app"
client_secret = "s"
[[clients]]
name = "all"
key = "k"
workspaces = ["*"]
"#,
    ))
    .expect("valid");
    let ws = &config.workspaces[0];
    assert_eq!(
        ws.message2give,
        Some(Message2GiveConfig {
            base_url: url("https://api.app.message2give.com/2019-01-23"),
            organisation: "self".to_owned(),
            token: Secret::new("t"),
            mfa: None,
        })
    );
    assert_eq!(
        ws.xenioo,
        Some(XeniooConfig {
            base_url: url("https://publicapi.xenioo.com"),
            account_token: Secret::new("t"),
            min_call_interval_secs: 3_600,
        })
    );
    assert_eq!(
        ws.connectycube,
        Some(ConnectyCubeConfig {
            base_url: url("https://api.connectycube.com"),
            admin_api_key: Secret::new("k"),
        })
    );
    assert_eq!(
        ws.help_scout,
        Some(HelpScoutConfig {
            base_url: url("https://api.helpscout.net"),
            auth: HelpScoutAuth::ClientCredentials {
                client_id: "app".to_owned(),
                client_secret: Secret::new("s"),
            },
            mailboxes: vec![],
        })
    );
    assert_eq!(config.clients[0].scopes, [Scope::Read]);
    assert_eq!(config.clients[0].workspaces, ["*"]);
}

#[test]
fn server_and_limits_keys_override_their_defaults() {
    let config = parse(&with_workspace(
        r#"
[server]
listen = "[::]:9000"
graphiql = false
introspection = false
cors_origins = ["https://app.example.com", "http://localhost:3000"]
[limits]
max_depth = 8
requests_per_minute = 60
safelist = "/etc/chatstats/safelist.json"
[[clients]]
name = "ops"
key = "k"
workspaces = ["acme"]
scopes = ["read", "export", "admin"]
"#,
    ))
    .expect("valid");
    assert_eq!(config.server.listen, "[::]:9000".parse().expect("addr"));
    assert!(!config.server.graphiql && !config.server.introspection);
    assert_eq!(config.server.cors_origins.len(), 2);
    assert_eq!(config.limits.max_depth, 8);
    assert_eq!(config.limits.requests_per_minute, 60);
    assert_eq!(config.limits.max_aliases, 30);
    assert_eq!(
        config.limits.safelist,
        Some(PathBuf::from("/etc/chatstats/safelist.json"))
    );
    assert_eq!(
        config.clients[0].scopes,
        [Scope::Read, Scope::Export, Scope::Admin]
    );
}

#[test]
fn a_fixed_offset_time_zone_is_accepted() {
    let config = parse("[[workspaces]]\nid = \"a\"\ntime_zone = \"+10:00\"").expect("valid");
    assert_eq!(config.workspaces[0].time_zone.to_string(), "+10:00");
}

#[test]
fn debug_of_the_whole_config_contains_no_secret() {
    let config = parse(SPEC_CONFIG).expect("valid");
    let debug = format!("{config:?}");
    for (_, secret) in SECRETS {
        assert!(!debug.contains(secret), "{secret} leaked into {debug}");
    }
    assert!(debug.contains("[redacted]"));

    let with_client_credentials = parse(&with_workspace(
        "[workspaces.help_scout]\nclient_id = \"app\"\nclient_secret = \"${HELP_SCOUT_TOKEN}\"",
    ))
    .expect("valid");
    assert!(!format!("{with_client_credentials:?}").contains("hs-token-Y4gS7"));
}

#[test]
fn a_reference_embedded_in_a_url_is_substituted() {
    let env = |name: &str| (name == "SIM").then(|| "127.0.0.1:41234".to_owned());
    let config = Config::from_toml_str(
        r#"
[[workspaces]]
id = "sim"
[workspaces.chat_tonic]
base_url = "http://${SIM}/chat-tonic/"
codename = "acme"
access_token = "Bearer-$${literal}"
"#,
        &env,
    )
    .expect("valid");
    let chat_tonic = config.workspaces[0]
        .chat_tonic
        .as_ref()
        .expect("configured");
    assert_eq!(
        chat_tonic.base_url.as_str(),
        "http://127.0.0.1:41234/chat-tonic"
    );
    assert_eq!(chat_tonic.access_token.expose(), "Bearer-${literal}");
}

#[test]
fn an_unset_variable_names_the_key_and_the_variable() {
    assert_eq!(
        Config::from_toml_str(SPEC_CONFIG, &no_env)
            .expect_err("unset")
            .to_string(),
        "config: clients[0].key: environment variable DASHBOARD_KEY is not set"
    );
    let text = with_workspace(
        "[workspaces.chat_tonic]\nbase_url = \"https://x.invalid\"\ncodename = \"a\"\n\
         access_token = \"${CHAT_TONIC_TOKEN}\"",
    );
    assert_eq!(
        Config::from_toml_str(&text, &no_env).expect_err("unset").to_string(),
        "config: workspaces[0].chat_tonic.access_token: environment variable CHAT_TONIC_TOKEN is not set"
    );
}

#[test]
fn malformed_references_are_errors_at_their_path() {
    for reference in ["${", "${}", "${1BAD}"] {
        let text = with_workspace(&format!(
            "[workspaces.connectycube]\nadmin_api_key = \"{reference}\""
        ));
        let err = parse(&text).expect_err("malformed");
        assert_eq!(
            err.path(),
            Some("workspaces[0].connectycube.admin_api_key"),
            "{reference}"
        );
        assert!(err.to_string().contains("$${ for a literal ${"), "{err}");
    }
}

#[test]
fn an_unknown_key_names_its_path_and_the_allowed_keys() {
    let text = r#"
[[workspaces]]
id = "a"
[[workspaces]]
id = "b"
[workspaces.help_scout]
acces_token = "x"
"#;
    assert_eq!(
        error_of(text),
        "config: workspaces[1].help_scout.acces_token: unknown key; allowed: base_url, \
         access_token, client_id, client_secret, mailboxes"
    );
}

#[test]
fn an_unknown_top_level_section_is_an_error() {
    assert_eq!(
        error_of(&with_workspace("[metrics]\nenabled = true")),
        "config: metrics: unknown key; allowed: server, cache, limits, clients, workspaces, telemetry, shared"
    );
}

#[test]
fn an_unknown_key_in_limits_is_an_error() {
    let message = error_of(&with_workspace("[limits]\nmax_deep = 3"));
    assert!(
        message.starts_with("config: limits.max_deep: unknown key; allowed: max_depth, "),
        "{message}"
    );
}

#[test]
fn a_missing_required_key_names_the_table_and_the_key() {
    let text = with_workspace("[workspaces.chat_tonic]\ncodename = \"a\"\naccess_token = \"t\"");
    assert_eq!(
        error_of(&text),
        "config: workspaces[0].chat_tonic: missing key base_url"
    );
    assert_eq!(
        error_of("[[workspaces]]\nname = \"Acme\""),
        "config: workspaces[0]: missing key id"
    );
}

#[test]
fn a_string_where_a_number_belongs_names_the_expected_form() {
    assert_eq!(
        error_of(&with_workspace("[cache]\nmax_bytes = \"big\"")),
        "config: cache.max_bytes: expected a whole number of 0 or more, found a string"
    );
}

#[test]
fn a_negative_number_for_an_unsigned_key_is_an_error() {
    assert_eq!(
        error_of(&with_workspace("[limits]\nrequests_per_minute = -5")),
        "config: limits.requests_per_minute: expected a whole number from 0 to 4294967295, \
         found a negative integer"
    );
}

#[test]
fn an_unparsable_listen_address_names_the_expected_form() {
    let message = error_of(&with_workspace("[server]\nlisten = \"nope\""));
    assert!(
        message.starts_with(
            "config: server.listen: \"nope\" is not a socket address; expected an IP address \
             and a port such as \"127.0.0.1:8080\""
        ),
        "{message}"
    );
}

#[test]
fn bad_base_urls_name_the_key_and_the_expected_form() {
    let relative = with_workspace(
        "[workspaces.xenioo]\nbase_url = \"publicapi.xenioo.com\"\naccount_token = \"t\"",
    );
    let message = error_of(&relative);
    assert!(
        message.starts_with("config: workspaces[0].xenioo.base_url: not a valid URL"),
        "{message}"
    );
    assert!(
        message.contains("expected an absolute http or https URL"),
        "{message}"
    );

    let ftp = with_workspace(
        "[workspaces.xenioo]\nbase_url = \"ftp://xenioo.com\"\naccount_token = \"t\"",
    );
    assert_eq!(
        error_of(&ftp),
        "config: workspaces[0].xenioo.base_url: only http and https URLs are allowed, e.g. \
         \"https://api.example.com\""
    );
}

#[test]
fn a_toml_syntax_error_keeps_line_and_column_but_not_the_source_line() {
    let err =
        parse("[[workspaces]]\nid = \"acme\"\nkey = \"s3cr3t-literal\n").expect_err("unterminated");
    let message = err.to_string();
    assert!(
        matches!(err, ConfigError::Syntax { line: 3, .. }),
        "{message}"
    );
    assert!(
        message.starts_with("config: TOML syntax error at line 3, column "),
        "{message}"
    );
    assert!(!message.contains("s3cr3t-literal"), "{message}");
}

#[test]
fn help_scout_with_both_credential_forms_is_an_error() {
    let text = with_workspace(
        "[workspaces.help_scout]\naccess_token = \"t\"\nclient_id = \"app\"\nclient_secret = \"s\"",
    );
    assert_eq!(
        error_of(&text),
        "config: workspaces[0].help_scout: access_token cannot be combined with client_id or \
         client_secret; use exactly one form: access_token, or client_id with client_secret"
    );
}

#[test]
fn help_scout_with_neither_credential_form_is_an_error() {
    assert_eq!(
        error_of(&with_workspace("[workspaces.help_scout]\nmailboxes = [1]")),
        "config: workspaces[0].help_scout: no credentials; use exactly one form: access_token, \
         or client_id with client_secret"
    );
}

#[test]
fn help_scout_with_half_of_the_client_credentials_is_an_error() {
    let message = error_of(&with_workspace(
        "[workspaces.help_scout]\nclient_id = \"app\"",
    ));
    assert!(
        message.starts_with(
            "config: workspaces[0].help_scout: client_id is set but client_secret is missing"
        ),
        "{message}"
    );
    let message = error_of(&with_workspace(
        "[workspaces.help_scout]\nclient_secret = \"s\"",
    ));
    assert!(
        message.starts_with(
            "config: workspaces[0].help_scout: client_secret is set but client_id is missing"
        ),
        "{message}"
    );
}

#[test]
fn an_empty_secret_is_an_error_that_names_the_key() {
    assert_eq!(
        error_of(&with_workspace(
            "[workspaces.help_scout]\naccess_token = \"\""
        )),
        "config: workspaces[0].help_scout.access_token: must not be empty"
    );
    let env = |name: &str| (name == "EMPTY").then(String::new);
    let text = with_workspace("[workspaces.message2give]\ntoken = \"t\"\nmfa = \"${EMPTY}\"");
    assert_eq!(
        Config::from_toml_str(&text, &env)
            .expect_err("empty")
            .to_string(),
        "config: workspaces[0].message2give.mfa: must not be empty"
    );
}

#[test]
fn a_configuration_without_workspaces_is_an_error() {
    assert_eq!(
        error_of("[server]\nlisten = \"127.0.0.1:8080\""),
        "config: workspaces: at least one [[workspaces]] table with an id is required"
    );
}

#[test]
fn workspace_ids_must_be_non_empty_well_formed_and_unique() {
    assert_eq!(
        error_of("[[workspaces]]\nid = \"\""),
        "config: workspaces[0].id: must not be empty; use letters, digits, '_' and '-'"
    );
    assert_eq!(
        error_of("[[workspaces]]\nid = \"acme\"\n[[workspaces]]\nid = \"ac me\""),
        "config: workspaces[1].id: \"ac me\" is not a valid id; use only letters, digits, '_' and '-'"
    );
    assert_eq!(
        error_of("[[workspaces]]\nid = \"a\"\n[[workspaces]]\nid = \"b\"\n[[workspaces]]\nid = \"a\""),
        "config: workspaces[2].id: \"a\" is already the id of workspaces[0]; workspace ids must be unique"
    );
}

#[test]
fn an_unknown_time_zone_uses_the_zone_error_message() {
    let message = error_of("[[workspaces]]\nid = \"a\"\ntime_zone = \"Mars/Base\"");
    let zone_error = crate::series::Zone::parse("Mars/Base")
        .expect_err("not a zone")
        .to_string();
    assert_eq!(
        message,
        format!("config: workspaces[0].time_zone: {zone_error}")
    );
    assert!(
        message.contains("Australia/Sydney"),
        "says what is allowed: {message}"
    );
}

#[test]
fn client_names_must_be_unique() {
    let text = with_workspace(
        "[[clients]]\nname = \"d\"\nkey = \"k1\"\nworkspaces = [\"*\"]\n\
         [[clients]]\nname = \"d\"\nkey = \"k2\"\nworkspaces = [\"*\"]",
    );
    assert_eq!(
        error_of(&text),
        "config: clients[1].name: \"d\" is already the name of clients[0]; client names must be unique"
    );
}

#[test]
fn client_keys_must_be_non_empty_and_unique_and_are_never_printed() {
    let empty = with_workspace("[[clients]]\nname = \"d\"\nkey = \"\"\nworkspaces = [\"*\"]");
    assert_eq!(
        error_of(&empty),
        "config: clients[0].key: must not be empty"
    );

    let duplicate = with_workspace(
        "[[clients]]\nname = \"a\"\nkey = \"${DASHBOARD_KEY}\"\nworkspaces = [\"*\"]\n\
         [[clients]]\nname = \"b\"\nkey = \"${DASHBOARD_KEY}\"\nworkspaces = [\"*\"]",
    );
    assert_eq!(
        error_of(&duplicate),
        "config: clients[1].key: same key as clients[0].key; every client needs its own key"
    );
}

#[test]
fn a_secret_of_the_wrong_type_is_reported_without_its_value() {
    let message = error_of(&with_workspace(
        "[[clients]]\nname = \"d\"\nkey = 987654321\nworkspaces = [\"*\"]",
    ));
    assert_eq!(
        message,
        "config: clients[0].key: expected a string, found an integer"
    );
}

#[test]
fn a_client_may_only_name_configured_workspaces_or_the_wildcard() {
    let text = with_workspace(
        "[[clients]]\nname = \"d\"\nkey = \"k\"\nworkspaces = [\"*\", \"acme\", \"beta\"]",
    );
    assert_eq!(
        error_of(&text),
        "config: clients[0].workspaces[2]: unknown workspace \"beta\"; allowed: \"acme\", or \"*\" \
         for all workspaces"
    );
    let none = with_workspace("[[clients]]\nname = \"d\"\nkey = \"k\"\nworkspaces = []");
    assert!(error_of(&none).starts_with("config: clients[0].workspaces: must list at least one"));
}

#[test]
fn an_unknown_scope_lists_the_allowed_scopes() {
    let text = with_workspace(
        "[[clients]]\nname = \"d\"\nkey = \"k\"\nworkspaces = [\"*\"]\nscopes = [\"read\", \"write\"]",
    );
    assert_eq!(
        error_of(&text),
        "config: clients[0].scopes[1]: unknown value \"write\"; allowed: read, export, admin"
    );
}

#[test]
fn a_zero_cache_size_is_an_error() {
    assert!(error_of(&with_workspace("[cache]\nmax_bytes = 0"))
        .starts_with("config: cache.max_bytes: must be greater than 0"));
}

#[test]
fn a_zero_limit_is_an_error() {
    assert!(error_of(&with_workspace("[limits]\nmax_cost = 0"))
        .starts_with("config: limits.max_cost: must be at least 1"));
}

#[test]
fn a_xenioo_call_interval_below_one_second_is_an_error() {
    let text =
        with_workspace("[workspaces.xenioo]\naccount_token = \"t\"\nmin_call_interval_secs = 0");
    assert!(error_of(&text)
        .starts_with("config: workspaces[0].xenioo.min_call_interval_secs: must be at least 1"),);
}

#[test]
fn a_chat_tonic_codename_must_be_non_empty_and_path_safe() {
    let with_codename = |codename: &str| {
        with_workspace(&format!(
            "[workspaces.chat_tonic]\nbase_url = \"https://x.invalid\"\ncodename = \"{codename}\"\n\
             access_token = \"t\""
        ))
    };
    assert!(error_of(&with_codename(""))
        .starts_with("config: workspaces[0].chat_tonic.codename: must not be empty"),);
    assert_eq!(
        error_of(&with_codename("acme/../admin")),
        "config: workspaces[0].chat_tonic.codename: \"acme/../admin\" is not safe in a URL path; \
         use only letters, digits, '-', '.', '_' and '~' (and not \".\" or \"..\")"
    );
    assert!(error_of(&with_codename("..")).contains("is not safe in a URL path"));
}

#[test]
fn help_scout_mailbox_ids_must_be_positive() {
    let text = with_workspace("[workspaces.help_scout]\naccess_token = \"t\"\nmailboxes = [5, 0]");
    assert_eq!(
        error_of(&text),
        "config: workspaces[0].help_scout.mailboxes[1]: mailbox ids are positive integers, found 0"
    );
}

#[test]
fn cors_origins_must_be_bare_origins_or_a_lone_wildcard() {
    let parse_origins =
        |list: &str| parse(&with_workspace(&format!("[server]\ncors_origins = {list}")));
    assert!(parse_origins("[\"*\"]").is_ok());
    let err = parse_origins("[\"https://app.example.com/\"]").expect_err("trailing slash");
    assert_eq!(err.path(), Some("server.cors_origins[0]"));
    assert!(err.to_string().contains("is not an origin"), "{err}");
    let err =
        parse_origins("[\"https://a.example.com\", \"*\"]").expect_err("wildcard with others");
    assert_eq!(err.path(), Some("server.cors_origins[1]"));
}

#[test]
fn no_error_message_contains_a_configured_secret() {
    let broken: [&str; 4] = [
        "[[workspaces]]\nid = \"a b\"\n[workspaces.xenioo]\naccount_token = \"${XENIOO_TOKEN}\"",
        "[[workspaces]]\nid = \"a\"\n[workspaces.connectycube]\nadmin_api_key = \"${CONNECTYCUBE_ADMIN_KEY}\"\nextra = 1",
        "[[workspaces]]\nid = \"a\"\n[workspaces.chat_tonic]\nbase_url = \"${CHAT_TONIC_TOKEN}\"\ncodename = \"a\"\naccess_token = \"t\"",
        "[[workspaces]]\nid = \"a\"\n[cache]\nmax_bytes = \"${M2G_TOKEN}\"",
    ];
    for text in broken {
        let message = error_of(text);
        for (_, secret) in SECRETS {
            assert!(!message.contains(secret), "{secret} leaked into {message}");
        }
    }
}

#[test]
fn loading_a_missing_file_names_the_file() {
    let path = Path::new("/nonexistent/chatstats-config-test.toml");
    let err = Config::load(path).expect_err("no such file");
    assert!(matches!(err, ConfigError::Read { .. }));
    assert!(
        err.to_string()
            .starts_with("config: cannot read /nonexistent/chatstats-config-test.toml: "),
        "{err}"
    );
}

#[test]
fn loading_a_file_parses_its_contents() {
    let path =
        std::env::temp_dir().join(format!("chatstats-config-test-{}.toml", std::process::id()));
    std::fs::write(&path, "[[workspaces]]\nid = \"from-file\"\n").expect("temp dir is writable");
    let loaded = Config::load(&path);
    std::fs::remove_file(&path).expect("the file was just written");
    assert_eq!(loaded.expect("valid").workspaces[0].id, "from-file");
}

#[test]
fn resilience_keys_override_their_defaults_and_are_checked() {
    let config = parse(&with_workspace(
        "[limits]\nupstream_max_retries = 0\nupstream_retry_backoff_ms = 5\n\
         upstream_retry_max_wait_ms = 900\nupstream_retry_budget_percent = 50\n\
         circuit_failure_threshold = 3\ncircuit_cooldown_ms = 250\n\
         upstream_timeouts_ms = { help_scout = 1500 }",
    ))
    .expect("valid");
    assert_eq!(config.limits.upstream_max_retries, 0);
    assert_eq!(config.limits.upstream_retry_backoff_ms, 5);
    assert_eq!(config.limits.upstream_retry_max_wait_ms, 900);
    assert_eq!(config.limits.upstream_retry_budget_percent, 50);
    assert_eq!(config.limits.circuit_failure_threshold, 3);
    assert_eq!(config.limits.circuit_cooldown_ms, 250);
    assert_eq!(
        config
            .limits
            .upstream_timeout_of(crate::providers::Provider::HelpScout),
        Duration::from_millis(1500)
    );
    assert_eq!(
        config
            .limits
            .upstream_timeout_of(crate::providers::Provider::Xenioo),
        Duration::from_secs(10)
    );
    for (text, message) in [
        (
            "upstream_max_retries = 11",
            "config: limits.upstream_max_retries: must be at most 10",
        ),
        (
            "upstream_retry_budget_percent = 101",
            "config: limits.upstream_retry_budget_percent: must be a percentage",
        ),
        (
            "circuit_failure_threshold = 0",
            "config: limits.circuit_failure_threshold: must be at least 1",
        ),
        (
            "upstream_timeouts_ms = { xenioo = 0 }",
            "config: limits.upstream_timeouts_ms.xenioo: must be at least 1",
        ),
        (
            "upstream_timeouts_ms = { helpscout = 10 }",
            "config: limits.upstream_timeouts_ms.helpscout: unknown key; allowed: message2give, \
             chat_tonic, xenioo, connectycube, help_scout",
        ),
    ] {
        let error = error_of(&with_workspace(&format!("[limits]\n{text}")));
        assert!(error.starts_with(message), "{text}: {error}");
    }
}

#[test]
fn the_upstream_concurrency_cap_has_per_provider_overrides_and_is_checked() {
    use crate::providers::Provider;
    let config = parse(&with_workspace(
        "[limits]\nupstream_concurrency = 32\n\
         upstream_concurrency_per_provider = { connectycube = 4, help_scout = 2 }",
    ))
    .expect("valid");
    assert_eq!(config.limits.upstream_concurrency, 32);
    assert_eq!(
        config
            .limits
            .upstream_concurrency_of(Provider::ConnectyCube),
        4
    );
    assert_eq!(
        config.limits.upstream_concurrency_of(Provider::HelpScout),
        2
    );
    assert_eq!(config.limits.upstream_concurrency_of(Provider::Xenioo), 32);
    let default = parse(ONE_WORKSPACE).expect("valid");
    assert_eq!(
        default.limits.upstream_concurrency_of(Provider::ChatTonic),
        16
    );
    for (text, message) in [
        (
            "upstream_concurrency = 0",
            "config: limits.upstream_concurrency: must be from 1 to 10000",
        ),
        (
            "upstream_concurrency = 10001",
            "config: limits.upstream_concurrency: must be from 1 to 10000",
        ),
        (
            "upstream_concurrency_per_provider = { chat_tonic = 0 }",
            "config: limits.upstream_concurrency_per_provider.chat_tonic: must be from 1 to 10000",
        ),
        (
            "upstream_concurrency_per_provider = { xenioo = 20000 }",
            "config: limits.upstream_concurrency_per_provider.xenioo: must be from 1 to 10000",
        ),
        (
            "upstream_concurrency_per_provider = { connectycub = 4 }",
            "config: limits.upstream_concurrency_per_provider.connectycub: unknown key; allowed: \
             message2give, chat_tonic, xenioo, connectycube, help_scout",
        ),
        (
            "upstream_concurrency = -1",
            "config: limits.upstream_concurrency: ",
        ),
    ] {
        let error = error_of(&with_workspace(&format!("[limits]\n{text}")));
        assert!(error.starts_with(message), "{text}: {error}");
    }
}

#[test]
fn every_provider_finds_its_own_override_by_slug() {
    use crate::providers::Provider;
    let overrides = ProviderTimeouts {
        message2give: Some(1),
        chat_tonic: Some(2),
        xenioo: Some(3),
        connectycube: Some(4),
        help_scout: Some(5),
    };
    let found = [
        Provider::Message2Give,
        Provider::ChatTonic,
        Provider::Xenioo,
        Provider::ConnectyCube,
        Provider::HelpScout,
    ]
    .map(|provider| overrides.of(provider));
    assert_eq!(found, [1, 2, 3, 4, 5].map(Some));
    assert_eq!(ProviderConcurrency::default().of(Provider::Xenioo), None);
}

#[test]
fn telemetry_is_off_by_default_and_its_keys_are_checked_with_their_paths() {
    let config = parse(ONE_WORKSPACE).expect("valid");
    assert_eq!(config.telemetry, TelemetryConfig::default());
    assert_eq!(
        config.telemetry.otlp_endpoint, None,
        "traces are off by default"
    );

    let config = parse(&with_workspace(
        "[telemetry]\notlp_endpoint = \"http://127.0.0.1:4318\"\n\
         service_name = \"gateway-eu\"\nsample_ratio = 0.25\nbatch_delay_ms = 200",
    ))
    .expect("valid");
    assert_eq!(
        config.telemetry.otlp_endpoint.as_deref(),
        Some("http://127.0.0.1:4318")
    );
    assert_eq!(config.telemetry.service_name, "gateway-eu");
    assert_eq!(config.telemetry.sample_ratio, 0.25);
    assert_eq!(config.telemetry.batch_delay_ms, 200);
    // An integer ratio is a ratio too.
    let whole = parse(&with_workspace("[telemetry]\nsample_ratio = 1")).expect("valid");
    assert_eq!(whole.telemetry.sample_ratio, 1.0);

    for (extra, path) in [
        (
            "otlp_endpoint = \"localhost:4318\"",
            "telemetry.otlp_endpoint",
        ),
        (
            "otlp_endpoint = \"ftp://127.0.0.1:4318\"",
            "telemetry.otlp_endpoint",
        ),
        (
            "otlp_endpoint = \"http://user:${DASHBOARD_KEY}@127.0.0.1:4318\"",
            "telemetry.otlp_endpoint",
        ),
        (
            "otlp_endpoint = \"http://127.0.0.1:4318/?token=${DASHBOARD_KEY}\"",
            "telemetry.otlp_endpoint",
        ),
        ("service_name = \" \"", "telemetry.service_name"),
        ("sample_ratio = 1.5", "telemetry.sample_ratio"),
        ("sample_ratio = -0.1", "telemetry.sample_ratio"),
        ("sample_ratio = nan", "telemetry.sample_ratio"),
        ("batch_delay_ms = 0", "telemetry.batch_delay_ms"),
        ("batch_delay_ms = 60001", "telemetry.batch_delay_ms"),
        ("sampling = 1.0", "telemetry"),
    ] {
        let message = error_of(&with_workspace(&format!("[telemetry]\n{extra}")));
        assert!(message.contains(path), "{extra}: {message}");
        assert!(
            !message.contains("dash-key-Q7xR2"),
            "{extra}: the message repeats a credential: {message}"
        );
    }
}

#[test]
fn a_shared_section_parses_with_its_url_from_the_environment_and_defaults() {
    let text = format!(
        "{}\n[shared]\nredis_url = \"${{REDIS_URL}}\"\n",
        with_workspace("")
    );
    let config = Config::from_toml_str(&text, &|name| {
        (name == "REDIS_URL").then(|| "redis://:pw-secret-1@127.0.0.1:6390/2".to_owned())
    })
    .expect("valid");
    let shared = config.shared.expect("a [shared] section");
    assert_eq!(
        shared.redis_url.expose(),
        "redis://:pw-secret-1@127.0.0.1:6390/2"
    );
    assert_eq!(shared.namespace, "chatstats");
    assert_eq!(shared.fetch_timeout_ms, 150);
    assert!(!shared.required_to_start);
    assert!(!format!("{shared:?}").contains("pw-secret-1"));
    assert!(parse(&with_workspace("")).expect("valid").shared.is_none());
}

#[test]
fn a_bad_shared_section_is_refused_with_its_key_path_and_never_the_url() {
    let cases = [
        (
            "redis_url = \"http://:pw-secret-2@h:1\"",
            "shared.redis_url",
        ),
        (
            "redis_url = \"redis://:pw-secret-2@h:99999\"",
            "shared.redis_url",
        ),
        ("redis_url = \"not a url pw-secret-2\"", "shared.redis_url"),
        (
            "redis_url = \"redis://h\"\nnamespace = \"a b\"",
            "shared.namespace",
        ),
        (
            "redis_url = \"redis://h\"\nfetch_timeout_ms = 0",
            "shared.fetch_timeout_ms",
        ),
        ("redis_url = \"redis://h\"\ncolour = 1", "shared.colour"),
    ];
    for (body, path) in cases {
        let text = format!("{}\n[shared]\n{body}\n", with_workspace(""));
        let message = error_of(&text);
        assert!(message.contains(path), "{body}: {message}");
        assert!(!message.contains("pw-secret-2"), "{body}: {message}");
    }
}
