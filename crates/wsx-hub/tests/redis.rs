//! The Redis broker against a real `redis-server` (started by each test on 127.0.0.1 with
//! a free port, stopped at its end): two brokers as two nodes, order and gaps, presence
//! expiry, a lost stream, and Redis going away and coming back.
//!
//! `redis-server` must be on the PATH (Debian: `apt-get install redis-server`; `.ci/run`
//! installs it).
#![cfg(feature = "redis")]

use serde_json::value::RawValue;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wsx_hub::broker::{HistoryQuery, PublishOptions};
use wsx_hub::protocol::{ClientInfo, Publication};
use wsx_hub::{Broker, BrokerEvents, RedisBroker};

/// The `redis-server`s of one test: one server, or a cluster of three masters; killed
/// when dropped.
struct Redis {
    children: Vec<Child>,
    ports: Vec<u16>,
    dir: std::path::PathBuf,
    cluster: bool,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn server(port: u16, dir: &std::path::Path, cluster: bool) -> Child {
    let mut cmd = Command::new("redis-server");
    cmd.args([
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
    ])
    .args(["--appendonly", "yes", "--appendfsync", "always"])
    .args(["--appendfilename", &format!("appendonly-{port}.aof")])
    .args(["--appenddirname", &format!("aof-{port}")])
    .arg("--dir")
    .arg(dir);
    if cluster {
        cmd.args(["--cluster-enabled", "yes"])
            .args(["--cluster-config-file", &format!("nodes-{port}.conf")]);
    }
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server must be installed (apt-get install redis-server)");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "redis-server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

impl Redis {
    fn dir() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "wsx-redis-test-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// One server.
    fn start() -> Redis {
        let (port, dir) = (free_port(), Redis::dir());
        Redis {
            children: vec![server(port, &dir, false)],
            ports: vec![port],
            dir,
            cluster: false,
        }
    }

    /// A cluster of three masters, no replicas.
    fn start_cluster() -> Redis {
        let dir = Redis::dir();
        let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let children = ports.iter().map(|&p| server(p, &dir, true)).collect();
        let redis = Redis {
            children,
            ports,
            dir,
            cluster: true,
        };
        let nodes: Vec<String> = redis
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&nodes)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        for &port in &redis.ports {
            loop {
                let info = Command::new("redis-cli")
                    .args(["-p", &port.to_string(), "CLUSTER", "INFO"])
                    .output()
                    .unwrap();
                if String::from_utf8_lossy(&info.stdout).contains("cluster_state:ok") {
                    break;
                }
                assert!(Instant::now() < deadline, "the cluster did not form");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        redis
    }

    fn url(&self) -> String {
        if self.cluster {
            let hosts: Vec<String> = self
                .ports
                .iter()
                .map(|p| format!("127.0.0.1:{p}"))
                .collect();
            format!("redis+cluster://{}", hosts.join(","))
        } else {
            format!("redis://127.0.0.1:{}", self.ports[0])
        }
    }

    /// Runs a command on every server (following redirections in a cluster).
    fn cli(&self, args: &[&str]) {
        for port in &self.ports {
            Command::new("redis-cli")
                .args(["-c", "-p", &port.to_string()])
                .args(args)
                .output()
                .unwrap();
        }
    }

    fn stop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What a node's hub would receive.
#[derive(Default)]
struct Seen {
    publications: Mutex<Vec<(String, u64, String)>>,
    joins: Mutex<Vec<String>>,
    lost: Mutex<Vec<String>>,
    control: Mutex<Vec<String>>,
}

impl BrokerEvents for Seen {
    fn publication(&self, channel: &str, p: &Arc<Publication>) {
        self.publications.lock().unwrap().push((
            channel.to_owned(),
            p.offset,
            p.data.get().to_owned(),
        ));
    }
    fn join(&self, channel: &str, info: &ClientInfo) {
        self.joins
            .lock()
            .unwrap()
            .push(format!("{channel}:{}", info.client));
    }
    fn leave(&self, _: &str, _: &ClientInfo) {}
    fn lost(&self, channel: &str) {
        self.lost.lock().unwrap().push(channel.to_owned());
    }
    fn control(&self, message: &[u8]) {
        self.control
            .lock()
            .unwrap()
            .push(String::from_utf8_lossy(message).into_owned());
    }
}

impl Seen {
    fn offsets(&self, channel: &str) -> Vec<u64> {
        let p = self.publications.lock().unwrap();
        p.iter().filter(|x| x.0 == channel).map(|x| x.1).collect()
    }
}

fn publication(n: u64) -> Publication {
    Publication {
        data: RawValue::from_string(format!("{{\"n\":{n}}}")).unwrap(),
        info: None,
        offset: 0,
        tags: None,
    }
}

fn options(size: usize) -> PublishOptions {
    PublishOptions {
        history_size: size,
        history_ttl: Duration::from_secs(60),
        meta_ttl: Duration::from_secs(600),
    }
}

fn info(client: &str) -> ClientInfo {
    ClientInfo {
        user: "u".into(),
        client: client.into(),
        conn_info: None,
        chan_info: None,
    }
}

async fn node(redis: &Redis) -> (RedisBroker, Arc<Seen>) {
    let broker = RedisBroker::connect(&redis.url())
        .await
        .unwrap()
        .timeout(Duration::from_secs(2))
        .presence_ttl(Duration::from_secs(3))
        .link_check(Duration::from_millis(200));
    let seen = Arc::new(Seen::default());
    broker.start(seen.clone());
    (broker, seen)
}

async fn until(what: &str, secs: u64, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn two_nodes_see_one_stream_in_order(redis: Redis) {
    let (a, seen_a) = node(&redis).await;
    let (b, seen_b) = node(&redis).await;
    a.subscribe("c").await.unwrap();
    b.subscribe("c").await.unwrap();
    let mut acked = Vec::new();
    for n in 0..100u64 {
        let via = if n % 2 == 0 { &a } else { &b };
        acked.push(
            via.publish("c", publication(n), options(1000))
                .await
                .unwrap(),
        );
    }
    let offsets: Vec<u64> = acked.iter().map(|p| p.offset).collect();
    assert_eq!(offsets, (1..=100).collect::<Vec<_>>());
    assert!(acked.iter().all(|p| p.epoch == acked[0].epoch));
    for seen in [&seen_a, &seen_b] {
        until("100 publications", 5, || seen.offsets("c").len() == 100).await;
        assert_eq!(seen.offsets("c"), offsets);
    }
    // History is the same from either node, and what was acknowledged is in it.
    let page = b
        .history(
            "c",
            HistoryQuery {
                since: Some(90),
                limit: None,
                reverse: false,
            },
        )
        .await
        .unwrap();
    assert_eq!(page.position.offset, 100);
    assert_eq!(page.position.epoch, acked[0].epoch);
    let got: Vec<u64> = page.publications.iter().map(|p| p.offset).collect();
    assert_eq!(got, (91..=100).collect::<Vec<_>>());
    assert_eq!(page.publications[0].data.get(), "{\"n\":90}");
    let back = a
        .history(
            "c",
            HistoryQuery {
                since: Some(50),
                limit: Some(3),
                reverse: true,
            },
        )
        .await
        .unwrap();
    let got: Vec<u64> = back.publications.iter().map(|p| p.offset).collect();
    assert_eq!(got, vec![49, 48, 47]);
    // The stream keeps the history size, no more.
    a.publish("small", publication(0), options(5))
        .await
        .unwrap();
    for n in 1..20 {
        a.publish("small", publication(n), options(5))
            .await
            .unwrap();
    }
    let page = a.history("small", HistoryQuery::default()).await.unwrap();
    let got: Vec<u64> = page.publications.iter().map(|p| p.offset).collect();
    assert_eq!(got, (16..=20).collect::<Vec<_>>());
    // Many channels, spread over a cluster's masters, each in its own order.
    let names: Vec<String> = (0..24).map(|i| format!("room{i}")).collect();
    for name in &names {
        a.subscribe(name).await.unwrap();
    }
    for round in 0..5u64 {
        for name in &names {
            b.publish(name, publication(round), options(100))
                .await
                .unwrap();
        }
    }
    for name in &names {
        until("every room's publications", 5, || {
            seen_a.offsets(name).len() == 5
        })
        .await;
        assert_eq!(seen_a.offsets(name), vec![1, 2, 3, 4, 5], "{name}");
    }
    let shards = redis.ports.len() as u64;
    assert_eq!(metric(&metrics(&a), "redis_link_up"), shards);
    // Joins cross nodes.
    a.publish_join("c", info("x")).await.unwrap();
    until("the join on b", 5, || {
        !seen_b.joins.lock().unwrap().is_empty()
    })
    .await;
    assert_eq!(seen_b.joins.lock().unwrap()[0], "c:x");
    // Control messages reach every node, the sender included.
    b.control(b"hello".to_vec()).await.unwrap();
    for seen in [&seen_a, &seen_b] {
        until("the control message", 5, || {
            seen.control.lock().unwrap().iter().any(|m| m == "hello")
        })
        .await;
    }
    // The link stayed up all along (its checks were answered).
    assert_eq!(metric(&metrics(&b), "redis_link_reconnects_total"), 0);
}

async fn a_cut_link_catches_up_from_history(redis: Redis) {
    let (a, _) = node(&redis).await;
    let (b, seen_b) = node(&redis).await;
    b.subscribe("c").await.unwrap();
    a.publish("c", publication(0), options(1000)).await.unwrap();
    until("the first publication", 5, || seen_b.offsets("c") == [1]).await;
    // Cut every pub/sub connection and publish while they are down.
    for round in 0..3u64 {
        redis.cli(&["CLIENT", "KILL", "TYPE", "pubsub"]);
        for n in 0..50 {
            a.publish("c", publication(round * 100 + n), options(1000))
                .await
                .unwrap();
        }
    }
    until("151 publications on b", 10, || {
        seen_b.offsets("c").len() == 151
    })
    .await;
    assert_eq!(seen_b.offsets("c"), (1..=151).collect::<Vec<_>>());
    assert!(seen_b.lost.lock().unwrap().is_empty());
    let metrics = metrics(&b);
    assert!(
        metric(&metrics, "redis_link_reconnects_total") >= 3,
        "{metrics}"
    );
    assert!(metric(&metrics, "redis_caught_up_total") >= 1, "{metrics}");
    let shards = redis.ports.len() as u64;
    assert_eq!(metric(&metrics, "redis_link_up"), shards, "{metrics}");
}

fn metrics(broker: &RedisBroker) -> String {
    let mut registry = prometheus_client::registry::Registry::default();
    broker.register_metrics(&mut registry);
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
    out
}

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

async fn a_lost_stream_is_reported(redis: Redis) {
    let (a, _) = node(&redis).await;
    let (b, seen_b) = node(&redis).await;
    b.subscribe("c").await.unwrap();
    for n in 0..3 {
        a.publish("c", publication(n), options(1000)).await.unwrap();
    }
    until("3 publications", 5, || seen_b.offsets("c").len() == 3).await;
    // Redis loses the channel's stream and position: the next publication starts a new
    // epoch, which subscribers' positions do not belong to.
    redis.cli(&["DEL", "wsx.m.{c}", "wsx.s.{c}"]);
    let p = a.publish("c", publication(9), options(1000)).await.unwrap();
    assert_eq!(p.offset, 1);
    until("the loss", 5, || !seen_b.lost.lock().unwrap().is_empty()).await;
    assert_eq!(seen_b.offsets("c"), vec![1, 2, 3]);
    // Later ones in the new epoch are delivered again.
    a.publish("c", publication(10), options(1000))
        .await
        .unwrap();
    until("the next", 5, || seen_b.offsets("c").len() == 4).await;
    assert_eq!(seen_b.offsets("c"), vec![1, 2, 3, 2]);
}

async fn presence_of_a_dead_node_expires(redis: Redis) {
    let (a, _) = node(&redis).await;
    let (b, _) = node(&redis).await;
    a.add_presence("c", "ca", info("ca")).await.unwrap();
    b.add_presence("c", "cb", info("cb")).await.unwrap();
    let both = b.presence("c").await.unwrap();
    assert_eq!(both.keys().collect::<Vec<_>>(), ["ca", "cb"]);
    // b keeps refreshing its own entry past the TTL; a dies and its entry goes.
    drop(a);
    tokio::time::sleep(Duration::from_millis(4500)).await;
    let left = b.presence("c").await.unwrap();
    assert_eq!(left.keys().collect::<Vec<_>>(), ["cb"]);
    b.remove_presence("c", "cb").await.unwrap();
    assert!(b.presence("c").await.unwrap().is_empty());
}

#[tokio::test]
async fn redis_restart_keeps_acknowledged_publications() {
    let mut redis = Redis::start();
    let (a, _) = node(&redis).await;
    let (b, seen_b) = node(&redis).await;
    b.subscribe("c").await.unwrap();
    for n in 0..10 {
        a.publish("c", publication(n), options(1000)).await.unwrap();
    }
    redis.stop();
    // While Redis is away, operations fail within the timeout instead of hanging.
    let started = Instant::now();
    assert!(a
        .publish("c", publication(99), options(1000))
        .await
        .is_err());
    assert!(started.elapsed() < Duration::from_secs(5));
    let child = server(redis.ports[0], &redis.dir, false);
    redis.children = vec![child];
    // The command connection reconnects; the link resubscribes and catches up.
    let mut n = 10;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if a.publish("c", publication(n), options(1000)).await.is_ok() {
            n += 1;
            if n == 20 {
                break;
            }
        }
        assert!(Instant::now() < deadline, "publishing did not come back");
    }
    until("20 publications on b", 15, || {
        seen_b.offsets("c").len() == 20
    })
    .await;
    assert_eq!(seen_b.offsets("c"), (1..=20).collect::<Vec<_>>());
    let page = a.history("c", HistoryQuery::default()).await.unwrap();
    assert_eq!(page.publications.len(), 20);
    drop(redis);
}

/// A hub node on `redis`, serving on a free port.
async fn hub_node(redis: &Redis, name: &str) -> (std::net::SocketAddr, Arc<wsx_hub::Hub>) {
    let mut config = wsx_hub::HubConfig::default();
    config.name = name.to_owned();
    config.defaults.allow_subscribe = true;
    config.defaults.allow_publish = true;
    config.defaults.history_size = 1000;
    config.defaults.history_ttl = 300;
    let broker = RedisBroker::connect(&redis.url()).await.unwrap();
    let hub = wsx_hub::Hub::new(
        config,
        wsx_hub::TokenKeys::new().hmac_secret(SECRET),
        Arc::new(broker),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hook = wsx_hub::HubHook::new(hub.clone()).api_key("k");
    let h = hub.clone();
    tokio::spawn(wsx::Server::from_listener(listener).serve_with_hook(
        move |ws, peer| h.clone().serve(ws, peer),
        move || hook.clone(),
    ));
    (addr, hub)
}

const SECRET: &[u8] = b"test-secret-of-reasonable-length";

async fn api(hub: &wsx_hub::Hub, method: &str, body: serde_json::Value) -> serde_json::Value {
    let reply = wsx_hub::api::call(hub, method, body.to_string().as_bytes()).await;
    assert_eq!(reply.status, 200);
    serde_json::from_slice(&reply.body).unwrap()
}

/// A raw protocol client: sends commands, returns the next frame's first JSON line.
struct Raw(wsx::WebSocket<wsx::MaybeTlsStream>);

impl Raw {
    async fn send(&mut self, v: serde_json::Value) {
        self.0
            .send(wsx::Message::text(v.to_string()))
            .await
            .unwrap();
    }

    async fn next(&mut self) -> wsx::Message {
        use futures_util::StreamExt;
        tokio::time::timeout(Duration::from_secs(10), self.0.next())
            .await
            .expect("nothing in time")
            .expect("ended")
            .expect("failed")
    }

    async fn json(&mut self) -> serde_json::Value {
        match self.next().await {
            wsx::Message::Text(t) => serde_json::from_str(t.split('\n').next().unwrap()).unwrap(),
            other => panic!("not text: {other:?}"),
        }
    }
}

async fn the_server_api_reaches_clients_on_every_node(redis: Redis) {
    let (addr_a, _a) = hub_node(&redis, "a").await;
    let (_, b) = hub_node(&redis, "b").await;
    let ws = wsx::connect(&format!("ws://{addr_a}/connection/websocket"))
        .await
        .unwrap();
    let mut alice = Raw(ws);
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &serde_json::json!({"sub": "alice", "exp": 4_000_000_000u64}),
        &jsonwebtoken::EncodingKey::from_secret(SECRET),
    )
    .unwrap();
    alice
        .send(serde_json::json!({"id": 1, "connect": {"token": token}}))
        .await;
    assert!(alice.json().await["connect"]["client"].is_string());
    alice
        .send(serde_json::json!({"id": 2, "subscribe": {"channel": "c"}}))
        .await;
    assert_eq!(alice.json().await["id"], 2);
    // Published on b, delivered on a.
    let r = api(
        &b,
        "publish",
        serde_json::json!({"channel": "c", "data": {"x": 1}}),
    )
    .await;
    assert_eq!(r["result"]["offset"], 1, "{r}");
    let push = alice.json().await;
    assert_eq!(push["push"]["pub"]["data"]["x"], 1, "{push}");
    // b learns of a from its announcements, and counts a's subscribers.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let info = api(&b, "info", serde_json::json!({})).await;
        let nodes = info["result"]["nodes"].as_array().unwrap().clone();
        if nodes.len() == 2 {
            assert_eq!(nodes[0]["name"], "b");
            assert_eq!(nodes[1]["name"], "a");
            assert_eq!(nodes[1]["num_clients"], 1);
            break;
        }
        assert!(Instant::now() < deadline, "b never heard of a: {info}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let channels = api(&b, "channels", serde_json::json!({})).await;
    assert_eq!(
        channels["result"]["channels"]["c"]["num_clients"], 1,
        "{channels}"
    );
    // Disconnected through b, on a.
    let r = api(&b, "disconnect", serde_json::json!({"user": "alice"})).await;
    assert!(r["result"].is_object(), "{r}");
    loop {
        match alice.next().await {
            wsx::Message::Close(Some(frame)) => {
                assert_eq!(u16::from(frame.code), 3503);
                break;
            }
            wsx::Message::Close(None) => panic!("closed without a code"),
            _ => {}
        }
    }
}

#[tokio::test]
async fn functions_lost_by_redis_are_loaded_again() {
    let redis = Redis::start();
    let (a, _) = node(&redis).await;
    a.publish("f", publication(0), options(10)).await.unwrap();
    redis.cli(&["FUNCTION", "FLUSH"]);
    // A publish is not retried (one behind it could overtake it): it fails, unapplied.
    assert!(a.publish("f", publication(1), options(10)).await.is_err());
    // Reads are retried once the library is back; the next publish goes through.
    let page = a.history("f", HistoryQuery::default()).await.unwrap();
    assert_eq!(page.publications.len(), 1);
    let p = a.publish("f", publication(2), options(10)).await.unwrap();
    assert_eq!(p.offset, 2);
}

#[tokio::test]
async fn expired_publications_leave_history() {
    let redis = Redis::start();
    let (a, _) = node(&redis).await;
    let short = PublishOptions {
        history_size: 100,
        history_ttl: Duration::from_millis(300),
        meta_ttl: Duration::from_secs(600),
    };
    for n in 0..5 {
        a.publish("t", publication(n), short).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    a.publish("t", publication(5), options(100)).await.unwrap();
    let page = a.history("t", HistoryQuery::default()).await.unwrap();
    let got: Vec<u64> = page.publications.iter().map(|p| p.offset).collect();
    assert_eq!(got, vec![6]);
    assert_eq!(page.position.offset, 6);
}

/// A raw client on `addr`, connected as `user` and subscribed to `channel`.
async fn subscribed(addr: std::net::SocketAddr, user: &str, channel: &str) -> Raw {
    let ws = wsx::connect(&format!("ws://{addr}/connection/websocket"))
        .await
        .unwrap();
    let mut c = Raw(ws);
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &serde_json::json!({"sub": user, "exp": 4_000_000_000u64}),
        &jsonwebtoken::EncodingKey::from_secret(SECRET),
    )
    .unwrap();
    c.send(serde_json::json!({"id": 1, "connect": {"token": token}}))
        .await;
    assert!(c.json().await["connect"]["client"].is_string());
    c.send(serde_json::json!({"id": 2, "subscribe": {"channel": channel}}))
        .await;
    assert_eq!(c.json().await["id"], 2);
    c
}

/// Every JSON line of the next frames, until `n` lines matching `keep` were seen.
async fn lines(
    c: &mut Raw,
    n: usize,
    keep: impl Fn(&serde_json::Value) -> bool,
) -> Vec<serde_json::Value> {
    let mut got = Vec::new();
    while got.len() < n {
        if let wsx::Message::Text(t) = c.next().await {
            for l in t.split('\n') {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                if keep(&v) {
                    got.push(v);
                }
            }
        }
    }
    got
}

#[tokio::test]
async fn a_client_publishing_many_at_once_keeps_their_order() {
    let redis = Redis::start();
    let (addr_a, _a) = hub_node(&redis, "a").await;
    let (addr_b, _b) = hub_node(&redis, "b").await;
    let mut publisher = subscribed(addr_a, "p", "c").await;
    let mut reader = subscribed(addr_b, "r", "c").await;
    // 300 publishes, one per frame, sent without waiting: they travel to Redis together.
    for n in 0..300u32 {
        publisher
            .send(serde_json::json!({"id": 100 + n, "publish": {"channel": "c", "data": {"n": n}}}))
            .await;
    }
    let replies = lines(&mut publisher, 300, |v| {
        v["id"].as_u64().is_some_and(|id| id >= 100)
    })
    .await;
    let ids: Vec<u64> = replies.iter().map(|r| r["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, (100..400).collect::<Vec<_>>(), "replies in order");
    assert!(
        replies.iter().all(|r| r.get("error").is_none()),
        "{replies:?}"
    );
    let pubs = lines(&mut reader, 300, |v| v["push"]["pub"].is_object()).await;
    for (i, p) in pubs.iter().enumerate() {
        assert_eq!(p["push"]["pub"]["offset"], i as u64 + 1);
        assert_eq!(p["push"]["pub"]["data"]["n"], i as u64);
    }
    // A command after them sees them: history has all 300.
    publisher
        .send(serde_json::json!({"id": 9, "history": {"channel": "c", "limit": -1}}))
        .await;
    let h = lines(&mut publisher, 1, |v| v["id"] == 9).await;
    assert_eq!(
        h[0]["history"]["publications"].as_array().unwrap().len(),
        300
    );
}

/// Each scenario on one server and on a three-master cluster (sharded pub/sub).
macro_rules! both {
    ($($name:ident),*) => {
        mod single {
            $(#[tokio::test]
            async fn $name() {
                super::$name(super::Redis::start()).await;
            })*
        }
        mod cluster {
            $(#[tokio::test]
            async fn $name() {
                super::$name(super::Redis::start_cluster()).await;
            })*
        }
    };
}

both!(
    two_nodes_see_one_stream_in_order,
    a_cut_link_catches_up_from_history,
    a_lost_stream_is_reported,
    presence_of_a_dead_node_expires,
    the_server_api_reaches_clients_on_every_node
);
