//! What a barcode scanner hands over, in whatever form: a symbology identifier ("]d2" for GS1
//! DataMatrix, "]C1" GS1-128, "]Q3" GS1 QR Code, "]e0" GS1 DataBar, "]J1" GS1 DotCode, "]E0"
//! EAN-13/UPC-A, "]E4" EAN-8, "]d1"/"]Q1" plain DataMatrix/QR carrying a Digital Link URI), raw
//! AI data with GS separators, a bracketed element string typed by a person, or a GS1 Digital
//! Link URI.

use crate::Gs1Error;
use crate::element::{
    self, ElementString, GS, Options, parse_bracketed_with, parse_unbracketed_with_separators,
};

/// Symbology identifiers of carriers whose data is GS1 AI data (FNC1 in first position).
const AI_DATA_SYMBOLOGIES: [&str; 5] = ["C1", "e0", "d2", "Q3", "J1"];

/// Reads scanned or typed GS1 data with the default options: a bracketed element string, raw
/// scanner data (GS separators, optional symbology identifier and leading FNC1), or a GS1 Digital
/// Link URI (http or https, any stem). The AIs come back in order (for a URI: path, then query).
pub fn parse_scan(input: &str) -> Result<ElementString, Gs1Error> {
    parse_scan_with(input, &Options::default())
}

/// [`parse_scan`] with options.
pub fn parse_scan_with(input: &str, opts: &Options) -> Result<ElementString, Gs1Error> {
    // Scanners in keyboard mode end a read with CR or LF, which no GS1 value can contain.
    let input = input.trim_end_matches(['\r', '\n']);
    if input.is_empty() {
        return Err(Gs1Error::Empty);
    }
    if let Some(rest) = input.strip_prefix(']') {
        let id = rest
            .get(..2)
            .ok_or_else(|| Gs1Error::Symbology(input.chars().take(3).collect()))?;
        let data = &rest[2..];
        return match id {
            _ if AI_DATA_SYMBOLOGIES.contains(&id) => {
                parse_unbracketed_with_separators(data, &[GS], opts)
            }
            "d1" | "Q1" if looks_like_uri(data) => crate::dl::parse_digital_link_with(data, opts),
            // EAN/UPC carry a bare GTIN: 13 digits (UPC-A with a leading zero) or 8.
            "E0" | "E4" => {
                let width = if id == "E0" { 13 } else { 8 };
                if data.len() != width || !data.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(Gs1Error::Symbology(format!("]{id} with {data:?}")));
                }
                let gtin = format!("{:0>14}", data);
                element::parse_bracketed_with(&format!("(01){gtin}"), opts)
            }
            _ => Err(Gs1Error::Symbology(format!("]{id}"))),
        };
    }
    if input.starts_with('(') {
        return parse_bracketed_with(input, opts);
    }
    if looks_like_uri(input) {
        return crate::dl::parse_digital_link_with(input, opts);
    }
    parse_unbracketed_with_separators(input, &[GS], opts)
}

/// Whether `s` starts like an http(s) URI (the Digital Link parser then checks the case).
fn looks_like_uri(s: &str) -> bool {
    let head = s.get(..8).unwrap_or(s).to_ascii_lowercase();
    head.starts_with("http://") || head.starts_with("https://")
}

/// The AI data after a symbology identifier that announces GS1 AI data; data without one is
/// returned as it is.
pub(crate) fn strip_ai_symbology(input: &str) -> Result<&str, Gs1Error> {
    match input.strip_prefix(']') {
        None => Ok(input),
        Some(rest) => match rest.get(..2) {
            Some(id) if AI_DATA_SYMBOLOGIES.contains(&id) => Ok(&rest[2..]),
            _ => Err(Gs1Error::Symbology(input.chars().take(3).collect())),
        },
    }
}
