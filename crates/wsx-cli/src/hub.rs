//! `wsx hub`: a real-time hub (`wsx-hub`) on its own server: Centrifugo's client protocol
//! on `/connection/websocket`, its server API under `/api/`, `/health`, `/metrics`, and
//! static files.

use crate::args::{parse_secs, secs, DeflateArgs};
use crate::serve::{shutdown_signal, ServeLimits};
use crate::static_files::StaticFiles;
use anyhow::Context;
use serde::Deserialize;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use wsx_hub::{
    Broker, Hub, HubConfig, HubHook, MemoryBroker, NamespaceOptions, RedisBroker, TokenKeys,
};

/// `wsx hub` arguments.
#[derive(clap::Args, Debug)]
pub struct HubArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8000")]
    listen: SocketAddr,
    /// TOML file with the hub's settings and namespaces (see `wsx hub --help`); flags
    /// given on the command line win over it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Secret of HMAC-signed (HS256/384/512) connection and channel tokens.
    #[arg(long, value_name = "SECRET", env = "WSX_HUB_TOKEN_HMAC_SECRET")]
    token_hmac_secret: Option<String>,
    /// PEM public key of RSA-signed (RS256/384/512) tokens.
    #[arg(long, value_name = "FILE")]
    token_rsa_public_key: Option<PathBuf>,
    /// PEM public key of ECDSA-signed (ES256/384) tokens.
    #[arg(long, value_name = "FILE")]
    token_ecdsa_public_key: Option<PathBuf>,
    /// Key of the server API (`X-API-Key` or `Authorization: apikey KEY`); without one the
    /// API is off.
    #[arg(long, value_name = "KEY", env = "WSX_HUB_API_KEY")]
    api_key: Option<String>,
    /// Publications kept per channel of the default namespace (history and recovery).
    #[arg(long, value_name = "N")]
    history_size: Option<usize>,
    /// Seconds each publication is kept.
    #[arg(long, value_name = "SECS")]
    history_ttl: Option<u64>,
    /// Keep presence in the default namespace (subscribers may ask who is there).
    #[arg(long)]
    presence: bool,
    /// Join and leave pushes in the default namespace.
    #[arg(long)]
    join_leave: bool,
    /// Any connected client may subscribe to channels of the default namespace.
    #[arg(long)]
    allow_subscribe: bool,
    /// Subscribers may publish in the default namespace.
    #[arg(long)]
    allow_publish: bool,
    /// Clients may connect without a token (as user ""), and subscribe where
    /// --allow-subscribe lets them.
    #[arg(long)]
    allow_anonymous: bool,
    /// Seconds between the hub's pings (`{}`) to each client, which must answer each
    /// within 8 s (default 25; --ping-interval is the WebSocket-level keepalive).
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    client_ping_interval: Option<f64>,
    /// Seconds a connection may outlive its token's `exp` (SDKs refresh close to it).
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    client_expired_grace: Option<f64>,
    /// This node's name.
    #[arg(long)]
    name: Option<String>,
    /// Redis to share channels, history and presence with the other nodes using it
    /// (`redis://HOST:PORT/DB`, `rediss://` for TLS, `redis://:PASSWORD@HOST`); without
    /// it the hub keeps everything in this process.
    #[arg(long, value_name = "URL", env = "WSX_HUB_REDIS")]
    redis: Option<String>,
    /// Prefix of the hub's Redis keys and pub/sub channels (default `wsx`): hubs that
    /// share a Redis but not their channels use different ones.
    #[arg(long, value_name = "PREFIX", requires = "redis")]
    redis_prefix: Option<String>,
    /// Seconds a client stays in presence after its node stopped refreshing it (a node
    /// that died), with --redis (default 60).
    #[arg(long, value_name = "SECS", value_parser = parse_secs, requires = "redis")]
    presence_ttl: Option<f64>,
    /// Also serve the files in DIR over plain HTTP GET/HEAD (a chat page, say).
    #[arg(long = "static", value_name = "DIR")]
    static_dir: Option<PathBuf>,
    /// PEM certificate chain: serve wss:// and https:// (needs --tls-key).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Threads serving connections (default: one per CPU).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    threads: Option<u16>,
    /// permessage-deflate, as for `wsx serve`, except that the hub always resets its
    /// compression context after each message (`server_no_context_takeover`): a
    /// publication is then compressed once for every subscriber with the same window, and
    /// no connection keeps a compressor's state between messages.
    #[command(flatten)]
    deflate: DeflateArgs,
    #[command(flatten)]
    limits: ServeLimits,
}

/// The `--config` file.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct HubFile {
    name: Option<String>,
    token_hmac_secret: Option<String>,
    token_rsa_public_key: Option<PathBuf>,
    token_ecdsa_public_key: Option<PathBuf>,
    api_key: Option<String>,
    allow_anonymous: bool,
    client_ping_interval: Option<f64>,
    client_expired_grace: Option<f64>,
    max_subscriptions: Option<usize>,
    redis: Option<String>,
    redis_prefix: Option<String>,
    presence_ttl: Option<f64>,
    /// The default namespace.
    defaults: NamespaceOptions,
    namespaces: HashMap<String, NamespaceOptions>,
}

pub const AFTER_HELP: &str = "\
Examples:
  wsx hub --token-hmac-secret S --api-key K --allow-subscribe --allow-publish \\
          --history-size 100 --history-ttl 300 --presence --join-leave
  wsx hub --config examples/chat/hub.toml --static examples/chat
  wsx hub --config hub.toml
  wsx hub --config hub.toml --redis redis://127.0.0.1:6379 --listen 127.0.0.1:8001  # one of N nodes

Clients: Centrifugo's SDKs (centrifuge-js, centrifuge-python, ...) on
ws://HOST:PORT/connection/websocket. Server API: POST /api/<method> (publish, broadcast,
presence, presence_stats, history, history_remove, subscribe, unsubscribe, disconnect,
channels, info) with X-API-Key. Also GET /health and GET /metrics.

hub.toml:
  name = \"node-1\"
  token_hmac_secret = \"...\"
  api_key = \"...\"
  allow_anonymous = false
  redis = \"redis://127.0.0.1:6379\"   # several nodes as one (optional)
  [defaults]               # channels without a namespace
  allow_subscribe = true
  history_size = 100
  history_ttl = 300
  [namespaces.chat]        # channels chat:*
  allow_subscribe = true
  allow_publish = true
  presence = true
  join_leave = true
  history_size = 50
  history_ttl = 600";

/// Runs `wsx hub` until SIGINT/SIGTERM and the graceful shutdown that follows.
pub async fn run(args: HubArgs) -> anyhow::Result<()> {
    let file = match &args.config {
        Some(path) => load(path)?,
        None => HubFile::default(),
    };
    let mut config = HubConfig::default();
    config.defaults = file.defaults;
    config.namespaces = file.namespaces;
    config.allow_anonymous = file.allow_anonymous || args.allow_anonymous;
    let d = &mut config.defaults;
    if let Some(n) = args.history_size {
        d.history_size = n;
    }
    if let Some(t) = args.history_ttl {
        d.history_ttl = t;
    }
    d.presence |= args.presence;
    d.join_leave |= args.join_leave;
    d.allow_subscribe |= args.allow_subscribe;
    d.allow_publish |= args.allow_publish;
    d.allow_anonymous |= args.allow_anonymous;
    if let Some(s) = args
        .client_ping_interval
        .or(file.client_ping_interval)
        .and_then(secs)
    {
        config.ping_interval = s;
    }
    if let Some(s) = args.client_expired_grace.or(file.client_expired_grace) {
        config.expired_grace = secs(s).unwrap_or_default();
    }
    if let Some(n) = file.max_subscriptions {
        config.max_subscriptions = n;
    }
    if let Some(name) = args.name.or(file.name) {
        config.name = name;
    }
    let mut keys = TokenKeys::new();
    if let Some(secret) = args.token_hmac_secret.or(file.token_hmac_secret) {
        keys = keys.hmac_secret(secret.as_bytes());
    }
    if let Some(path) = args.token_rsa_public_key.or(file.token_rsa_public_key) {
        let pem =
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        keys = keys
            .rsa_public_key_pem(&pem)
            .with_context(|| format!("{}: not an RSA public key", path.display()))?;
    }
    if let Some(path) = args.token_ecdsa_public_key.or(file.token_ecdsa_public_key) {
        let pem =
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        keys = keys
            .ecdsa_public_key_pem(&pem)
            .with_context(|| format!("{}: not an ECDSA public key", path.display()))?;
    }
    if !keys.any() && !config.allow_anonymous {
        tracing::warn!("no token key and no --allow-anonymous: every client will be refused");
    }
    let api_key = args.api_key.or(file.api_key);
    let files = match &args.static_dir {
        Some(dir) => Some(Arc::new(StaticFiles::new(dir)?)),
        None => None,
    };
    let mut server_config = wsx::ServerConfig::default();
    server_config.config.deflate = args.deflate.config().map(|mut d| {
        d.server_no_context_takeover = true;
        d
    });
    args.limits.apply(&mut server_config, args.listen);
    let threads = args.threads.map(usize::from).unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });

    let broker: Arc<dyn Broker> = match args.redis.or(file.redis) {
        Some(url) => {
            let mut b = RedisBroker::connect(&url)
                .await
                .with_context(|| format!("cannot use Redis at {}", redacted(&url)))?
                .meta_ttl(config.history_meta_ttl);
            if let Some(prefix) = args.redis_prefix.or(file.redis_prefix) {
                b = b.prefix(&prefix);
            }
            if let Some(ttl) = args.presence_ttl.or(file.presence_ttl).and_then(secs) {
                b = b.presence_ttl(ttl);
            }
            tracing::info!("broker: Redis at {}", redacted(&url));
            Arc::new(b)
        }
        None => Arc::new(MemoryBroker::new().meta_ttl(config.history_meta_ttl)),
    };
    let hub = Hub::new(config, keys, broker);
    let mut hook = HubHook::new(hub.clone());
    if let Some(key) = api_key {
        hook = hook.api_key(key);
    } else {
        tracing::warn!("no --api-key: the server API is off");
    }
    if let Some(files) = files.clone() {
        hook = hook.fallback(move |req| files.respond(req));
    }
    let mut server = wsx::Server::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?
        .config(server_config)
        .worker_threads(threads);
    let (ws, http) = if let Some((cert, key)) = args.tls_cert.as_ref().zip(args.tls_key.as_ref()) {
        server = server.tls_pem(cert, key)?;
        ("wss", "https")
    } else {
        ("ws", "http")
    };
    let addr = server.local_addr()?;
    tracing::info!("hub listening on {ws}://{addr}/connection/websocket, API on {http}://{addr}/api/ ({threads} thread{})",
        if threads == 1 { "" } else { "s" });
    if let Some(files) = &files {
        tracing::info!("serving {} on {http}://{addr}/", files.root().display());
    }
    let handler = {
        let hub = hub.clone();
        move |ws, peer| hub.clone().serve(ws, peer)
    };
    let shutdown = {
        let hub = hub.clone();
        async move {
            shutdown_signal().await;
            // Clients are told to come back later (3001, which SDKs know), and given a
            // moment to close, before the server closes the rest with 1001.
            hub.shutdown(std::time::Duration::from_secs(3)).await;
        }
    };
    let report = server
        .serve_until(handler, move || hook.clone(), shutdown)
        .await?;
    if !crate::json_logs() {
        eprintln!(
            "shutdown: {} of {} connections closed cleanly, {} dropped",
            report.closed_cleanly, report.open, report.dropped
        );
    }
    Ok(())
}

fn load(path: &Path) -> anyhow::Result<HubFile> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("{}: invalid hub configuration", path.display()))
}

/// A Redis URL without its password, for logs and errors.
fn redacted(url: &str) -> String {
    match (url.split_once("://"), url.rfind('@')) {
        (Some((scheme, _)), Some(at)) => format!("{scheme}://***{}", &url[at..]),
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_file() {
        let f: HubFile = toml::from_str(
            r#"
            name = "n1"
            api_key = "k"
            [defaults]
            allow_subscribe = true
            history_size = 10
            history_ttl = 60
            [namespaces.chat]
            presence = true
            "#,
        )
        .unwrap();
        assert_eq!(f.name.as_deref(), Some("n1"));
        assert!(f.defaults.allow_subscribe && f.defaults.history());
        assert!(f.namespaces["chat"].presence);
        assert!(toml::from_str::<HubFile>("[defaults]\nhistroy_size = 1").is_err());
    }

    #[test]
    fn redis_passwords_stay_out_of_logs() {
        assert_eq!(
            super::redacted("redis://:secret@10.0.0.1:6379/0"),
            "redis://***@10.0.0.1:6379/0"
        );
        assert_eq!(
            super::redacted("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
    }
}
