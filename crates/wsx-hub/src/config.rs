//! What a hub allows and keeps: namespaces and their options, limits and timers.

use serde::Deserialize;
use std::collections::HashMap;
use std::time::Duration;

/// A namespace's options: what its channels keep, and who may do what in them. Channel
/// `ns:name` is in namespace `ns`; a channel without `:` is in the default namespace.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct NamespaceOptions {
    /// Publications kept per channel (0: no history, no recovery).
    pub history_size: usize,
    /// Seconds a publication is kept (0: no history).
    pub history_ttl: u64,
    /// Recovery for every subscription when history is on, not only those that ask for
    /// it (default on).
    pub force_recovery: Option<bool>,
    /// Keep who is subscribed; subscribers may ask for it.
    pub presence: bool,
    /// Tell subscribers who asked for it when clients join and leave.
    pub join_leave: bool,
    /// Join and leave pushes to every subscriber, asked or not.
    pub force_push_join_leave: bool,
    /// Any connected client (an anonymous one only with `allow_anonymous`) may subscribe.
    pub allow_subscribe: bool,
    /// Subscribers may publish.
    pub allow_publish: bool,
    /// Anonymous connections may subscribe where `allow_subscribe` is on.
    pub allow_anonymous: bool,
}

impl NamespaceOptions {
    /// Whether publications are kept.
    pub fn history(&self) -> bool {
        self.history_size > 0 && self.history_ttl > 0
    }

    /// Whether a subscription that asked (or not, `asked`) for recovery gets it.
    pub fn recovery(&self, asked: bool) -> bool {
        self.history() && (asked || self.force_recovery.unwrap_or(true))
    }
}

/// A hub's configuration.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct HubConfig {
    /// This node's name (in `connect` results and `info`).
    pub name: String,
    /// The default namespace's options.
    pub defaults: NamespaceOptions,
    /// Other namespaces, by name.
    pub namespaces: HashMap<String, NamespaceOptions>,
    /// Connections without a token are accepted (user "").
    pub allow_anonymous: bool,
    /// Time between the server's pings (`{}`); each must be answered within
    /// `pong_timeout` or the client is disconnected (3012).
    pub ping_interval: Duration,
    /// Time for a client to answer a ping.
    pub pong_timeout: Duration,
    /// Time after a connection token's `exp` before the connection is closed (3005), so
    /// that an SDK refreshing just before it is not cut (they refresh close to `exp`).
    pub expired_grace: Duration,
    /// Time for a new connection to send `connect` (3502 after it).
    pub stale_timeout: Duration,
    /// Subscriptions per connection (error 106 beyond it).
    pub max_subscriptions: usize,
    /// Longest channel name, in bytes.
    pub max_channel_length: usize,
    /// Most publications a `history` call returns.
    pub max_history_limit: usize,
    /// Publications a subscription buffers while its subscribe reply is being made; a
    /// subscriber that falls further behind than that is told to resubscribe.
    pub max_pending: usize,
    /// How long an idle stream's position (epoch and offset) is kept after its last
    /// publication expired.
    pub history_meta_ttl: Duration,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            name: "wsx".to_string(),
            defaults: NamespaceOptions::default(),
            namespaces: HashMap::new(),
            allow_anonymous: false,
            ping_interval: Duration::from_secs(25),
            pong_timeout: Duration::from_secs(8),
            expired_grace: Duration::from_secs(5),
            stale_timeout: Duration::from_secs(10),
            max_subscriptions: 128,
            max_channel_length: 255,
            max_history_limit: 10_000,
            max_pending: 10_000,
            history_meta_ttl: Duration::from_secs(24 * 3600),
        }
    }
}

impl HubConfig {
    /// The options of `channel`'s namespace, or `None` when the namespace does not exist
    /// or the name is not a valid channel (empty, too long, control characters).
    pub fn namespace(&self, channel: &str) -> Option<&NamespaceOptions> {
        if channel.is_empty()
            || channel.len() > self.max_channel_length
            || channel.chars().any(char::is_control)
        {
            return None;
        }
        match channel.split_once(':') {
            None => Some(&self.defaults),
            Some((ns, _)) => self.namespaces.get(ns),
        }
    }
}

/// Whether `user` is one of the users a user-limited channel (`name#u1,u2`) is for;
/// `None` for channels that are not user-limited.
pub fn user_limited(channel: &str, user: &str) -> Option<bool> {
    let (_, users) = channel.rsplit_once('#')?;
    Some(!user.is_empty() && users.split(',').any(|u| u == user))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_and_channel_names() {
        let mut c = HubConfig::default();
        c.namespaces.insert(
            "chat".into(),
            NamespaceOptions {
                presence: true,
                ..Default::default()
            },
        );
        assert!(!c.namespace("news").unwrap().presence);
        assert!(c.namespace("chat:room").unwrap().presence);
        assert!(c.namespace("secret:x").is_none());
        assert!(c.namespace("").is_none());
        assert!(c.namespace("a\nb").is_none());
        assert!(c.namespace(&"x".repeat(256)).is_none());
        assert_eq!(user_limited("dm#1,2", "2"), Some(true));
        assert_eq!(user_limited("dm#1,2", "3"), Some(false));
        assert_eq!(user_limited("dm#1,2", ""), Some(false));
        assert_eq!(user_limited("dm", "1"), None);
    }

    #[test]
    fn recovery_follows_history() {
        let mut o = NamespaceOptions::default();
        assert!(!o.recovery(true));
        o.history_size = 10;
        o.history_ttl = 60;
        assert!(o.recovery(false));
        o.force_recovery = Some(false);
        assert!(!o.recovery(false) && o.recovery(true));
    }
}
