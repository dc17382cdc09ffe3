//! EPCIS capture documents from untrusted senders: parsing, hashing and identifier reading never
//! panic, whatever the bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(document) = medledger_epcis::parse_document(bytes) {
        for event in &document.events {
            let _ = medledger_epcis::event_hash_id(&event.json, &document.context);
        }
    }
    if let Ok(text) = std::str::from_utf8(bytes) {
        let _ = medledger_epcis::Epc::parse(text).to_digital_link();
        let _ = medledger_epcis::normalise_to_digital_link(text);
    }
});
