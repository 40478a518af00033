//! The server API, as Centrifugo's HTTP API has it: `POST /api/<method>` with the method's
//! parameters as a JSON body, answered with `{"result": ...}` or `{"error": {"code",
//! "message"}}` (HTTP 200 either way; 400 for a body that is not the method's JSON, 404 for
//! a method that does not exist). Authentication is the HTTP layer's
//! ([`crate::HubHook`]).

use crate::codes::{self, ErrorReply};
use crate::control::Control;
use crate::hub::Hub;
use crate::protocol::{Json, Publication, StreamPosition};
use crate::session::{history, presence_stats, publish_options};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// An answer to an API call: HTTP status and JSON body.
#[derive(Debug)]
pub struct ApiReply {
    /// HTTP status.
    pub status: u16,
    /// The JSON body.
    pub body: Vec<u8>,
}

#[derive(Deserialize)]
struct PublishParams {
    #[serde(default)]
    channel: String,
    data: Option<Json>,
    #[serde(default)]
    skip_history: bool,
    tags: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
struct BroadcastParams {
    #[serde(default)]
    channels: Vec<String>,
    data: Option<Json>,
    #[serde(default)]
    skip_history: bool,
    tags: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
struct ChannelParams {
    #[serde(default)]
    channel: String,
}

#[derive(Deserialize)]
struct HistoryParams {
    #[serde(default)]
    channel: String,
    #[serde(default)]
    limit: i32,
    since: Option<StreamPosition>,
    #[serde(default)]
    reverse: bool,
}

#[derive(Deserialize)]
struct UserChannelParams {
    #[serde(default)]
    user: String,
    #[serde(default)]
    channel: String,
    client: Option<String>,
}

#[derive(Deserialize)]
struct DisconnectParams {
    #[serde(default)]
    user: String,
    client: Option<String>,
    #[serde(default)]
    whitelist: Vec<String>,
    disconnect: Option<CustomDisconnect>,
}

/// The close code and reason of a server API `disconnect`.
#[derive(Deserialize)]
struct CustomDisconnect {
    code: u16,
    #[serde(default)]
    reason: String,
}

#[derive(Deserialize, Default)]
struct ChannelsParams {
    pattern: Option<String>,
}

#[derive(Serialize)]
struct PublishResult {
    offset: u64,
    epoch: String,
}

#[derive(Serialize)]
struct Empty {}

/// Answers one API call.
pub async fn call(hub: &Hub, method: &str, body: &[u8]) -> ApiReply {
    hub.metrics.api_calls.inc();
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        body
    };
    match method {
        "publish" => {
            run(body, |p: PublishParams| async move {
                let data = p.data.ok_or(codes::BAD_REQUEST)?;
                publish(hub, &p.channel, data, p.skip_history, p.tags).await
            })
            .await
        }
        "broadcast" => {
            run(body, |p: BroadcastParams| async move {
                let data = p.data.ok_or(codes::BAD_REQUEST)?;
                let mut responses = Vec::with_capacity(p.channels.len());
                for channel in &p.channels {
                    let r =
                        publish(hub, channel, data.clone(), p.skip_history, p.tags.clone()).await;
                    responses.push(match r {
                        Ok(r) => serde_json::json!({ "result": r }),
                        Err(e) => serde_json::json!({ "error": e }),
                    });
                }
                Ok(serde_json::json!({ "responses": responses }))
            })
            .await
        }
        "presence" => {
            run(body, |p: ChannelParams| async move {
                let presence = presence(hub, &p.channel).await?;
                Ok(serde_json::json!({ "presence": presence }))
            })
            .await
        }
        "presence_stats" => {
            run(body, |p: ChannelParams| async move {
                Ok(presence_stats(&presence(hub, &p.channel).await?))
            })
            .await
        }
        "history" => {
            run(body, |p: HistoryParams| async move {
                let ns = namespace(hub, &p.channel)?;
                if !ns.history() {
                    return Err(codes::NOT_AVAILABLE);
                }
                history(hub, &p.channel, p.limit, p.since.as_ref(), p.reverse).await
            })
            .await
        }
        "history_remove" => {
            run(body, |p: ChannelParams| async move {
                namespace(hub, &p.channel)?;
                hub.broker
                    .remove_history(&p.channel)
                    .await
                    .map_err(|_| codes::INTERNAL)?;
                Ok(Empty {})
            })
            .await
        }
        "subscribe" | "unsubscribe" => {
            let subscribe = method == "subscribe";
            run(body, |p: UserChannelParams| async move {
                namespace(hub, &p.channel)?;
                let (user, client, channel) = (p.user, p.client, p.channel);
                let control = if subscribe {
                    Control::Subscribe {
                        user,
                        client,
                        channel,
                    }
                } else {
                    Control::Unsubscribe {
                        user,
                        client,
                        channel,
                    }
                };
                to_all(hub, &control).await
            })
            .await
        }
        "disconnect" => {
            run(body, |p: DisconnectParams| async move {
                let (code, reason) = match p.disconnect {
                    // Codes under 3000 are the WebSocket protocol's, not the application's.
                    Some(d) if !(3000..5000).contains(&d.code) => return Err(codes::BAD_REQUEST),
                    Some(d) => (d.code, d.reason),
                    None => (
                        codes::FORCE_NO_RECONNECT.code,
                        codes::FORCE_NO_RECONNECT.reason.into_owned(),
                    ),
                };
                let control = Control::Disconnect {
                    user: p.user,
                    client: p.client,
                    whitelist: p.whitelist,
                    code,
                    reason,
                };
                to_all(hub, &control).await
            })
            .await
        }
        "channels" => {
            run(body, |p: ChannelsParams| async move {
                let all = hub
                    .all_channels(p.pattern)
                    .await
                    .map_err(|_| codes::INTERNAL)?;
                let channels: BTreeMap<_, _> = all
                    .into_iter()
                    .map(|(name, n)| (name, serde_json::json!({ "num_clients": n })))
                    .collect();
                Ok(serde_json::json!({ "channels": channels }))
            })
            .await
        }
        "info" => {
            run(body, |_: serde::de::IgnoredAny| async move {
                Ok(serde_json::json!({ "nodes": hub.all_nodes() }))
            })
            .await
        }
        _ => ApiReply {
            status: 404,
            body: br#"{"error":{"code":104,"message":"method not found"}}"#.to_vec(),
        },
    }
}

/// Sends a command to the clients on every node.
async fn to_all(hub: &Hub, control: &Control) -> Result<Empty, ErrorReply> {
    hub.control(control).await.map_err(|e| {
        tracing::warn!("server API command not sent to the nodes: {e}");
        codes::INTERNAL
    })?;
    Ok(Empty {})
}

/// Parses the parameters, runs the method, and wraps its result or error.
async fn run<P, R, F, Fut>(body: &[u8], f: F) -> ApiReply
where
    P: DeserializeOwned,
    R: Serialize,
    F: FnOnce(P) -> Fut,
    Fut: std::future::Future<Output = Result<R, ErrorReply>>,
{
    let params: P = match serde_json::from_slice(body) {
        Ok(p) => p,
        Err(e) => return ApiReply {
            status: 400,
            body: serde_json::to_vec(&serde_json::json!({
                "error": { "code": codes::BAD_REQUEST.code, "message": format!("bad request: {e}") }
            }))
            .unwrap_or_default(),
        },
    };
    let value = match f(params).await {
        Ok(r) => serde_json::json!({ "result": r }),
        Err(e) => serde_json::json!({ "error": e }),
    };
    ApiReply {
        status: 200,
        body: serde_json::to_vec(&value).unwrap_or_default(),
    }
}

async fn publish(
    hub: &Hub,
    channel: &str,
    data: Json,
    skip_history: bool,
    tags: Option<BTreeMap<String, String>>,
) -> Result<PublishResult, ErrorReply> {
    let ns = namespace(hub, channel)?;
    let mut options = publish_options(hub, ns);
    if skip_history {
        options.history_size = 0;
    }
    let publication = Publication {
        data,
        info: None,
        offset: 0,
        tags: tags.filter(|t| !t.is_empty()),
    };
    let position = hub
        .broker
        .publish(channel, publication, options)
        .await
        .map_err(|e| {
            tracing::warn!(%channel, "publish failed: {e}");
            codes::INTERNAL
        })?;
    Ok(PublishResult {
        offset: position.offset,
        epoch: position.epoch,
    })
}

async fn presence(
    hub: &Hub,
    channel: &str,
) -> Result<BTreeMap<String, crate::protocol::ClientInfo>, ErrorReply> {
    let ns = namespace(hub, channel)?;
    if !ns.presence {
        return Err(codes::NOT_AVAILABLE);
    }
    hub.broker
        .presence(channel)
        .await
        .map_err(|_| codes::INTERNAL)
}

/// The options of `channel`'s namespace: error 107 for no channel, 102 for one in no
/// namespace.
fn namespace<'a>(hub: &'a Hub, channel: &str) -> Result<&'a crate::NamespaceOptions, ErrorReply> {
    if channel.is_empty() {
        return Err(codes::BAD_REQUEST);
    }
    hub.config.namespace(channel).ok_or(codes::UNKNOWN_CHANNEL)
}
