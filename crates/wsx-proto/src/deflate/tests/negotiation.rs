//! Table-driven negotiation tests (RFC 7692 §7.1).

use proptest::prelude::*;

use crate::deflate::{
    client_accept, client_offer, server_negotiate, ConfigError, DeflateConfig, DeflateParams,
    NegotiationError as E,
};

fn cfg(f: impl FnOnce(&mut DeflateConfig)) -> DeflateConfig {
    let mut c = DeflateConfig::default();
    f(&mut c);
    c
}

fn params(snct: bool, cnct: bool, sbits: u8, cbits: u8) -> DeflateParams {
    DeflateParams {
        server_no_context_takeover: snct,
        client_no_context_takeover: cnct,
        server_max_window_bits: sbits,
        client_max_window_bits: cbits,
    }
}

const PMD: &str = "permessage-deflate";

// ------------------------------------------------------------------ server

#[test]
fn server_default_config_table() {
    let config = DeflateConfig::default();
    let rows: &[(&[&str], Option<&str>)] = &[
        (&["permessage-deflate"], Some(PMD)),
        (&["permessage-deflate; client_max_window_bits"], Some(PMD)),
        (
            &["permessage-deflate; client_max_window_bits=10"],
            Some("permessage-deflate; client_max_window_bits=10"),
        ),
        (
            &["permessage-deflate; client_max_window_bits=15"],
            Some(PMD),
        ),
        (
            &["permessage-deflate; server_max_window_bits=10"],
            Some("permessage-deflate; server_max_window_bits=10"),
        ),
        (
            &["permessage-deflate; server_max_window_bits=8"],
            Some("permessage-deflate; server_max_window_bits=8"),
        ),
        // An offered server_max_window_bits is always answered.
        (
            &["permessage-deflate; server_max_window_bits=15"],
            Some("permessage-deflate; server_max_window_bits=15"),
        ),
        (
            &["permessage-deflate; server_no_context_takeover"],
            Some("permessage-deflate; server_no_context_takeover"),
        ),
        (
            &["permessage-deflate; client_no_context_takeover"],
            Some("permessage-deflate; client_no_context_takeover"),
        ),
        (
            &[
                "permessage-deflate; client_no_context_takeover; server_no_context_takeover; \
               client_max_window_bits=9; server_max_window_bits=11",
            ],
            Some(
                "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
                 server_max_window_bits=11; client_max_window_bits=9",
            ),
        ),
        // Autobahn 13.7.x style: several offers, the first acceptable wins.
        (
            &[
                "permessage-deflate; client_no_context_takeover; client_max_window_bits=8, \
               permessage-deflate; client_no_context_takeover, permessage-deflate",
            ],
            Some("permessage-deflate; client_no_context_takeover; client_max_window_bits=8"),
        ),
        // Offers spread over several header lines.
        (
            &[
                "x-webkit-deflate-frame",
                "permessage-deflate; client_max_window_bits=12",
            ],
            Some("permessage-deflate; client_max_window_bits=12"),
        ),
        // Unknown extensions and invalid offers are skipped.
        (
            &[
                "foo; bar=1, permessage-deflate; unknown=1, permessage-deflate; \
               server_max_window_bits=9",
            ],
            Some("permessage-deflate; server_max_window_bits=9"),
        ),
        (
            &["permessage-deflate; server_max_window_bits=16, \
               permessage-deflate; server_max_window_bits=12"],
            Some("permessage-deflate; server_max_window_bits=12"),
        ),
        // Quoted values.
        (
            &["permessage-deflate; server_max_window_bits=\"10\""],
            Some("permessage-deflate; server_max_window_bits=10"),
        ),
        (
            &["permessage-deflate; client_max_window_bits=\"9\""],
            Some("permessage-deflate; client_max_window_bits=9"),
        ),
        // Case-insensitive names, odd whitespace.
        (
            &["Permessage-Deflate ;\tClient_Max_Window_Bits = 9 , permessage-deflate"],
            Some("permessage-deflate; client_max_window_bits=9"),
        ),
        (&[" , permessage-deflate ,, "], Some(PMD)),
        // Nothing acceptable.
        (&[], None),
        (&[""], None),
        (&["x-webkit-deflate-frame, foo"], None),
        (
            &["permessage-deflate; server_no_context_takeover; server_no_context_takeover"],
            None,
        ),
        (
            &["permessage-deflate; client_max_window_bits; client_max_window_bits=9"],
            None,
        ),
        (&["permessage-deflate; server_max_window_bits"], None),
        (&["permessage-deflate; server_max_window_bits="], None),
        (&["permessage-deflate; server_max_window_bits=7"], None),
        (&["permessage-deflate; server_max_window_bits=16"], None),
        (&["permessage-deflate; server_max_window_bits=abc"], None),
        (&["permessage-deflate; server_max_window_bits=08"], None),
        (&["permessage-deflate; server_max_window_bits=010"], None),
        (&["permessage-deflate; server_max_window_bits=+9"], None),
        (&["permessage-deflate; server_max_window_bits=\"\""], None),
        (
            &["permessage-deflate; server_max_window_bits=\"1 0\""],
            None,
        ),
        (&["permessage-deflate; server_max_window_bits=\"10"], None),
        (
            &["permessage-deflate; server_max_window_bits=\"10\"x"],
            None,
        ),
        (&["permessage-deflate; client_max_window_bits=0"], None),
        (
            &["permessage-deflate; client_max_window_bits=\"abc\""],
            None,
        ),
        (&["permessage-deflate; client_no_context_takeover=1"], None),
        (
            &["permessage-deflate; server_no_context_takeover=\"\""],
            None,
        ),
        (&["permessage-deflate; ; client_max_window_bits"], None),
        (&["permessage-deflate;"], None),
        (&["permessage-deflate; =10"], None),
        (&["permessage-deflate; x y"], None),
        (&["permessage-deflate x"], None),
        (&["\"permessage-deflate\""], None),
        (&["permessage-deflate; mux"], None),
    ];
    for (request, expected) in rows {
        let got = server_negotiate(&config, request);
        assert_eq!(
            got.as_ref().map(|(_, h)| h.as_str()),
            *expected,
            "request {request:?}"
        );
        if let Some((p, header)) = got {
            check_client_sees_same(request, &p, &header);
        }
    }
}

/// The response, as seen by a client that sent `request`, yields matching
/// parameters.
fn check_client_sees_same(request: &[&str], server: &DeflateParams, header: &str) {
    let client_cfg =
        cfg(|c| c.client_offers = Some(request.iter().map(|s| (*s).to_owned()).collect()));
    let client = client_accept(&client_cfg, &[header])
        .unwrap_or_else(|e| panic!("{request:?} -> {header}: {e}"))
        .expect("accepted");
    assert_eq!(
        client.server_max_window_bits, server.server_max_window_bits,
        "{header}"
    );
    assert_eq!(
        client.server_no_context_takeover,
        server.server_no_context_takeover
    );
    assert!(client.client_max_window_bits <= server.client_max_window_bits);
    assert!(client.client_no_context_takeover || !server.client_no_context_takeover);
}

#[test]
fn server_config_table() {
    type Row = (&'static [&'static str], Option<&'static str>);
    let cases: Vec<(DeflateConfig, Vec<Row>)> = vec![
        (
            cfg(|c| c.server_max_window_bits = 10),
            vec![
                (
                    &["permessage-deflate"],
                    Some("permessage-deflate; server_max_window_bits=10"),
                ),
                (
                    &["permessage-deflate; server_max_window_bits=12"],
                    Some("permessage-deflate; server_max_window_bits=10"),
                ),
                (
                    &["permessage-deflate; server_max_window_bits=9"],
                    Some("permessage-deflate; server_max_window_bits=9"),
                ),
            ],
        ),
        (
            cfg(|c| c.client_max_window_bits = 10),
            vec![
                // Cannot limit a client that did not offer the parameter.
                (&["permessage-deflate"], None),
                (
                    &["permessage-deflate; client_max_window_bits"],
                    Some("permessage-deflate; client_max_window_bits=10"),
                ),
                (
                    &["permessage-deflate; client_max_window_bits=12"],
                    Some("permessage-deflate; client_max_window_bits=10"),
                ),
                (
                    &["permessage-deflate; client_max_window_bits=9"],
                    Some("permessage-deflate; client_max_window_bits=9"),
                ),
                (
                    &["permessage-deflate; server_no_context_takeover, \
                       permessage-deflate; client_max_window_bits"],
                    Some("permessage-deflate; client_max_window_bits=10"),
                ),
            ],
        ),
        (
            cfg(|c| c.server_no_context_takeover = true),
            vec![(
                &["permessage-deflate"],
                Some("permessage-deflate; server_no_context_takeover"),
            )],
        ),
        (
            cfg(|c| c.client_no_context_takeover = true),
            vec![
                (
                    &["permessage-deflate"],
                    Some("permessage-deflate; client_no_context_takeover"),
                ),
                (
                    &["permessage-deflate; client_no_context_takeover"],
                    Some("permessage-deflate; client_no_context_takeover"),
                ),
            ],
        ),
        (
            cfg(|c| {
                c.server_no_context_takeover = true;
                c.client_no_context_takeover = true;
                c.server_max_window_bits = 9;
                c.client_max_window_bits = 11;
            }),
            vec![(
                &["permessage-deflate; client_max_window_bits"],
                Some(
                    "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
                     server_max_window_bits=9; client_max_window_bits=11",
                ),
            )],
        ),
        (
            // Out-of-range config values are clamped.
            cfg(|c| {
                c.server_max_window_bits = 3;
                c.client_max_window_bits = 200;
            }),
            vec![(
                &["permessage-deflate"],
                Some("permessage-deflate; server_max_window_bits=8"),
            )],
        ),
    ];
    for (config, rows) in cases {
        for (request, expected) in rows {
            let got = server_negotiate(&config, request);
            assert_eq!(
                got.as_ref().map(|(_, h)| h.as_str()),
                expected,
                "{config:?} {request:?}"
            );
            if let Some((p, header)) = got {
                check_client_sees_same(request, &p, &header);
            }
        }
    }
}

#[test]
fn server_params_match_response() {
    let config = cfg(|c| c.server_max_window_bits = 12);
    let (p, header) = server_negotiate(
        &config,
        &["permessage-deflate; client_no_context_takeover; client_max_window_bits=9"],
    )
    .unwrap();
    assert_eq!(p, params(false, true, 12, 9));
    assert_eq!(header, p.to_header_value());
    assert_eq!(
        header,
        "permessage-deflate; client_no_context_takeover; server_max_window_bits=12; client_max_window_bits=9"
    );
}

#[test]
fn to_header_value() {
    assert_eq!(DeflateParams::default().to_header_value(), PMD);
    assert_eq!(
        params(true, true, 8, 10).to_header_value(),
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
         server_max_window_bits=8; client_max_window_bits=10"
    );
    assert_eq!(
        params(false, false, 15, 15).to_header_value(),
        PMD,
        "15 is the default and left out"
    );
}

// ------------------------------------------------------------------ client

#[test]
fn client_offer_values() {
    assert_eq!(
        client_offer(&DeflateConfig::default()),
        "permessage-deflate; client_max_window_bits"
    );
    assert_eq!(
        client_offer(&cfg(|c| {
            c.server_no_context_takeover = true;
            c.client_no_context_takeover = true;
            c.server_max_window_bits = 10;
            c.client_max_window_bits = 9;
        })),
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
         server_max_window_bits=10; client_max_window_bits=9"
    );
    assert_eq!(
        client_offer(&cfg(|c| c.server_max_window_bits = 8)),
        "permessage-deflate; server_max_window_bits=8; client_max_window_bits"
    );
    assert_eq!(
        client_offer(&cfg(
            |c| c.client_offers = Some(vec!["permessage-deflate; a".into(), PMD.into()])
        )),
        "permessage-deflate; a, permessage-deflate"
    );
    assert_eq!(client_offer(&cfg(|c| c.client_offers = Some(vec![]))), "");
}

type ClientRow = (&'static [&'static str], Result<Option<DeflateParams>, E>);

fn run_client_rows(config: &DeflateConfig, rows: Vec<ClientRow>) {
    for (response, expected) in rows {
        assert_eq!(
            client_accept(config, response),
            expected,
            "config {config:?} response {response:?}"
        );
    }
}

fn invalid(param: &str, value: &str) -> E {
    E::InvalidValue {
        param: param.into(),
        value: value.into(),
    }
}

#[test]
fn client_default_config_table() {
    let ok = |p: DeflateParams| Ok(Some(p));
    let d = DeflateParams::default();
    let smwb = "server_max_window_bits";
    let cmwb = "client_max_window_bits";
    let rows: Vec<ClientRow> = vec![
        (&[], Ok(None)),
        (&[""], Ok(None)),
        (&[" , ", ""], Ok(None)),
        (&["permessage-deflate"], ok(d)),
        (&[" permessage-deflate "], ok(d)),
        (
            &["permessage-deflate; server_no_context_takeover"],
            ok(params(true, false, 15, 15)),
        ),
        (
            &["permessage-deflate; client_no_context_takeover"],
            ok(params(false, true, 15, 15)),
        ),
        (
            &["permessage-deflate; server_max_window_bits=10"],
            ok(params(false, false, 10, 15)),
        ),
        (
            &["permessage-deflate; server_max_window_bits=8"],
            ok(params(false, false, 8, 15)),
        ),
        (
            &["permessage-deflate; client_max_window_bits=8"],
            ok(params(false, false, 15, 8)),
        ),
        (
            &["permessage-deflate; client_max_window_bits=\"12\""],
            ok(params(false, false, 15, 12)),
        ),
        (&["permessage-deflate; client_max_window_bits=15"], ok(d)),
        (
            &["PERMESSAGE-DEFLATE; SERVER_NO_CONTEXT_TAKEOVER; Client_No_Context_Takeover"],
            ok(params(true, true, 15, 15)),
        ),
        (
            &[
                "permessage-deflate;server_no_context_takeover;client_no_context_takeover;\
               server_max_window_bits=9;client_max_window_bits=11",
            ],
            ok(params(true, true, 9, 11)),
        ),
        // Values.
        (
            &["permessage-deflate; client_max_window_bits"],
            Err(E::MissingValue(cmwb.into())),
        ),
        (
            &["permessage-deflate; server_max_window_bits"],
            Err(E::MissingValue(smwb.into())),
        ),
        (
            &["permessage-deflate; server_max_window_bits=16"],
            Err(invalid(smwb, "16")),
        ),
        (
            &["permessage-deflate; server_max_window_bits=7"],
            Err(invalid(smwb, "7")),
        ),
        (
            &["permessage-deflate; server_max_window_bits=abc"],
            Err(invalid(smwb, "abc")),
        ),
        (
            &["permessage-deflate; server_max_window_bits=08"],
            Err(invalid(smwb, "08")),
        ),
        (
            &["permessage-deflate; client_max_window_bits=\"16\""],
            Err(invalid(cmwb, "16")),
        ),
        (
            &["permessage-deflate; client_max_window_bits=-9"],
            Err(invalid(cmwb, "-9")),
        ),
        (
            &["permessage-deflate; server_no_context_takeover=1"],
            Err(E::UnexpectedValue("server_no_context_takeover".into())),
        ),
        (
            &["permessage-deflate; client_no_context_takeover=\"x\""],
            Err(E::UnexpectedValue("client_no_context_takeover".into())),
        ),
        // Parameters.
        (
            &["permessage-deflate; foo"],
            Err(E::UnknownParameter("foo".into())),
        ),
        (
            &["permessage-deflate; Foo=1"],
            Err(E::UnknownParameter("foo".into())),
        ),
        (
            &["permessage-deflate; server_no_context_takeover; server_no_context_takeover"],
            Err(E::DuplicateParameter("server_no_context_takeover".into())),
        ),
        (
            &["permessage-deflate; server_max_window_bits=9; SERVER_MAX_WINDOW_BITS=9"],
            Err(E::DuplicateParameter(smwb.into())),
        ),
        // Extensions.
        (
            &["permessage-deflate", "permessage-deflate"],
            Err(E::DuplicateExtension),
        ),
        (
            &["permessage-deflate, permessage-deflate"],
            Err(E::DuplicateExtension),
        ),
        (
            &["x-webkit-deflate-frame"],
            Err(E::UnexpectedExtension("x-webkit-deflate-frame".into())),
        ),
        (
            &["permessage-deflate, foo"],
            Err(E::UnexpectedExtension("foo".into())),
        ),
        (
            &["foo", "permessage-deflate"],
            Err(E::UnexpectedExtension("foo".into())),
        ),
    ];
    run_client_rows(&DeflateConfig::default(), rows);

    // Malformed headers.
    for bad in [
        "permessage-deflate; ; server_no_context_takeover",
        "permessage-deflate;",
        "permessage-deflate; server_max_window_bits=",
        "permessage-deflate; server_max_window_bits=\"1",
        "permessage-deflate; server_max_window_bits=\"1 0\"",
        "permessage-deflate; =9",
        "permessage-deflate x",
        "; permessage-deflate",
        "permessage-deflate; a=\"b\"c",
    ] {
        let got = client_accept(&DeflateConfig::default(), &[bad]);
        assert!(matches!(got, Err(E::Malformed(_))), "{bad}: {got:?}");
        assert!(got.unwrap_err().to_string().contains("malformed"));
    }
}

#[test]
fn client_config_table() {
    let ok = |p: DeflateParams| Ok(Some(p));
    // We did not offer client_max_window_bits.
    run_client_rows(
        &cfg(|c| c.client_offers = Some(vec![PMD.into()])),
        vec![
            (&["permessage-deflate"], ok(DeflateParams::default())),
            (
                &["permessage-deflate; client_max_window_bits=10"],
                Err(E::ClientMaxWindowBitsNotOffered),
            ),
        ],
    );
    // We asked for server_max_window_bits=10.
    run_client_rows(
        &cfg(|c| c.server_max_window_bits = 10),
        vec![
            (
                &["permessage-deflate; server_max_window_bits=10"],
                ok(params(false, false, 10, 15)),
            ),
            (
                &["permessage-deflate; server_max_window_bits=9"],
                ok(params(false, false, 9, 15)),
            ),
            (
                &["permessage-deflate; server_max_window_bits=12"],
                Err(E::ServerMaxWindowBitsTooLarge {
                    requested: 10,
                    got: 12,
                }),
            ),
            (
                &["permessage-deflate"],
                Err(E::ServerMaxWindowBitsTooLarge {
                    requested: 10,
                    got: 15,
                }),
            ),
        ],
    );
    // We asked for server_no_context_takeover.
    run_client_rows(
        &cfg(|c| c.server_no_context_takeover = true),
        vec![
            (
                &["permessage-deflate; server_no_context_takeover"],
                ok(params(true, false, 15, 15)),
            ),
            (
                &["permessage-deflate"],
                Err(E::ServerNoContextTakeoverNotConfirmed),
            ),
        ],
    );
    // We offered client_no_context_takeover: we honour it even if the server
    // does not echo it (RFC 7692 §7.1.1.2).
    run_client_rows(
        &cfg(|c| c.client_no_context_takeover = true),
        vec![
            (&["permessage-deflate"], ok(params(false, true, 15, 15))),
            (
                &["permessage-deflate; client_no_context_takeover"],
                ok(params(false, true, 15, 15)),
            ),
        ],
    );
    // We want a small window for our own compressor.
    run_client_rows(
        &cfg(|c| c.client_max_window_bits = 10),
        vec![
            (&["permessage-deflate"], ok(params(false, false, 15, 10))),
            (
                &["permessage-deflate; client_max_window_bits=12"],
                ok(params(false, false, 15, 10)),
            ),
            (
                &["permessage-deflate; client_max_window_bits=9"],
                ok(params(false, false, 15, 9)),
            ),
        ],
    );
    // Several custom offers: valid for any one of them.
    run_client_rows(
        &cfg(|c| {
            c.client_offers = Some(vec![
                "permessage-deflate; server_max_window_bits=10; client_max_window_bits".into(),
                PMD.into(),
            ]);
        }),
        vec![
            (&["permessage-deflate"], ok(DeflateParams::default())),
            (
                &["permessage-deflate; server_max_window_bits=10; client_max_window_bits=9"],
                ok(params(false, false, 10, 9)),
            ),
            (
                &["permessage-deflate; client_max_window_bits=9"],
                Err(E::ServerMaxWindowBitsTooLarge {
                    requested: 10,
                    got: 15,
                }),
            ),
        ],
    );
    // Nothing offered at all.
    run_client_rows(
        &cfg(|c| c.client_offers = Some(vec![])),
        vec![
            (&[], Ok(None)),
            (&["permessage-deflate"], Err(E::NotOffered(PMD.into()))),
        ],
    );
}

#[test]
fn errors_have_clear_messages() {
    let e = client_accept(
        &DeflateConfig::default(),
        &["permessage-deflate; server_max_window_bits=16"],
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid value `16` for permessage-deflate parameter `server_max_window_bits` (expected 8..=15)"
    );
    let e = client_accept(
        &cfg(|c| c.server_max_window_bits = 9),
        &["permessage-deflate"],
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "server_max_window_bits=15 exceeds the requested maximum of 9"
    );
}

#[test]
fn config_validation() {
    assert_eq!(DeflateConfig::default().validate(), Ok(()));
    assert_eq!(
        cfg(|c| c.level = 10).validate(),
        Err(ConfigError::Level(10))
    );
    assert_eq!(
        cfg(|c| c.server_max_window_bits = 7).validate(),
        Err(ConfigError::WindowBits {
            name: "server_max_window_bits",
            value: 7
        })
    );
    assert_eq!(
        cfg(|c| c.client_max_window_bits = 16).validate(),
        Err(ConfigError::WindowBits {
            name: "client_max_window_bits",
            value: 16
        })
    );
    for bad in [
        "",
        "foo",
        "permessage-deflate; x",
        "permessage-deflate, foo",
        "permessage-deflate;",
    ] {
        assert_eq!(
            cfg(|c| c.client_offers = Some(vec![bad.into()])).validate(),
            Err(ConfigError::Offer(bad.into())),
            "{bad}"
        );
    }
    assert_eq!(
        cfg(|c| c.client_offers = Some(vec![
            "permessage-deflate; client_max_window_bits, permessage-deflate".into()
        ]))
        .validate(),
        Ok(())
    );
    let d = DeflateConfig::default();
    assert!(d.should_compress(256) && !d.should_compress(255));
    assert_eq!((d.level, d.threshold), (1, 256));
}

// -------------------------------------------------------------- properties

fn arb_config() -> impl Strategy<Value = DeflateConfig> {
    (any::<bool>(), any::<bool>(), 8u8..=15, 8u8..=15).prop_map(|(snct, cnct, s, c)| {
        cfg(|x| {
            x.server_no_context_takeover = snct;
            x.client_no_context_takeover = cnct;
            x.server_max_window_bits = s;
            x.client_max_window_bits = c;
        })
    })
}

proptest! {
    /// Our client's offer is always accepted by our server, and the client
    /// accepts the response with consistent parameters.
    #[test]
    fn our_client_and_server_agree(client in arb_config(), server in arb_config()) {
        let offer = client_offer(&client);
        let (sp, header) = server_negotiate(&server, &[&offer]).expect("our offers are always acceptable");
        let cp = client_accept(&client, &[&header]).expect("valid response").expect("accepted");
        prop_assert_eq!(cp.server_max_window_bits, sp.server_max_window_bits);
        prop_assert_eq!(cp.server_no_context_takeover, sp.server_no_context_takeover);
        prop_assert!(cp.client_max_window_bits <= sp.client_max_window_bits);
        prop_assert!(cp.client_no_context_takeover || !sp.client_no_context_takeover);
        // Everyone got at most what they asked for.
        prop_assert!(sp.server_max_window_bits <= client.server_max_window_bits);
        prop_assert!(sp.server_max_window_bits <= server.server_max_window_bits);
        prop_assert!(cp.client_max_window_bits <= client.client_max_window_bits);
        prop_assert!(sp.client_max_window_bits <= server.client_max_window_bits);
        prop_assert!(sp.server_no_context_takeover || !client.server_no_context_takeover);
        prop_assert!(sp.server_no_context_takeover || !server.server_no_context_takeover);
        prop_assert!(cp.client_no_context_takeover || !client.client_no_context_takeover);
        prop_assert!(sp.client_no_context_takeover || !server.client_no_context_takeover);
    }

    #[test]
    fn arbitrary_headers_never_panic(values in proptest::collection::vec(".{0,80}", 0..4)) {
        let refs: Vec<&str> = values.iter().map(String::as_str).collect();
        let _ = server_negotiate(&DeflateConfig::default(), &refs);
        let _ = client_accept(&DeflateConfig::default(), &refs);
    }

    #[test]
    fn header_like_input_never_panics(
        values in proptest::collection::vec(
            "[a-z_=;,\" \\\\0-9-]{0,60}|permessage-deflate(; ?(server|client)_(max_window_bits|no_context_takeover)(=\"?[0-9]{1,2}\"?)?){0,4}",
            0..4,
        ),
    ) {
        let refs: Vec<&str> = values.iter().map(String::as_str).collect();
        if let Some((p, header)) = server_negotiate(&DeflateConfig::default(), &refs) {
            prop_assert_eq!(header.starts_with(PMD), true);
            prop_assert!((8..=15).contains(&p.server_max_window_bits));
            prop_assert!((8..=15).contains(&p.client_max_window_bits));
        }
        if let Ok(Some(p)) = client_accept(&DeflateConfig::default(), &refs) {
            prop_assert!((8..=15).contains(&p.server_max_window_bits));
            prop_assert!((8..=15).contains(&p.client_max_window_bits));
        }
    }
}
