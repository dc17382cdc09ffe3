//! Scanned or typed GS1 data from untrusted scanners and users: `parse_scan` never panics, and
//! whatever it accepts reads back the same from its bracketed and scanner renderings.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let Ok(input) = std::str::from_utf8(bytes) else {
        return;
    };
    if let Ok(es) = medledger_gs1::parse_scan(input) {
        assert_eq!(
            medledger_gs1::parse_bracketed(&es.to_bracketed()).as_ref(),
            Ok(&es)
        );
        assert_eq!(
            medledger_gs1::parse_scan(&es.to_scanner()).as_ref(),
            Ok(&es)
        );
        let _ = es.to_digital_link(medledger_gs1::CANONICAL_STEM);
    }
});
