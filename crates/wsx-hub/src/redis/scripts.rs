//! What the Redis broker keeps where, and the Lua functions that change it atomically.
//!
//! Every key of a channel carries the channel's name in braces (a Redis Cluster hash
//! tag), so that one function call touches keys of one slot only:
//!
//! | key | type | holds |
//! |---|---|---|
//! | `{prefix}.m.{ch}` | hash | `o`: the last offset, `e`: the epoch |
//! | `{prefix}.s.{ch}` | stream | one entry per kept publication, id `offset-0`; fields `d` (the publication's JSON, offset left out) and `x` (when it expires, Unix ms) |
//! | `{prefix}.p.{ch}` | hash | presence: client id to its `ClientInfo` JSON |
//! | `{prefix}.z.{ch}` | sorted set | presence: client id, scored by when it expires (Unix s) |
//! | `{prefix}.c.{ch}` | pub/sub channel | `p{offset} {epoch} {json}`, `j{json}`, `l{json}` |
//! | `{prefix}.control` | pub/sub channel | messages between nodes ([`crate::Broker::control`]) |

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

/// The library of Redis Functions (Redis 7) the broker calls with `FCALL`, loaded with
/// `FUNCTION LOAD REPLACE` when the broker connects. Functions, unlike `EVALSHA` scripts,
/// are kept in Redis' persistence and replicated, so they survive a restart and a
/// failover: a publish never meets a missing script, which a client's publishes in flight
/// together could otherwise overtake each other on (one retried after loading the
/// script, the next one already through).
///
/// - `{LIBRARY}_publish`: publishes with history. KEYS: meta, stream. ARGV: pub/sub
///   channel, publication JSON, history size, history TTL (ms), meta TTL (s), an epoch
///   for a new stream, and the verb (`publish`, or `spublish` on a cluster). Numbers the
///   publication, appends it to the stream (trimmed to the size, expired entries
///   dropped), refreshes the keys' TTLs, and publishes `p{offset} {epoch} {json}`, all
///   atomically: a publication is in history before anyone receives it, and the channel's
///   publications reach subscribers in offset order. Returns `{offset, epoch}`.
/// - `{LIBRARY}_history`: reads history. KEYS: meta, stream. ARGV: an epoch for a new
///   stream, meta TTL (s), `since` (-1: none), limit (-1: all), reverse (0 or 1). A
///   stream nobody published to gets its epoch now, so that a client subscribing before
///   the first publication can recover from offset 0 in it. Returns `{offset, epoch,
///   entries}`, entries as `{id, fields}`; the position and the entries are read at the
///   same instant.
/// - `{LIBRARY}_add_presence`: adds or refreshes presence. KEYS: presence hash, expiry
///   set. ARGV: client id, info JSON, TTL (s).
/// - `{LIBRARY}_presence`: reads presence, dropping the entries that expired (their node
///   stopped refreshing them). KEYS: presence hash, expiry set. Returns the hash's fields
///   and values.
///
/// Expired stream entries are removed from the front (they expire in offset order, so
/// most calls look at the first entry only).
pub(crate) const LIBRARY_CODE: &str = r"#!lua name=wsxhub_1

local function now_ms()
  local t = redis.call('time')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

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
    for _, e in ipairs(head) do
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

redis.register_function('wsxhub_1_publish', function(keys, args)
  local now = now_ms()
  local epoch = redis.call('hget', keys[1], 'e')
  if not epoch then
    epoch = args[6]
    redis.call('hset', keys[1], 'e', epoch)
  end
  local offset = redis.call('hincrby', keys[1], 'o', 1)
  local ttl = tonumber(args[4])
  trim(keys[2], now)
  redis.call('xadd', keys[2], 'MAXLEN', args[3], offset .. '-0', 'd', args[2], 'x', now + ttl)
  redis.call('pexpire', keys[2], ttl)
  redis.call('expire', keys[1], math.ceil(ttl / 1000) + tonumber(args[5]))
  redis.call(args[7], args[1], 'p' .. offset .. ' ' .. epoch .. ' ' .. args[2])
  return {offset, epoch}
end)

redis.register_function('wsxhub_1_history', function(keys, args)
  local epoch = redis.call('hget', keys[1], 'e')
  if not epoch then
    epoch = args[1]
    redis.call('hset', keys[1], 'e', epoch, 'o', 0)
    redis.call('expire', keys[1], args[2])
  end
  local offset = tonumber(redis.call('hget', keys[1], 'o') or '0')
  local since = tonumber(args[3])
  local limit = tonumber(args[4])
  if limit == 0 then return {offset, epoch, {}} end
  trim(keys[2], now_ms())
  local count = {}
  if limit > 0 then count = {'COUNT', limit} end
  local entries
  if args[5] == '1' then
    local top = '+'
    if since >= 0 then top = '(' .. since .. '-0' end
    entries = redis.call('xrevrange', keys[2], top, '-', unpack(count))
  else
    local from = '-'
    if since >= 0 then from = '(' .. since .. '-0' end
    entries = redis.call('xrange', keys[2], from, '+', unpack(count))
  end
  return {offset, epoch, entries}
end)

redis.register_function('wsxhub_1_add_presence', function(keys, args)
  local t = redis.call('time')
  local ttl = tonumber(args[3])
  redis.call('hset', keys[1], args[1], args[2])
  redis.call('zadd', keys[2], tonumber(t[1]) + ttl, args[1])
  redis.call('expire', keys[1], ttl)
  redis.call('expire', keys[2], ttl)
  return 1
end)

redis.register_function('wsxhub_1_presence', function(keys, args)
  local t = redis.call('time')
  local gone = redis.call('zrangebyscore', keys[2], '-inf', t[1], 'LIMIT', 0, 1000)
  if #gone > 0 then
    redis.call('hdel', keys[1], unpack(gone))
    redis.call('zrem', keys[2], unpack(gone))
  end
  return redis.call('hgetall', keys[1])
end)
";

/// The functions of [`LIBRARY_CODE`].
pub(crate) const PUBLISH: &str = "wsxhub_1_publish";
/// See [`LIBRARY_CODE`].
pub(crate) const HISTORY: &str = "wsxhub_1_history";
/// See [`LIBRARY_CODE`].
pub(crate) const ADD_PRESENCE: &str = "wsxhub_1_add_presence";
/// See [`LIBRARY_CODE`].
pub(crate) const PRESENCE: &str = "wsxhub_1_presence";

/// A call of one of the library's functions on a channel's two keys.
pub(crate) fn fcall(function: &str, key1: String, key2: String) -> redis::Cmd {
    let mut cmd = redis::cmd("FCALL");
    cmd.arg(function).arg(2).arg(key1).arg(key2);
    cmd
}

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
