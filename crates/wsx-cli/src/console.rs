//! What the two modes of `wsx connect` share: the [`Input`] the user (or stdin) sends to the
//! session, the parsing of close codes and reasons, and how times are shown.

use std::time::Duration;
use wsx::{Bytes, CloseCode, CloseFrame, Message};

/// What the user (or stdin) asks for.
#[derive(Debug)]
pub enum Input {
    /// Send a data message.
    Send(Message),
    /// Send a ping with this payload.
    Ping(Bytes),
    /// Close with this frame (`/close`) and exit once the close handshake is done.
    Close(Option<CloseFrame>),
    /// End of input or `/quit`: close with `--close-code` and exit.
    Quit,
    /// Reading input failed: close and exit with status 1.
    Failed(String),
}

/// A close code that may be sent: 1000-1003, 1007-1014, 3000-4999.
pub fn parse_close_code(s: &str) -> Result<u16, String> {
    let code: u16 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a close code"))?;
    if CloseCode(code).is_allowed_on_wire() {
        Ok(code)
    } else {
        Err(format!(
            "{code} cannot be sent (use 1000-1003, 1007-1014 or 3000-4999)"
        ))
    }
}

/// A close reason: at most 123 bytes.
pub fn parse_close_reason(s: &str) -> Result<String, String> {
    if s.len() > wsx_proto::close::MAX_REASON_LEN {
        Err(format!(
            "the close reason is {} bytes; at most 123 fit",
            s.len()
        ))
    } else {
        Ok(s.to_owned())
    }
}

/// A round-trip time for people: milliseconds with three decimals.
pub fn fmt_rtt(rtt: Duration) -> String {
    format!("{:.3} ms", rtt.as_secs_f64() * 1000.0)
}

/// The current time (UTC) as `HH:MM:SS.mmm`.
pub fn timestamp() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let day = now.as_secs() % 86400;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        day / 3600,
        day / 60 % 60,
        day % 60,
        now.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_codes_and_reasons_are_validated() {
        assert_eq!(parse_close_code("4000"), Ok(4000));
        assert!(parse_close_code("1005").is_err());
        assert!(parse_close_code("1006").is_err());
        assert!(parse_close_code("99999").is_err());
        assert!(parse_close_reason(&"x".repeat(123)).is_ok());
        assert!(parse_close_reason(&"x".repeat(124)).is_err());
    }

    #[test]
    fn timestamps_are_hh_mm_ss_mmm() {
        assert_eq!(timestamp().len(), 12);
    }
}
