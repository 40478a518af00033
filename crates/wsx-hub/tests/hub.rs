//! The hub end to end over loopback: a `wsx::Server` with the hub, clients speaking the
//! protocol's JSON by hand (the official SDKs are tested in tests/hub/ by scripts/hub.sh).

use futures_util::StreamExt;
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wsx::{MaybeTlsStream, Message, WebSocket};
use wsx_hub::{Hub, HubConfig, HubHook, MemoryBroker, TokenKeys};

const SECRET: &str = "test-secret-of-reasonable-length";
const API_KEY: &str = "api-key";
const WAIT: Duration = Duration::from_secs(10);

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn token(claims: Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

fn user_token(user: &str) -> String {
    token(json!({"sub": user, "exp": now() + 3600}))
}

/// Everything on: history, presence, join/leave, subscribe and publish for all.
fn open_config() -> HubConfig {
    let mut c = HubConfig::default();
    let d = &mut c.defaults;
    d.history_size = 100;
    d.history_ttl = 300;
    d.presence = true;
    d.join_leave = true;
    d.allow_subscribe = true;
    d.allow_publish = true;
    c
}

async fn start(config: HubConfig, server: wsx::ServerConfig) -> (SocketAddr, Arc<Hub>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hub = Hub::new(
        config,
        TokenKeys::new().hmac_secret(SECRET.as_bytes()),
        Arc::new(MemoryBroker::new()),
    );
    let hook = HubHook::new(hub.clone()).api_key(API_KEY);
    let h = hub.clone();
    tokio::spawn(
        wsx::Server::from_listener(listener)
            .config(server)
            .serve_with_hook(
                move |ws, peer| h.clone().serve(ws, peer),
                move || hook.clone(),
            ),
    );
    (addr, hub)
}

async fn start_open() -> SocketAddr {
    start(open_config(), wsx::ServerConfig::default()).await.0
}

struct Client {
    ws: WebSocket<MaybeTlsStream>,
    /// Lines received and not yet taken.
    lines: VecDeque<Value>,
    next_id: u64,
}

impl Client {
    async fn open(addr: SocketAddr) -> Client {
        let ws = wsx::connect(&format!("ws://{addr}/connection/websocket"))
            .await
            .unwrap();
        Client {
            ws,
            lines: VecDeque::new(),
            next_id: 1,
        }
    }

    /// Opens and connects as `user`.
    async fn connected(addr: SocketAddr, user: &str) -> Client {
        let mut c = Client::open(addr).await;
        let r = c
            .call(json!({"connect": {"token": user_token(user)}}))
            .await;
        assert!(r["connect"]["client"].is_string(), "{r}");
        c
    }

    async fn send_raw(&mut self, text: &str) {
        self.ws.send(Message::text(text)).await.unwrap();
    }

    /// The next line, waiting for a frame when none is left.
    async fn line(&mut self) -> Value {
        loop {
            if let Some(v) = self.lines.pop_front() {
                return v;
            }
            let msg = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("no message in time")
                .expect("connection ended")
                .expect("connection failed");
            if let Message::Text(t) = msg {
                for l in t.split('\n') {
                    self.lines.push_back(serde_json::from_str(l).unwrap());
                }
            }
        }
    }

    /// Sends commands in one frame (ids given in order), returns their replies by id; pushes
    /// that arrive meanwhile stay queued.
    async fn batch(&mut self, cmds: Vec<Value>) -> Vec<Value> {
        let mut ids = Vec::new();
        let mut text = String::new();
        for mut c in cmds {
            let id = self.next_id;
            self.next_id += 1;
            c["id"] = json!(id);
            ids.push(id);
            if !text.is_empty() {
                text.push('\n');
            }
            text.push_str(&c.to_string());
        }
        self.send_raw(&text).await;
        let mut replies = vec![Value::Null; ids.len()];
        let mut kept = VecDeque::new();
        while replies.iter().any(Value::is_null) {
            let v = self.line().await;
            match ids.iter().position(|&id| v["id"] == json!(id)) {
                Some(i) => replies[i] = v,
                None => kept.push_back(v),
            }
        }
        kept.extend(self.lines.drain(..));
        self.lines = kept;
        replies
    }

    async fn call(&mut self, cmd: Value) -> Value {
        self.batch(vec![cmd]).await.remove(0)
    }

    /// The next push of `kind`, skipping pings.
    async fn push(&mut self, kind: &str) -> Value {
        loop {
            let v = self.line().await;
            if v.get("push").and_then(|p| p.get(kind)).is_some() {
                return v["push"].clone();
            }
            assert!(v.get("push").is_some() || v == json!({}), "not a push: {v}");
        }
    }

    /// The close code the server ends the connection with.
    async fn closed(&mut self) -> u16 {
        loop {
            match tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("not closed in time")
            {
                Some(Ok(_)) => continue,
                _ => return self.ws.close_event().map(|e| e.code.0).unwrap_or(1006),
            }
        }
    }
}

/// A server API call: HTTP status and JSON body.
async fn api(addr: SocketAddr, method: &str, key: &str, body: &str) -> (u16, Value) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "POST /api/{method} HTTP/1.1\r\nHost: x\r\nX-API-Key: {key}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8(out).unwrap();
    let status = text[9..12].parse().unwrap();
    let body = text.split_once("\r\n\r\n").unwrap().1;
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

#[tokio::test]
async fn connect_subscribe_publish_in_batches() {
    let addr = start_open().await;
    let mut a = Client::open(addr).await;
    // As centrifuge-js does: connect and subscribe in one frame.
    let r = a
        .batch(vec![
            json!({"connect": {"token": user_token("ann"), "name": "test", "extra": 1}}),
            json!({"subscribe": {"channel": "room", "flag": 1}}),
        ])
        .await;
    assert_eq!(r[0]["connect"]["ping"], 25, "{}", r[0]);
    assert_eq!(r[0]["connect"]["pong"], true);
    assert!(r[0]["connect"]["expires"] == true && r[0]["connect"]["ttl"].as_u64().unwrap() > 3000);
    assert_eq!(r[1]["subscribe"]["recoverable"], true, "{}", r[1]);
    let epoch = r[1]["subscribe"]["epoch"].as_str().unwrap().to_owned();

    let mut b = Client::connected(addr, "bob").await;
    b.call(json!({"subscribe": {"channel": "room", "join_leave": true}}))
        .await;
    let r = b
        .call(
            json!({"publish": {"channel": "room", "data": {"text": "hé \u{1F600}", "n": [1, 2]}}}),
        )
        .await;
    assert_eq!(r["publish"], json!({}), "{r}");
    let p = a.push("pub").await;
    assert_eq!(p["channel"], "room");
    assert_eq!(
        p["pub"]["data"],
        json!({"text": "hé \u{1F600}", "n": [1, 2]})
    );
    assert_eq!(p["pub"]["offset"], 1);
    assert_eq!(p["pub"]["info"]["user"], "bob");

    // Presence and stats from a subscriber.
    let r = a.call(json!({"presence_stats": {"channel": "room"}})).await;
    assert_eq!(
        r["presence_stats"],
        json!({"num_clients": 2, "num_users": 2})
    );
    let r = a.call(json!({"presence": {"channel": "room"}})).await;
    assert_eq!(r["presence"]["presence"].as_object().unwrap().len(), 2);
    // History.
    let r = a
        .call(json!({"history": {"channel": "room", "limit": 10}}))
        .await;
    assert_eq!(r["history"]["epoch"], epoch.as_str());
    assert_eq!(r["history"]["publications"][0]["offset"], 1);

    // Bob asked for join/leave: Ann leaving is pushed to him.
    a.call(json!({"unsubscribe": {"channel": "room"}})).await;
    let p = b.push("leave").await;
    assert_eq!(p["leave"]["info"]["user"], "ann");
    // Pings answered with pongs; `ping` commands answered.
    assert_eq!(b.call(json!({"ping": {}})).await["ping"], json!({}));
}

#[tokio::test]
async fn recovery_gives_all_missed_or_says_not_recovered() {
    let mut config = open_config();
    config.defaults.history_size = 5;
    let (addr, _hub) = start(config, wsx::ServerConfig::default()).await;
    let mut a = Client::connected(addr, "ann").await;
    let r = a.call(json!({"subscribe": {"channel": "feed"}})).await;
    let epoch = r["subscribe"]["epoch"].as_str().unwrap().to_owned();
    drop(a);
    for n in 1..=3 {
        let (status, r) = api(
            addr,
            "publish",
            API_KEY,
            &json!({"channel": "feed", "data": n}).to_string(),
        )
        .await;
        assert_eq!((status, &r["result"]["offset"]), (200, &json!(n)), "{r}");
    }
    let mut a = Client::connected(addr, "ann").await;
    let r = a
        .call(
            json!({"subscribe": {"channel": "feed", "recover": true, "offset": 0, "epoch": epoch}}),
        )
        .await;
    let s = &r["subscribe"];
    assert_eq!(
        (s["was_recovering"].clone(), s["recovered"].clone()),
        (json!(true), json!(true)),
        "{r}"
    );
    let data: Vec<&Value> = s["publications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| &p["data"])
        .collect();
    assert_eq!(data, [&json!(1), &json!(2), &json!(3)]);
    drop(a);

    // More missed than history holds: nothing, and recovered false (never a partial set).
    for n in 4..=10 {
        api(
            addr,
            "publish",
            API_KEY,
            &json!({"channel": "feed", "data": n}).to_string(),
        )
        .await;
    }
    let mut a = Client::connected(addr, "ann").await;
    let r = a
        .call(
            json!({"subscribe": {"channel": "feed", "recover": true, "offset": 3, "epoch": epoch}}),
        )
        .await;
    assert_eq!(r["subscribe"]["recovered"], Value::Null, "{r}");
    assert_eq!(r["subscribe"]["was_recovering"], true);
    assert!(r["subscribe"].get("publications").is_none());
    assert_eq!(r["subscribe"]["offset"], 10);
    // Another epoch: not recovered either.
    a.call(json!({"unsubscribe": {"channel": "feed"}})).await;
    let r = a
        .call(json!({"subscribe": {"channel": "feed", "recover": true, "offset": 10, "epoch": "other"}}))
        .await;
    assert_eq!(r["subscribe"]["recovered"], Value::Null, "{r}");
    // The right position, up to date: recovered, nothing to send.
    a.call(json!({"unsubscribe": {"channel": "feed"}})).await;
    let r = a
        .call(json!({"subscribe": {"channel": "feed", "recover": true, "offset": 10, "epoch": epoch}}))
        .await;
    assert_eq!(r["subscribe"]["recovered"], true, "{r}");
    // History from another epoch: error 112.
    let r = a.call(json!({"history": {"channel": "feed", "limit": 1, "since": {"offset": 1, "epoch": "x"}}})).await;
    assert_eq!(r["error"]["code"], 112, "{r}");
}

/// A subscription made while publications stream in sees each once, in offset order:
/// those in its reply (recovered), then those delivered after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribing_during_publishing_has_no_gaps_or_duplicates() {
    let mut config = open_config();
    config.defaults.history_size = 10_000;
    let (addr, hub) = start(config, wsx::ServerConfig::default()).await;
    let total = 2000u64;
    let publisher = tokio::spawn(async move {
        let mut p = Client::connected(addr, "pub").await;
        p.call(json!({"subscribe": {"channel": "live"}})).await;
        for n in 1..=total {
            let r = p
                .call(json!({"publish": {"channel": "live", "data": n}}))
                .await;
            assert!(r.get("error").is_none(), "{r}");
        }
        p
    });
    for round in 0..5 {
        tokio::time::sleep(Duration::from_millis(5 * round)).await;
        let mut c = Client::connected(addr, "sub").await;
        let r = c
            .call(json!({"subscribe": {"channel": "live", "recover": true, "offset": 0, "epoch": ""}}))
            .await;
        let s = &r["subscribe"];
        // Epoch "" never matches: no recovery; offsets start after the reply's offset.
        let mut last = s["offset"].as_u64().unwrap_or(0);
        let epoch = s["epoch"].as_str().unwrap().to_owned();
        let stop = (last + 50).min(total);
        while last < stop {
            let p = c.push("pub").await;
            let offset = p["pub"]["offset"].as_u64().unwrap();
            assert_eq!(offset, last + 1, "round {round}: gap or duplicate");
            last = offset;
        }
        // Again, recovering from 20 back while publications go on: the recovered ones in
        // the reply, then the live ones, each once, in order.
        c.call(json!({"unsubscribe": {"channel": "live"}})).await;
        c.lines.clear();
        let from = last.saturating_sub(20);
        let r = c
            .call(json!({"subscribe": {"channel": "live", "recover": true, "offset": from, "epoch": epoch}}))
            .await;
        let s = &r["subscribe"];
        assert_eq!(s["recovered"], true, "round {round}: {r}");
        let mut last = from;
        for p in s["publications"].as_array().into_iter().flatten() {
            assert_eq!(
                p["offset"].as_u64().unwrap(),
                last + 1,
                "round {round}: recovered"
            );
            last += 1;
        }
        assert_eq!(last, s["offset"].as_u64().unwrap_or(0));
        while last < total {
            let p = c.push("pub").await;
            let offset = p["pub"]["offset"].as_u64().unwrap();
            assert_eq!(
                offset,
                last + 1,
                "round {round}: gap or duplicate after recovery"
            );
            last = offset;
        }
    }
    publisher.await.unwrap();
    drop(hub);
}

#[tokio::test]
async fn bad_input_gets_defined_answers() {
    let addr = start_open().await;
    // Malformed JSON: 3501.
    let mut c = Client::connected(addr, "u").await;
    c.send_raw("{not json").await;
    assert_eq!(c.closed().await, 3501);
    // A command before connect: 3501.
    let mut c = Client::open(addr).await;
    c.send_raw(r#"{"id":1,"subscribe":{"channel":"a"}}"#).await;
    assert_eq!(c.closed().await, 3501);
    // A method without an id: 3501.
    let mut c = Client::connected(addr, "u").await;
    c.send_raw(r#"{"subscribe":{"channel":"a"}}"#).await;
    assert_eq!(c.closed().await, 3501);
    // Binary frames (Protobuf) are not spoken here: 3506.
    let mut c = Client::connected(addr, "u").await;
    c.ws.send(Message::binary(vec![1, 2, 3])).await.unwrap();
    assert_eq!(c.closed().await, 3506);

    let mut c = Client::connected(addr, "u").await;
    let code = |v: &Value| v["error"]["code"].as_u64();
    assert_eq!(code(&c.call(json!({"nonsense": {}})).await), Some(104));
    assert_eq!(
        code(&c.call(json!({"rpc": {"method": "x", "data": {}}})).await),
        Some(108)
    );
    assert_eq!(
        code(&c.call(json!({"subscribe": {"channel": "nope:x"}})).await),
        Some(102)
    );
    assert_eq!(
        code(&c.call(json!({"subscribe": {"channel": ""}})).await),
        Some(102)
    );
    assert_eq!(
        code(
            &c.call(json!({"subscribe": {"channel": "a".repeat(300)}}))
                .await
        ),
        Some(102)
    );
    assert_eq!(
        code(&c.call(json!({"subscribe": {"channel": "dm#x,y"}})).await),
        Some(103)
    );
    assert_eq!(
        code(
            &c.call(json!({"publish": {"channel": "a", "data": 1}}))
                .await
        ),
        Some(103),
        "not subscribed"
    );
    assert_eq!(
        code(
            &c.call(json!({"history": {"channel": "a", "limit": 1}}))
                .await
        ),
        Some(103)
    );
    assert_eq!(
        c.call(json!({"subscribe": {"channel": "a"}})).await["subscribe"]["recoverable"],
        true
    );
    assert_eq!(
        code(&c.call(json!({"subscribe": {"channel": "a"}})).await),
        Some(105)
    );
    assert_eq!(
        code(&c.call(json!({"publish": {"channel": "a"}})).await),
        Some(107),
        "no data"
    );
    // Absurd history ranges are capped, not refused.
    let r = c.call(json!({"history": {"channel": "a", "limit": i32::MAX, "since": {"offset": u64::MAX, "epoch": ""}}})).await;
    assert_eq!(code(&r), Some(112), "{r}");
    let r = c
        .call(json!({"history": {"channel": "a", "limit": -5}}))
        .await;
    assert!(
        r["history"]["publications"].as_array().unwrap().is_empty(),
        "{r}"
    );
    // The subscription limit: 106.
    let mut last = Value::Null;
    for n in 0..200 {
        last = c
            .call(json!({"subscribe": {"channel": format!("ch{n}")}}))
            .await;
        if last.get("error").is_some() {
            break;
        }
    }
    assert_eq!(code(&last), Some(106), "{last}");
    // The connection still works after all those errors.
    assert_eq!(c.call(json!({"ping": {}})).await["ping"], json!({}));
}

#[tokio::test]
async fn permissions_follow_the_namespace() {
    let mut config = HubConfig::default();
    config.defaults.allow_subscribe = false;
    let mut chat = wsx_hub::NamespaceOptions::default();
    chat.allow_subscribe = true;
    config.namespaces.insert("chat".into(), chat);
    let (addr, _hub) = start(config, wsx::ServerConfig::default()).await;
    let mut c = Client::connected(addr, "u1").await;
    let code = |v: &Value| v["error"]["code"].as_u64();
    assert_eq!(
        code(&c.call(json!({"subscribe": {"channel": "news"}})).await),
        Some(103)
    );
    assert!(code(&c.call(json!({"subscribe": {"channel": "chat:1"}})).await).is_none());
    // Subscribed, but publishing is off in chat: 103; presence and history off: 108.
    assert_eq!(
        code(
            &c.call(json!({"publish": {"channel": "chat:1", "data": 1}}))
                .await
        ),
        Some(103)
    );
    assert_eq!(
        code(&c.call(json!({"presence": {"channel": "chat:1"}})).await),
        Some(108)
    );
    assert_eq!(
        code(&c.call(json!({"history": {"channel": "chat:1"}})).await),
        Some(108)
    );
    // A user-limited channel lets its users in.
    assert!(code(&c.call(json!({"subscribe": {"channel": "dm#u1,u2"}})).await).is_none());
    // A channel token for "news" and this user.
    let t = token(json!({"sub": "u1", "channel": "news", "exp": now() + 60}));
    let r = c
        .call(json!({"subscribe": {"channel": "news", "token": t}}))
        .await;
    assert_eq!(r["subscribe"]["expires"], true, "{r}");
    // ... but not for another channel or user, or expired.
    let t = token(json!({"sub": "u2", "channel": "news2"}));
    assert_eq!(
        code(
            &c.call(json!({"subscribe": {"channel": "news2", "token": t}}))
                .await
        ),
        Some(103)
    );
    let t = token(json!({"sub": "u1", "channel": "news3", "exp": now() - 10}));
    assert_eq!(
        code(
            &c.call(json!({"subscribe": {"channel": "news3", "token": t}}))
                .await
        ),
        Some(109)
    );
    // Anonymous connections are refused unless allowed.
    let mut anon = Client::open(addr).await;
    anon.send_raw(r#"{"id":1,"connect":{}}"#).await;
    assert_eq!(anon.closed().await, 3500);
}

#[tokio::test]
async fn tokens_forged_expired_refreshed() {
    let mut config = open_config();
    config.expired_grace = Duration::ZERO;
    let (addr, _hub) = start(config, wsx::ServerConfig::default()).await;
    // Wrong key.
    let forged = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"sub": "u"}),
        &jsonwebtoken::EncodingKey::from_secret(b"wrong"),
    )
    .unwrap();
    // alg: none.
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let none = format!(
        "{}.{}.",
        b64(r#"{"alg":"none","typ":"JWT"}"#),
        b64(r#"{"sub":"u"}"#)
    );
    for t in [forged, none, "garbage".to_string()] {
        let mut c = Client::open(addr).await;
        c.send_raw(&json!({"id": 1, "connect": {"token": t}}).to_string())
            .await;
        assert_eq!(c.closed().await, 3500, "{t}");
    }
    // Expired at connect: error 109 (the SDK then gets a new token), not a disconnect.
    let mut c = Client::open(addr).await;
    let r = c
        .call(json!({"connect": {"token": token(json!({"sub": "u", "exp": now() - 1}))}}))
        .await;
    assert_eq!(r["error"]["code"], 109, "{r}");
    let r = c
        .call(json!({"connect": {"token": token(json!({"sub": "u", "exp": now() + 2}))}}))
        .await;
    assert_eq!(r["connect"]["expires"], true, "{r}");
    // Refreshed before exp: the connection outlives the first token.
    let r = c
        .call(json!({"refresh": {"token": token(json!({"sub": "u", "exp": now() + 4}))}}))
        .await;
    assert_eq!(r["refresh"]["expires"], true, "{r}");
    // A refresh token of another user: 3500.
    let mut d = Client::connected(addr, "v").await;
    d.send_raw(&json!({"id": 9, "refresh": {"token": user_token("someone-else")}}).to_string())
        .await;
    assert_eq!(d.closed().await, 3500);
    // Not refreshed again: closed with 3005 once the second exp is past.
    let started = std::time::Instant::now();
    assert_eq!(c.closed().await, 3005);
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn pings_pongs_and_stale_connections() {
    let mut config = open_config();
    config.ping_interval = Duration::from_secs(1);
    config.pong_timeout = Duration::from_secs(1);
    config.stale_timeout = Duration::from_secs(1);
    let (addr, _hub) = start(config, wsx::ServerConfig::default()).await;
    // A client that answers pings stays.
    let mut c = Client::connected(addr, "u").await;
    for _ in 0..3 {
        assert_eq!(c.line().await, json!({}));
        c.send_raw("{}").await;
    }
    // One that does not: 3012.
    assert_eq!(c.line().await, json!({}));
    assert_eq!(c.closed().await, 3012);
    // One that never connects: 3502.
    let mut s = Client::open(addr).await;
    assert_eq!(s.closed().await, 3502);
}

#[tokio::test]
async fn slow_subscribers_are_cut_and_others_get_everything() {
    let mut server = wsx::ServerConfig::default();
    server.config.write_buffer_high_water = 64 * 1024;
    let (addr, _hub) = start(open_config(), server).await;
    let mut slow = Client::connected(addr, "slow").await;
    slow.call(json!({"subscribe": {"channel": "firehose"}}))
        .await;
    let mut fast = Client::connected(addr, "fast").await;
    fast.call(json!({"subscribe": {"channel": "firehose"}}))
        .await;
    // Incompressible (the clients negotiate permessage-deflate).
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let big: String = (0..32 * 1024)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b'a' + (x % 26) as u8)
        })
        .collect();
    let n = 600;
    let reader = tokio::spawn(async move {
        for i in 1..=n {
            let p = fast.push("pub").await;
            assert_eq!(p["pub"]["offset"], i);
        }
    });
    for _ in 0..n {
        let (status, r) = api(
            addr,
            "publish",
            API_KEY,
            &json!({"channel": "firehose", "data": big}).to_string(),
        )
        .await;
        assert_eq!(status, 200, "{r}");
    }
    reader.await.unwrap();
    // The slow one (never read: its socket buffers filled) was closed with 3008.
    assert_eq!(slow.closed().await, 3008);
}

#[tokio::test]
async fn server_api() {
    let addr = start_open().await;
    assert_eq!(api(addr, "info", "wrong", "{}").await.0, 401);
    assert_eq!(api(addr, "nope", API_KEY, "{}").await.0, 404);
    assert_eq!(api(addr, "publish", API_KEY, "{").await.0, 400);
    let (_, r) = api(addr, "publish", API_KEY, r#"{"channel":"x:y","data":1}"#).await;
    assert_eq!(r["error"]["code"], 102, "{r}");

    let mut c = Client::connected(addr, "ann").await;
    // Server-side subscribe: a subscribe push.
    let (status, r) = api(
        addr,
        "subscribe",
        API_KEY,
        r#"{"user":"ann","channel":"news"}"#,
    )
    .await;
    assert_eq!((status, r), (200, json!({"result": {}})));
    let p = c.push("subscribe").await;
    assert_eq!(p["channel"], "news");
    let (_, r) = api(
        addr,
        "publish",
        API_KEY,
        r#"{"channel":"news","data":{"a":1},"tags":{"k":"v"}}"#,
    )
    .await;
    assert_eq!(r["result"]["offset"], 1);
    let p = c.push("pub").await;
    assert_eq!(p["pub"]["tags"], json!({"k": "v"}));
    let (_, r) = api(
        addr,
        "broadcast",
        API_KEY,
        r#"{"channels":["news","bad:x"],"data":2}"#,
    )
    .await;
    assert_eq!(r["result"]["responses"][0]["result"]["offset"], 2, "{r}");
    assert_eq!(r["result"]["responses"][1]["error"]["code"], 102);
    let (_, r) = api(addr, "presence", API_KEY, r#"{"channel":"news"}"#).await;
    assert_eq!(r["result"]["presence"].as_object().unwrap().len(), 1, "{r}");
    let (_, r) = api(addr, "presence_stats", API_KEY, r#"{"channel":"news"}"#).await;
    assert_eq!(r["result"], json!({"num_clients": 1, "num_users": 1}));
    let (_, r) = api(
        addr,
        "history",
        API_KEY,
        r#"{"channel":"news","limit":1,"reverse":true}"#,
    )
    .await;
    assert_eq!(r["result"]["publications"][0]["data"], 2, "{r}");
    let (_, r) = api(addr, "channels", API_KEY, r#"{"pattern":"n*"}"#).await;
    assert_eq!(r["result"]["channels"]["news"]["num_clients"], 1, "{r}");
    let (_, r) = api(addr, "info", API_KEY, "").await;
    assert_eq!(r["result"]["nodes"][0]["num_clients"], 1, "{r}");
    api(addr, "history_remove", API_KEY, r#"{"channel":"news"}"#).await;
    let (_, r) = api(addr, "history", API_KEY, r#"{"channel":"news","limit":-1}"#).await;
    assert!(
        r["result"]["publications"].as_array().unwrap().is_empty(),
        "{r}"
    );
    assert_eq!(r["result"]["offset"], 2, "the position stays");
    // Server-side unsubscribe, then disconnect.
    api(
        addr,
        "unsubscribe",
        API_KEY,
        r#"{"user":"ann","channel":"news"}"#,
    )
    .await;
    let p = c.push("unsubscribe").await;
    assert_eq!(p["unsubscribe"]["code"], 2000);
    api(addr, "disconnect", API_KEY, r#"{"user":"ann"}"#).await;
    assert_eq!(c.closed().await, 3503);
    // Health and metrics.
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    assert!(out.contains("wsx_hub_api_calls_total "), "{out}");
    assert!(out.contains("wsx_hub_deliveries_total 2\n"), "{out}");
}

#[tokio::test]
async fn shutdown_tells_clients_to_come_back_later() {
    let (addr, hub) = start(open_config(), wsx::ServerConfig::default()).await;
    let mut a = Client::connected(addr, "a").await;
    a.call(json!({"subscribe": {"channel": "x"}})).await;
    let mut b = Client::connected(addr, "b").await;
    let started = std::time::Instant::now();
    let (code_a, code_b, ()) = tokio::join!(a.closed(), b.closed(), hub.shutdown(WAIT));
    assert_eq!((code_a, code_b), (3001, 3001));
    // The sessions ended: shutdown did not wait for its timeout.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // A client that comes during the shutdown is closed at once.
    let mut late = Client::open(addr).await;
    assert_eq!(late.closed().await, 3001);
}
