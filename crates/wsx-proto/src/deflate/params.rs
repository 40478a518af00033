//! Extension negotiation (RFC 7692 §5, §7.1).

use std::fmt::Write as _;

use super::header::{parse_extensions, Extension};
use super::{Compressor, ConfigError, Decompressor, NegotiationError};

/// The extension name (RFC 7692 §7).
pub const EXTENSION_NAME: &str = "permessage-deflate";

const SERVER_NO_CONTEXT_TAKEOVER: &str = "server_no_context_takeover";
const CLIENT_NO_CONTEXT_TAKEOVER: &str = "client_no_context_takeover";
const SERVER_MAX_WINDOW_BITS: &str = "server_max_window_bits";
const CLIENT_MAX_WINDOW_BITS: &str = "client_max_window_bits";

/// Largest (and default) LZ77 window: 32 KiB.
const MAX_BITS: u8 = 15;
/// Smallest LZ77 window RFC 7692 allows: 256 bytes.
const MIN_BITS: u8 = 8;

fn clamp_bits(bits: u8) -> u8 {
    bits.clamp(MIN_BITS, MAX_BITS)
}

/// Endpoint configuration of permessage-deflate, for either role.
///
/// Out-of-range numbers are clamped wherever they are used; call
/// [`validate`](DeflateConfig::validate) to reject them up front instead.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeflateConfig {
    /// zlib compression level, `0..=9` (0 = stored blocks, 1 = fastest,
    /// 9 = smallest). Default: **1**: with zlib-rs, level 1 compresses
    /// JSON-like messages 6–13× faster than level 6, for 25–60 % more
    /// output (see "Speed and the default level" in the module docs).
    /// Raise it when bandwidth matters more than CPU.
    pub level: u32,
    /// `8..=15`, default 15. As a server: the largest window we compress
    /// with; when below 15 it is announced in every response. As a client:
    /// the `server_max_window_bits` we request (only put in the offer when
    /// below 15).
    pub server_max_window_bits: u8,
    /// `8..=15`, default 15. As a server: the largest window we let the
    /// client use; when below 15, offers that do not carry
    /// `client_max_window_bits` are declined (RFC 7692 §7.1.2.2 forbids
    /// answering them with it). As a client: the largest window we compress
    /// with; when below 15 it is sent as the offer's
    /// `client_max_window_bits=N` hint.
    pub client_max_window_bits: u8,
    /// Default false. As a server: always put `server_no_context_takeover`
    /// in the response (our compressor resets after every message). As a
    /// client: request it in the offer.
    pub server_no_context_takeover: bool,
    /// Default false. As a server: always put `client_no_context_takeover`
    /// in the response (the client must reset after every message, which
    /// lets our decompressor free its state between messages). As a client:
    /// put it in the offer and reset our compressor after every message.
    pub client_no_context_takeover: bool,
    /// Messages with a payload shorter than this many bytes should be sent
    /// uncompressed (RSV1 clear). Default: **256**. Below that, the saving is
    /// a few dozen bytes at most while each compressed message costs a
    /// sync flush (block headers) and a zlib call. This module does not
    /// apply it: the connection decides per message, see
    /// [`should_compress`](DeflateConfig::should_compress).
    pub threshold: usize,
    /// Client only: raw offers to send instead of building one from the
    /// fields above, most preferred first (each is one
    /// `permessage-deflate; ...` offer). [`client_accept`] then accepts a
    /// response that is valid for any of them. `None` (default): a single
    /// offer built from the fields above.
    pub client_offers: Option<Vec<String>>,
}

impl Default for DeflateConfig {
    fn default() -> Self {
        DeflateConfig {
            level: 1,
            server_max_window_bits: MAX_BITS,
            client_max_window_bits: MAX_BITS,
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            threshold: 256,
            client_offers: None,
        }
    }
}

impl DeflateConfig {
    /// Checks that every field is in range and that custom client offers
    /// are well-formed permessage-deflate offers.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.level > 9 {
            return Err(ConfigError::Level(self.level));
        }
        for (name, value) in [
            (SERVER_MAX_WINDOW_BITS, self.server_max_window_bits),
            (CLIENT_MAX_WINDOW_BITS, self.client_max_window_bits),
        ] {
            if !(MIN_BITS..=MAX_BITS).contains(&value) {
                return Err(ConfigError::WindowBits { name, value });
            }
        }
        if let Some(offers) = &self.client_offers {
            for offer in offers {
                let parsed = parse_extensions([offer.as_str()]);
                let ok = !parsed.is_empty()
                    && parsed.iter().all(|ext| {
                        ext.as_ref().is_ok_and(|ext| {
                            ext.name == EXTENSION_NAME
                                && PmdParams::parse(&ext.params, Context::Offer).is_ok()
                        })
                    });
                if !ok {
                    return Err(ConfigError::Offer(offer.clone()));
                }
            }
        }
        Ok(())
    }

    /// Whether a message with a payload of `len` bytes should be compressed
    /// (`len >= threshold`).
    pub fn should_compress(&self, len: usize) -> bool {
        len >= self.threshold
    }
}

/// The parameters in force on a connection, role-independent as on the wire.
///
/// `server_*` fields constrain what the server sends (the server's
/// compressor, the client's decompressor), `client_*` fields what the client
/// sends. On the server they are exactly what the response announced. On the
/// client they are what the response announced, further narrowed by the
/// client's own choices that need no agreement: a smaller
/// `client_max_window_bits` and `client_no_context_takeover` may always be
/// applied by the client to its own compressor (and must be when the client
/// offered them as hints, RFC 7692 §7.1.1.2, §7.1.2.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeflateParams {
    /// The server resets its compression context after every message.
    pub server_no_context_takeover: bool,
    /// The client resets its compression context after every message.
    pub client_no_context_takeover: bool,
    /// Largest LZ77 window the server compresses with, `8..=15`.
    pub server_max_window_bits: u8,
    /// Largest LZ77 window the client compresses with, `8..=15`.
    pub client_max_window_bits: u8,
}

impl Default for DeflateParams {
    /// The parameters of a bare `permessage-deflate` agreement.
    fn default() -> Self {
        DeflateParams {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: MAX_BITS,
            client_max_window_bits: MAX_BITS,
        }
    }
}

impl DeflateParams {
    /// The `Sec-WebSocket-Extensions` response value announcing exactly these
    /// parameters, e.g. `permessage-deflate; server_no_context_takeover;
    /// client_max_window_bits=10`. Window bits of 15 are the default and are
    /// left out. (The value returned by [`server_negotiate`] may in addition
    /// echo `server_max_window_bits=15` when the offer asked for it.)
    pub fn to_header_value(&self) -> String {
        self.render(false)
    }

    fn render(&self, force_server_bits: bool) -> String {
        let mut s = String::from(EXTENSION_NAME);
        if self.server_no_context_takeover {
            s.push_str("; ");
            s.push_str(SERVER_NO_CONTEXT_TAKEOVER);
        }
        if self.client_no_context_takeover {
            s.push_str("; ");
            s.push_str(CLIENT_NO_CONTEXT_TAKEOVER);
        }
        let server_bits = clamp_bits(self.server_max_window_bits);
        if force_server_bits || server_bits < MAX_BITS {
            let _ = write!(s, "; {SERVER_MAX_WINDOW_BITS}={server_bits}");
        }
        let client_bits = clamp_bits(self.client_max_window_bits);
        if client_bits < MAX_BITS {
            let _ = write!(s, "; {CLIENT_MAX_WINDOW_BITS}={client_bits}");
        }
        s
    }

    /// The compressor for our sending direction: the server's
    /// (`server_max_window_bits`, `server_no_context_takeover`) when
    /// `is_server`, else the client's.
    pub fn compressor(&self, is_server: bool, level: u32) -> Compressor {
        if is_server {
            Compressor::new(
                self.server_max_window_bits,
                self.server_no_context_takeover,
                level,
            )
        } else {
            Compressor::new(
                self.client_max_window_bits,
                self.client_no_context_takeover,
                level,
            )
        }
    }

    /// The decompressor for our receiving direction: it decodes what the
    /// peer compresses, so a server's uses the `client_*` parameters and a
    /// client's the `server_*` ones.
    pub fn decompressor(&self, is_server: bool) -> Decompressor {
        if is_server {
            Decompressor::new(self.client_max_window_bits, self.client_no_context_takeover)
        } else {
            Decompressor::new(self.server_max_window_bits, self.server_no_context_takeover)
        }
    }
}

/// Where a parameter list comes from: the value rules differ.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Context {
    /// A client's offer: `client_max_window_bits` may have no value.
    Offer,
    /// A server's response: every window-bits parameter needs a value.
    Response,
}

/// The parameters of one permessage-deflate offer or response.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct PmdParams {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    /// `Some(None)`: present without a value (offers only).
    client_max_window_bits: Option<Option<u8>>,
}

/// Parses a window-bits value: a decimal integer in `8..=15` without
/// leading zeros (RFC 7692 §7.1.2.1).
fn parse_bits(param: &str, value: &str) -> Result<u8, NegotiationError> {
    let ok = match value.as_bytes() {
        [d @ b'8'..=b'9'] => Some(d - b'0'),
        [b'1', d @ b'0'..=b'5'] => Some(10 + d - b'0'),
        _ => None,
    };
    ok.ok_or_else(|| NegotiationError::InvalidValue {
        param: param.to_owned(),
        value: value.to_owned(),
    })
}

impl PmdParams {
    fn parse(params: &[(String, Option<String>)], ctx: Context) -> Result<Self, NegotiationError> {
        let mut p = PmdParams::default();
        let mut seen = [false; 4];
        for (name, value) in params {
            let idx = match name.as_str() {
                SERVER_NO_CONTEXT_TAKEOVER => 0,
                CLIENT_NO_CONTEXT_TAKEOVER => 1,
                SERVER_MAX_WINDOW_BITS => 2,
                CLIENT_MAX_WINDOW_BITS => 3,
                _ => return Err(NegotiationError::UnknownParameter(name.clone())),
            };
            if std::mem::replace(&mut seen[idx], true) {
                return Err(NegotiationError::DuplicateParameter(name.clone()));
            }
            match (idx, value) {
                (0 | 1, Some(_)) => return Err(NegotiationError::UnexpectedValue(name.clone())),
                (0, None) => p.server_no_context_takeover = true,
                (1, None) => p.client_no_context_takeover = true,
                (2, None) => return Err(NegotiationError::MissingValue(name.clone())),
                (2, Some(v)) => p.server_max_window_bits = Some(parse_bits(name, v)?),
                (_, None) if ctx == Context::Response => {
                    return Err(NegotiationError::MissingValue(name.clone()))
                }
                (_, None) => p.client_max_window_bits = Some(None),
                (_, Some(v)) => p.client_max_window_bits = Some(Some(parse_bits(name, v)?)),
            }
        }
        Ok(p)
    }

    fn from_extension(ext: &Extension, ctx: Context) -> Option<Result<Self, NegotiationError>> {
        (ext.name == EXTENSION_NAME).then(|| Self::parse(&ext.params, ctx))
    }
}

// ---------------------------------------------------------------- client

/// Our offers: the custom ones that parse as permessage-deflate offers, or
/// the one built from the config.
fn our_offers(config: &DeflateConfig) -> Vec<PmdParams> {
    match &config.client_offers {
        None => vec![default_offer(config)],
        Some(offers) => parse_extensions(offers.iter().map(String::as_str))
            .into_iter()
            .filter_map(|ext| ext.ok())
            .filter_map(|ext| PmdParams::from_extension(&ext, Context::Offer))
            .filter_map(Result::ok)
            .collect(),
    }
}

fn default_offer(config: &DeflateConfig) -> PmdParams {
    let server_bits = clamp_bits(config.server_max_window_bits);
    let client_bits = clamp_bits(config.client_max_window_bits);
    PmdParams {
        server_no_context_takeover: config.server_no_context_takeover,
        client_no_context_takeover: config.client_no_context_takeover,
        server_max_window_bits: (server_bits < MAX_BITS).then_some(server_bits),
        client_max_window_bits: Some((client_bits < MAX_BITS).then_some(client_bits)),
    }
}

/// The `Sec-WebSocket-Extensions` value a client sends.
///
/// With the default config this is exactly
/// `permessage-deflate; client_max_window_bits`. Otherwise parameters are
/// added in this order: `server_no_context_takeover`,
/// `client_no_context_takeover`, `server_max_window_bits=N` (when N < 15),
/// `client_max_window_bits[=N]` (value when N < 15). With
/// [`client_offers`](DeflateConfig::client_offers) set, those offers joined
/// with `", "` (an empty string for an empty list: send no header then).
pub fn client_offer(config: &DeflateConfig) -> String {
    if let Some(offers) = &config.client_offers {
        return offers.join(", ");
    }
    let offer = default_offer(config);
    let mut s = String::from(EXTENSION_NAME);
    if offer.server_no_context_takeover {
        s.push_str("; ");
        s.push_str(SERVER_NO_CONTEXT_TAKEOVER);
    }
    if offer.client_no_context_takeover {
        s.push_str("; ");
        s.push_str(CLIENT_NO_CONTEXT_TAKEOVER);
    }
    if let Some(bits) = offer.server_max_window_bits {
        let _ = write!(s, "; {SERVER_MAX_WINDOW_BITS}={bits}");
    }
    match offer.client_max_window_bits {
        Some(Some(bits)) => {
            let _ = write!(s, "; {CLIENT_MAX_WINDOW_BITS}={bits}");
        }
        _ => {
            s.push_str("; ");
            s.push_str(CLIENT_MAX_WINDOW_BITS);
        }
    }
    s
}

/// Checks a response against one of our offers; returns the effective
/// parameters.
fn check_response(
    config: &DeflateConfig,
    offer: &PmdParams,
    resp: &PmdParams,
) -> Result<DeflateParams, NegotiationError> {
    // §7.1.2.2: no client_max_window_bits in a response to an offer without it.
    if resp.client_max_window_bits.is_some() && offer.client_max_window_bits.is_none() {
        return Err(NegotiationError::ClientMaxWindowBitsNotOffered);
    }
    // §7.1.2.1: the server answers with the same or a smaller value.
    let server_bits = resp.server_max_window_bits.unwrap_or(MAX_BITS);
    if let Some(requested) = offer.server_max_window_bits {
        if server_bits > requested {
            return Err(NegotiationError::ServerMaxWindowBitsTooLarge {
                requested,
                got: server_bits,
            });
        }
    }
    // §7.1.1.1: accepting server_no_context_takeover means including it.
    if offer.server_no_context_takeover && !resp.server_no_context_takeover {
        return Err(NegotiationError::ServerNoContextTakeoverNotConfirmed);
    }
    let client_bits = [
        resp.client_max_window_bits.flatten(),
        offer.client_max_window_bits.flatten(),
        Some(clamp_bits(config.client_max_window_bits)),
    ]
    .into_iter()
    .flatten()
    .min()
    .unwrap_or(MAX_BITS);
    Ok(DeflateParams {
        server_no_context_takeover: resp.server_no_context_takeover,
        client_no_context_takeover: resp.client_no_context_takeover
            || offer.client_no_context_takeover
            || config.client_no_context_takeover,
        server_max_window_bits: server_bits,
        client_max_window_bits: client_bits,
    })
}

/// Validates the server's `Sec-WebSocket-Extensions` response (all header
/// lines of it, each possibly a comma-separated list) against what
/// [`client_offer`] sent.
///
/// Returns `Ok(None)` when the server accepted no extension, `Ok(Some)` with
/// the parameters to use otherwise (see [`DeflateParams`] for how the
/// client's own preferences are folded in). Any other extension name,
/// `permessage-deflate` listed twice, an unknown or duplicate parameter, a
/// missing, superfluous, malformed or out-of-range value (quoted values are
/// unquoted first), `client_max_window_bits` that was not offered, a
/// `server_max_window_bits` above the requested one (or missing when one
/// below 15 was requested) and an unconfirmed `server_no_context_takeover`
/// request are errors. The response may add `server_no_context_takeover`,
/// `client_no_context_takeover` and `server_max_window_bits` that were not
/// offered (RFC 7692 §7.1.1.1, §7.1.1.2, §7.1.2.1). With several custom
/// offers the response must be valid for at least one of them.
pub fn client_accept(
    config: &DeflateConfig,
    response_values: &[&str],
) -> Result<Option<DeflateParams>, NegotiationError> {
    let mut accepted: Option<PmdParams> = None;
    for ext in parse_extensions(response_values.iter().copied()) {
        let ext = ext.map_err(|e| NegotiationError::Malformed(e.to_string()))?;
        let Some(params) = PmdParams::from_extension(&ext, Context::Response) else {
            return Err(NegotiationError::UnexpectedExtension(ext.name));
        };
        if accepted.is_some() {
            return Err(NegotiationError::DuplicateExtension);
        }
        accepted = Some(params?);
    }
    let Some(resp) = accepted else {
        return Ok(None);
    };
    let mut first_error = None;
    for offer in our_offers(config) {
        match check_response(config, &offer, &resp) {
            Ok(params) => return Ok(Some(params)),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    Err(first_error.unwrap_or_else(|| NegotiationError::NotOffered(EXTENSION_NAME.to_owned())))
}

// ---------------------------------------------------------------- server

/// Accepts one offer under our config, or declines it.
fn accept_offer(config: &DeflateConfig, offer: &PmdParams) -> Option<(DeflateParams, String)> {
    let our_server_bits = clamp_bits(config.server_max_window_bits);
    let our_client_bits = clamp_bits(config.client_max_window_bits);
    let server_bits = offer
        .server_max_window_bits
        .map_or(our_server_bits, |asked| asked.min(our_server_bits));
    let client_bits = match offer.client_max_window_bits {
        // §7.1.2.2: we may not limit a client that did not offer the
        // parameter; if we must limit it, decline.
        None if our_client_bits < MAX_BITS => return None,
        None => MAX_BITS,
        Some(hint) => hint.unwrap_or(MAX_BITS).min(our_client_bits),
    };
    let params = DeflateParams {
        server_no_context_takeover: offer.server_no_context_takeover
            || config.server_no_context_takeover,
        client_no_context_takeover: offer.client_no_context_takeover
            || config.client_no_context_takeover,
        server_max_window_bits: server_bits,
        client_max_window_bits: client_bits,
    };
    // An offered server_max_window_bits is always answered, even with 15.
    let header = params.render(offer.server_max_window_bits.is_some());
    Some((params, header))
}

/// Chooses the permessage-deflate offer to accept from the client's
/// `Sec-WebSocket-Extensions` request values (all header lines, each
/// possibly a comma-separated list of offers).
///
/// Offers are walked in order; other extensions are skipped; malformed
/// offers and offers with unknown or duplicate parameters or bad values are
/// declined (RFC 7692 §5.1), as are offers our config cannot honour (see
/// [`DeflateConfig::client_max_window_bits`]). The first acceptable offer
/// wins: returns the parameters to use and the exact response value to send
/// (also `Sec-WebSocket-Extensions`). `None`: no compression.
///
/// The response contains `server_no_context_takeover` and
/// `client_no_context_takeover` when offered or configured,
/// `server_max_window_bits=min(offered, ours)` when offered or when ours is
/// below 15, and `client_max_window_bits=min(offered value, ours)` when the
/// parameter was offered and that minimum is below 15.
pub fn server_negotiate(
    config: &DeflateConfig,
    request_values: &[&str],
) -> Option<(DeflateParams, String)> {
    parse_extensions(request_values.iter().copied())
        .into_iter()
        .filter_map(Result::ok)
        .filter_map(|ext| PmdParams::from_extension(&ext, Context::Offer))
        .filter_map(Result::ok)
        .find_map(|offer| accept_offer(config, &offer))
}
