//! # wsx-proto
//!
//! A sans-I/O implementation of the WebSocket protocol (RFC 6455) with permessage-deflate
//! (RFC 7692). It never touches a socket and has no async runtime: it takes the bytes you
//! received and gives back events and the bytes to send, like `quinn-proto` or Python's
//! `websockets`. The `wsx` crate runs it on tokio.
//!
//! - [`handshake`]: the opening handshake, client ([`handshake::client`]) and server
//!   ([`handshake::server`]).
//! - [`Connection`]: the OPEN / CLOSING / CLOSED state machine: framing, masking,
//!   fragmentation, control frames, UTF-8 validation, close handshake, compression.
//! - [`frame`], [`mask`], [`utf8`], [`close`]: the building blocks, usable on their own.
//! - [`budget`]: a memory budget shared by a server's connections.
//! - [`trace`]: an opt-in record of every frame received and sent, for debugging tools.
//!
//! ```
//! use wsx_proto::{Config, Connection, Event, Message, Role};
//!
//! let config = Config::default();
//! let mut client = Connection::new(Role::Client, &config, None);
//! let mut server = Connection::new(Role::Server, &config, None);
//!
//! client.send(Message::text("hello")).unwrap();
//! server.receive(client.output());
//! client.advance_output(client.output().len());
//! assert_eq!(server.poll_event(), Some(Event::Message(Message::text("hello"))));
//! ```
#![deny(missing_docs)]
// Two `unsafe` blocks in the crate: the call of the AVX2 masking loop after the CPU was
// found to support AVX2 (`mask.rs`), and `Utf8Bytes::as_str`, which does not validate
// again what its constructors validated (`utf8.rs`). Everything else is safe code.
#![deny(unsafe_code)]

pub mod budget;
pub mod close;
pub mod config;
pub mod connection;
pub mod deflate;
pub mod error;
pub mod frame;
mod growth;
pub mod handshake;
pub mod mask;
pub mod message;
pub mod prepared;
pub mod trace;
pub mod utf8;

pub use budget::{BudgetStats, MemoryBudget};
pub use bytes::{Bytes, BytesMut};
pub use close::{CloseCode, CloseFrame};
pub use config::Config;
pub use connection::{CloseEvent, Connection, Event, Fragment, MessageKind, Role, State};
pub use error::{ProtocolError, SendError};
pub use message::Message;
pub use prepared::PreparedMessage;
pub use trace::{FrameTrace, TraceConfig};
pub use utf8::Utf8Bytes;
