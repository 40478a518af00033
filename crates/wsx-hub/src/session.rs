//! One client's session: reads its frames, answers its commands in order (a frame's
//! replies go out together, in one message), and carries out what the server asks of it
//! (disconnect, server-side subscribe and unsubscribe).

use crate::auth::AuthError;
use crate::broker::{HistoryQuery, PublishOptions};
use crate::client::{Client, ServerCommand};
use crate::codes::{self, Disconnect, ErrorReply};
use crate::config::{user_limited, NamespaceOptions};
use crate::hub::{unix_now, Hub, VERSION};
use crate::protocol::*;
use futures_util::StreamExt;
use std::collections::{BTreeMap, HashSet};
use std::future::poll_fn;
use std::future::Future;
use std::sync::{Arc, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;
use wsx::{Message, WsReader};

/// What a session keeps of one of its subscriptions (small: an idle subscriber costs
/// what its session keeps).
struct Sub {
    /// Its namespace keeps presence.
    presence: bool,
    /// Its namespace sends join and leave.
    join_leave: bool,
    /// The channel token's `info`.
    chan_info: Option<Json>,
}

/// A session's subscriptions: a list, searched (a connection has few, at most
/// `max_subscriptions`), smaller than a map for the usual one or two.
#[derive(Default)]
struct Subs(Vec<(Box<str>, Sub)>);

impl Subs {
    fn get(&self, channel: &str) -> Option<&Sub> {
        self.0.iter().find(|(c, _)| &**c == channel).map(|(_, s)| s)
    }

    fn contains_key(&self, channel: &str) -> bool {
        self.get(channel).is_some()
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn insert(&mut self, channel: &str, sub: Sub) {
        self.0.reserve_exact(1);
        self.0.push((channel.into(), sub));
    }

    fn remove(&mut self, channel: &str) -> Option<Sub> {
        let i = self.0.iter().position(|(c, _)| &**c == channel)?;
        Some(self.0.swap_remove(i).1)
    }
}

pub(crate) struct Session {
    hub: Arc<Hub>,
    client: Arc<Client>,
    connected: bool,
    /// The connection's user (empty: anonymous).
    user: Box<str>,
    subs: Subs,
    /// Subscriptions to make live once the frame's replies are queued: channel, and the
    /// offset their reply ended at.
    activate: Vec<(String, Option<u64>)>,
    /// Publications sent to the broker and not acknowledged yet, in order, each with its
    /// reply to be; boxed, so that a session without any costs one pointer. (In a mutex
    /// only to be `Sync`, as the session is shared across its own awaits; always reached
    /// through `&mut`, never locked.)
    publishing: Option<Box<std::sync::Mutex<Publishing>>>,
}

/// Publishes in flight (see [`Session::publish`]).
type Publishing =
    futures_util::stream::FuturesOrdered<std::pin::Pin<Box<dyn Future<Output = Vec<u8>> + Send>>>;

/// Appends a reply line (without its own line break) to the lines in `out`.
fn append_line(out: &mut Vec<u8>, line: &[u8]) {
    if !out.is_empty() {
        out.push(b'\n');
    }
    out.extend_from_slice(line);
}

/// Publishes of one client in flight at most; the next waits for the oldest.
const MAX_PUBLISHING: usize = 64;

/// What woke the session.
enum Wake {
    Frame(Option<wsx::Result<Message>>),
    Disconnect(Disconnect),
    Commands(Vec<ServerCommand>),
    /// Replies of publishes the broker acknowledged.
    Published(Vec<u8>),
}

/// A client's session, ready to run (see [`Session::run`]).
pub(crate) fn start(hub: Arc<Hub>, client: Arc<Client>) -> Session {
    Session {
        hub,
        client,
        connected: false,
        user: Box::default(),
        subs: Subs::default(),
        activate: Vec::new(),
        publishing: None,
    }
}

impl Session {
    /// Runs the session until its connection ends, then takes the client out of its
    /// channels and the hub. The future holds only the session and what wakes it:
    /// handling a frame or a server command is boxed, on the heap only while it runs.
    pub(crate) async fn run<S>(mut self, mut reader: WsReader<S>)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        loop {
            let wake = poll_fn(|cx| self.poll_wake(&mut reader, cx)).await;
            let outcome = match wake {
                Wake::Frame(None) => break,
                Wake::Frame(Some(Err(e))) => {
                    tracing::debug!(peer = %self.client.peer, client = %self.client.id, "connection failed: {e}");
                    break;
                }
                wake => Box::pin(self.handle(wake)).await,
            };
            if let Err(d) = outcome {
                tracing::info!(peer = %self.client.peer, client = %self.client.id, user = %self.user, code = d.code, reason = %d.reason, "disconnect");
                self.hub.count_disconnect(&d);
                self.client.close(d);
                // The close handshake, bounded by the connection's close timeout.
                while let Some(Ok(_)) = reader.next().await {}
                break;
            }
        }
        Box::pin(self.cleanup()).await;
        self.hub.unregister(&self.client);
    }

    /// What wakes the session next: a disconnect, server commands, replies of publishes
    /// in flight, or a frame.
    fn poll_wake<S>(&mut self, reader: &mut WsReader<S>, cx: &mut Context<'_>) -> Poll<Wake>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        self.client.register(cx.waker());
        {
            let mut state = self.client.state();
            if let Some(d) = state.disconnect.clone() {
                return Poll::Ready(Wake::Disconnect(d));
            }
            if !state.commands.is_empty() {
                return Poll::Ready(Wake::Commands(std::mem::take(&mut state.commands)));
            }
        }
        if let Some(p) = &mut self.publishing {
            let p = p.get_mut().unwrap_or_else(PoisonError::into_inner);
            let mut replies = Vec::new();
            while let Poll::Ready(Some(reply)) = p.poll_next_unpin(cx) {
                append_line(&mut replies, &reply);
            }
            if p.is_empty() {
                self.publishing = None;
            }
            if !replies.is_empty() {
                return Poll::Ready(Wake::Published(replies));
            }
        }
        reader.poll_next_unpin(cx).map(Wake::Frame)
    }

    async fn handle(&mut self, wake: Wake) -> Result<(), Disconnect> {
        match wake {
            Wake::Frame(Some(Ok(Message::Text(text)))) => self.frame(&text).await,
            Wake::Frame(Some(Ok(Message::Binary(_)))) => Err(codes::INAPPROPRIATE_PROTOCOL),
            Wake::Published(replies) => {
                self.client.send_text(replies);
                Ok(())
            }
            Wake::Frame(_) => Ok(()),
            Wake::Disconnect(d) => Err(d),
            Wake::Commands(commands) => {
                for c in commands {
                    self.server_command(c).await;
                }
                Ok(())
            }
        }
    }

    /// One frame: its commands in order, their replies in one message.
    async fn frame(&mut self, text: &str) -> Result<(), Disconnect> {
        let mut out = Vec::new();
        for line in text.split('\n') {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let cmd: Command = match serde_json::from_str(line) {
                Ok(c) => c,
                Err(e) => {
                    tracing::debug!(peer = %self.client.peer, "malformed command: {e}");
                    return Err(codes::BAD_REQUEST_DISCONNECT);
                }
            };
            self.command(cmd, &mut out).await?;
        }
        if !out.is_empty() {
            self.client.send_text(out);
        }
        for (channel, after) in std::mem::take(&mut self.activate) {
            self.hub.activate(&channel, &self.client, after);
        }
        Ok(())
    }

    async fn command(&mut self, cmd: Command, out: &mut Vec<u8>) -> Result<(), Disconnect> {
        let id = cmd.id;
        if id == 0 {
            // No reply expected: the answer to a ping, or `send`.
            if cmd.send.is_some() {
                return Ok(());
            }
            if has_method(&cmd) {
                return Err(codes::BAD_REQUEST_DISCONNECT);
            }
            self.client.pong();
            return Ok(());
        }
        if let Some(req) = cmd.publish {
            if self.connected {
                self.publish(id, req, out).await;
                return Ok(());
            }
        }
        // Anything else waits for the publishes before it, so that it sees their effects
        // and its reply comes after theirs.
        self.settle_publishing(out).await;
        if let Some(req) = cmd.connect {
            return self.connect(id, req, out).await;
        }
        if !self.connected {
            return Err(codes::BAD_REQUEST_DISCONNECT);
        }
        // Each method's result is written as its reply; an error as an error reply.
        let result = if let Some(req) = cmd.subscribe {
            (self.subscribe(&req, false).await).map(|r| write_reply(out, id, "subscribe", &r))
        } else if let Some(req) = cmd.unsubscribe {
            self.unsubscribe(&req.channel).await;
            write_reply(out, id, "unsubscribe", &Empty {});
            Ok(())
        } else if let Some(req) = cmd.presence {
            (self.presence(&req.channel).await)
                .map(|presence| write_reply(out, id, "presence", &PresenceResult { presence }))
        } else if let Some(req) = cmd.presence_stats {
            (self.presence(&req.channel).await)
                .map(|p| write_reply(out, id, "presence_stats", &presence_stats(&p)))
        } else if let Some(req) = cmd.history {
            (self.history(&req).await).map(|r| write_reply(out, id, "history", &r))
        } else if let Some(req) = cmd.refresh {
            self.refresh(&req.token)?
                .map(|r| write_reply(out, id, "refresh", &r))
        } else if let Some(req) = cmd.sub_refresh {
            self.sub_refresh(&req)
                .map(|r| write_reply(out, id, "sub_refresh", &r))
        } else if cmd.ping.is_some() {
            write_reply(out, id, "ping", &Empty {});
            Ok(())
        } else if cmd.rpc.is_some() {
            // No RPC handler in this hub.
            Err(codes::NOT_AVAILABLE)
        } else if cmd.send.is_some() {
            Ok(())
        } else {
            Err(codes::METHOD_NOT_FOUND)
        };
        if let Err(e) = result {
            write_error(out, id, &e);
        }
        Ok(())
    }

    async fn connect(
        &mut self,
        id: u32,
        req: ConnectRequest,
        out: &mut Vec<u8>,
    ) -> Result<(), Disconnect> {
        if self.connected {
            return Err(codes::BAD_REQUEST_DISCONNECT);
        }
        let hub = self.hub.clone();
        let claims = if req.token.is_empty() {
            if !hub.config.allow_anonymous {
                tracing::info!(peer = %self.client.peer, "connect without a token refused");
                return Err(codes::INVALID_TOKEN);
            }
            crate::auth::ConnectClaims::default()
        } else {
            match hub.keys.connect(&req.token) {
                Ok(c) => c,
                Err(AuthError::Expired) => {
                    write_error(out, id, &codes::TOKEN_EXPIRED);
                    return Ok(());
                }
                Err(AuthError::Invalid(why)) => {
                    tracing::info!(peer = %self.client.peer, "connect refused: {why}");
                    return Err(codes::INVALID_TOKEN);
                }
            }
        };
        if claims.channels.len() > hub.config.max_subscriptions {
            return Err(codes::CHANNEL_LIMIT);
        }
        self.user = claims.sub.into();

        self.connected = true;
        {
            let mut state = self.client.state();
            state.user = self.user.to_string();
            state.info = claims.info;
            state.connected = true;
            state.expires_at = claims.exp;
            state.next_ping = std::time::Instant::now() + hub.config.ping_interval;
        }
        let mut result = ConnectResult {
            client: self.client.id.to_string(),
            version: VERSION,
            ping: hub.config.ping_interval.as_secs() as u32,
            pong: true,
            node: hub.config.name.clone(),
            ..Default::default()
        };
        if let Some(exp) = claims.exp {
            result.expires = true;
            result.ttl = exp.saturating_sub(unix_now()) as u32;
        }
        let mut recover = req.subs;
        for channel in claims.channels {
            let mut sub = recover.remove(&channel).unwrap_or_default();
            sub.channel = channel.clone();
            match self.subscribe(&sub, true).await {
                Ok(r) => {
                    result.subs.insert(channel, r);
                }
                Err(e) if e == codes::INTERNAL => return Err(codes::INTERNAL_ERROR),
                Err(e) => {
                    tracing::info!(peer = %self.client.peer, %channel, "server-side subscription refused: {}", e.message)
                }
            }
        }
        tracing::debug!(peer = %self.client.peer, client = %self.client.id, user = %self.user, "connected");
        write_reply(out, id, "connect", &result);
        Ok(())
    }

    /// Subscribes (checking permissions unless `server_side`), with recovery.
    async fn subscribe(
        &mut self,
        req: &SubscribeRequest,
        server_side: bool,
    ) -> Result<SubscribeResult, ErrorReply> {
        let hub = self.hub.clone();
        let channel = req.channel.as_str();
        let ns = hub
            .config
            .namespace(channel)
            .ok_or(codes::UNKNOWN_CHANNEL)?
            .clone();
        if self.subs.contains_key(channel) {
            return Err(codes::ALREADY_SUBSCRIBED);
        }
        if self.subs.len() >= hub.config.max_subscriptions {
            return Err(codes::LIMIT_EXCEEDED);
        }
        let mut result = SubscribeResult::default();
        let mut chan_info = None;
        if !server_side {
            if !req.token.is_empty() {
                match hub.keys.channel(&req.token) {
                    Ok(c) if c.channel == channel && *c.sub == *self.user => {
                        chan_info = c.info;
                        if let Some(exp) = c.exp {
                            result.expires = true;
                            result.ttl = exp.saturating_sub(unix_now()) as u32;
                        }
                    }
                    Ok(_) => return Err(codes::PERMISSION_DENIED),
                    Err(AuthError::Expired) => return Err(codes::TOKEN_EXPIRED),
                    Err(AuthError::Invalid(why)) => {
                        tracing::info!(peer = %self.client.peer, %channel, "channel token refused: {why}");
                        return Err(codes::PERMISSION_DENIED);
                    }
                }
            } else if let Some(listed) = user_limited(channel, &self.user) {
                if !listed {
                    return Err(codes::PERMISSION_DENIED);
                }
            } else if !(ns.allow_subscribe && (!self.user.is_empty() || ns.allow_anonymous)) {
                return Err(codes::PERMISSION_DENIED);
            }
        }
        let info = self.info(chan_info);
        let join_leave =
            ns.join_leave && (req.join_leave || ns.force_push_join_leave || server_side);
        hub.add_subscriber(channel, &self.client, join_leave);
        match self
            .start_subscription(channel, &ns, req, &info, &mut result)
            .await
        {
            Ok(after) => {
                self.activate.push((channel.to_owned(), after));
                let sub = Sub {
                    presence: ns.presence,
                    join_leave: ns.join_leave,
                    chan_info: info.chan_info,
                };
                self.subs.insert(channel, sub);
                Ok(result)
            }
            Err(e) => {
                tracing::warn!(peer = %self.client.peer, %channel, "subscribe failed: {e}");
                hub.remove_subscriber(channel, &self.client);
                Err(codes::INTERNAL)
            }
        }
    }

    /// The broker's part of a subscription: node interest, presence, join, history and
    /// recovery. Returns the offset the reply ends at (`None`: no history). On failure the
    /// broker no longer counts the subscriber.
    async fn start_subscription(
        &self,
        channel: &str,
        ns: &NamespaceOptions,
        req: &SubscribeRequest,
        info: &ClientInfo,
        result: &mut SubscribeResult,
    ) -> Result<Option<u64>, crate::BrokerError> {
        let broker = &self.hub.broker;
        broker.subscribe(channel).await?;
        let r = self.read_subscription(channel, ns, req, info, result).await;
        if r.is_err() {
            let _ = broker.unsubscribe(channel).await;
        }
        r
    }

    /// [`Session::start_subscription`] once the node receives the channel.
    async fn read_subscription(
        &self,
        channel: &str,
        ns: &NamespaceOptions,
        req: &SubscribeRequest,
        info: &ClientInfo,
        result: &mut SubscribeResult,
    ) -> Result<Option<u64>, crate::BrokerError> {
        let broker = &self.hub.broker;
        if ns.presence {
            broker
                .add_presence(channel, &self.client.id.to_string(), info.clone())
                .await?;
        }
        if ns.join_leave {
            broker.publish_join(channel, info.clone()).await?;
        }
        if !ns.history() {
            return Ok(None);
        }
        let recoverable = ns.recovery(req.recoverable);
        let recovering = recoverable && req.recover;
        let query = HistoryQuery {
            since: recovering.then_some(req.offset),
            limit: Some(if recovering { ns.history_size } else { 0 }),
            reverse: false,
        };
        let page = broker.history(channel, query).await?;
        if recovering {
            let complete = match page.publications.first() {
                Some(p) => p.offset == req.offset + 1,
                None => page.position.offset == req.offset,
            };
            let recovered = complete && page.position.epoch == req.epoch;
            if recovered {
                result.publications = page.publications;
            }
            result.was_recovering = true;
            result.recovered = recovered;
            self.hub.metrics.recovery(recovered);
        }
        result.recoverable = recoverable;
        result.positioned = recoverable;
        result.epoch = page.position.epoch;
        result.offset = page.position.offset;
        Ok(Some(result.offset))
    }

    async fn unsubscribe(&mut self, channel: &str) -> bool {
        let Some(sub) = self.subs.remove(channel) else {
            return false;
        };
        self.leave(channel, sub).await;
        true
    }

    async fn leave(&self, channel: &str, sub: Sub) {
        let hub = self.hub.clone();
        hub.remove_subscriber(channel, &self.client);
        let _ = hub.broker.unsubscribe(channel).await;
        if sub.presence {
            let _ = hub
                .broker
                .remove_presence(channel, &self.client.id.to_string())
                .await;
        }
        if sub.join_leave {
            let _ = hub
                .broker
                .publish_leave(channel, self.info(sub.chan_info))
                .await;
        }
    }

    /// Who this client is in a channel, with its channel token's `info`.
    fn info(&self, chan_info: Option<Json>) -> ClientInfo {
        ClientInfo {
            user: self.user.to_string(),
            client: self.client.id.to_string(),
            conn_info: self.client.state().info.clone(),
            chan_info,
        }
    }

    /// A client's publish. The broker's acknowledgement may take a trip to another
    /// system: the publish then stays in flight while the session reads on, so that a
    /// client publishing many at once has them travel together (the broker receives them
    /// in order). Its reply is written when the broker acknowledged it, in order with the
    /// others; at once when the broker answers at once.
    async fn publish(&mut self, id: u32, req: PublishRequest, out: &mut Vec<u8>) {
        let publication = match self.publication(&req) {
            Ok(p) => p,
            Err(e) => return write_error(out, id, &e),
        };
        let hub = self.hub.clone();
        let mut reply: std::pin::Pin<Box<dyn Future<Output = Vec<u8>> + Send>> =
            Box::pin(async move {
                let options = match hub.config.namespace(&req.channel) {
                    Some(ns) => publish_options(&hub, ns),
                    None => PublishOptions::default(),
                };
                let r = hub.broker.publish(&req.channel, publication, options).await;
                let mut out = Vec::new();
                match r {
                    Ok(_) => write_reply(&mut out, id, "publish", &Empty {}),
                    Err(e) => {
                        tracing::warn!(channel = %req.channel, "publish failed: {e}");
                        write_error(&mut out, id, &codes::INTERNAL);
                    }
                }
                out
            });
        if self.publishing.is_none() {
            if let Poll::Ready(r) = poll_fn(|cx| Poll::Ready(reply.as_mut().poll(cx))).await {
                return append_line(out, &r);
            }
        }
        let publishing = self
            .publishing
            .get_or_insert_with(Box::default)
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        if publishing.len() >= MAX_PUBLISHING {
            if let Some(r) = publishing.next().await {
                append_line(out, &r);
            }
        }
        publishing.push_back(reply);
    }

    /// Waits for the publishes in flight and writes their replies.
    async fn settle_publishing(&mut self, out: &mut Vec<u8>) {
        if let Some(p) = self.publishing.take() {
            let mut p = p.into_inner().unwrap_or_else(PoisonError::into_inner);
            while let Some(r) = p.next().await {
                append_line(out, &r);
            }
        }
    }

    /// The publication a publish command asks for, when the client may make it.
    fn publication(&self, req: &PublishRequest) -> Result<Publication, ErrorReply> {
        let Some(data) = req.data.clone() else {
            return Err(codes::BAD_REQUEST);
        };
        let ns = self
            .hub
            .config
            .namespace(&req.channel)
            .ok_or(codes::UNKNOWN_CHANNEL)?;
        let Some(sub) = self.subs.get(&req.channel) else {
            return Err(codes::PERMISSION_DENIED);
        };
        if !ns.allow_publish {
            return Err(codes::PERMISSION_DENIED);
        }
        Ok(Publication {
            data,
            info: Some(self.info(sub.chan_info.clone())),
            offset: 0,
            tags: None,
        })
    }

    async fn presence(&self, channel: &str) -> Result<BTreeMap<String, ClientInfo>, ErrorReply> {
        let ns = self
            .hub
            .config
            .namespace(channel)
            .ok_or(codes::UNKNOWN_CHANNEL)?;
        if !ns.presence {
            return Err(codes::NOT_AVAILABLE);
        }
        if !self.subs.contains_key(channel) {
            return Err(codes::PERMISSION_DENIED);
        }
        self.hub
            .broker
            .presence(channel)
            .await
            .map_err(|_| codes::INTERNAL)
    }

    async fn history(&self, req: &HistoryRequest) -> Result<HistoryResult, ErrorReply> {
        let ns = self
            .hub
            .config
            .namespace(&req.channel)
            .ok_or(codes::UNKNOWN_CHANNEL)?;
        if !ns.history() {
            return Err(codes::NOT_AVAILABLE);
        }
        if !self.subs.contains_key(&req.channel) {
            return Err(codes::PERMISSION_DENIED);
        }
        history(
            &self.hub,
            &req.channel,
            req.limit,
            req.since.as_ref(),
            req.reverse,
        )
        .await
    }

    /// `Err` disconnects; `Ok(Err)` is an error reply.
    fn refresh(&mut self, token: &str) -> Result<Result<RefreshResult, ErrorReply>, Disconnect> {
        let claims = match self.hub.keys.connect(token) {
            Ok(c) => c,
            Err(AuthError::Expired) => return Ok(Err(codes::TOKEN_EXPIRED)),
            Err(AuthError::Invalid(why)) => {
                tracing::info!(peer = %self.client.peer, "refresh refused: {why}");
                return Err(codes::INVALID_TOKEN);
            }
        };
        if *claims.sub != *self.user {
            return Err(codes::INVALID_TOKEN);
        }
        self.client.state().expires_at = claims.exp;
        let mut r = RefreshResult {
            client: self.client.id.to_string(),
            version: VERSION,
            ..Default::default()
        };
        if let Some(exp) = claims.exp {
            r.expires = true;
            r.ttl = exp.saturating_sub(unix_now()) as u32;
        }
        Ok(Ok(r))
    }

    fn sub_refresh(&self, req: &SubRefreshRequest) -> Result<SubRefreshResult, ErrorReply> {
        if !self.subs.contains_key(&req.channel) {
            return Err(codes::PERMISSION_DENIED);
        }
        let claims = match self.hub.keys.channel(&req.token) {
            Ok(c) => c,
            Err(AuthError::Expired) => return Err(codes::TOKEN_EXPIRED),
            Err(AuthError::Invalid(_)) => return Err(codes::PERMISSION_DENIED),
        };
        if claims.channel != req.channel || *claims.sub != *self.user {
            return Err(codes::PERMISSION_DENIED);
        }
        let mut r = SubRefreshResult::default();
        if let Some(exp) = claims.exp {
            r.expires = true;
            r.ttl = exp.saturating_sub(unix_now()) as u32;
        }
        Ok(r)
    }

    /// A subscribe or unsubscribe asked for by the server API, told to the client by a
    /// push.
    async fn server_command(&mut self, c: ServerCommand) {
        if !self.connected {
            return;
        }
        match c {
            ServerCommand::Subscribe(channel) => {
                let req = SubscribeRequest {
                    channel: channel.clone(),
                    ..Default::default()
                };
                match self.subscribe(&req, true).await {
                    Ok(r) => {
                        let body = SubscribePush {
                            recoverable: r.recoverable,
                            epoch: r.epoch,
                            offset: r.offset,
                        };
                        self.client.send_text(push(&channel, "subscribe", &body));
                        for (channel, after) in std::mem::take(&mut self.activate) {
                            self.hub.activate(&channel, &self.client, after);
                        }
                    }
                    Err(e) => {
                        tracing::info!(peer = %self.client.peer, %channel, "server subscribe failed: {}", e.message)
                    }
                }
            }
            ServerCommand::Unsubscribe(channel) => {
                if self.unsubscribe(&channel).await {
                    let (code, reason) = codes::UNSUBSCRIBE_SERVER;
                    self.client.send_text(push(
                        &channel,
                        "unsubscribe",
                        &UnsubscribePush { code, reason },
                    ));
                }
            }
        }
    }

    async fn cleanup(&mut self) {
        for (channel, sub) in std::mem::take(&mut self.subs).0 {
            self.leave(&channel, sub).await;
        }
    }
}

/// The body of a `subscribe` push (a server-side subscription made by the server API).
#[derive(serde::Serialize)]
struct SubscribePush {
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    recoverable: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    epoch: String,
    #[serde(skip_serializing_if = "is_zero")]
    offset: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn has_method(c: &Command) -> bool {
    c.connect.is_some()
        || c.subscribe.is_some()
        || c.unsubscribe.is_some()
        || c.publish.is_some()
        || c.presence.is_some()
        || c.presence_stats.is_some()
        || c.history.is_some()
        || c.ping.is_some()
        || c.rpc.is_some()
        || c.refresh.is_some()
        || c.sub_refresh.is_some()
}

/// How publications of a namespace are kept.
pub(crate) fn publish_options(hub: &Hub, ns: &NamespaceOptions) -> PublishOptions {
    PublishOptions {
        history_size: ns.history_size,
        history_ttl: Duration::from_secs(ns.history_ttl),
        meta_ttl: hub.config.history_meta_ttl,
    }
}

/// Presence counted.
pub(crate) fn presence_stats(p: &BTreeMap<String, ClientInfo>) -> PresenceStatsResult {
    let users: HashSet<&str> = p.values().map(|i| i.user.as_str()).collect();
    PresenceStatsResult {
        num_clients: p.len() as u32,
        num_users: users.len() as u32,
    }
}

/// A history call (client protocol and server API): `limit` 0 gives the position only,
/// a negative one everything kept; a `since` from another epoch is error 112.
pub(crate) async fn history(
    hub: &Hub,
    channel: &str,
    limit: i32,
    since: Option<&StreamPosition>,
    reverse: bool,
) -> Result<HistoryResult, ErrorReply> {
    let cap = hub.config.max_history_limit;
    let limit = match usize::try_from(limit) {
        Ok(n) => n.min(cap),
        Err(_) => cap,
    };
    let page = hub
        .broker
        .history(
            channel,
            HistoryQuery {
                since: since.map(|s| s.offset),
                limit: Some(limit),
                reverse,
            },
        )
        .await
        .map_err(|_| codes::INTERNAL)?;
    if since.is_some_and(|s| s.epoch != page.position.epoch) {
        return Err(codes::UNRECOVERABLE_POSITION);
    }
    Ok(HistoryResult {
        publications: page.publications,
        epoch: page.position.epoch,
        offset: page.position.offset,
    })
}
