//! The module documentation's usage example, compiled and run.

use bytes::BytesMut;

use crate::deflate::*;

#[test]
fn usage_example() -> Result<(), Box<dyn std::error::Error>> {
    let config = DeflateConfig::default();
    assert_eq!(
        client_offer(&config),
        "permessage-deflate; client_max_window_bits"
    );
    // Client: send `client_offer(&config)` as Sec-WebSocket-Extensions, then
    // check every Sec-WebSocket-Extensions value of the 101 response:
    let client = client_accept(&config, &["permessage-deflate; client_max_window_bits=10"])?
        .expect("server accepted permessage-deflate");
    // Server: answer with `header` as Sec-WebSocket-Extensions.
    let (server, header) =
        server_negotiate(&config, &["permessage-deflate; client_max_window_bits"]).unwrap();
    assert_eq!(header, "permessage-deflate");
    assert_eq!(client.client_max_window_bits, 10);

    // Each side, once connected (is_server selects the direction):
    let mut tx = server.compressor(true, config.level);
    let mut rx = client.decompressor(false);

    // Sending: compress whole messages of at least `threshold` bytes, in the
    // order they go on the wire; set RSV1 on the first frame only.
    let mut payload = BytesMut::new();
    tx.compress(b"Hello, Hello, Hello", &mut payload)?;

    // Receiving a message whose first frame had RSV1: every frame of it, in
    // order, into the same buffer, `fin` on the last one.
    let mut message = BytesMut::new();
    let (first, rest) = payload.split_at(3);
    rx.decompress(first, false, &mut message, 16 << 20)?;
    rx.decompress(rest, true, &mut message, 16 << 20)?;
    assert_eq!(&message[..], b"Hello, Hello, Hello");
    Ok(())
}
