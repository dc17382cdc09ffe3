//! GS1 DataMatrix: an element string framed with FNC1, encoded by the `datamatrix` crate.
//!
//! GS1 mode needs FNC1 (codeword 232) first and as the separator after a variable-length element.
//! `datamatrix` 0.3 writes the leading FNC1 but takes `&[u8]` input, which has no way to say FNC1
//! later on: a GS byte (29) becomes the ASCII codeword 30. So the symbol is built in three steps
//! from the crate's public parts:
//!
//! 1. encode with ASCII encodation only. There each input byte of our charset is one codeword of
//!    its own (or two digits share one), so codeword 30 means GS and nothing else, and swapping it
//!    for 232 keeps the length. C40, Text, X12, EDIFACT and Base256 pack bytes across codewords, so
//!    the swap would not be sound there. GS1 element strings are mostly digits, which ASCII packs
//!    two to a codeword anyway, so the symbol is rarely bigger for it.
//! 2. replace each codeword 30 before the pad with 232;
//! 3. recompute the Reed–Solomon codewords (`datamatrix::errorcode`) and place the modules
//!    (`datamatrix::placement`).

use datamatrix::placement::MatrixMap;
use datamatrix::{DataMatrixBuilder, EncodationType, SymbolList};

use crate::{LabelError, Symbol};

/// Longest element string accepted, in bytes. A unit's label carries a handful of AIs (GTIN,
/// serial, lot, expiry, perhaps a national code); 256 is far beyond that and keeps the symbol
/// printable on a pack.
pub const MAX_ELEMENT_STRING_LEN: usize = 256;

const WHAT: &str = "element string";
/// ASCII group separator, standing for FNC1 in the scanner form of an element string.
const GS: u8 = 0x1d;
/// FNC1 in ASCII encodation (ISO/IEC 16022).
const FNC1: u8 = 232;
/// What ASCII encodation makes of a GS byte: the byte value plus one.
const ASCII_GS: u8 = GS + 1;
/// First pad codeword; the (randomised) pads after it may take any value, 30 included, so the swap
/// stops here.
const PAD: u8 = 129;

/// GS1 DataMatrix (ECC 200) of an element string given in unbracketed "scanner" form: AIs and
/// values concatenated, with ASCII 29 (GS, '\x1d') where a separator follows a variable-length AI,
/// no leading FNC1. The symbol starts with FNC1 (GS1 mode) and each GS becomes FNC1.
///
/// The symbol is square (the shape pharmaceutical packs and their scanners expect) and the
/// smallest square that holds the data.
pub fn gs1_datamatrix(element_string: &str) -> Result<Symbol, LabelError> {
    let bytes = element_string.as_bytes();
    check_element_string(bytes)?;

    let encoded = DataMatrixBuilder::new()
        .with_encodation_types(EncodationType::Ascii)
        // Macros 05/06 would replace a "[)>" header with one codeword; GS1 data never has one, but
        // nothing else may stand in codeword positions we reason about.
        .with_macros(false)
        .with_fnc1_start(true)
        .with_symbol_list(SymbolList::default().enforce_square())
        .encode(bytes)
        .map_err(|_| LabelError::DataMatrix("the data does not fit in any square symbol"))?;
    let size = encoded.size;
    let mut data = encoded.data_codewords().to_vec();

    if data.first() != Some(&FNC1) {
        return Err(LabelError::DataMatrix(
            "the symbol does not start with fnc1",
        ));
    }
    let end = data.iter().position(|&c| c == PAD).unwrap_or(data.len());
    let mut swapped = 0;
    for codeword in data.iter_mut().take(end).skip(1) {
        match *codeword {
            ASCII_GS => {
                *codeword = FNC1;
                swapped += 1;
            }
            // One ASCII character, or a digit pair: nothing else may appear if the encoder kept to
            // ASCII encodation, and the swap above is only sound if it did.
            1..=128 | 130..=229 => {}
            _ => return Err(LabelError::DataMatrix("the encoder left ascii encodation")),
        }
    }
    if swapped != bytes.iter().filter(|&&b| b == GS).count() {
        return Err(LabelError::DataMatrix(
            "a separator was not encoded as one codeword",
        ));
    }

    // Same length as before the swap, so it matches the symbol size `encode_error` expects.
    let ecc = datamatrix::errorcode::encode_error(&data, size);
    data.extend_from_slice(&ecc);
    let bitmap = MatrixMap::new_with_codewords(&data, size).bitmap();
    Symbol::new(bitmap.width(), bitmap.height(), bitmap.bits().to_vec()).ok_or(
        LabelError::DataMatrix("the placed symbol is not a full grid"),
    )
}

/// The bytes GS1 lets an AI value carry: character set 82 (the invariant characters of ISO/IEC 646,
/// less space), plus '#' from character set 39.
fn gs1_value_byte(b: u8) -> bool {
    matches!(b, b'!' | b'"' | b'#' | b'%'..=b'?' | b'A'..=b'Z' | b'_' | b'a'..=b'z')
}

/// Bounds and shape of the scanner-form element string: only what the symbol can carry, and every
/// element (at the start and after each GS) opening with an AI, whose first two characters are
/// digits. Checking AIs against GS1's dictionary is `medledger-gs1`'s job, not the printer's.
fn check_element_string(bytes: &[u8]) -> Result<(), LabelError> {
    if bytes.is_empty() {
        return Err(LabelError::Empty { what: WHAT });
    }
    if bytes.len() > MAX_ELEMENT_STRING_LEN {
        return Err(LabelError::TooLong {
            what: WHAT,
            max: MAX_ELEMENT_STRING_LEN,
            got: bytes.len(),
        });
    }
    let mut element_start = 0;
    for (at, &byte) in bytes.iter().enumerate() {
        if byte == GS {
            if at == element_start || at + 1 == bytes.len() {
                return Err(LabelError::Malformed {
                    at,
                    why: "a separator must stand between two elements",
                });
            }
            element_start = at + 1;
        } else if !gs1_value_byte(byte) {
            return Err(LabelError::InvalidByte {
                what: WHAT,
                byte,
                at,
            });
        } else if at < element_start + 2 && !byte.is_ascii_digit() {
            return Err(LabelError::Malformed {
                at,
                why: "an element must start with an application identifier",
            });
        }
    }
    // A one-character string (or element) passes the loop with half an AI.
    if bytes.len() < element_start + 2 {
        return Err(LabelError::Malformed {
            at: bytes.len(),
            why: "an element must start with an application identifier",
        });
    }
    Ok(())
}
