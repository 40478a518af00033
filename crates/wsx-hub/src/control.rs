//! What hub nodes tell each other through the broker ([`crate::Broker::control`]): server
//! API calls that act on clients wherever they are connected (subscribe, unsubscribe,
//! disconnect), each node's vital signs every few seconds (for `info`), and the question
//! "which channels have subscribers?" with its answers (for `channels`). With
//! [`crate::MemoryBroker`] the only node is this one.

use crate::client::ServerCommand;
use crate::codes::Disconnect;
use crate::hub::{Hub, VERSION};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// How often each node announces itself.
pub(crate) const ANNOUNCE_EVERY: Duration = Duration::from_secs(3);
/// A node not heard from for this long is gone.
const NODE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `channels` waits for the other nodes' answers.
const SURVEY_TIMEOUT: Duration = Duration::from_secs(1);

/// A message between nodes.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(crate) enum Control {
    /// Subscribe a user's clients (or one of them) to a channel.
    Subscribe {
        user: String,
        client: Option<String>,
        channel: String,
    },
    /// Unsubscribe them.
    Unsubscribe {
        user: String,
        client: Option<String>,
        channel: String,
    },
    /// Disconnect them, but those in `whitelist`.
    Disconnect {
        user: String,
        client: Option<String>,
        whitelist: Vec<String>,
        code: u16,
        reason: String,
    },
    /// A node's vital signs.
    Node(NodeInfo),
    /// Node `from` asks for the channels matching `pattern` with subscribers.
    Survey {
        id: u64,
        from: String,
        pattern: Option<String>,
    },
    /// An answer to a survey, for node `to`.
    Answer {
        id: u64,
        to: String,
        channels: BTreeMap<String, usize>,
    },
}

/// One node, as the `info` API shows it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct NodeInfo {
    pub uid: String,
    pub name: String,
    pub version: String,
    pub num_clients: usize,
    pub num_users: usize,
    pub num_channels: usize,
    pub num_subs: usize,
    pub uptime: u64,
}

/// What this node knows of the others, and the surveys it waits on.
#[derive(Default)]
pub(crate) struct Nodes {
    seen: HashMap<String, (Instant, NodeInfo)>,
    surveys: HashMap<u64, mpsc::UnboundedSender<BTreeMap<String, usize>>>,
}

impl Hub {
    /// Sends `control` to every node, this one included.
    pub(crate) async fn control(&self, control: &Control) -> Result<(), crate::BrokerError> {
        let bytes = serde_json::to_vec(control)
            .map_err(|e| crate::BrokerError::Unavailable(e.to_string()))?;
        self.broker.control(bytes).await
    }

    /// A control message from a node (this one included).
    pub(crate) fn on_control(&self, bytes: &[u8]) {
        let control: Control = match serde_json::from_slice(bytes) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("unreadable control message: {e}");
                return;
            }
        };
        match control {
            Control::Subscribe {
                user,
                client,
                channel,
            } => {
                for c in self.user_clients(&user, client.as_deref()) {
                    c.command(ServerCommand::Subscribe(channel.clone()));
                }
            }
            Control::Unsubscribe {
                user,
                client,
                channel,
            } => {
                for c in self.user_clients(&user, client.as_deref()) {
                    c.command(ServerCommand::Unsubscribe(channel.clone()));
                }
            }
            Control::Disconnect {
                user,
                client,
                whitelist,
                code,
                reason,
            } => {
                let d = Disconnect::custom(code, &reason);
                for c in self.user_clients(&user, client.as_deref()) {
                    if !whitelist.contains(&c.id.to_string()) {
                        c.disconnect(d.clone());
                    }
                }
            }
            Control::Node(info) => {
                if info.uid != self.uid {
                    let mut nodes = self.nodes();
                    nodes.seen.insert(info.uid.clone(), (Instant::now(), info));
                }
            }
            Control::Survey { id, from, pattern } => {
                let channels = self
                    .channel_counts()
                    .into_iter()
                    .filter(|(name, _)| pattern.as_deref().is_none_or(|p| glob(p, name)))
                    .collect();
                let answer = Control::Answer {
                    id,
                    to: from,
                    channels,
                };
                if let Some(hub) = self.me.upgrade() {
                    tokio::spawn(async move {
                        if let Err(e) = hub.control(&answer).await {
                            tracing::warn!("cannot answer a channels survey: {e}");
                        }
                    });
                }
            }
            Control::Answer { id, to, channels } => {
                if to == self.uid {
                    if let Some(tx) = self.nodes().surveys.get(&id) {
                        let _ = tx.send(channels);
                    }
                }
            }
        }
    }

    /// This node's vital signs.
    pub(crate) fn node_info(&self) -> NodeInfo {
        let mut users = HashSet::new();
        let mut num_clients = 0;
        for c in self.clients_snapshot() {
            let s = c.state();
            if s.connected {
                num_clients += 1;
                users.insert(s.user.clone());
            }
        }
        let channels = self.channel_counts();
        NodeInfo {
            uid: self.uid.clone(),
            name: self.config.name.clone(),
            version: VERSION.to_owned(),
            num_clients,
            num_users: users.len(),
            num_channels: channels.len(),
            num_subs: channels.iter().map(|(_, n)| n).sum(),
            uptime: self.started.elapsed().as_secs(),
        }
    }

    /// Every node heard from lately, this one first.
    pub(crate) fn all_nodes(&self) -> Vec<NodeInfo> {
        let mut all = vec![self.node_info()];
        let mut nodes = self.nodes();
        nodes.seen.retain(|_, (t, _)| t.elapsed() < NODE_TIMEOUT);
        let mut others: Vec<NodeInfo> = nodes.seen.values().map(|(_, i)| i.clone()).collect();
        others.sort_by(|a, b| a.name.cmp(&b.name).then(a.uid.cmp(&b.uid)));
        all.extend(others);
        all
    }

    /// Announces this node to the others (every [`ANNOUNCE_EVERY`]).
    pub(crate) async fn announce(&self) {
        if let Err(e) = self.control(&Control::Node(self.node_info())).await {
            tracing::debug!("cannot announce this node: {e}");
        }
    }

    /// The channels with subscribers on any node, matching `pattern`, with their numbers
    /// of subscribers: asks every node and waits for the answers of those heard from
    /// lately (at most a second).
    pub(crate) async fn all_channels(
        &self,
        pattern: Option<String>,
    ) -> Result<BTreeMap<String, usize>, crate::BrokerError> {
        let id = rand::random::<u64>();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let expected = {
            let mut nodes = self.nodes();
            nodes.surveys.insert(id, tx);
            nodes.seen.retain(|_, (t, _)| t.elapsed() < NODE_TIMEOUT);
            nodes.seen.len() + 1
        };
        let survey = Control::Survey {
            id,
            from: self.uid.clone(),
            pattern,
        };
        let asked = self.control(&survey).await;
        let mut all = BTreeMap::new();
        if asked.is_ok() {
            let deadline = tokio::time::Instant::now() + SURVEY_TIMEOUT;
            let mut answers = 0;
            while answers < expected {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(channels)) => {
                        answers += 1;
                        for (name, n) in channels {
                            *all.entry(name).or_insert(0) += n;
                        }
                    }
                    _ => break,
                }
            }
        }
        self.nodes().surveys.remove(&id);
        asked.map(|()| all)
    }
}

/// Whether `name` matches `pattern`, where `*` stands for any run of characters.
pub(crate) fn glob(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((head, rest)) => {
            let Some(tail) = name.strip_prefix(head) else {
                return false;
            };
            (0..=tail.len())
                .filter(|&i| tail.is_char_boundary(i))
                .any(|i| glob(rest, &tail[i..]))
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn glob_patterns() {
        assert!(super::glob("chat:*", "chat:1"));
        assert!(super::glob("*", "x"));
        assert!(super::glob("a*c*e", "abcde"));
        assert!(!super::glob("chat:*", "news"));
        assert!(!super::glob("a", "ab"));
    }

    #[test]
    fn control_round_trips() {
        let c = super::Control::Disconnect {
            user: "u".into(),
            client: None,
            whitelist: vec!["x".into()],
            code: 3000,
            reason: "r".into(),
        };
        let json = serde_json::to_string(&c).unwrap();
        assert!(json.starts_with(r#"{"op":"disconnect""#), "{json}");
        let back: super::Control = serde_json::from_str(&json).unwrap();
        assert!(matches!(
            back,
            super::Control::Disconnect { code: 3000, .. }
        ));
    }
}
