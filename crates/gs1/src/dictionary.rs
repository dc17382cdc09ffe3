//! GS1's Barcode Syntax Dictionary, embedded and parsed once: every Application Identifier with
//! its components, linters, FNC1 need, `req=`/`ex=` rules, Digital Link key qualifiers and title.
//! The file's header describes its format; `data/README.md` says where it comes from.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::LazyLock;

const DICTIONARY_TEXT: &str = include_str!("../data/gs1-syntax-dictionary.txt");

/// The character set of a component (dictionary type letter).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cset {
    /// `N`: digits.
    Numeric,
    /// `X`: GS1 AI encodable character set 82.
    Cset82,
    /// `Y`: character set 39 (upper case, digits, `#-/`).
    Cset39,
    /// `Z`: character set 64 (URI-safe base64).
    Cset64,
}

macro_rules! linters {
    ($($variant:ident => $name:literal,)*) => {
        /// A content check the dictionary names for a component (GS1's "linters").
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        #[non_exhaustive]
        pub enum Linter {
            $($variant,)*
        }

        impl Linter {
            /// The dictionary's name for this linter.
            pub fn name(self) -> &'static str {
                match self {
                    $(Self::$variant => $name,)*
                }
            }

            fn from_name(name: &str) -> Option<Self> {
                match name {
                    $($name => Some(Self::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

linters! {
    Couponcode => "couponcode",
    Couponposoffer => "couponposoffer",
    Csum => "csum",
    Csumalpha => "csumalpha",
    Gcppos1 => "gcppos1",
    Gcppos2 => "gcppos2",
    Hasnondigit => "hasnondigit",
    Hh => "hh",
    Hhmi => "hhmi",
    Hyphen => "hyphen",
    Iban => "iban",
    Importeridx => "importeridx",
    Iso3166 => "iso3166",
    Iso3166999 => "iso3166999",
    Iso3166alpha2 => "iso3166alpha2",
    Iso4217 => "iso4217",
    Iso5218 => "iso5218",
    Latitude => "latitude",
    Longitude => "longitude",
    Mediatype => "mediatype",
    Mi => "mi",
    Nonzero => "nonzero",
    Nozeroprefix => "nozeroprefix",
    Packagetype => "packagetype",
    Pcenc => "pcenc",
    Pieceoftotal => "pieceoftotal",
    Posinseqslash => "posinseqslash",
    Ss => "ss",
    Winding => "winding",
    Yesno => "yesno",
    Yymmd0 => "yymmd0",
    Yymmdd => "yymmdd",
    Yyyymmdd => "yyyymmdd",
    Zero => "zero",
}

impl Linter {
    /// Whether this linter checks a date or a time of day (the checks a caller may switch off to
    /// read data whose dates are known to be bad).
    pub fn is_date_or_time(self) -> bool {
        matches!(
            self,
            Self::Yymmdd
                | Self::Yymmd0
                | Self::Yyyymmdd
                | Self::Hh
                | Self::Mi
                | Self::Ss
                | Self::Hhmi
        )
    }
}

/// One component of an AI's value, e.g. `N13,csum,gcppos1` or `[X..17]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Component {
    pub cset: Cset,
    pub min: usize,
    pub max: usize,
    /// An optional component may be left out when the data ends before it.
    pub optional: bool,
    pub linters: Vec<Linter>,
}

/// One Application Identifier as the dictionary defines it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AiEntry {
    /// The AI, e.g. "01"; empty for the stand-in entries of unknown AIs.
    pub ai: String,
    /// Whether a variable-length field follows, so an FNC1 (GS) must end it unless it is last.
    pub fnc1: bool,
    /// Whether the AI may be a GS1 Digital Link query-string data attribute (flag `?`).
    pub dl_data_attribute: bool,
    pub components: Vec<Component>,
    /// `req=` rules, all of which must hold; each is a list of alternatives, each alternative a
    /// list of AI patterns that must all be present ("01+21").
    pub requires: Vec<Vec<Vec<String>>>,
    /// `ex=` AI patterns that must not appear with this AI.
    pub excludes: Vec<String>,
    /// `dlpkey`: the AI is a Digital Link primary key; each alternative is an ordered list of
    /// optional key qualifiers.
    pub dl_primary_key: Option<Vec<Vec<String>>>,
    pub title: String,
    /// False for the stand-ins used when unknown AIs are permitted.
    pub known: bool,
}

impl AiEntry {
    /// The shortest value: the mandatory components at their minimum length.
    pub fn min_len(&self) -> usize {
        self.components
            .iter()
            .filter(|c| !c.optional)
            .map(|c| c.min)
            .sum()
    }

    /// The longest value.
    pub fn max_len(&self) -> usize {
        self.components.iter().map(|c| c.max).sum()
    }

    fn unknown(len: Option<usize>) -> Self {
        let (min, max) = len.map_or((1, 90), |l| (l, l));
        Self {
            ai: String::new(),
            fnc1: len.is_none(),
            dl_data_attribute: true,
            components: vec![Component {
                cset: Cset::Cset82,
                min,
                max,
                optional: false,
                linters: Vec::new(),
            }],
            requires: Vec::new(),
            excludes: Vec::new(),
            dl_primary_key: None,
            title: "UNKNOWN".to_owned(),
            known: false,
        }
    }
}

pub(crate) struct Dictionary {
    entries: BTreeMap<String, AiEntry>,
    /// AI length for each two-digit prefix (0: no AI starts with it).
    length_by_prefix: [usize; 100],
    /// Every valid Digital Link path: primary key then qualifiers, space-separated.
    dl_paths: BTreeSet<String>,
    unknown_variable: AiEntry,
    unknown_fixed: BTreeMap<usize, AiEntry>,
}

pub(crate) static DICTIONARY: LazyLock<Dictionary> = LazyLock::new(|| {
    // The text is compiled in: if it does not parse, the build is broken, not the input.
    Dictionary::parse(DICTIONARY_TEXT)
        .unwrap_or_else(|e| panic!("the embedded gs1 syntax dictionary is malformed: {e}"))
});

/// Value lengths that the GS1 General Specifications predefine for AI prefixes ("element strings
/// with predefined length"); an unknown AI with such a prefix needs no FNC1 after it.
fn predefined_value_length(prefix: usize) -> Option<usize> {
    match prefix {
        0 => Some(18),
        1..=3 => Some(14),
        4 => Some(16),
        11..=19 => Some(6),
        20 => Some(2),
        31..=36 => Some(6),
        41 => Some(13),
        _ => None,
    }
}

fn all_digits(s: &[u8]) -> bool {
    s.iter().all(u8::is_ascii_digit)
}

fn prefix_index(ai: &[u8]) -> Option<usize> {
    match ai {
        [a, b, ..] if a.is_ascii_digit() && b.is_ascii_digit() => {
            Some(usize::from(a - b'0') * 10 + usize::from(b - b'0'))
        }
        _ => None,
    }
}

const FLAG_CHARS: &str = "*!?\"$%&'()+,-./:;<=>@[\\]^_`{|}~";

impl Dictionary {
    fn parse(text: &str) -> Result<Self, String> {
        let mut entries = BTreeMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim_end();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (body, title) = match line.split_once('#') {
                Some((body, title)) => (body, title.trim()),
                None => (line, ""),
            };
            let mut tokens = body.split_whitespace().peekable();
            let ais = tokens.next().ok_or(format!("line {}: empty", n + 1))?;
            let mut flags = "";
            if let Some(t) = tokens.peek()
                && t.chars().all(|c| FLAG_CHARS.contains(c))
            {
                flags = t;
                tokens.next();
            }
            let mut components = Vec::new();
            while let Some(t) = tokens.peek()
                && (t.starts_with('[') || t.starts_with(['N', 'X', 'Y', 'Z']))
            {
                components.push(parse_component(t).map_err(|e| format!("line {}: {e}", n + 1))?);
                tokens.next();
            }
            if components.is_empty() {
                return Err(format!("line {}: no components", n + 1));
            }
            let mut requires = Vec::new();
            let mut excludes = Vec::new();
            let mut dl_primary_key = None;
            for t in tokens {
                if let Some(list) = t.strip_prefix("req=") {
                    requires.push(
                        list.split(',')
                            .map(|alt| alt.split('+').map(str::to_owned).collect())
                            .collect(),
                    );
                } else if let Some(list) = t.strip_prefix("ex=") {
                    excludes.extend(list.split(',').map(str::to_owned));
                } else if t == "dlpkey" {
                    dl_primary_key = Some(vec![Vec::new()]);
                } else if let Some(list) = t.strip_prefix("dlpkey=") {
                    dl_primary_key = Some(
                        list.split('|')
                            .map(|alt| alt.split(',').map(str::to_owned).collect())
                            .collect(),
                    );
                } else {
                    return Err(format!("line {}: unknown attribute {t:?}", n + 1));
                }
            }
            for ai in expand_range(ais).map_err(|e| format!("line {}: {e}", n + 1))? {
                let entry = AiEntry {
                    ai: ai.clone(),
                    fnc1: !flags.contains('*'),
                    dl_data_attribute: flags.contains('?'),
                    components: components.clone(),
                    requires: requires.clone(),
                    excludes: excludes.clone(),
                    dl_primary_key: dl_primary_key.clone(),
                    title: title.to_owned(),
                    known: true,
                };
                if entries.insert(ai.clone(), entry).is_some() {
                    return Err(format!("line {}: ai {ai} defined twice", n + 1));
                }
            }
        }

        let mut length_by_prefix = [0; 100];
        for ai in entries.keys() {
            let p = prefix_index(ai.as_bytes()).ok_or(format!("bad ai {ai}"))?;
            let slot = length_by_prefix.get_mut(p).ok_or(format!("bad ai {ai}"))?;
            if *slot != 0 && *slot != ai.len() {
                return Err(format!("ais starting {} have different lengths", &ai[..2]));
            }
            *slot = ai.len();
        }

        let mut dl_paths = BTreeSet::new();
        for entry in entries.values() {
            for alternative in entry.dl_primary_key.iter().flatten() {
                // Every ordered selection of the qualifiers is a valid path.
                let n = alternative.len();
                for mask in 0u32..(1 << n) {
                    let mut path = entry.ai.clone();
                    for (i, q) in alternative.iter().enumerate() {
                        if mask & (1 << i) != 0 {
                            path.push(' ');
                            path.push_str(q);
                        }
                    }
                    dl_paths.insert(path);
                }
            }
        }

        let unknown_fixed = [2, 6, 13, 14, 16, 18]
            .into_iter()
            .map(|l| (l, AiEntry::unknown(Some(l))))
            .collect();
        Ok(Self {
            entries,
            length_by_prefix,
            dl_paths,
            unknown_variable: AiEntry::unknown(None),
            unknown_fixed,
        })
    }

    pub(crate) fn get(&self, ai: &str) -> Option<&AiEntry> {
        self.entries.get(ai)
    }

    pub(crate) fn entries(&self) -> impl Iterator<Item = &AiEntry> {
        self.entries.values()
    }

    pub(crate) fn length_by_prefix(&self, ai: &[u8]) -> usize {
        prefix_index(ai)
            .and_then(|p| self.length_by_prefix.get(p))
            .copied()
            .unwrap_or(0)
    }

    /// The stand-in entry for an unknown AI (whose syntax is already checked).
    fn vivify(&self, ai: &[u8]) -> &AiEntry {
        let fixed = prefix_index(ai)
            .filter(|_| self.length_by_prefix(ai) == ai.len())
            .and_then(predefined_value_length)
            .and_then(|l| self.unknown_fixed.get(&l));
        fixed.unwrap_or(&self.unknown_variable)
    }

    /// The entry of the AI `ai` (2 to 4 digits). Unknown AIs are given a stand-in entry when
    /// `permit_unknown`, unless a known AI is a prefix of `ai` or `ai` of a known AI, or AIs with
    /// `ai`'s first two digits have another length.
    pub(crate) fn lookup(&self, ai: &str, permit_unknown: bool) -> Option<&AiEntry> {
        let bytes = ai.as_bytes();
        if !(2..=4).contains(&bytes.len()) || !all_digits(bytes) {
            return None;
        }
        if let Some(entry) = self.entries.get(ai) {
            return Some(entry);
        }
        if !permit_unknown {
            return None;
        }
        let known_is_prefix = (2..bytes.len()).any(|l| self.entries.contains_key(&ai[..l]));
        let is_prefix_of_known = self
            .entries
            .range(ai.to_owned()..)
            .next()
            .is_some_and(|(k, _)| k.starts_with(ai));
        let by_prefix = self.length_by_prefix(bytes);
        if known_is_prefix || is_prefix_of_known || (by_prefix != 0 && by_prefix != bytes.len()) {
            return None;
        }
        Some(self.vivify(bytes))
    }

    /// The AI that starts `data`, and its entry. An unknown AI is only taken when
    /// `permit_unknown` and its length is known from its first two digits.
    pub(crate) fn lookup_prefix<'d>(
        &self,
        data: &'d [u8],
        permit_unknown: bool,
    ) -> Option<(&'d [u8], &AiEntry)> {
        for l in 2..=4 {
            if let Some(ai) = data.get(..l)
                && all_digits(ai)
                && let Ok(s) = std::str::from_utf8(ai)
                && let Some(entry) = self.entries.get(s)
            {
                return Some((ai, entry));
            }
        }
        if !permit_unknown {
            return None;
        }
        let len = self.length_by_prefix(data);
        let ai = data.get(..len).filter(|ai| len != 0 && all_digits(ai))?;
        Some((ai, self.vivify(ai)))
    }

    pub(crate) fn is_dl_path(&self, path: &str) -> bool {
        self.dl_paths.contains(path)
    }

    /// The valid Digital Link paths that start with primary key `key`, in sorted order.
    pub(crate) fn dl_paths_for(&self, key: &str) -> impl Iterator<Item = &str> {
        self.dl_paths
            .range(key.to_owned()..)
            .map(String::as_str)
            .take_while(move |p| p.split(' ').next() == Some(key))
    }
}

fn parse_component(token: &str) -> Result<Component, String> {
    let mut parts = token.split(',');
    let spec = parts.next().unwrap_or_default();
    let (optional, spec) = match spec.strip_prefix('[') {
        Some(inner) => (
            true,
            inner
                .strip_suffix(']')
                .ok_or(format!("unclosed [ in {token:?}"))?,
        ),
        None => (false, spec),
    };
    let mut chars = spec.chars();
    let cset = match chars.next() {
        Some('N') => Cset::Numeric,
        Some('X') => Cset::Cset82,
        Some('Y') => Cset::Cset39,
        Some('Z') => Cset::Cset64,
        _ => return Err(format!("bad component type in {token:?}")),
    };
    let lengths = chars.as_str();
    let number = |s: &str| {
        s.parse::<usize>()
            .map_err(|_| format!("bad length in {token:?}"))
    };
    let (min, max) = match lengths.split_once("..") {
        Some(("", max)) => (1, number(max)?),
        Some((min, max)) => (number(min)?, number(max)?),
        None => {
            let n = number(lengths)?;
            (n, n)
        }
    };
    if min == 0 || min > max {
        return Err(format!("bad lengths in {token:?}"));
    }
    let linters = parts
        .map(|name| Linter::from_name(name).ok_or(format!("unknown linter {name:?}")))
        .collect::<Result<_, _>>()?;
    Ok(Component {
        cset,
        min,
        max,
        optional,
        linters,
    })
}

fn expand_range(ais: &str) -> Result<Vec<String>, String> {
    let (from, to) = ais.split_once('-').unwrap_or((ais, ais));
    if from.len() != to.len()
        || !(2..=4).contains(&from.len())
        || !all_digits(from.as_bytes())
        || !all_digits(to.as_bytes())
    {
        return Err(format!("bad ai {ais:?}"));
    }
    let number = |s: &str| s.parse::<u32>().map_err(|_| format!("bad ai {ais:?}"));
    let (a, b) = (number(from)?, number(to)?);
    if a > b {
        return Err(format!("bad ai range {ais:?}"));
    }
    Ok((a..=b)
        .map(|v| format!("{v:0width$}", width = from.len()))
        .collect())
}

/// The dictionary entry of a known AI.
pub fn ai_entry(ai: &str) -> Option<&'static AiEntry> {
    DICTIONARY.get(ai)
}

/// Every AI of the dictionary, in AI order.
pub fn ai_entries() -> impl Iterator<Item = &'static AiEntry> {
    DICTIONARY.entries()
}

/// The length of every AI that starts with the two digits `prefix`, if any AI does.
pub fn ai_length_by_prefix(prefix: &str) -> Option<usize> {
    if prefix.len() != 2 {
        return None;
    }
    Some(DICTIONARY.length_by_prefix(prefix.as_bytes())).filter(|&l| l != 0)
}

/// Whether `ais` (a primary key, then key qualifiers) is a valid GS1 Digital Link URI path.
pub fn is_valid_dl_path(ais: &[&str]) -> bool {
    DICTIONARY.is_dl_path(&ais.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_dictionary_parses() {
        let d = &*DICTIONARY;
        assert!(d.entries.len() > 400, "{}", d.entries.len());
        let gtin = d
            .get("01")
            .map(|e| (e.fnc1, e.dl_data_attribute, e.title.as_str()));
        assert_eq!(gtin, Some((false, true, "GTIN")));
        let e = d.get("3103");
        assert_eq!(e.map(|e| e.excludes.clone()), Some(vec!["310n".to_owned()]));
        let e = d
            .get("8030")
            .map(|e| e.requires.clone())
            .unwrap_or_default();
        assert!(e[0].contains(&vec!["01".to_owned(), "21".to_owned()]));
        assert!(d.is_dl_path("01 22 10 21"));
        assert!(d.is_dl_path("01 235"));
        assert!(!d.is_dl_path("01 10 22"));
        assert!(!d.is_dl_path("01 22 235"));
        let e = d.get("8110");
        assert_eq!(e.map(|e| e.title.as_str()), Some(""));
    }

    #[test]
    fn unknown_ais_are_vivified_only_where_their_length_is_known() {
        let d = &*DICTIONARY;
        assert!(d.lookup("89", false).is_none());
        assert!(d.lookup("89", true).is_some_and(|e| !e.known && e.fnc1));
        assert!(d.lookup("011", true).is_none());
        assert!(d.lookup("800", true).is_none());
        assert!(d.lookup("80", true).is_none());
        assert!(d.lookup("399", true).is_none());
        assert!(d.lookup("3999", true).is_some());
        assert!(d.lookup("2367", true).is_none());
        assert!(d.lookup("236", true).is_some_and(|e| e.fnc1));
        assert!(d.lookup("4199", true).is_none());
        assert!(
            d.lookup("419", true)
                .is_some_and(|e| !e.fnc1 && e.max_len() == 13)
        );
        assert_eq!(
            d.lookup_prefix(b"8012", false).map(|(ai, _)| ai),
            Some(&b"8012"[..])
        );
        assert!(d.lookup_prefix(b"891234", true).is_none());
        assert!(d.lookup_prefix(b"234567", false).is_none());
    }
}
