//! Tests of the permessage-deflate module.

mod codec;
mod negotiation;
mod puff;
mod usage;
