//! Centrifugo's client protocol (v2) in its JSON form: the commands a client sends and the
//! replies and pushes it gets, as in the protocol's Protobuf schema (`client.proto`), field
//! for field, with `bytes` fields carried as raw JSON. Fields this server does not use are
//! ignored when read (SDKs send more than the documentation lists) and zero values are
//! left out when written, as Centrifugo does.
//!
//! One WebSocket text message carries one or more commands (replies), one JSON object per
//! line.

use crate::codes::ErrorReply;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// Raw JSON, kept as sent.
pub type Json = Box<RawValue>;

/// A command from a client. Exactly one method field is expected; `id` is 0 only for
/// commands that get no reply (`send`) and for the empty object, the answer to a server
/// ping.
#[derive(Debug, Default, Deserialize)]
#[non_exhaustive]
pub struct Command {
    /// Matches the reply to the command.
    #[serde(default)]
    pub id: u32,
    /// Authenticate, and subscribe to server-side channels.
    pub connect: Option<ConnectRequest>,
    /// Subscribe to a channel.
    pub subscribe: Option<SubscribeRequest>,
    /// Unsubscribe from a channel.
    pub unsubscribe: Option<ChannelRequest>,
    /// Publish to a channel.
    pub publish: Option<PublishRequest>,
    /// Who is subscribed to a channel.
    pub presence: Option<ChannelRequest>,
    /// How many clients and users are subscribed to a channel.
    pub presence_stats: Option<ChannelRequest>,
    /// A channel's history.
    pub history: Option<HistoryRequest>,
    /// A ping from the client (answered with an empty result).
    pub ping: Option<serde::de::IgnoredAny>,
    /// A message to the server that needs no reply.
    pub send: Option<SendRequest>,
    /// A call to the server's application.
    pub rpc: Option<RpcRequest>,
    /// A new connection token before the current one expires.
    pub refresh: Option<RefreshRequest>,
    /// A new channel token before the current one expires.
    pub sub_refresh: Option<SubRefreshRequest>,
}

/// `connect`.
#[derive(Debug, Default, Deserialize)]
#[non_exhaustive]
pub struct ConnectRequest {
    /// The connection JWT.
    #[serde(default)]
    pub token: String,
    /// Where to recover server-side subscriptions from, by channel.
    #[serde(default)]
    pub subs: HashMap<String, SubscribeRequest>,
    /// The client's name (an SDK's name, say).
    #[serde(default)]
    pub name: String,
    /// The client's version.
    #[serde(default)]
    pub version: String,
}

/// `subscribe` (also the recovery position of a server-side subscription in `connect`).
#[derive(Debug, Default, Deserialize)]
#[non_exhaustive]
pub struct SubscribeRequest {
    /// The channel.
    #[serde(default)]
    pub channel: String,
    /// A channel token, for channels the client may not subscribe to otherwise.
    #[serde(default)]
    pub token: String,
    /// Recover what was published since `offset` in `epoch`.
    #[serde(default)]
    pub recover: bool,
    /// The epoch of the stream position to recover from.
    #[serde(default)]
    pub epoch: String,
    /// The offset of the last publication the client has.
    #[serde(default)]
    pub offset: u64,
    /// The client asks for a recoverable subscription.
    #[serde(default)]
    pub recoverable: bool,
    /// The client asks for join and leave pushes.
    #[serde(default)]
    pub join_leave: bool,
}

/// A command that names only a channel.
#[derive(Debug, Default, Deserialize)]
#[non_exhaustive]
pub struct ChannelRequest {
    /// The channel.
    #[serde(default)]
    pub channel: String,
}

/// `publish`.
#[derive(Debug, Deserialize)]
#[non_exhaustive]
pub struct PublishRequest {
    /// The channel.
    #[serde(default)]
    pub channel: String,
    /// The publication's data (any JSON value).
    pub data: Option<Json>,
}

/// `history`.
#[derive(Debug, Default, Deserialize)]
#[non_exhaustive]
pub struct HistoryRequest {
    /// The channel.
    #[serde(default)]
    pub channel: String,
    /// How many publications (0: none, only the stream position; negative: all).
    #[serde(default)]
    pub limit: i32,
    /// Only publications after this position.
    pub since: Option<StreamPosition>,
    /// Newest first.
    #[serde(default)]
    pub reverse: bool,
}

/// `send`.
#[derive(Debug, Deserialize)]
#[non_exhaustive]
pub struct SendRequest {
    /// The message.
    pub data: Option<Json>,
}

/// `rpc`.
#[derive(Debug, Deserialize)]
#[non_exhaustive]
pub struct RpcRequest {
    /// The call's argument.
    pub data: Option<Json>,
    /// The method called.
    #[serde(default)]
    pub method: String,
}

/// `refresh`.
#[derive(Debug, Default, Deserialize)]
#[non_exhaustive]
pub struct RefreshRequest {
    /// The new connection token.
    #[serde(default)]
    pub token: String,
}

/// `sub_refresh`.
#[derive(Debug, Default, Deserialize)]
#[non_exhaustive]
pub struct SubRefreshRequest {
    /// The channel.
    #[serde(default)]
    pub channel: String,
    /// The new channel token.
    #[serde(default)]
    pub token: String,
}

/// A place in a channel's stream of publications.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamPosition {
    /// The offset of the last publication (0: none yet).
    #[serde(default)]
    pub offset: u64,
    /// The stream's epoch: a new epoch means the offsets before it are gone.
    #[serde(default)]
    pub epoch: String,
}

/// Who a connection is, as subscribers see it in presence, join, leave and publications.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ClientInfo {
    /// The user (the token's `sub`; empty for anonymous connections).
    #[serde(default)]
    pub user: String,
    /// The connection's id.
    #[serde(default)]
    pub client: String,
    /// The connection token's `info` claim.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub conn_info: Option<Json>,
    /// The channel token's `info` claim.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub chan_info: Option<Json>,
}

/// A publication in a channel.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Publication {
    /// The publication's data, as published.
    pub data: Json,
    /// The publishing client, for publications from clients.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub info: Option<ClientInfo>,
    /// Its offset in the channel's stream (0 in channels without history).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub offset: u64,
    /// Tags from the server API.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<BTreeMap<String, String>>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn is_zero32(n: &u32) -> bool {
    *n == 0
}

fn not(b: &bool) -> bool {
    !*b
}

/// The result of `connect`.
#[derive(Debug, Default, Serialize)]
pub struct ConnectResult {
    /// The connection's id.
    pub client: String,
    /// The server's version.
    pub version: &'static str,
    /// Whether the connection expires (its token has `exp`).
    #[serde(skip_serializing_if = "not")]
    pub expires: bool,
    /// Seconds until it expires.
    #[serde(skip_serializing_if = "is_zero32")]
    pub ttl: u32,
    /// Server-side subscriptions.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub subs: BTreeMap<String, SubscribeResult>,
    /// Seconds between server pings.
    pub ping: u32,
    /// Whether the client answers pings.
    pub pong: bool,
    /// The node's name.
    pub node: String,
}

/// The result of `subscribe` (and a server-side subscription's state).
#[derive(Debug, Default, Serialize)]
pub struct SubscribeResult {
    /// Whether the subscription expires (its channel token has `exp`).
    #[serde(skip_serializing_if = "not")]
    pub expires: bool,
    /// Seconds until it expires.
    #[serde(skip_serializing_if = "is_zero32")]
    pub ttl: u32,
    /// Whether the client can recover missed publications after a reconnect.
    #[serde(skip_serializing_if = "not")]
    pub recoverable: bool,
    /// The stream's epoch.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub epoch: String,
    /// Recovered publications, oldest first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub publications: Vec<Arc<Publication>>,
    /// Whether every missed publication was recovered.
    #[serde(skip_serializing_if = "not")]
    pub recovered: bool,
    /// The stream's last offset.
    #[serde(skip_serializing_if = "is_zero")]
    pub offset: u64,
    /// Whether the client asked to recover.
    #[serde(skip_serializing_if = "not")]
    pub was_recovering: bool,
    /// Whether the subscription's publications come with offsets the client can check
    /// for gaps (every recoverable subscription's do).
    #[serde(skip_serializing_if = "not")]
    pub positioned: bool,
}

/// The result of `history` (client protocol and server API).
#[derive(Debug, Default, Serialize)]
pub struct HistoryResult {
    /// The publications.
    pub publications: Vec<Arc<Publication>>,
    /// The stream's epoch.
    pub epoch: String,
    /// The stream's last offset.
    pub offset: u64,
}

/// The result of `presence`.
#[derive(Debug, Default, Serialize)]
pub struct PresenceResult {
    /// Subscribed clients, by connection id.
    pub presence: BTreeMap<String, ClientInfo>,
}

/// The result of `presence_stats`.
#[derive(Debug, Default, Serialize)]
pub struct PresenceStatsResult {
    /// Subscribed connections.
    pub num_clients: u32,
    /// Distinct users among them.
    pub num_users: u32,
}

/// The result of `refresh`.
#[derive(Debug, Default, Serialize)]
pub struct RefreshResult {
    /// The connection's id.
    pub client: String,
    /// The server's version.
    pub version: &'static str,
    /// Whether the connection expires.
    #[serde(skip_serializing_if = "not")]
    pub expires: bool,
    /// Seconds until it expires.
    #[serde(skip_serializing_if = "is_zero32")]
    pub ttl: u32,
}

/// The result of `sub_refresh`.
#[derive(Debug, Default, Serialize)]
pub struct SubRefreshResult {
    /// Whether the subscription expires.
    #[serde(skip_serializing_if = "not")]
    pub expires: bool,
    /// Seconds until it expires.
    #[serde(skip_serializing_if = "is_zero32")]
    pub ttl: u32,
}

/// An empty result (`publish`, `unsubscribe`, `ping`).
#[derive(Debug, Default, Serialize)]
pub struct Empty {}

/// Appends a reply line (`{"id":N,"<method>":<result>}`) to `out`.
pub fn write_reply(out: &mut Vec<u8>, id: u32, method: &str, result: &impl Serialize) {
    line_break(out);
    out.extend_from_slice(b"{\"id\":");
    out.extend_from_slice(id.to_string().as_bytes());
    out.extend_from_slice(b",\"");
    out.extend_from_slice(method.as_bytes());
    out.extend_from_slice(b"\":");
    // Serializing our own types into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, result);
    out.push(b'}');
}

/// Appends an error reply line to `out`.
pub fn write_error(out: &mut Vec<u8>, id: u32, error: &ErrorReply) {
    line_break(out);
    out.extend_from_slice(b"{\"id\":");
    out.extend_from_slice(id.to_string().as_bytes());
    out.extend_from_slice(b",\"error\":");
    let _ = serde_json::to_writer(&mut *out, error);
    out.push(b'}');
}

/// A push line: `{"push":{"channel":"<channel>","<kind>":<body>}}`.
pub fn push(channel: &str, kind: &str, body: &impl Serialize) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(b"{\"push\":{\"channel\":");
    let _ = serde_json::to_writer(&mut out, channel);
    out.extend_from_slice(b",\"");
    out.extend_from_slice(kind.as_bytes());
    out.extend_from_slice(b"\":");
    let _ = serde_json::to_writer(&mut out, body);
    out.extend_from_slice(b"}}");
    out
}

fn line_break(out: &mut Vec<u8>) {
    if !out.is_empty() {
        out.push(b'\n');
    }
}

/// The body of a `join` or `leave` push.
#[derive(Serialize)]
pub struct Presence<'a> {
    /// Who joined or left.
    pub info: &'a ClientInfo,
}

/// The body of an `unsubscribe` push.
#[derive(Serialize)]
pub struct UnsubscribePush {
    /// Why (2000: by the server; 2500 and above: resubscribe).
    pub code: u32,
    /// Its text.
    pub reason: &'static str,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_with_unknown_fields_and_batched_lines() {
        let frame = r#"{"connect":{"token":"t","name":"js","flag":3,"subs":{}},"id":1}
{"subscribe":{"channel":"news","recover":true,"offset":7,"epoch":"e","delta":"fossil","flag":1},"id":2}"#;
        let cmds: Vec<Command> = frame
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(cmds[0].id, 1);
        assert_eq!(cmds[0].connect.as_ref().unwrap().token, "t");
        let sub = cmds[1].subscribe.as_ref().unwrap();
        assert_eq!(
            (sub.channel.as_str(), sub.offset, sub.recover),
            ("news", 7, true)
        );
        // The answer to a server ping.
        let pong: Command = serde_json::from_str("{}").unwrap();
        assert_eq!(pong.id, 0);
        assert!(pong.connect.is_none() && pong.send.is_none());
    }

    #[test]
    fn replies_leave_zero_values_out() {
        let mut out = Vec::new();
        write_reply(&mut out, 3, "publish", &Empty {});
        write_error(&mut out, 4, &crate::codes::PERMISSION_DENIED);
        write_reply(&mut out, 5, "subscribe", &SubscribeResult::default());
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"id\":3,\"publish\":{}}\n{\"id\":4,\"error\":{\"code\":103,\"message\":\"permission denied\"}}\n{\"id\":5,\"subscribe\":{}}"
        );
        let p = Publication {
            data: RawValue::from_string("{\"a\": [1, \"é\"]}".into()).unwrap(),
            info: None,
            offset: 9,
            tags: None,
        };
        assert_eq!(
            String::from_utf8(push("chat:1", "pub", &p)).unwrap(),
            "{\"push\":{\"channel\":\"chat:1\",\"pub\":{\"data\":{\"a\": [1, \"é\"]},\"offset\":9}}}"
        );
    }
}
