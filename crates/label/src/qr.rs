//! QR code of a URI (in practice a unit's GS1 Digital Link), encoded by the `qrcode` crate.

use qrcode::{Color, EcLevel, QrCode};

use crate::{LabelError, Symbol};

/// Longest URI accepted, in bytes. A Digital Link with GTIN, lot, serial and expiry is well under
/// 200 bytes; 2,048 is the length browsers and link shorteners commonly accept, and still fits a
/// QR code at level M (version 40 holds 2,331 bytes).
pub const MAX_URI_LEN: usize = 2048;

const WHAT: &str = "uri";

/// QR code (error correction level M) of a URI, e.g. a GS1 Digital Link.
///
/// The URI must be printable ASCII with no spaces, as RFC 3986 has it (anything else is
/// percent-encoded before it gets here); control bytes would otherwise ride along invisibly in the
/// symbol.
pub fn qr(uri: &str) -> Result<Symbol, LabelError> {
    let bytes = uri.as_bytes();
    if bytes.is_empty() {
        return Err(LabelError::Empty { what: WHAT });
    }
    if bytes.len() > MAX_URI_LEN {
        return Err(LabelError::TooLong {
            what: WHAT,
            max: MAX_URI_LEN,
            got: bytes.len(),
        });
    }
    if let Some((at, &byte)) = bytes
        .iter()
        .enumerate()
        .find(|(_, b)| !b.is_ascii_graphic())
    {
        return Err(LabelError::InvalidByte {
            what: WHAT,
            byte,
            at,
        });
    }
    // Level M recovers about 15% damage: the usual balance between symbol size and the scuffs a
    // printed pack takes.
    let code = QrCode::with_error_correction_level(bytes, EcLevel::M)
        .map_err(|e| LabelError::Qr(e.to_string()))?;
    let width = code.width();
    let modules = code
        .to_colors()
        .into_iter()
        .map(|c| c == Color::Dark)
        .collect();
    Symbol::new(width, width, modules)
        .ok_or_else(|| LabelError::Qr("the encoder did not return a full grid".to_owned()))
}
