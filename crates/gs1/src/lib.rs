//! GS1 identifiers, spoken the way GS1's standards define them.
//!
//! The keys the ledger stores (GTIN-14, SSCC, GLN) with their check digits live in [`keys`].
//! Everything about Application Identifiers is table-driven from GS1's Barcode Syntax Dictionary,
//! embedded from `data/`: element strings in bracketed form "(01)09520123456788(10)ABC", as a
//! scanner sends them (FNC1 as GS, ASCII 29) and in GS1's "^" notation; GS1 Digital Link URIs in
//! both directions; every linter the dictionary names and its `req=`/`ex=` rules.
//!
//! The usual entry point is [`parse_scan`], which takes any of those forms. Nothing here does IO
//! or reads a clock: dates with two-digit years are placed with a reference year the caller gives
//! ([`expand_yymmdd`]), so the same input gives the same answer on every node.
//!
//! ```
//! use medledger_gs1::{CANONICAL_STEM, parse_scan};
//!
//! // A GS1 DataMatrix read: symbology identifier, then AI data with GS after the lot.
//! let es = parse_scan("]d2010952012345678817250600101234A\u{1d}21SN7")?;
//! assert_eq!(es.get("10"), Some("1234A"));
//! assert_eq!(es.to_bracketed(), "(01)09520123456788(17)250600(10)1234A(21)SN7");
//! let expiry = es.date("17", 2026)?.map(|d| (d.year, d.month, d.day));
//! assert_eq!(expiry, Some((2025, 6, 30))); // day 00: the last day of the month
//! assert_eq!(
//!     es.to_digital_link(CANONICAL_STEM)?,
//!     "https://id.gs1.org/01/09520123456788/10/1234A/21/SN7?17=250600"
//! );
//! # Ok::<(), medledger_gs1::Gs1Error>(())
//! ```

mod decode;
mod dictionary;
mod dl;
mod element;
mod error;
pub mod keys;
mod lint;
mod scan;
mod tables;

pub use decode::{
    Decimal, Gs1DateTime, Quantity, ai_title, components, decode_date, decode_quantity,
    expand_yymmdd,
};
pub use dictionary::{
    AiEntry, Component, Cset, Linter, ai_entries, ai_entry, ai_length_by_prefix, is_valid_dl_path,
};
pub use dl::{
    CANONICAL_STEM, DigitalLink, parse_digital_link, parse_digital_link_with, uri_escape,
    uri_unescape,
};
pub use element::{
    ElementString, GS, MAX_AIS, Options, parse_bracketed, parse_bracketed_with,
    parse_caret_notation, parse_caret_notation_with, parse_unbracketed, parse_unbracketed_with,
    parse_unbracketed_with_separators, validate_associations,
};
pub use error::{Gs1Error, LintError};
pub use keys::{GcpLengthTable, Gln, Gs1Prefix, Gtin, GtinFormat, Sscc, check_digit, gs1_prefix};
pub use lint::is_cset82;
pub use scan::{parse_scan, parse_scan_with};
pub use tables::iso4217_alpha;
