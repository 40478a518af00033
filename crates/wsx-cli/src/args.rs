//! Command-line pieces shared by the subcommands: durations and deflate settings.

use std::time::Duration;

/// Parses a number of seconds: 0 up to about 30 years (no NaN, no negatives).
pub fn parse_secs(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !(0.0..=1e9).contains(&v) {
        return Err(format!("{s} is out of range (0 to 1e9 seconds)"));
    }
    Ok(v)
}

/// Parses a size in bytes: a whole number with an optional binary suffix (`k`/`KiB`,
/// `m`/`MiB`, `g`/`GiB`, any case; `256M` is 256 MiB).
pub fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(digits);
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        _ => return Err(format!("{s:?}: unknown unit (use K, M or G)")),
    };
    let n: usize = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size (a number of bytes, or e.g. 256M)"))?;
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("{s} is too large"))
}

/// A timeout or interval from seconds, where 0 means "none".
pub fn secs(s: f64) -> Option<Duration> {
    Duration::try_from_secs_f64(s).ok().filter(|d| !d.is_zero())
}

/// A limit from seconds, where 0 means "no limit" (about a year, which tokio timers accept).
pub fn limit(s: f64) -> Duration {
    secs(s).unwrap_or(Duration::from_secs(365 * 86400))
}

/// permessage-deflate settings. For `serve` they are the server's limits and requirements;
/// for `connect` they shape the client's offer.
#[derive(clap::Args, Clone, Debug)]
pub struct DeflateArgs {
    /// Disable permessage-deflate (compression).
    #[arg(long)]
    pub no_deflate: bool,
    /// Largest LZ77 window (2^BITS bytes) the server compresses with.
    #[arg(long, value_name = "BITS", value_parser = clap::value_parser!(u8).range(8..=15))]
    pub deflate_server_max_window_bits: Option<u8>,
    /// Largest LZ77 window (2^BITS bytes) the client compresses with.
    #[arg(long, value_name = "BITS", value_parser = clap::value_parser!(u8).range(8..=15))]
    pub deflate_client_max_window_bits: Option<u8>,
    /// The server resets its compression context after every message.
    #[arg(long)]
    pub deflate_server_no_context_takeover: bool,
    /// The client resets its compression context after every message.
    #[arg(long)]
    pub deflate_client_no_context_takeover: bool,
    /// Compression level, 0 (store) to 9 (smallest).
    #[arg(long, value_name = "LEVEL", value_parser = clap::value_parser!(u32).range(0..=9))]
    pub deflate_level: Option<u32>,
    /// Messages shorter than this many bytes are sent uncompressed.
    #[arg(long, value_name = "BYTES")]
    pub deflate_threshold: Option<usize>,
}

impl DeflateArgs {
    pub fn config(&self) -> Option<wsx::DeflateConfig> {
        if self.no_deflate {
            return None;
        }
        let mut c = wsx::DeflateConfig::default();
        if let Some(b) = self.deflate_server_max_window_bits {
            c.server_max_window_bits = b;
        }
        if let Some(b) = self.deflate_client_max_window_bits {
            c.client_max_window_bits = b;
        }
        c.server_no_context_takeover = self.deflate_server_no_context_takeover;
        c.client_no_context_takeover = self.deflate_client_no_context_takeover;
        if let Some(l) = self.deflate_level {
            c.level = l;
        }
        if let Some(t) = self.deflate_threshold {
            c.threshold = t;
        }
        Some(c)
    }
}

/// Proxy settings of the client subcommands. Without either flag the proxy comes from the
/// environment, as in the library (`https_proxy` / `HTTPS_PROXY` for wss://, `http_proxy`
/// for ws://, then `all_proxy` / `ALL_PROXY`; `no_proxy` / `NO_PROXY` exempt hosts;
/// loopback targets always connect directly).
#[derive(clap::Args, Clone, Debug)]
pub struct ProxyArgs {
    /// Connect through this proxy: http://[user:pass@]host[:port] (HTTP CONNECT),
    /// socks5://... (names resolved here) or socks5h://... (names resolved by the proxy).
    /// Default: from the *_proxy environment variables.
    #[arg(long, value_name = "PROXY_URL", conflicts_with = "no_proxy")]
    pub proxy: Option<wsx::Proxy>,
    /// Connect directly, ignoring the *_proxy environment variables.
    #[arg(long)]
    pub no_proxy: bool,
}

impl ProxyArgs {
    /// Applies the flags to a client builder.
    pub fn apply(&self, builder: wsx::ClientBuilder) -> wsx::ClientBuilder {
        match (&self.proxy, self.no_proxy) {
            (Some(p), _) => builder.proxy(p.clone()),
            (None, true) => builder.no_proxy(),
            (None, false) => builder,
        }
    }
}

#[cfg(test)]
mod size_tests {
    use super::parse_size;

    #[test]
    fn sizes_with_and_without_units() {
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("256M"), Ok(256 << 20));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("64k"), Ok(64 << 10));
        assert_eq!(parse_size("0"), Ok(0));
        assert!(parse_size("1.5G").is_err());
        assert!(parse_size("12X").is_err());
        assert!(parse_size("").is_err());
    }
}
