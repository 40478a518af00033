//! TEMPORARY STUB — replaced by the real permessage-deflate module.
#![allow(missing_docs, dead_code)]
use bytes::BytesMut;

#[derive(Clone, Debug, Default)]
pub struct DeflateConfig {
    pub level: u32,
    pub threshold: usize,
}
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeflateParams;
impl DeflateParams {
    pub fn compressor(&self, _is_server: bool, _level: u32) -> Compressor {
        Compressor
    }
    pub fn decompressor(&self, _is_server: bool) -> Decompressor {
        Decompressor
    }
}
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NegotiationError {
    #[error("extension not offered: {0}")]
    NotOffered(String),
}
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DeflateError {
    #[error("too large")]
    TooLarge,
    #[error("corrupt")]
    Corrupt,
}
pub fn client_offer(_c: &DeflateConfig) -> String {
    String::new()
}
pub fn client_accept(
    _c: &DeflateConfig,
    v: &[&str],
) -> Result<Option<DeflateParams>, NegotiationError> {
    if v.iter().all(|s| s.trim().is_empty()) {
        Ok(None)
    } else {
        Err(NegotiationError::NotOffered(v.join(",")))
    }
}
pub fn server_negotiate(_c: &DeflateConfig, _v: &[&str]) -> Option<(DeflateParams, String)> {
    None
}
pub struct Compressor;
impl Compressor {
    pub fn compress(&mut self, _i: &[u8], _o: &mut BytesMut) -> Result<(), DeflateError> {
        Err(DeflateError::Corrupt)
    }
    pub fn memory_estimate(&self) -> usize {
        0
    }
}
pub struct Decompressor;
impl Decompressor {
    pub fn decompress(
        &mut self,
        _i: &[u8],
        _f: bool,
        _o: &mut BytesMut,
        _l: usize,
    ) -> Result<(), DeflateError> {
        Err(DeflateError::Corrupt)
    }
    pub fn memory_estimate(&self) -> usize {
        0
    }
}
