//! GS1 Digital Link URIs (GS1 Digital Link standard, URI syntax): parsing a URI into AIs and
//! generating one from AIs. The path holds a primary key and its key qualifiers in the order the
//! dictionary's `dlpkey=` gives; other AIs go in the query string as data attributes.

use crate::Gs1Error;
use crate::dictionary::{AiEntry, DICTIONARY};
use crate::element::{self, ElementString, MAX_AIS, Options};

/// The canonical stem, GS1's resolver.
pub const CANONICAL_STEM: &str = "https://id.gs1.org";

/// Characters a URI may hold at all (RFC 3986 reserved and unreserved, and "%").
const URI_CHARS: &[u8] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~:/?#[]@!$&'()*+,;=%";

/// URI characters that may not appear in a domain name.
const BAD_DOMAIN_CHARS: &[u8] = b"_~?#@!$&'()*+,;=%";

/// The legacy convenience alphas some old URIs use in place of numeric AIs.
const CONVENIENCE_ALPHAS: &[(&str, &str)] = &[
    ("cpid", "8010"),
    ("cpsn", "8011"),
    ("cpv", "22"),
    ("gcn", "255"),
    ("gdti", "253"),
    ("giai", "8004"),
    ("ginc", "401"),
    ("gln", "414"),
    ("glnx", "254"),
    ("gmn", "8013"),
    ("grai", "8003"),
    ("gsin", "402"),
    ("gsrn", "8018"),
    ("gsrnp", "8017"),
    ("gtin", "01"),
    ("itip", "8006"),
    ("lot", "10"),
    ("party", "417"),
    ("refno", "8020"),
    ("ser", "21"),
    ("srin", "8019"),
    ("sscc", "00"),
];

/// Percent-encodes a value for a URI path segment (`query` false) or a query-string value
/// (`query` true, where a space is written "+"). Only RFC 3986's unreserved characters are
/// left as they are.
pub fn uri_escape(value: &str, query: bool) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else if b == b' ' && query {
            out.push('+');
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Percent-decoding: "%hh" is a byte; a malformed or incomplete "%" sequence stays as it is; in a
/// query (`query` true) "+" is a space. `None` when a "%00" would put a nul in the value.
fn unescape(s: &[u8], query: bool) -> Option<Vec<u8>> {
    let hex = |c: u8| {
        char::from(c)
            .to_digit(16)
            .and_then(|d| u8::try_from(d).ok())
    };
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        if c == b'%'
            && let (Some(hi), Some(lo)) = (
                s.get(i + 1).copied().and_then(hex),
                s.get(i + 2).copied().and_then(hex),
            )
        {
            let b = hi * 16 + lo;
            if b == 0 {
                return None;
            }
            out.push(b);
            i += 3;
            continue;
        }
        out.push(if c == b'+' && query { b' ' } else { c });
        i += 1;
    }
    Some(out)
}

/// Percent-decodes a URI path segment (`query` false) or query-string value (`query` true).
/// The result is bytes: "%FF" decodes to a byte that is not UTF-8 on its own.
pub fn uri_unescape(s: &str, query: bool) -> Result<Vec<u8>, Gs1Error> {
    unescape(s.as_bytes(), query).ok_or(Gs1Error::Uri("a percent-encoded nul"))
}

/// A parsed GS1 Digital Link URI: the stem before the primary key, and the AIs (the first
/// `path_len` from the path, in path order, then the query's data attributes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DigitalLink {
    pub stem: String,
    pub path_len: usize,
    pub elements: ElementString,
}

/// Parses a GS1 Digital Link URI (http or https, any stem) into its AIs, with the default options.
pub fn parse_digital_link(uri: &str) -> Result<ElementString, Gs1Error> {
    parse_digital_link_with(uri, &Options::default())
}

/// [`parse_digital_link`] with options.
pub fn parse_digital_link_with(uri: &str, opts: &Options) -> Result<ElementString, Gs1Error> {
    Ok(DigitalLink::parse_with(uri, opts)?.elements)
}

fn path_ai(segment: &str, opts: &Options) -> Option<(String, &'static AiEntry)> {
    if opts.permit_convenience_alphas
        && (3..=5).contains(&segment.len())
        && !segment.starts_with(|c: char| c.is_ascii_digit())
    {
        let ai = CONVENIENCE_ALPHAS
            .iter()
            .find(|(alpha, _)| *alpha == segment)
            .map(|(_, ai)| *ai);
        if let Some(ai) = ai {
            return DICTIONARY.get(ai).map(|e| (ai.to_owned(), e));
        }
    }
    DICTIONARY
        .lookup(segment, opts.permit_unknown_ais)
        .map(|e| (segment.to_owned(), e))
}

/// The value of AI (01) padded to a GTIN-14, where zero-suppressed GTINs are permitted.
fn pad_gtin(ai: &str, mut value: Vec<u8>, opts: &Options) -> Vec<u8> {
    if opts.permit_zero_suppressed_gtin_in_dl_uris
        && ai == "01"
        && matches!(value.len(), 8 | 12 | 13)
    {
        let mut padded = vec![b'0'; 14 - value.len()];
        padded.append(&mut value);
        return padded;
    }
    value
}

impl DigitalLink {
    pub fn parse(uri: &str) -> Result<Self, Gs1Error> {
        Self::parse_with(uri, &Options::default())
    }

    pub fn parse_with(uri: &str, opts: &Options) -> Result<Self, Gs1Error> {
        if !uri.bytes().all(|b| URI_CHARS.contains(&b)) {
            return Err(Gs1Error::Uri("a character that a uri cannot hold"));
        }
        // The scheme in lower or upper case, not mixed.
        let scheme_len = ["https://", "HTTPS://", "http://", "HTTP://"]
            .iter()
            .find(|s| uri.starts_with(*s))
            .map(|s| s.len())
            .ok_or(Gs1Error::Uri("the scheme must be http or https"))?;
        let rest = &uri[scheme_len..];
        let slash = rest
            .find('/')
            .ok_or(Gs1Error::Uri("no path after the domain"))?;
        if slash == 0 {
            return Err(Gs1Error::Uri("no domain"));
        }
        if rest[..slash].bytes().any(|b| BAD_DOMAIN_CHARS.contains(&b)) {
            return Err(Gs1Error::Uri("a character that a domain cannot hold"));
        }
        let authority = &uri[..scheme_len + slash];
        let after = &rest[slash..];
        // A fragment ends the data; a query follows the path.
        let after = after.split_once('#').map_or(after, |(a, _)| a);
        let (path, query) = match after.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (after, None),
        };
        let segments: Vec<&str> = path[1..].split('/').collect();

        // The primary key is the rightmost "/AI/value" pair whose AI is a key, reached by walking
        // back over pairs of valid AIs; what precedes it is the stem.
        let mut end = segments.len();
        let key_at = loop {
            if end < 2 {
                return Err(Gs1Error::NoPrimaryKey);
            }
            let Some((_, entry)) = path_ai(segments[end - 2], opts) else {
                return Err(Gs1Error::NoPrimaryKey);
            };
            if entry.dl_primary_key.is_some() {
                break end - 2;
            }
            end -= 2;
        };
        // The path's AIs must be a key and its qualifiers in order; say so before looking at
        // the values.
        let path: Vec<String> = segments[key_at..]
            .chunks(2)
            .filter_map(|pair| path_ai(pair.first()?, opts).map(|(ai, _)| ai))
            .collect();
        if !DICTIONARY.is_dl_path(&path.join(" ")) {
            return Err(Gs1Error::KeyQualifiers(path.join(" ")));
        }
        let stem = if key_at == 0 {
            authority.to_owned()
        } else {
            format!("{authority}/{}", segments[..key_at].join("/"))
        };

        let mut items: Vec<(String, &AiEntry, Vec<u8>)> = Vec::new();
        for pair in segments[key_at..].chunks(2) {
            let [ai, value] = pair else {
                return Err(Gs1Error::NoPrimaryKey);
            };
            let (ai, entry) =
                path_ai(ai, opts).ok_or_else(|| Gs1Error::UnknownAi((*ai).to_owned()))?;
            if value.is_empty() {
                return Err(Gs1Error::EmptyValue { ai });
            }
            let value = unescape(value.as_bytes(), false)
                .ok_or_else(|| Gs1Error::Nul { ai: ai.clone() })?;
            let value = pad_gtin(&ai, value, opts);
            element::check_length(&ai, entry, &value)?;
            items.push((ai, entry, value));
        }
        let path_len = items.len();

        for param in query.unwrap_or_default().split('&') {
            // Parameters without a value, and with a non-numeric name, are not AIs: skip them.
            let Some((ai, value)) = param.split_once('=') else {
                continue;
            };
            if ai.is_empty() || !ai.bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            let entry = DICTIONARY
                .lookup(ai, opts.permit_unknown_ais)
                .ok_or_else(|| Gs1Error::UnknownAi(ai.to_owned()))?;
            if value.is_empty() {
                return Err(Gs1Error::EmptyValue { ai: ai.to_owned() });
            }
            let value = unescape(value.as_bytes(), true)
                .ok_or_else(|| Gs1Error::Nul { ai: ai.to_owned() })?;
            let value = pad_gtin(ai, value, opts);
            element::check_length(ai, entry, &value)?;
            items.push((ai.to_owned(), entry, value));
            if items.len() > MAX_AIS {
                return Err(Gs1Error::TooManyAis { max: MAX_AIS });
            }
        }

        let path: Vec<&str> = path.iter().map(String::as_str).collect();
        for (i, (ai, entry, _)) in items.iter().enumerate().skip(path_len) {
            if items[..i].iter().any(|(a, _, _)| a == ai) {
                return Err(Gs1Error::DuplicateInUri(ai.clone()));
            }
            if !is_data_attribute(entry, opts) {
                return Err(Gs1Error::NotDataAttribute(ai.clone()));
            }
            // An attribute that would fit into the path as a key qualifier belongs there.
            for j in 1..=path_len {
                let mut trial = path.clone();
                trial.insert(j, ai);
                if DICTIONARY.is_dl_path(&trial.join(" ")) {
                    return Err(Gs1Error::ShouldBeInPath(ai.clone()));
                }
            }
        }

        for (ai, entry, value) in &items {
            element::check_value(ai, entry, value, opts)?;
        }
        let elements = element::finish(
            items
                .into_iter()
                .map(|(ai, _, value)| (ai, value))
                .collect(),
            opts,
        )?;
        Ok(Self {
            stem,
            path_len,
            elements,
        })
    }

    /// The URI again under `stem`, with the path as parsed (key qualifiers in the order the URI
    /// gave them) and the data attributes after it.
    /// (The AIs were checked when the URI was parsed; an error means `elements` was changed
    /// since.)
    pub fn to_uri(&self, stem: &str) -> Result<String, Gs1Error> {
        // Whatever the parse accepted is written back.
        let opts = Options {
            permit_unknown_ais: true,
            unknown_ai_not_dl_attr: false,
            ..Options::default()
        };
        generate(&self.elements.ais, stem, &opts, Some(self.path_len), false)
    }
}

fn is_data_attribute(entry: &AiEntry, opts: &Options) -> bool {
    if entry.known {
        entry.dl_data_attribute
    } else {
        !opts.unknown_ai_not_dl_attr
    }
}

/// Builds a URI from AIs. The path is the first AI that is a primary key and the largest set of
/// its key qualifiers present (ties go to the path that sorts first), unless `fixed_path` says
/// the first so many AIs are the path. The other AIs become query attributes: fixed-length ones
/// first, each AI once, in the order given (or sorted by AI when `sort_attributes`).
fn generate(
    ais: &[(String, String)],
    stem: &str,
    opts: &Options,
    fixed_path: Option<usize>,
    sort_attributes: bool,
) -> Result<String, Gs1Error> {
    let entries = ais
        .iter()
        .map(|(ai, _)| element::lookup(ai, opts))
        .collect::<Result<Vec<_>, _>>()?;
    let mut order: Vec<Option<usize>> = vec![None; ais.len()];
    match fixed_path {
        Some(n) => order
            .iter_mut()
            .take(n)
            .enumerate()
            .for_each(|(i, o)| *o = Some(i)),
        None => {
            let key = ais
                .iter()
                .zip(&entries)
                .find(|(_, e)| e.known && e.dl_primary_key.is_some())
                .map(|((ai, _), _)| ai.as_str())
                .ok_or(Gs1Error::NoPrimaryKey)?;
            let mut best = key;
            let mut most = 0;
            for path in DICTIONARY.dl_paths_for(key) {
                let found = path
                    .split(' ')
                    .skip(1)
                    .map(|q| ais.iter().filter(|(ai, _)| ai == q).count())
                    .sum::<usize>();
                if found > most {
                    best = path;
                    most = found;
                }
            }
            for (pos, token) in best.split(' ').enumerate() {
                for (o, (ai, _)) in order.iter_mut().zip(ais) {
                    if ai == token {
                        *o = Some(pos);
                    }
                }
            }
        }
    }

    let mut out = stem.strip_suffix('/').unwrap_or(stem).to_owned();
    let path_len = order.iter().flatten().max().map_or(0, |m| m + 1);
    for pos in 0..path_len {
        if let Some((ai, value)) = ais
            .iter()
            .zip(&order)
            .find(|(_, o)| **o == Some(pos))
            .map(|(a, _)| a)
        {
            out.push('/');
            out.push_str(ai);
            out.push('/');
            out.push_str(&uri_escape(value, false));
        }
    }

    let mut attributes: Vec<(&str, &str)> = Vec::new();
    for fixed_pass in [true, false] {
        for (((ai, value), entry), o) in ais.iter().zip(&entries).zip(&order) {
            if o.is_some() || entry.fnc1 == fixed_pass || attributes.iter().any(|(a, _)| a == ai) {
                continue;
            }
            if !is_data_attribute(entry, opts) {
                return Err(Gs1Error::NotDataAttribute(ai.clone()));
            }
            attributes.push((ai, value));
        }
    }
    if sort_attributes {
        attributes.sort_by_key(|(ai, _)| *ai);
    }
    for (i, (ai, value)) in attributes.iter().enumerate() {
        out.push(if i == 0 { '?' } else { '&' });
        out.push_str(ai);
        out.push('=');
        out.push_str(&uri_escape(value, true));
    }
    Ok(out)
}

impl ElementString {
    /// The GS1 Digital Link URI of these AIs under `stem` ("https://id.gs1.org" is GS1's
    /// canonical one; a trailing "/" is dropped), with the default options.
    pub fn to_digital_link(&self, stem: &str) -> Result<String, Gs1Error> {
        self.to_digital_link_with(stem, &Options::default())
    }

    /// [`Self::to_digital_link`] with options (unknown AIs, unknown AIs as data attributes).
    pub fn to_digital_link_with(&self, stem: &str, opts: &Options) -> Result<String, Gs1Error> {
        generate(&self.ais, stem, opts, None, false)
    }

    /// The canonical GS1 Digital Link URI: GS1's stem, and the data attributes in AI order, so
    /// that equal data always gives the same URI.
    pub fn to_canonical_digital_link(&self) -> Result<String, Gs1Error> {
        generate(&self.ais, CANONICAL_STEM, &Options::default(), None, true)
    }
}
