//! Tokens: connection and channel JWTs, signed with HMAC (HS256/384/512), RSA
//! (RS256/384/512) or ECDSA (ES256/384), verified with `jsonwebtoken`.
//!
//! The algorithm a token names picks the key: an HMAC token is checked only against the
//! HMAC secret, an RSA token only against the RSA key, and so on, so a token signed with
//! the public RSA key used as an HMAC secret (algorithm confusion) fails, as does
//! `alg: none` (not an algorithm `jsonwebtoken` accepts).

use crate::protocol::Json;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use std::collections::HashSet;

/// The claims of a connection token.
#[derive(Debug, Default, Deserialize)]
#[non_exhaustive]
pub struct ConnectClaims {
    /// The user.
    #[serde(default)]
    pub sub: String,
    /// When the connection expires (Unix seconds); it must refresh its token before.
    pub exp: Option<u64>,
    /// Information about the connection that other clients see.
    pub info: Option<Json>,
    /// Server-side channels: the connection is subscribed to them when it connects.
    #[serde(default)]
    pub channels: Vec<String>,
}

/// The claims of a channel (subscription) token.
#[derive(Debug, Default, Deserialize)]
#[non_exhaustive]
pub struct ChannelClaims {
    /// The user it is for: must be the connection's.
    #[serde(default)]
    pub sub: String,
    /// The channel it is for.
    #[serde(default)]
    pub channel: String,
    /// When the subscription expires (Unix seconds).
    pub exp: Option<u64>,
    /// Information about the subscriber that other subscribers see.
    pub info: Option<Json>,
}

/// Why a token was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Malformed, forged, signed with a key or algorithm this server does not take.
    #[error("invalid token: {0}")]
    Invalid(String),
    /// Valid but past its `exp`.
    #[error("token expired")]
    Expired,
}

/// The keys tokens are verified with.
#[derive(Clone, Default)]
pub struct TokenKeys {
    hmac: Option<DecodingKey>,
    rsa: Option<DecodingKey>,
    ecdsa: Option<DecodingKey>,
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenKeys")
            .field("hmac", &self.hmac.is_some())
            .field("rsa", &self.rsa.is_some())
            .field("ecdsa", &self.ecdsa.is_some())
            .finish()
    }
}

impl TokenKeys {
    /// No keys: every token is refused.
    pub fn new() -> Self {
        TokenKeys::default()
    }

    /// Accepts HMAC-signed tokens with this secret.
    pub fn hmac_secret(mut self, secret: &[u8]) -> Self {
        self.hmac = Some(DecodingKey::from_secret(secret));
        self
    }

    /// Accepts RSA-signed tokens with this public key (PEM).
    pub fn rsa_public_key_pem(mut self, pem: &[u8]) -> Result<Self, AuthError> {
        self.rsa =
            Some(DecodingKey::from_rsa_pem(pem).map_err(|e| AuthError::Invalid(e.to_string()))?);
        Ok(self)
    }

    /// Accepts ECDSA-signed tokens with this public key (PEM).
    pub fn ecdsa_public_key_pem(mut self, pem: &[u8]) -> Result<Self, AuthError> {
        self.ecdsa =
            Some(DecodingKey::from_ec_pem(pem).map_err(|e| AuthError::Invalid(e.to_string()))?);
        Ok(self)
    }

    /// Whether any key is set.
    pub fn any(&self) -> bool {
        self.hmac.is_some() || self.rsa.is_some() || self.ecdsa.is_some()
    }

    /// Verifies a connection token.
    pub fn connect(&self, token: &str) -> Result<ConnectClaims, AuthError> {
        self.verify(token)
    }

    /// Verifies a channel token.
    pub fn channel(&self, token: &str) -> Result<ChannelClaims, AuthError> {
        self.verify(token)
    }

    fn verify<T: DeserializeOwned>(&self, token: &str) -> Result<T, AuthError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| AuthError::Invalid(e.to_string()))?;
        let key = match header.alg {
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => &self.hmac,
            Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512 => &self.rsa,
            Algorithm::ES256 | Algorithm::ES384 => &self.ecdsa,
            other => return Err(AuthError::Invalid(format!("algorithm {other:?}"))),
        };
        let key = key
            .as_ref()
            .ok_or_else(|| AuthError::Invalid(format!("no key for {:?}", header.alg)))?;
        let mut validation = Validation::new(header.alg);
        validation.leeway = 0;
        validation.validate_aud = false;
        // `exp` is optional (a token without it does not expire), checked when present.
        validation.required_spec_claims = HashSet::new();
        match jsonwebtoken::decode::<T>(token, key, &validation) {
            Ok(data) => Ok(data.claims),
            Err(e) => match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => Err(AuthError::Expired),
                _ => Err(AuthError::Invalid(e.to_string())),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    fn hs256(secret: &str, claims: serde_json::Value) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    #[test]
    fn hmac_tokens() {
        let keys = TokenKeys::new().hmac_secret(b"s3cret");
        let claims = keys
            .connect(&hs256(
                "s3cret",
                serde_json::json!({"sub": "42", "exp": now() + 60, "info": {"name": "Ann"}, "channels": ["news"]}),
            ))
            .unwrap();
        assert_eq!(claims.sub, "42");
        assert_eq!(claims.channels, ["news"]);
        assert_eq!(claims.info.unwrap().get(), r#"{"name":"Ann"}"#);
        // No exp: valid, never expires.
        assert!(keys
            .connect(&hs256("s3cret", serde_json::json!({"sub": "1"})))
            .unwrap()
            .exp
            .is_none());
        assert_eq!(
            keys.connect(&hs256(
                "s3cret",
                serde_json::json!({"sub": "1", "exp": now() - 1})
            ))
            .unwrap_err(),
            AuthError::Expired
        );
        assert!(matches!(
            keys.connect(&hs256("wrong", serde_json::json!({"sub": "1"}))),
            Err(AuthError::Invalid(_))
        ));
        assert!(matches!(
            keys.connect("not.a.token"),
            Err(AuthError::Invalid(_))
        ));
    }

    #[test]
    fn alg_none_and_missing_keys_are_refused() {
        use base64::Engine;
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let none = format!(
            "{}.{}.",
            b64(r#"{"alg":"none","typ":"JWT"}"#),
            b64(r#"{"sub":"1"}"#)
        );
        let keys = TokenKeys::new().hmac_secret(b"s");
        assert!(matches!(keys.connect(&none), Err(AuthError::Invalid(_))));
        // An HMAC token where only an RSA key is configured.
        let rsa_only = TokenKeys::new();
        assert!(matches!(
            rsa_only.connect(&hs256("s", serde_json::json!({"sub": "1"}))),
            Err(AuthError::Invalid(_))
        ));
    }
}
