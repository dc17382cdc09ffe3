//! Property tests: (01)+(21)+(10)+(17) element strings survive bracketed → scanner → parse and
//! bracketed → Digital Link → parse unchanged, and `parse_scan` never panics on any text and
//! renders back what it accepts.

use medledger_gs1::*;
use proptest::prelude::*;

/// A GTIN-14 with a correct check digit.
fn gtin() -> impl Strategy<Value = String> {
    "[0-9]{13}".prop_map(|body| {
        let check = char::from(check_digit(body.as_bytes()));
        format!("{body}{check}")
    })
}

/// 1 to 20 characters of GS1's character set 82, the syntax of a serial or a lot.
fn cset82() -> impl Strategy<Value = String> {
    "[!\"%&'()*+,\\-./0-9:;<=>?A-Z_a-z]{1,20}"
}

/// YYMMDD, day 00 included (the last day of the month, allowed in (17)).
fn expiry() -> impl Strategy<Value = String> {
    (0u8..100, 1u8..=12, 0u8..=28).prop_map(|(y, m, d)| format!("{y:02}{m:02}{d:02}"))
}

fn element_string() -> impl Strategy<Value = ElementString> {
    (gtin(), cset82(), cset82(), expiry()).prop_map(|(gtin, serial, lot, expiry)| ElementString {
        ais: vec![
            ("01".to_owned(), gtin),
            ("21".to_owned(), serial),
            ("10".to_owned(), lot),
            ("17".to_owned(), expiry),
        ],
    })
}

fn sorted(es: &ElementString) -> Vec<(String, String)> {
    let mut ais = es.ais.clone();
    ais.sort();
    ais
}

proptest! {
    #[test]
    fn bracketed_scanner_round_trip(es in element_string()) {
        let bracketed = es.to_bracketed();
        let parsed = parse_bracketed(&bracketed).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&parsed, &es);
        let scanned = parsed.to_scanner();
        prop_assert_eq!(parse_unbracketed(&scanned), Ok(es.clone()));
        prop_assert_eq!(parse_scan(&format!("]d2\u{1d}{scanned}")), Ok(es.clone()));
        prop_assert_eq!(parse_scan(&bracketed), Ok(es.clone()));
    }

    #[test]
    fn bracketed_digital_link_round_trip(es in element_string()) {
        let parsed = parse_bracketed(&es.to_bracketed())
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        for stem in [CANONICAL_STEM, "https://example.com/some/stem/"] {
            let uri = parsed.to_digital_link(stem).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let back = parse_scan(&uri).map_err(|e| TestCaseError::fail(format!("{uri}: {e}")))?;
            // The path puts (10) before (21) and (17) in the query: the same AIs, reordered.
            prop_assert_eq!(sorted(&back), sorted(&es));
            prop_assert_eq!(back.get("10"), es.get("10"));
        }
    }

    #[test]
    fn parse_scan_never_panics(input in "\\PC{0,80}") {
        if let Ok(es) = parse_scan(&input) {
            prop_assert_eq!(parse_bracketed(&es.to_bracketed()), Ok(es.clone()));
        }
    }

    #[test]
    fn scanner_like_input_never_panics(input in "(\\]d2)?[0-9A-Z()%/\u{1d}]{0,60}") {
        if let Ok(es) = parse_scan(&input) {
            prop_assert_eq!(parse_scan(&es.to_scanner()), Ok(es.clone()));
        }
    }
}
