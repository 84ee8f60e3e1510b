//! The `chatstats` command: parse arguments, set up logging, build and run the [`App`], and
//! reload its configuration on SIGHUP.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use chatstats::app::{App, Reloader};
use chatstats::config::Config;
use chatstats::sandbox::{self, SandboxOptions};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    version,
    about = "One GraphQL API over the statistics of five chat and support platforms"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the GraphQL API (the default). Without a config: sandbox mode.
    Serve {
        /// Configuration file (TOML). Without one, chatstats runs against its built-in sandbox.
        #[arg(long, env = "CHATSTATS_CONFIG")]
        config: Option<PathBuf>,
        /// Address to listen on; overrides `[server] listen`. `127.0.0.1:0` picks a free port.
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// Run only the simulated upstreams.
    Sandbox {
        #[arg(long, default_value = "127.0.0.1:8090")]
        listen: SocketAddr,
        /// Also serve N generated accounts (gen-00001, ...), each with its own credentials on
        /// all five upstreams, besides acme and globex. At most 10000.
        #[arg(
            long,
            value_name = "N",
            default_value_t = 0,
            value_parser = clap::builder::RangedU64ValueParser::<usize>::new()
                .range(0..=sandbox::accounts::MAX_GENERATED as u64)
        )]
        accounts: usize,
        /// Write a chatstats config for this sandbox to FILE before serving: one workspace per
        /// generated account with `--accounts`, else acme and globex.
        #[arg(long, value_name = "FILE")]
        write_config: Option<PathBuf>,
    },
    /// Print the schema (SDL).
    Schema {
        /// The Apollo Federation v2 subgraph form.
        #[arg(long)]
        federation: bool,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    chatstats::telemetry::init();
    let command = Cli::parse().command.unwrap_or(Command::Serve {
        config: std::env::var_os("CHATSTATS_CONFIG").map(PathBuf::from),
        listen: None,
    });
    let result = match command {
        Command::Schema { federation } => {
            print!("{}", chatstats::graphql::sdl(federation));
            Ok(())
        }
        Command::Sandbox {
            listen,
            accounts,
            write_config,
        } => sandbox::run(
            listen,
            SandboxOptions::default(),
            accounts,
            write_config.as_deref(),
        )
        .await
        .map_err(|e| format!("sandbox: {e}")),
        Command::Serve { config, listen } => serve(config, listen).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("chatstats: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Option<PathBuf>, listen: Option<SocketAddr>) -> Result<(), String> {
    let app = match &config {
        Some(path) => {
            let mut config = Config::load(path).map_err(|e| e.to_string())?;
            if let Some(listen) = listen {
                config.server.listen = listen;
            }
            App::build(config).await
        }
        None => App::sandboxed(listen.unwrap_or(SocketAddr::from(([127, 0, 0, 1], 8080)))).await,
    }
    .map_err(|e| e.to_string())?;
    let addr = app.local_addr();
    if let Some(url) = app.sandbox_url() {
        println!("sandbox mode: simulated upstreams at {url}");
    }
    reload_on_sighup(app.reloader(), config, listen);
    println!("listening on http://{addr}");
    println!("GraphiQL: http://{addr}/");
    app.run_until(chatstats::telemetry::shutdown_signal())
        .await
        .map_err(|e| e.to_string())
}

/// SIGHUP re-reads the configuration file and applies it ([`Reloader::reload_file`]); in
/// sandbox mode there is no file, and the signal is only logged (rather than ending the
/// process, SIGHUP's default).
#[cfg(unix)]
fn reload_on_sighup(reloader: Reloader, config: Option<PathBuf>, listen: Option<SocketAddr>) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangups = match signal(SignalKind::hangup()) {
        Ok(hangups) => hangups,
        Err(error) => {
            tracing::warn!(%error, "cannot listen for SIGHUP: configuration reloads are off");
            return;
        }
    };
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            match &config {
                // The reloader logs and counts the outcome, whatever it is.
                Some(path) => {
                    let _ = reloader.reload_file(path, listen).await;
                }
                None => tracing::warn!("SIGHUP: sandbox mode has no configuration file to reload"),
            }
        }
    });
}

#[cfg(not(unix))]
fn reload_on_sighup(_: Reloader, _: Option<PathBuf>, _: Option<SocketAddr>) {}
