//! The top-level API the rest of the project calls: `parse_scan` on each input form, the
//! renderings of an `ElementString`, dates, and one test for each way input is refused.

use medledger_gs1::*;

const GTIN: &str = "09520123456788";

fn ais(es: &ElementString) -> Vec<(&str, &str)> {
    es.ais
        .iter()
        .map(|(a, v)| (a.as_str(), v.as_str()))
        .collect()
}

fn scan_err(input: &str) -> Gs1Error {
    match parse_scan(input) {
        Ok(es) => panic!("{input:?} was accepted as {es:?}"),
        Err(e) => e,
    }
}

#[test]
fn scanner_data_with_symbology_identifier_and_gs_separators() {
    // GS1 DataMatrix as a scanner sends it: "]d2", FNC1 as GS after variable-length values.
    let raw = "]d20109520123456788172506001012A\u{1d}21XYZ-7\r\n";
    let es = parse_scan(raw).expect("a valid scan");
    assert_eq!(
        ais(&es),
        [
            ("01", GTIN),
            ("17", "250600"),
            ("10", "12A"),
            ("21", "XYZ-7")
        ]
    );
    assert_eq!(es.get("10"), Some("12A"));
    assert_eq!(es.get("22"), None);
    assert_eq!(es.gtin().map(|g| g.to_string()).as_deref(), Some(GTIN));
    assert_eq!(es.sscc(), None);
    assert_eq!(
        es.date("17", 2026).map(|d| d.map(|d| d.to_string())),
        Ok(Some("2025-06-30".to_owned()))
    );
    assert_eq!(es.date("11", 2026), Ok(None));
    // Rendered back: no leading FNC1, a GS only after (10), the variable-length value that is
    // not last.
    assert_eq!(
        es.to_scanner(),
        "0109520123456788172506001012A\u{1d}21XYZ-7"
    );
    assert_eq!(
        es.to_bracketed(),
        "(01)09520123456788(17)250600(10)12A(21)XYZ-7"
    );
    // The other GS1 carriers and a leading FNC1 read the same.
    for prefix in ["]C1\u{1d}", "]Q3", "]e0", "]J1", "\u{1d}", ""] {
        let input = format!("{prefix}{}", es.to_scanner());
        assert_eq!(parse_scan(&input).as_ref(), Ok(&es), "{input:?}");
    }
    assert_eq!(parse_unbracketed(&raw[..raw.len() - 2]).as_ref(), Ok(&es));
}

#[test]
fn bracketed_input() {
    let es = parse_scan("(01)09520123456788(10)ABC(17)250600").expect("valid");
    assert_eq!(ais(&es), [("01", GTIN), ("10", "ABC"), ("17", "250600")]);
    assert_eq!(parse_bracketed(&es.to_bracketed()).as_ref(), Ok(&es));
    // "\(" is a literal bracket, and is written back that way.
    let es = parse_bracketed("(01)09520123456788(10)A\\(B").expect("valid");
    assert_eq!(es.get("10"), Some("A(B"));
    assert_eq!(es.to_bracketed(), "(01)09520123456788(10)A\\(B");
}

#[test]
fn digital_link_with_a_non_canonical_stem() {
    let uri =
        "https://brand.example.com/some/path/01/09520123456788/10/AB%2FC/21/1?17=250600&x=y#frag";
    let es = parse_scan(uri).expect("a valid digital link");
    assert_eq!(
        ais(&es),
        [("01", GTIN), ("10", "AB/C"), ("21", "1"), ("17", "250600")]
    );
    assert_eq!(
        es.to_digital_link(CANONICAL_STEM).as_deref(),
        Ok("https://id.gs1.org/01/09520123456788/10/AB%2FC/21/1?17=250600")
    );
    assert_eq!(parse_digital_link(uri).as_ref(), Ok(&es));
    let dl = DigitalLink::parse(uri).expect("valid");
    assert_eq!(dl.stem, "https://brand.example.com/some/path");
    assert_eq!(dl.path_len, 3);
    // Upper-case scheme, http, and a stem with a trailing slash when generating.
    assert!(parse_scan("HTTP://example.com/01/09520123456788").is_ok());
    assert_eq!(
        parse_scan("(01)09520123456788(99)A B")
            .and_then(|es| es.to_digital_link("https://example.com/")),
        Err(Gs1Error::Lint {
            ai: "99".into(),
            lint: LintError::InvalidCset82Character,
            markup: "(99)A| |B".into()
        })
    );
    // A scanner prefix for a QR Code carrying a plain URI.
    assert_eq!(parse_scan(&format!("]Q1{uri}")).as_ref(), Ok(&es));
}

#[test]
fn digital_link_generation_orders_path_and_query() {
    let es =
        parse_bracketed("(17)250600(21)S1(10)L1(01)09520123456788(3103)000195").expect("valid");
    assert_eq!(
        es.to_digital_link("https://example.com").as_deref(),
        Ok("https://example.com/01/09520123456788/10/L1/21/S1?17=250600&3103=000195")
    );
    assert_eq!(
        es.to_canonical_digital_link().as_deref(),
        Ok("https://id.gs1.org/01/09520123456788/10/L1/21/S1?17=250600&3103=000195")
    );
    let no_key = parse_bracketed("(99)ABC").expect("valid");
    assert_eq!(
        no_key.to_digital_link(CANONICAL_STEM),
        Err(Gs1Error::NoPrimaryKey)
    );
}

#[test]
fn ean13_and_ean8_scans_are_gtins() {
    let es = parse_scan("]E09520123456788").expect("an ean-13");
    assert_eq!(ais(&es), [("01", GTIN)]);
    let es = parse_scan("]E496385074").expect("an ean-8");
    assert_eq!(ais(&es), [("01", "00000096385074")]);
    assert!(matches!(
        parse_scan("]E09520123456789"),
        Err(Gs1Error::Lint {
            lint: LintError::IncorrectCheckDigit,
            ..
        })
    ));
    assert!(matches!(parse_scan("]E0123"), Err(Gs1Error::Symbology(_))));
}

#[test]
fn day_zero_expiry_is_the_last_day_of_the_month() {
    let es = parse_scan("(01)09520123456788(17)240200").expect("valid");
    let expiry = decode_date("17", es.get("17").unwrap_or_default(), 2026).expect("a date");
    assert_eq!(
        expiry,
        Some(Gs1DateTime {
            year: 2024,
            month: 2,
            day: 29,
            time: None
        })
    );
    assert_eq!(expand_yymmdd("250600", 2026), Ok((2025, 6, 30)));
    assert_eq!(expand_yymmdd("251200", 2026), Ok((2025, 12, 31)));
    // Day 00 is for (17), whose linter is yymmd0; (4326) is yymmdd and refuses it.
    assert!(matches!(
        parse_bracketed("(00)106141411234567897(4326)250600"),
        Err(Gs1Error::Lint {
            lint: LintError::IllegalDay,
            ..
        })
    ));
    assert_eq!(decode_date("10", "ABC", 2026), Ok(None));
    let with_time = decode_date("7003", "2506301415", 2026).expect("a date and time");
    assert_eq!(
        with_time.map(|d| d.to_string()).as_deref(),
        Some("2025-06-30T14:15:00")
    );
}

#[test]
fn quantities() {
    let q = decode_quantity("3103", "000195")
        .expect("valid")
        .expect("a measure");
    assert_eq!(q.value.to_string(), "0.195");
    let q = decode_quantity("3922", "0299")
        .expect("valid")
        .expect("an amount");
    assert_eq!((q.value.to_string().as_str(), q.currency), ("2.99", None));
    let q = decode_quantity("3932", "9780299")
        .expect("valid")
        .expect("an amount");
    assert_eq!(
        (q.value.to_string().as_str(), q.currency),
        ("2.99", Some("EUR"))
    );
    assert_eq!(decode_quantity("10", "ABC"), Ok(None));
}

#[test]
fn filters_by_prefix_and_title() {
    let es = parse_scan("0109520123456788100329\u{1d}15210526").expect("valid");
    assert_eq!(es.values_with_prefix("1"), ["0329", "210526"]);
    assert_eq!(es.values_by_title("LOT"), ["0329"]);
    assert_eq!(ai_title("15"), Some("BEST BEFORE or BEST BY"));
}

#[test]
fn unknown_ais_only_when_permitted() {
    assert_eq!(
        parse_bracketed("(01)09520123456788(89)ABC"),
        Err(Gs1Error::UnknownAi("89".into()))
    );
    let opts = Options {
        permit_unknown_ais: true,
        ..Options::default()
    };
    let es = parse_bracketed_with("(01)09520123456788(89)ABC", &opts).expect("permitted");
    assert_eq!(es.get("89"), Some("ABC"));
    // In raw data an unknown AI's length cannot be told from its value.
    assert_eq!(
        parse_unbracketed_with("89ABC", &opts),
        Err(Gs1Error::NoAiPrefix("89ABC".into()))
    );
}

#[test]
fn options_relax_the_rules() {
    let lot_only = "(10)ABC";
    assert!(matches!(
        parse_bracketed(lot_only),
        Err(Gs1Error::Requires { .. })
    ));
    assert!(parse_bracketed_with(lot_only, &Options::syntax_only()).is_ok());
    let bad_date = "(01)09520123456788(17)251301";
    assert!(parse_bracketed(bad_date).is_err());
    let opts = Options {
        lint_dates: false,
        ..Options::default()
    };
    assert!(parse_bracketed_with(bad_date, &opts).is_ok());
    let gtin12 = "https://id.gs1.org/01/614141123452";
    assert!(parse_digital_link(gtin12).is_err());
    let opts = Options {
        permit_zero_suppressed_gtin_in_dl_uris: true,
        ..Options::default()
    };
    assert_eq!(
        parse_digital_link_with(gtin12, &opts).map(|es| es.ais),
        Ok(vec![("01".to_owned(), "00614141123452".to_owned())])
    );
}

#[test]
fn keys_and_their_issuers() {
    let gtin = Gtin::parse(GTIN).expect("valid");
    assert_eq!(gtin.format(), GtinFormat::Gtin13);
    assert_eq!(gtin.short(), "9520123456788");
    assert_eq!(
        gtin.gs1_prefix().map(|p| p.usage),
        Some("Used for demonstrations and examples of the GS1 system")
    );
    let table = GcpLengthTable::parse_gs1_xml(
        r#"<gcpFormatList><entry prefix="952012" gcpLength="7"/><entry prefix="95" gcpLength="9"/></gcpFormatList>"#,
    );
    assert_eq!(table.len(), 2);
    assert_eq!(gtin.company_prefix(&table), Some("9520123"));
    assert_eq!(gtin.item_reference(&table), Some("45678"));
    assert_eq!(GcpLengthTable::default().gcp_length("9520123456788"), None);
    let gln = Gln::parse("9520123456788").expect("valid");
    assert_eq!(gln.company_prefix(&table), Some("9520123"));
}

// Each way input is refused.

#[test]
fn bad_check_digit() {
    let e = scan_err("(01)09520123456789");
    assert_eq!(
        e,
        Gs1Error::Lint {
            ai: "01".into(),
            lint: LintError::IncorrectCheckDigit,
            markup: "(01)0952012345678|9|".into()
        }
    );
    assert_eq!(
        e.to_string(),
        "ai (01): incorrect check digit: (01)0952012345678|9|"
    );
    assert!(matches!(
        Gtin::parse("09520123456789"),
        Err(Gs1Error::CheckDigit { .. })
    ));
    assert!(matches!(Sscc::parse("12345"), Err(Gs1Error::Length { .. })));
}

#[test]
fn unknown_ai() {
    assert_eq!(scan_err("(23)ABC"), Gs1Error::UnknownAi("23".into()));
    assert_eq!(scan_err("2312345"), Gs1Error::NoAiPrefix("2312345".into()));
    assert_eq!(
        scan_err("https://id.gs1.org/01/09520123456788?89=ABC"),
        Gs1Error::UnknownAi("89".into())
    );
}

#[test]
fn too_long_and_too_short_values() {
    let serial = "A".repeat(21);
    let long = format!("(01)09520123456788(21){serial}");
    assert_eq!(scan_err(&long), Gs1Error::TooLong { ai: "21".into() });
    // In scanner data a variable-length value runs to the separator.
    assert_eq!(
        scan_err(&format!("010952012345678821{serial}")),
        Gs1Error::TooLong { ai: "21".into() }
    );
    assert_eq!(
        scan_err("(01)0952012345678"),
        Gs1Error::TooShort { ai: "01".into() }
    );
    assert_eq!(
        scan_err("(01)09520123456788(10)"),
        Gs1Error::EmptyValue { ai: "10".into() }
    );
}

#[test]
fn malformed_input() {
    assert_eq!(scan_err(""), Gs1Error::Empty);
    assert_eq!(scan_err("\u{1d}\r\n"), Gs1Error::Empty);
    assert!(matches!(scan_err("(01"), Gs1Error::Bracketed(_)));
    assert!(matches!(
        parse_bracketed("01)x"),
        Err(Gs1Error::Bracketed(_))
    ));
    assert!(matches!(scan_err("]X5010952"), Gs1Error::Symbology(_)));
    assert!(matches!(
        parse_unbracketed("]d10109520123456788"),
        Err(Gs1Error::Symbology(_))
    ));
    let many = "(99)X".repeat(MAX_AIS + 1);
    assert_eq!(
        parse_bracketed(&many),
        Err(Gs1Error::TooManyAis { max: MAX_AIS })
    );
    assert!(parse_bracketed(&"(99)X".repeat(MAX_AIS)).is_ok());
}

#[test]
fn rules_between_ais() {
    assert_eq!(
        scan_err("(01)09520123456788(10)A(10)B"),
        Gs1Error::Repeated { ai: "10".into() }
    );
    assert!(parse_scan("(01)09520123456788(10)A(10)A").is_ok());
    assert_eq!(
        scan_err("(01)09520123456788(02)09520123456788"),
        // (02) excludes (01); (01) does not name (02).
        Gs1Error::Excluded {
            ai: "02".into(),
            other: "01".into()
        }
    );
    assert_eq!(
        scan_err("(21)ABC"),
        Gs1Error::Requires {
            ai: "21".into(),
            required: "01,03,8006".into()
        }
    );
    assert_eq!(
        scan_err("(253)1234567890128(8030)ABC"),
        Gs1Error::DigSigUnserialised { ai: "253".into() }
    );
}

#[test]
fn digital_link_refusals() {
    assert!(matches!(
        parse_digital_link("ftp://a/01/09520123456788"),
        Err(Gs1Error::Uri(_))
    ));
    // Not a URI to parse_scan, so read as AI data, which it is not either.
    assert!(matches!(
        scan_err("ftp://a/01/09520123456788"),
        Gs1Error::NoAiPrefix(_)
    ));
    assert!(matches!(
        parse_digital_link("HtTp://a/01/09520123456788"),
        Err(Gs1Error::Uri(_))
    ));
    assert!(matches!(
        scan_err("https://a/01/09520123456788<"),
        Gs1Error::Uri(_)
    ));
    assert!(matches!(
        scan_err("https://a$/01/09520123456788"),
        Gs1Error::Uri(_)
    ));
    assert_eq!(
        scan_err("https://example.com/foo/bar"),
        Gs1Error::NoPrimaryKey
    );
    assert_eq!(
        scan_err("https://id.gs1.org/01/09520123456788/21/X/10/Y"),
        Gs1Error::KeyQualifiers("01 21 10".into())
    );
    assert_eq!(
        scan_err("https://id.gs1.org/01/0952012345678%008"),
        Gs1Error::Nul { ai: "01".into() }
    );
    assert_eq!(
        scan_err("https://id.gs1.org/01/09520123456788/10/A?10=A"),
        Gs1Error::DuplicateInUri("10".into())
    );
    assert_eq!(
        scan_err("https://id.gs1.org/01/09520123456788?8200=x"),
        Gs1Error::NotDataAttribute("8200".into())
    );
    assert_eq!(
        scan_err("https://id.gs1.org/01/09520123456788?10=A"),
        Gs1Error::ShouldBeInPath("10".into())
    );
    assert!(matches!(uri_unescape("A%00", false), Err(Gs1Error::Uri(_))));
}

#[test]
fn bad_dates() {
    assert!(matches!(
        expand_yymmdd("251301", 2026),
        Err(Gs1Error::Date { .. })
    ));
    assert!(matches!(
        scan_err("(01)09520123456788(17)250230"),
        Gs1Error::Lint {
            lint: LintError::IllegalDay,
            ..
        }
    ));
}
