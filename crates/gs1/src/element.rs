//! GS1 element strings: a list of (AI, value) pairs, read from and written to the bracketed
//! human-readable form "(01)09520123456788(10)ABC", the unbracketed form a scanner transmits
//! (FNC1 sent as ASCII 29, GS) and the "^" notation GS1's tools use for FNC1. Every value is
//! checked against the syntax dictionary (lengths, character sets, linters), and the message as a
//! whole against the dictionary's pairing rules (repeats, `ex=`, `req=`).

use serde::{Deserialize, Serialize};

use crate::Gs1Error;
use crate::dictionary::{AiEntry, DICTIONARY, Linter};
use crate::lint;

/// ASCII 29, the group separator scanners transmit for FNC1.
pub const GS: char = '\u{1d}';

/// The most AIs one message may carry (as GS1's syntax engine allows).
pub const MAX_AIS: usize = 64;

/// What to accept and which rules to enforce. [`Options::default`] is GS1's syntax engine's
/// default: only dictionary AIs, every pairing rule enforced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// Accept AIs that are not in the dictionary (as variable-length CSET 82 data, or with the
    /// length GS1 predefines for their first two digits).
    pub permit_unknown_ais: bool,
    /// Accept GTIN-8, -12 and -13 for AI (01) in Digital Link URIs, zero-padded to GTIN-14.
    pub permit_zero_suppressed_gtin_in_dl_uris: bool,
    /// Accept the legacy convenience alphas ("/gtin/", "/ser/", "/sscc/", ...) in Digital Link
    /// URI paths.
    pub permit_convenience_alphas: bool,
    /// Refuse unknown AIs as Digital Link query-string data attributes.
    pub unknown_ai_not_dl_attr: bool,
    /// Repeated AIs must carry the same value.
    pub check_repeats: bool,
    /// Enforce the dictionary's `ex=` rules (AIs that must not appear together).
    pub check_exclusions: bool,
    /// Enforce the dictionary's `req=` rules (AIs that need other AIs).
    pub check_requisites: bool,
    /// AI (8030), a digital signature, needs its key's serial component.
    pub check_digsig_serial_key: bool,
    /// Run the date and time linters. Off only to read data known to carry bad dates.
    pub lint_dates: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            permit_unknown_ais: false,
            permit_zero_suppressed_gtin_in_dl_uris: false,
            permit_convenience_alphas: false,
            unknown_ai_not_dl_attr: true,
            check_repeats: true,
            check_exclusions: true,
            check_requisites: true,
            check_digsig_serial_key: true,
            lint_dates: true,
        }
    }
}

impl Options {
    /// Each value checked on its own, none of the rules between AIs.
    pub fn syntax_only() -> Self {
        Self {
            check_repeats: false,
            check_exclusions: false,
            check_requisites: false,
            check_digsig_serial_key: false,
            ..Self::default()
        }
    }
}

/// A GS1 message: AIs and their values, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ElementString {
    pub ais: Vec<(String, String)>,
}

impl ElementString {
    /// The value of the first `ai`.
    pub fn get(&self, ai: &str) -> Option<&str> {
        self.ais
            .iter()
            .find(|(a, _)| a == ai)
            .map(|(_, v)| v.as_str())
    }

    /// The GTIN of AI (01).
    pub fn gtin(&self) -> Option<crate::Gtin> {
        self.get("01").and_then(|v| crate::Gtin::parse(v).ok())
    }

    /// The SSCC of AI (00).
    pub fn sscc(&self) -> Option<crate::Sscc> {
        self.get("00").and_then(|v| crate::Sscc::parse(v).ok())
    }

    /// The date of a date AI ((17) expiry, (11) production, ...) with two-digit years placed
    /// around `reference_year` (see [`crate::expand_yymmdd`]); `None` if the AI is absent.
    pub fn date(
        &self,
        ai: &str,
        reference_year: i32,
    ) -> Result<Option<crate::Gs1DateTime>, Gs1Error> {
        match self.get(ai) {
            Some(value) => crate::decode_date(ai, value, reference_year),
            None => Ok(None),
        }
    }

    /// The values of every AI that starts with `prefix` (an AI, or its first digits: "723" finds
    /// the certification references (7230) to (7239)).
    pub fn values_with_prefix(&self, prefix: &str) -> Vec<&str> {
        self.ais
            .iter()
            .filter(|(a, _)| a.starts_with(prefix))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The values of every AI whose dictionary title contains `title` ("BATCH" and "LOT" both
    /// find AI (10), "BATCH/LOT").
    pub fn values_by_title(&self, title: &str) -> Vec<&str> {
        self.ais
            .iter()
            .filter(|(a, _)| DICTIONARY.get(a).is_some_and(|e| e.title.contains(title)))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The bracketed human-readable form, "(01)09520123456788(10)ABC"; a "(" inside a value is
    /// written "\(" so the result parses back.
    pub fn to_bracketed(&self) -> String {
        let mut out = String::new();
        for (ai, value) in &self.ais {
            out.push('(');
            out.push_str(ai);
            out.push(')');
            out.push_str(&value.replace('(', "\\("));
        }
        out
    }

    /// The unbracketed form a scanner transmits: no leading FNC1, and a GS only where a
    /// variable-length value is followed by another AI.
    pub fn to_scanner(&self) -> String {
        self.unbracketed(GS)
    }

    /// The form GS1's syntax engine writes, "^" for FNC1, starting with one.
    pub fn to_caret_notation(&self) -> String {
        format!("^{}", self.unbracketed('^'))
    }

    fn unbracketed(&self, fnc1: char) -> String {
        let mut out = String::new();
        for (i, (ai, value)) in self.ais.iter().enumerate() {
            if i > 0 && needs_separator(&self.ais[i - 1].0) {
                out.push(fnc1);
            }
            out.push_str(ai);
            out.push_str(value);
        }
        out
    }

    /// Checks every value and the rules between AIs again (for an element string built by hand).
    pub fn validate(&self, opts: &Options) -> Result<(), Gs1Error> {
        if self.ais.is_empty() {
            return Err(Gs1Error::Empty);
        }
        if self.ais.len() > MAX_AIS {
            return Err(Gs1Error::TooManyAis { max: MAX_AIS });
        }
        for (ai, value) in &self.ais {
            let entry = lookup(ai, opts)?;
            check_value(ai, entry, value.as_bytes(), opts)?;
        }
        validate_associations(&self.ais, opts)
    }
}

impl std::fmt::Display for ElementString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_bracketed())
    }
}

/// Whether a GS must follow `ai`'s value when another AI comes after it. Unknown AIs are given
/// one unless GS1 predefines their length: a spare separator is harmless, a missing one is not.
fn needs_separator(ai: &str) -> bool {
    DICTIONARY.lookup(ai, true).is_none_or(|e| e.fnc1)
}

pub(crate) fn lookup(ai: &str, opts: &Options) -> Result<&'static AiEntry, Gs1Error> {
    DICTIONARY
        .lookup(ai, opts.permit_unknown_ais)
        .ok_or_else(|| Gs1Error::UnknownAi(ai.to_owned()))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Checks the components of `value` in order, as far as `value` reaches, and says how many bytes
/// they took.
pub(crate) fn check_components(
    ai: &str,
    entry: &AiEntry,
    value: &[u8],
    opts: &Options,
) -> Result<usize, Gs1Error> {
    if value.is_empty() {
        return Err(Gs1Error::EmptyValue { ai: ai.to_owned() });
    }
    let mut pos = 0;
    for comp in &entry.components {
        let len = (value.len() - pos).min(comp.max);
        if comp.optional && len == 0 {
            continue;
        }
        if len < comp.min {
            return Err(Gs1Error::TooShort { ai: ai.to_owned() });
        }
        let data = &value[pos..pos + len];
        let checked = lint::cset(comp.cset, data).and_then(|()| {
            comp.linters.iter().try_for_each(|&l| {
                if !opts.lint_dates && l.is_date_or_time() {
                    return Ok(());
                }
                // GS1 General Specifications: the time of AIs (4324) and (4325) is "9999" when
                // only the date is given.
                if l == Linter::Hhmi && matches!(ai, "4324" | "4325") && data == b"9999" {
                    return Ok(());
                }
                lint::run(l, data)
            })
        });
        if let Err((lint, at, bad)) = checked {
            let start = (pos + at).min(value.len());
            let end = (start + bad).min(value.len());
            let comp_end = (pos + len).max(end);
            let markup = format!(
                "({ai}){}|{}|{}",
                text(&value[..start]),
                text(&value[start..end]),
                text(&value[end..comp_end])
            );
            return Err(Gs1Error::Lint {
                ai: ai.to_owned(),
                lint,
                markup,
            });
        }
        pos += len;
    }
    Ok(pos)
}

/// Checks a value known to be whole (bracketed, or from a Digital Link URI).
pub(crate) fn check_value(
    ai: &str,
    entry: &AiEntry,
    value: &[u8],
    opts: &Options,
) -> Result<(), Gs1Error> {
    check_length(ai, entry, value)?;
    if check_components(ai, entry, value, opts)? != value.len() {
        return Err(Gs1Error::TooLong { ai: ai.to_owned() });
    }
    Ok(())
}

/// The length check done before any linter: a checksum error helps nobody when the value is
/// simply too long.
pub(crate) fn check_length(ai: &str, entry: &AiEntry, value: &[u8]) -> Result<(), Gs1Error> {
    if value.is_empty() {
        return Err(Gs1Error::EmptyValue { ai: ai.to_owned() });
    }
    if value.len() < entry.min_len() {
        return Err(Gs1Error::TooShort { ai: ai.to_owned() });
    }
    if value.len() > entry.max_len() {
        return Err(Gs1Error::TooLong { ai: ai.to_owned() });
    }
    Ok(())
}

/// Turns checked values into an element string and applies the rules between AIs.
pub(crate) fn finish(
    ais: Vec<(String, Vec<u8>)>,
    opts: &Options,
) -> Result<ElementString, Gs1Error> {
    if ais.is_empty() {
        return Err(Gs1Error::Empty);
    }
    if ais.len() > MAX_AIS {
        return Err(Gs1Error::TooManyAis { max: MAX_AIS });
    }
    let ais = ais
        .into_iter()
        .map(|(ai, value)| {
            // Every character set is ASCII, so checked values are text.
            String::from_utf8(value)
                .map(|v| (ai.clone(), v))
                .map_err(|_| Gs1Error::UnknownAi(ai))
        })
        .collect::<Result<Vec<_>, _>>()?;
    validate_associations(&ais, opts)?;
    Ok(ElementString { ais })
}

/// Parses "(01)09520123456788(10)ABC" with the default options.
pub fn parse_bracketed(input: &str) -> Result<ElementString, Gs1Error> {
    parse_bracketed_with(input, &Options::default())
}

/// Parses a bracketed element string. "\(" in a value is a literal "(".
pub fn parse_bracketed_with(input: &str, opts: &Options) -> Result<ElementString, Gs1Error> {
    if input.is_empty() {
        return Err(Gs1Error::Empty);
    }
    let mut rest = input
        .strip_prefix('(')
        .ok_or(Gs1Error::Bracketed("it must start with \"(\""))?;
    let mut pairs = Vec::new();
    loop {
        let (ai, after) = rest
            .split_once(')')
            .ok_or(Gs1Error::Bracketed("an ai is not closed with \")\""))?;
        if !(2..=4).contains(&ai.len()) || !ai.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Gs1Error::UnknownAi(ai.to_owned()));
        }
        let entry = lookup(ai, opts)?;
        // The value runs to the next "(" that is not escaped as "\(".
        let mut value = String::new();
        let mut tail = after;
        let next = loop {
            match tail.find('(') {
                Some(i) if tail[..i].ends_with('\\') => {
                    value.push_str(&tail[..i - 1]);
                    value.push('(');
                    tail = &tail[i + 1..];
                }
                Some(i) => {
                    value.push_str(&tail[..i]);
                    break Some(&tail[i + 1..]);
                }
                None => {
                    value.push_str(tail);
                    break None;
                }
            }
        };
        check_length(ai, entry, value.as_bytes())?;
        pairs.push((ai.to_owned(), entry, value.into_bytes()));
        if pairs.len() > MAX_AIS {
            return Err(Gs1Error::TooManyAis { max: MAX_AIS });
        }
        match next {
            Some(n) => rest = n,
            None => break,
        }
    }
    for (ai, entry, value) in &pairs {
        check_value(ai, entry, value, opts)?;
    }
    finish(
        pairs
            .into_iter()
            .map(|(ai, _, value)| (ai, value))
            .collect(),
        opts,
    )
}

/// Parses unbracketed AI data with the default options: optionally a symbology identifier
/// ("]d2", "]C1", "]Q3", "]e0", "]J1") and a leading FNC1 (GS), then AIs and values with GS after
/// each variable-length value that is not last.
pub fn parse_unbracketed(input: &str) -> Result<ElementString, Gs1Error> {
    parse_unbracketed_with(input, &Options::default())
}

/// [`parse_unbracketed`] with options.
pub fn parse_unbracketed_with(input: &str, opts: &Options) -> Result<ElementString, Gs1Error> {
    let data = crate::scan::strip_ai_symbology(input)?;
    parse_unbracketed_with_separators(data, &[GS], opts)
}

/// Unbracketed AI data in which any of `separators` stands for FNC1 (some scanners are set up to
/// send another character than GS). No symbology identifier; leading separators are skipped.
pub fn parse_unbracketed_with_separators(
    input: &str,
    separators: &[char],
    opts: &Options,
) -> Result<ElementString, Gs1Error> {
    let ais = split_unbracketed(input.as_bytes(), separators, opts)?;
    finish(ais, opts)
}

/// Parses GS1's "^" notation, "^0109520123456788^10ABC", with the default options.
pub fn parse_caret_notation(input: &str) -> Result<ElementString, Gs1Error> {
    parse_caret_notation_with(input, &Options::default())
}

/// Parses GS1's "^" notation: "^" is FNC1 and must come first; "|" separates the linear and 2D
/// components of a composite symbol, each starting with "^".
pub fn parse_caret_notation_with(input: &str, opts: &Options) -> Result<ElementString, Gs1Error> {
    let mut ais = Vec::new();
    for part in input.split('|') {
        let data = part
            .strip_prefix('^')
            .ok_or(Gs1Error::Bracketed("\"^\" notation must start with \"^\""))?;
        ais.extend(split_unbracketed(data.as_bytes(), &['^'], opts)?);
    }
    finish(ais, opts)
}

/// Reads AIs from unbracketed data: each AI is known by its prefix; a fixed-length value takes
/// its length, a variable-length value runs to the next separator.
fn split_unbracketed(
    data: &[u8],
    separators: &[char],
    opts: &Options,
) -> Result<Vec<(String, Vec<u8>)>, Gs1Error> {
    // Separators are matched byte for byte, so only ASCII ones can match.
    let is_sep = |b: u8| {
        separators
            .iter()
            .any(|&s| s.is_ascii() && u32::from(b) == u32::from(s))
    };
    let mut ais = Vec::new();
    let mut i = 0;
    loop {
        // Separators at the start, doubled, after a fixed-length value or at the end carry
        // nothing.
        while i < data.len() && is_sep(data[i]) {
            i += 1;
        }
        if i == data.len() {
            break;
        }
        let rest = &data[i..];
        let (ai, entry) = DICTIONARY
            .lookup_prefix(rest, opts.permit_unknown_ais)
            .ok_or_else(|| Gs1Error::NoAiPrefix(text(&rest[..rest.len().min(8)])))?;
        let ai = text(ai);
        i += ai.len();
        let end = data[i..]
            .iter()
            .position(|&b| is_sep(b))
            .map_or(data.len(), |p| i + p);
        let used = check_components(&ai, entry, &data[i..end], opts)?;
        ais.push((ai.clone(), data[i..i + used].to_vec()));
        if ais.len() > MAX_AIS {
            return Err(Gs1Error::TooManyAis { max: MAX_AIS });
        }
        i += used;
        if entry.fnc1 && i < data.len() && !is_sep(data[i]) {
            return Err(Gs1Error::TooLong { ai });
        }
    }
    if ais.is_empty() {
        return Err(Gs1Error::Empty);
    }
    Ok(ais)
}

/// Whether `pattern` (an AI, or an AI with trailing "n" wildcards, "31nn") matches `ai`.
fn pattern_matches(pattern: &str, ai: &str) -> bool {
    pattern.len() == ai.len() && ai.starts_with(pattern.trim_end_matches('n'))
}

/// AIs whose serial component is optional in the dictionary but which GS1 requires serialised
/// when a digital signature, AI (8030), signs them.
const SERIALISABLE_KEYS: [&str; 3] = ["253", "255", "8003"];

/// Applies the rules between AIs that `opts` enables: repeated AIs carry one value; `ex=` AIs do
/// not appear together; every `req=` rule is met; (8030) signs only serialised keys.
pub fn validate_associations(ais: &[(String, String)], opts: &Options) -> Result<(), Gs1Error> {
    for (i, (ai, value)) in ais.iter().enumerate() {
        if opts.check_repeats && ais[i + 1..].iter().any(|(a, v)| a == ai && v != value) {
            return Err(Gs1Error::Repeated { ai: ai.clone() });
        }
        let Some(entry) = DICTIONARY.lookup(ai, true) else {
            continue;
        };
        // An AI never excludes or satisfies itself, even when it matches a pattern.
        let others = || ais.iter().map(|(a, _)| a).filter(move |a| *a != ai);
        if opts.check_exclusions {
            for pattern in &entry.excludes {
                if let Some(other) = others().find(|a| pattern_matches(pattern, a)) {
                    return Err(Gs1Error::Excluded {
                        ai: ai.clone(),
                        other: other.clone(),
                    });
                }
            }
        }
        if opts.check_requisites {
            for rule in &entry.requires {
                let met = rule.iter().any(|all| {
                    all.iter()
                        .all(|pattern| others().any(|a| pattern_matches(pattern, a)))
                });
                if !met {
                    let required = rule
                        .iter()
                        .map(|all| all.join("+"))
                        .collect::<Vec<_>>()
                        .join(",");
                    return Err(Gs1Error::Requires {
                        ai: ai.clone(),
                        required,
                    });
                }
            }
        }
    }
    if opts.check_digsig_serial_key && ais.iter().any(|(a, _)| a == "8030") {
        for (ai, value) in ais {
            if SERIALISABLE_KEYS.contains(&ai.as_str())
                && let Some(entry) = DICTIONARY.get(ai)
                && value.len() <= entry.min_len()
            {
                return Err(Gs1Error::DigSigUnserialised { ai: ai.clone() });
            }
        }
    }
    Ok(())
}
