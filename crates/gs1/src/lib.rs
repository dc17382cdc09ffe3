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
