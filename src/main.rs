//! The `wxgate` command line: parse arguments, load config, call the library.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

use wxgate::config::{parse_duration, Config};
use wxgate::error::chain;
use wxgate::keygen::{keygen, NewKey};
use wxgate::token::{Algorithm, NewToken, TokenKeys, UserClaims};

/// mimalloc instead of the system allocator: the request path allocates and
/// frees many small buffers (headers, bytes, futures), and glibc's malloc
/// spent about a seventh of the proxy's CPU on them (see bench/README.md).
#[cfg(not(feature = "system-alloc"))]
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Authentication gateway for WeChat Mini Program backends.
#[derive(Parser)]
#[command(name = "wxgate", version, about, propagate_version = true)]
struct Cli {
    /// Log format on stderr (level from RUST_LOG, default "info").
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(clap::Args)]
struct ConfigArg {
    /// Path to the TOML config file.
    #[arg(short, long, env = "WXGATE_CONFIG")]
    config: PathBuf,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Run {
        #[command(flatten)]
        config: ConfigArg,
        /// Once listening, write the bound address of each listener to this
        /// file, one per line (plain HTTP first, then HTTPS if configured);
        /// useful with `listen = "127.0.0.1:0"`. Removed on exit.
        #[arg(long, value_name = "PATH")]
        ready_file: Option<PathBuf>,
    },
    /// Validate a config file and print the effective config (secrets as ***).
    Check(ConfigArg),
    /// Issue or verify tokens with the configured key.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Make a token key: a random 32-byte HS256 secret (printed, base64), or
    /// an EdDSA or ES256 key pair (PEM files; its kid is printed).
    Keygen {
        /// HS256, EdDSA or ES256.
        #[arg(long, default_value = "HS256", value_parser = parse_algorithm)]
        alg: Algorithm,
        /// EdDSA and ES256: the private key's file (written with mode 0600,
        /// never overwritten); the public key goes beside it as NAME.pub.pem.
        #[arg(long, value_name = "FILE.pem", default_value = "wxgate-jwt.pem")]
        out: PathBuf,
    },
    /// Run the gateway with an embedded mock WeChat and echo upstream (no account needed).
    Dev {
        /// Address of the gateway (with the embedded config).
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        /// Address of the internal listener (the status page, /metrics, the
        /// admin API), unless the config file sets `[metrics] listen`.
        #[arg(long, default_value = "127.0.0.1:8081")]
        internal: std::net::SocketAddr,
        /// Use this config (routes, keys, appid) but keep the mock WeChat.
        #[arg(short, long)]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Print a token signed with the configured key (for testing and operations).
    Issue {
        #[command(flatten)]
        config: ConfigArg,
        /// The openid to put in `sub`.
        #[arg(long)]
        openid: String,
        /// The unionid claim.
        #[arg(long)]
        unionid: Option<String>,
        /// The appid claim.
        #[arg(long)]
        appid: Option<String>,
        /// Lifetime, like 2h (default: [jwt] ttl).
        #[arg(long, value_parser = parse_duration)]
        ttl: Option<Duration>,
        /// The backend's user id (`uid`, as the login hook would set it).
        #[arg(long, value_parser = parse_uid)]
        uid: Option<String>,
        /// A role (as the login hook would grant it); repeat for several.
        #[arg(long = "role", value_parser = parse_role)]
        roles: Vec<String>,
    },
    /// Print the claims of a token, or why it is refused.
    Verify {
        #[command(flatten)]
        config: ConfigArg,
        /// The token (without "Bearer ").
        token: String,
    },
}

fn parse_uid(text: &str) -> Result<String, String> {
    if (1..=wxgate::hook::MAX_UID_BYTES).contains(&text.len())
        && text.bytes().all(|b| b.is_ascii_graphic())
    {
        Ok(text.to_string())
    } else {
        Err("a uid is 1-128 visible ASCII characters".into())
    }
}

fn parse_algorithm(text: &str) -> Result<Algorithm, String> {
    Algorithm::parse(text).ok_or_else(|| "HS256, EdDSA or ES256".into())
}

fn parse_role(text: &str) -> Result<String, String> {
    if wxgate::hook::is_role_name(text) {
        Ok(text.to_string())
    } else {
        Err("a role is 1-64 of A-Z a-z 0-9 _ . : -".into())
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Held to the end: dropping it flushes the log lines still queued.
    let (_log_writer, set_level) = wxgate::logs::init(matches!(cli.log_format, LogFormat::Json));
    match cli.command {
        Command::Run { config, ready_file } => {
            run(&config.config, ready_file.as_deref(), &set_level)
        }
        Command::Check(c) => check(&c.config),
        Command::Token(t) => token(t),
        Command::Dev {
            listen,
            internal,
            config,
        } => dev(listen, internal, config.as_deref()),
        Command::Keygen { alg, out } => match keygen(alg, &out) {
            Ok(NewKey::Secret(secret)) => {
                println!("{secret}");
                ExitCode::SUCCESS
            }
            Ok(NewKey::Pair {
                kid,
                private,
                public,
            }) => {
                // stdout: the kid alone, for scripts; the rest for people.
                println!("{kid}");
                eprintln!(
                    "wrote {} (private key: keep it secret) and {} (public key)\n\n[jwt]\nalgorithm = \"{alg}\"\nprivate_key_file = \"{}\"\n# kid = \"{kid}\" (the default for this key)",
                    private.display(),
                    public.display(),
                    private.display(),
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("wxgate keygen: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

fn load(path: &std::path::Path) -> Result<Config, ExitCode> {
    Config::load(path, &|name| std::env::var(name).ok()).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(2)
    })
}

fn check(path: &std::path::Path) -> ExitCode {
    let config = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    for w in &config.warnings {
        eprintln!("warning: {w}");
    }
    print!("{}", config.render());
    ExitCode::SUCCESS
}

fn token(cmd: TokenCommand) -> ExitCode {
    match cmd {
        TokenCommand::Issue {
            config,
            openid,
            unionid,
            appid,
            ttl,
            uid,
            roles,
        } => {
            let config = match load(&config.config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let keys = TokenKeys::new(&config.jwt);
            let user = UserClaims {
                uid,
                roles,
                ext: Default::default(),
                risk: None,
            };
            let new = NewToken {
                family: None,
                openid: &openid,
                unionid: unionid.as_deref(),
                appid: appid.as_deref(),
                ttl,
                user: Some(&user),
            };
            match keys.issue(&new) {
                Ok((token, _)) => {
                    println!("{token}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: cannot issue a token: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        TokenCommand::Verify { config, token } => {
            let config = match load(&config.config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let keys = TokenKeys::new(&config.jwt);
            let token = token.trim();
            let token = token
                .strip_prefix("Bearer ")
                .or_else(|| token.strip_prefix("bearer "))
                .unwrap_or(token);
            match keys.verify(token) {
                Ok(id) => {
                    let v = serde_json::json!({
                        "sub": id.openid,
                        "unionid": id.unionid,
                        "appid": id.appid,
                        "jti": id.jti,
                        "iat": id.iat,
                        "exp": id.exp,
                        "uid": id.user.uid,
                        "roles": id.user.roles,
                        "ext": id.user.ext,
                    });
                    println!("{v:#}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("invalid: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// The tokio runtime for `threads` worker threads. One thread means a
/// current-thread runtime: everything runs on the main thread, with no
/// work-stealing scheduler and no cross-thread wake-ups to pay for. The
/// open-file limit is raised first.
fn runtime(threads: usize) -> Option<tokio::runtime::Runtime> {
    // Before anything opens a socket: one descriptor per connection.
    wxgate::server::raise_fd_limit();
    let mut builder = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(threads);
        b
    };
    match builder.enable_all().build() {
        Ok(rt) => Some(rt),
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            None
        }
    }
}

fn dev(
    listen: std::net::SocketAddr,
    internal: std::net::SocketAddr,
    config: Option<&std::path::Path>,
) -> ExitCode {
    let Some(runtime) = runtime(2) else {
        return ExitCode::FAILURE;
    };
    runtime.block_on(async {
        let env =
            match wxgate::dev::start(listen, internal, config, &|name| std::env::var(name).ok())
                .await
            {
                Ok(env) => env,
                Err(e) => {
                    eprintln!("error: {}", chain(&e));
                    return ExitCode::from(2);
                }
            };
        for w in &env.config.warnings {
            tracing::warn!("{w}");
        }
        println!("{}", env.walkthrough());
        wait_for_signal().await;
        let grace = env.config.server.grace_period;
        let wxgate::dev::DevEnv { gateway, .. } = env;
        gateway.shutdown(grace).await;
        ExitCode::SUCCESS
    })
}

fn run(
    path: &std::path::Path,
    ready_file: Option<&std::path::Path>,
    set_level: &wxgate::logs::SetLevel,
) -> ExitCode {
    let config = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    set_level(&config.log.level);
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    if let Some(file) = ready_file {
        // A file left by an earlier run must not announce this one before it listens.
        let _ = std::fs::remove_file(file);
    }
    let Some(runtime) = runtime(config.server.threads) else {
        return ExitCode::FAILURE;
    };
    runtime.block_on(async {
        let running = match wxgate::server::start(&config).await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("error: {}", chain(&e));
                return ExitCode::FAILURE;
            }
        };
        running.status().set_source(path.display().to_string());
        if let Some(file) = ready_file {
            if let Err(e) = write_ready_file(file, &running) {
                eprintln!("error: cannot write the ready file {}: {e}", file.display());
                running.shutdown(Duration::ZERO).await;
                return ExitCode::FAILURE;
            }
        }
        // SIGHUP re-reads the file (see `Running::reload`); SIGTERM or SIGINT stops.
        let hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup());
        // Made once: a stop signal that arrives during a reload is not missed.
        let mut stop = std::pin::pin!(wait_for_signal());
        match hangup {
            Ok(mut hangup) => loop {
                tokio::select! {
                    _ = &mut stop => break,
                    _ = hangup.recv() => {
                        tracing::info!(file = %path.display(), "SIGHUP: reloading the config");
                        if let Ok(config) = running.reload_file(path, &|name| std::env::var(name).ok()).await {
                            set_level(&config.log.level);
                        }
                    }
                }
            },
            Err(e) => {
                tracing::warn!(error = %e, "no SIGHUP handler: the config cannot be reloaded");
                stop.await;
            }
        }
        tracing::info!(grace = ?config.server.grace_period, "shutting down");
        tokio::select! {
            _ = running.shutdown(config.server.grace_period) => {}
            _ = wait_for_signal() => tracing::warn!("second signal, stopping now"),
        }
        if let Some(file) = ready_file {
            let _ = std::fs::remove_file(file);
        }
        ExitCode::SUCCESS
    })
}

/// The bound addresses, one per line, written whole (a reader polling for
/// the file never sees half of it).
fn write_ready_file(
    file: &std::path::Path,
    running: &wxgate::server::Running,
) -> std::io::Result<()> {
    let mut text = format!("{}\n", running.addr());
    if let Some(tls) = running.tls_addr() {
        text.push_str(&format!("{tls}\n"));
    }
    let mut partial = file.as_os_str().to_owned();
    partial.push(".partial");
    let written = std::fs::write(&partial, text).and_then(|()| std::fs::rename(&partial, file));
    if written.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    written
}

/// SIGTERM or SIGINT.
async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers, Ctrl-C still ends the process the default way.
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
