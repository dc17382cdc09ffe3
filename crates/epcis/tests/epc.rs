//! EPC URN ↔ GS1 Digital Link round trips for generated SGTINs and SSCCs: both spellings read as
//! the same [`Epc`], each renders back exactly, and the event-hash normaliser agrees with
//! [`Epc::to_digital_link`].

use medledger_epcis::{Epc, normalise_to_digital_link};
use proptest::prelude::*;

/// GS1 AI encodable character set 82.
const CSET82: &str =
    "!\"%&'()*+,-./0123456789:;<=>?ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz";

/// The EPC URN spelling of a serial: the seven characters the Tag Data Standard escapes.
fn urn_escape(serial: &str) -> String {
    serial
        .chars()
        .map(|character| match character {
            '"' => "%22".to_owned(),
            '%' => "%25".to_owned(),
            '&' => "%26".to_owned(),
            '/' => "%2F".to_owned(),
            '<' => "%3C".to_owned(),
            '>' => "%3E".to_owned(),
            '?' => "%3F".to_owned(),
            other => other.to_string(),
        })
        .collect()
}

fn digits(length: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(0u8..10, length).prop_map(|digits| {
        digits
            .into_iter()
            .map(|digit| char::from(b'0' + digit))
            .collect()
    })
}

fn serial() -> impl Strategy<Value = String> {
    let characters: Vec<char> = CSET82.chars().collect();
    proptest::collection::vec(proptest::sample::select(characters), 1..=20)
        .prop_map(|characters| characters.into_iter().collect())
}

/// A company prefix length, the company prefix and the remaining digits of a key with `total`
/// digits besides the check digit.
fn company_and_rest(total: usize) -> impl Strategy<Value = (usize, String, String)> {
    (6usize..=12)
        .prop_flat_map(move |length| (Just(length), digits(length), digits(total - length)))
}

/// Checks one identifier both ways: URN → Epc → Digital Link → Epc → URN.
fn check(urn: &str, company_prefix_len: usize) -> Result<Epc, TestCaseError> {
    let epc = Epc::parse(urn);
    prop_assert!(!matches!(epc, Epc::Other(_)), "{urn} not read");
    let link = epc.to_digital_link();
    prop_assert!(link.is_some(), "{epc:?} has no Digital Link");
    let link = link.unwrap_or_default();
    prop_assert_eq!(&Epc::parse(&link), &epc, "{}", link);
    prop_assert_eq!(epc.to_urn(company_prefix_len), Some(urn.to_owned()));
    prop_assert_eq!(normalise_to_digital_link(urn), Some(link.clone()));
    prop_assert_eq!(
        normalise_to_digital_link(&link),
        epc.to_digital_link().filter(|link| !link.contains('%'))
    );
    Ok(epc)
}

proptest! {
    // No failure-persistence file: proptest looks for one next to lib.rs, which an integration
    // test does not have.
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn sgtin_round_trips((length, company, item) in company_and_rest(13), serial in serial()) {
        let urn = format!("urn:epc:id:sgtin:{company}.{item}.{}", urn_escape(&serial));
        let epc = check(&urn, length)?;
        let Epc::Sgtin { gtin, serial: read } = epc else {
            return Err(TestCaseError::fail("not an SGTIN"));
        };
        prop_assert_eq!(gtin.len(), 14);
        prop_assert_eq!(&gtin[1..1 + length], company.as_str());
        prop_assert_eq!(read, serial);
    }

    #[test]
    fn sscc_round_trips((length, company, serial) in company_and_rest(17)) {
        let urn = format!("urn:epc:id:sscc:{company}.{serial}");
        let epc = check(&urn, length)?;
        let Epc::Sscc(sscc) = epc else {
            return Err(TestCaseError::fail("not an SSCC"));
        };
        prop_assert_eq!(sscc.len(), 18);
        prop_assert_eq!(&sscc[..1], &serial[..1]);
    }

    #[test]
    fn digital_links_with_short_gtins(body in digits(13), serial in "[A-Za-z0-9]{1,20}", length in 6usize..=12) {
        let urn = format!("urn:epc:id:sgtin:{}.{}{}.{serial}", &body[1..1 + length], &body[..1], &body[1 + length..]);
        let epc = Epc::parse(&urn);
        let Epc::Sgtin { gtin, .. } = &epc else {
            return Err(TestCaseError::fail("not an SGTIN"));
        };
        prop_assert_eq!(&gtin[..13], body.as_str());
        // A GTIN-13 (indicator 0) may be written without its leading zero, on any domain.
        if let Some(short) = gtin.strip_prefix('0') {
            let written = format!("https://brand.example/01/{short}/21/{serial}");
            prop_assert_eq!(Epc::parse(&written), epc.clone());
        }
        prop_assert_eq!(epc.to_urn(length), Some(urn));
    }
}
