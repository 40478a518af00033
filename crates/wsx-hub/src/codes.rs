//! The error, unsubscribe and disconnect codes of Centrifugo's client protocol, with the
//! messages its SDKs know them by.

use serde::Serialize;
use std::borrow::Cow;

/// An error in a reply to a command: the command failed, the connection goes on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ErrorReply {
    /// The protocol's error code.
    pub code: u32,
    /// Its fixed message.
    pub message: &'static str,
    /// Whether retrying the same command later may succeed (SDKs retry such errors).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub temporary: bool,
}

const fn error(code: u32, message: &'static str) -> ErrorReply {
    ErrorReply {
        code,
        message,
        temporary: false,
    }
}

/// 100: something failed on the server (temporary).
pub const INTERNAL: ErrorReply = ErrorReply {
    code: 100,
    message: "internal server error",
    temporary: true,
};
/// 101: the request is not authorized.
pub const UNAUTHORIZED: ErrorReply = error(101, "unauthorized");
/// 102: the channel's namespace does not exist, or the name is not a valid channel.
pub const UNKNOWN_CHANNEL: ErrorReply = error(102, "unknown channel");
/// 103: not allowed.
pub const PERMISSION_DENIED: ErrorReply = error(103, "permission denied");
/// 104: the command has no method this server knows.
pub const METHOD_NOT_FOUND: ErrorReply = error(104, "method not found");
/// 105: subscribing to a channel the connection is subscribed to.
pub const ALREADY_SUBSCRIBED: ErrorReply = error(105, "already subscribed");
/// 106: a limit (subscriptions per connection, history size) was reached.
pub const LIMIT_EXCEEDED: ErrorReply = error(106, "limit exceeded");
/// 107: a command whose fields make no sense.
pub const BAD_REQUEST: ErrorReply = error(107, "bad request");
/// 108: the feature is not enabled (presence, history, RPC without a handler).
pub const NOT_AVAILABLE: ErrorReply = error(108, "not available");
/// 109: the token has expired (SDKs fetch a new one and retry).
pub const TOKEN_EXPIRED: ErrorReply = error(109, "token expired");
/// 112: history from a position the channel's stream no longer holds (other epoch).
pub const UNRECOVERABLE_POSITION: ErrorReply = error(112, "unrecoverable position");

/// Why the server closes a connection: the WebSocket close code and reason, and whether
/// the client should reconnect (codes 3500-3999 tell SDKs not to).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Disconnect {
    /// WebSocket close code.
    pub code: u16,
    /// Close reason.
    pub reason: Cow<'static, str>,
}

impl Disconnect {
    /// A disconnect of the application's own (server API `disconnect`): codes 3000-3499
    /// and 4000-4499 tell SDKs to reconnect, 3500-3999 and 4500-4999 not to. The reason is
    /// cut to the 123 bytes a close frame holds.
    pub fn custom(code: u16, reason: &str) -> Self {
        let mut end = reason.len().min(123);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        Disconnect {
            code,
            reason: Cow::Owned(reason[..end].to_owned()),
        }
    }

    /// Whether an SDK reconnects after it.
    pub fn reconnect(&self) -> bool {
        !(3500..4000).contains(&self.code) && !(4500..5000).contains(&self.code)
    }
}

/// 3000: closed by the application.
pub const CONNECTION_CLOSED: Disconnect = Disconnect {
    code: 3000,
    reason: Cow::Borrowed("connection closed"),
};
/// 3001: the server is shutting down; reconnect elsewhere or later.
pub const SHUTDOWN: Disconnect = Disconnect {
    code: 3001,
    reason: Cow::Borrowed("shutdown"),
};
/// 3004: the server failed; reconnect.
pub const INTERNAL_ERROR: Disconnect = Disconnect {
    code: 3004,
    reason: Cow::Borrowed("internal server error"),
};
/// 3005: the connection's token expired and was not refreshed in time.
pub const EXPIRED: Disconnect = Disconnect {
    code: 3005,
    reason: Cow::Borrowed("expired"),
};
/// 3008: the client does not read fast enough.
pub const SLOW: Disconnect = Disconnect {
    code: 3008,
    reason: Cow::Borrowed("slow"),
};
/// 3010: the server lost the client's place in a channel's stream; reconnect and recover.
pub const INSUFFICIENT_STATE: Disconnect = Disconnect {
    code: 3010,
    reason: Cow::Borrowed("insufficient state"),
};
/// 3011: the server asks the client to reconnect.
pub const FORCE_RECONNECT: Disconnect = Disconnect {
    code: 3011,
    reason: Cow::Borrowed("force reconnect"),
};
/// 3012: no pong to the server's ping in time.
pub const NO_PONG: Disconnect = Disconnect {
    code: 3012,
    reason: Cow::Borrowed("no pong"),
};
/// 3500: the connection token is invalid (forged, wrong key, wrong algorithm, malformed).
pub const INVALID_TOKEN: Disconnect = Disconnect {
    code: 3500,
    reason: Cow::Borrowed("invalid token"),
};
/// 3501: a malformed command, or commands in the wrong order.
pub const BAD_REQUEST_DISCONNECT: Disconnect = Disconnect {
    code: 3501,
    reason: Cow::Borrowed("bad request"),
};
/// 3502: the connection sent no `connect` command in time.
pub const STALE: Disconnect = Disconnect {
    code: 3502,
    reason: Cow::Borrowed("stale"),
};
/// 3503: disconnected by the server, do not reconnect.
pub const FORCE_NO_RECONNECT: Disconnect = Disconnect {
    code: 3503,
    reason: Cow::Borrowed("force disconnect"),
};
/// 3505: more server-side channels than a connection may have.
pub const CHANNEL_LIMIT: Disconnect = Disconnect {
    code: 3505,
    reason: Cow::Borrowed("channel limit"),
};
/// 3506: a protocol this server does not speak (binary frames: Protobuf).
pub const INAPPROPRIATE_PROTOCOL: Disconnect = Disconnect {
    code: 3506,
    reason: Cow::Borrowed("inappropriate protocol"),
};
/// 3507: not allowed to connect.
pub const PERMISSION_DENIED_DISCONNECT: Disconnect = Disconnect {
    code: 3507,
    reason: Cow::Borrowed("permission denied"),
};

/// Unsubscribe code 2000: unsubscribed by the server (the server API).
pub const UNSUBSCRIBE_SERVER: (u32, &str) = (2000, "server unsubscribe");
/// Unsubscribe code 2500: the subscription lost its place in the stream; resubscribe.
pub const UNSUBSCRIBE_INSUFFICIENT: (u32, &str) = (2500, "insufficient state");
