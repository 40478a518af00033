//! What the Redis broker keeps where, and the Lua scripts that change it atomically.
//!
//! Every key of a channel carries the channel's name in braces (a Redis Cluster hash
//! tag), so that one script touches keys of one slot only:
//!
//! | key | type | holds |
//! |---|---|---|
//! | `{prefix}.m.{ch}` | hash | `o`: the last offset, `e`: the epoch |
//! | `{prefix}.s.{ch}` | stream | one entry per kept publication, id `offset-0`; fields `d` (the publication's JSON, offset left out) and `x` (when it expires, Unix ms) |
//! | `{prefix}.p.{ch}` | hash | presence: client id to its `ClientInfo` JSON |
//! | `{prefix}.z.{ch}` | sorted set | presence: client id, scored by when it expires (Unix s) |
//! | `{prefix}.c.{ch}` | pub/sub channel | `p{offset} {epoch} {json}`, `j{json}`, `l{json}` |
//! | `{prefix}.control` | pub/sub channel | messages between nodes ([`crate::Broker::control`]) |

use redis::Script;
use std::sync::LazyLock;

/// Key and channel names of one prefix.
#[derive(Clone, Debug)]
pub(crate) struct Keys {
    prefix: String,
}

impl Keys {
    pub(crate) fn new(prefix: &str) -> Self {
        Keys {
            prefix: prefix.to_owned(),
        }
    }

    fn key(&self, kind: char, channel: &str) -> String {
        format!("{}.{kind}.{{{channel}}}", self.prefix)
    }

    pub(crate) fn meta(&self, channel: &str) -> String {
        self.key('m', channel)
    }

    pub(crate) fn stream(&self, channel: &str) -> String {
        self.key('s', channel)
    }

    pub(crate) fn presence(&self, channel: &str) -> String {
        self.key('p', channel)
    }

    pub(crate) fn presence_expiry(&self, channel: &str) -> String {
        self.key('z', channel)
    }

    /// The pub/sub channel of a hub channel.
    pub(crate) fn pubsub(&self, channel: &str) -> String {
        self.key('c', channel)
    }

    /// The pub/sub channel of messages between nodes.
    pub(crate) fn control(&self) -> String {
        format!("{}.control", self.prefix)
    }

    /// The hub channel of a pub/sub channel name (`None`: not one of this prefix's).
    pub(crate) fn channel_of<'a>(&self, pubsub: &'a str) -> Option<&'a str> {
        pubsub
            .strip_prefix(self.prefix.as_str())?
            .strip_prefix(".c.{")?
            .strip_suffix('}')
    }
}

/// Removes expired entries from the front of a stream, given the time in ms as `now`.
/// Entries expire in offset order, so it stops at the first one that has not; most calls
/// look at the first entry only.
const TRIM: &str = r"
local function expires(entry)
  local f = entry[2]
  for j = 1, #f, 2 do if f[j] == 'x' then return tonumber(f[j + 1]) end end
  return nil
end
local function trim(stream, now)
  local head = redis.call('xrange', stream, '-', '+', 'COUNT', 1)
  if #head == 0 or (expires(head[1]) or now + 1) > now then return end
  for _ = 1, 16 do
    head = redis.call('xrange', stream, '-', '+', 'COUNT', 64)
    if #head == 0 then return end
    for i, e in ipairs(head) do
      local x = expires(e)
      if x == nil or x > now then
        redis.call('xtrim', stream, 'MINID', e[1])
        return
      end
    end
    local last = tonumber(string.match(head[#head][1], '^(%d+)'))
    redis.call('xtrim', stream, 'MINID', (last + 1) .. '-0')
  end
end
local t = redis.call('time')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
";

/// Publishes with history. KEYS: meta, stream. ARGV: pub/sub channel, publication JSON,
/// history size, history TTL (ms), meta TTL (s), an epoch for a new stream, and the verb
/// (`publish`, or `spublish` on a cluster). Numbers the
/// publication, appends it to the stream (trimmed to the size, expired entries dropped),
/// refreshes the keys' TTLs, and publishes `p{offset} {epoch} {json}`, all atomically: a
/// publication is in history before anyone receives it, and the channel's publications
/// reach subscribers in offset order. Returns `{offset, epoch}`.
pub(crate) static PUBLISH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{TRIM}{}",
        r"
local epoch = redis.call('hget', KEYS[1], 'e')
if not epoch then
  epoch = ARGV[6]
  redis.call('hset', KEYS[1], 'e', epoch)
end
local offset = redis.call('hincrby', KEYS[1], 'o', 1)
local ttl = tonumber(ARGV[4])
trim(KEYS[2], now)
redis.call('xadd', KEYS[2], 'MAXLEN', ARGV[3], offset .. '-0', 'd', ARGV[2], 'x', now + ttl)
redis.call('pexpire', KEYS[2], ttl)
redis.call('expire', KEYS[1], math.ceil(ttl / 1000) + tonumber(ARGV[5]))
redis.call(ARGV[7], ARGV[1], 'p' .. offset .. ' ' .. epoch .. ' ' .. ARGV[2])
return {offset, epoch}
"
    ))
});

/// Reads history. KEYS: meta, stream. ARGV: an epoch for a new stream, meta TTL (s),
/// `since` (-1: none), limit (-1: all), reverse (0 or 1). A stream nobody published to
/// gets its epoch now, so that a client subscribing before the first publication can
/// recover from offset 0 in it. Returns `{offset, epoch, entries}`, entries as
/// `{id, fields}`; the position and the entries are read at the same instant.
pub(crate) static HISTORY: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{TRIM}{}",
        r"
local epoch = redis.call('hget', KEYS[1], 'e')
if not epoch then
  epoch = ARGV[1]
  redis.call('hset', KEYS[1], 'e', epoch, 'o', 0)
  redis.call('expire', KEYS[1], ARGV[2])
end
local offset = tonumber(redis.call('hget', KEYS[1], 'o') or '0')
local since = tonumber(ARGV[3])
local limit = tonumber(ARGV[4])
if limit == 0 then return {offset, epoch, {}} end
trim(KEYS[2], now)
local entries
local count = {}
if limit > 0 then count = {'COUNT', limit} end
if ARGV[5] == '1' then
  local top = '+'
  if since >= 0 then top = '(' .. since .. '-0' end
  entries = redis.call('xrevrange', KEYS[2], top, '-', unpack(count))
else
  local from = '-'
  if since >= 0 then from = '(' .. since .. '-0' end
  entries = redis.call('xrange', KEYS[2], from, '+', unpack(count))
end
return {offset, epoch, entries}
"
    ))
});

/// Adds or refreshes presence. KEYS: presence hash, expiry set. ARGV: client id, info
/// JSON, TTL (s).
pub(crate) static ADD_PRESENCE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('time')
local ttl = tonumber(ARGV[3])
redis.call('hset', KEYS[1], ARGV[1], ARGV[2])
redis.call('zadd', KEYS[2], tonumber(t[1]) + ttl, ARGV[1])
redis.call('expire', KEYS[1], ttl)
redis.call('expire', KEYS[2], ttl)
return 1
",
    )
});

/// Reads presence, dropping the entries that expired (their node stopped refreshing
/// them). KEYS: presence hash, expiry set. Returns the hash's fields and values.
pub(crate) static PRESENCE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('time')
local gone = redis.call('zrangebyscore', KEYS[2], '-inf', t[1], 'LIMIT', 0, 1000)
if #gone > 0 then
  redis.call('hdel', KEYS[1], unpack(gone))
  redis.call('zrem', KEYS[2], unpack(gone))
end
return redis.call('hgetall', KEYS[1])
",
    )
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names_round_trip() {
        let k = Keys::new("wsx");
        assert_eq!(k.pubsub("chat:room"), "wsx.c.{chat:room}");
        assert_eq!(k.channel_of("wsx.c.{chat:room}"), Some("chat:room"));
        assert_eq!(k.channel_of("wsx.c.{a}b}"), Some("a}b"));
        assert_eq!(k.channel_of("other.c.{x}"), None);
        assert_eq!(k.meta("x"), "wsx.m.{x}");
    }
}
