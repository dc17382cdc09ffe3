//! The identifier normaliser of the EPCIS event hash (CBV 2.0 §8.9, rules 17 and 18): EPC URIs,
//! EPC class URIs, EPC pattern URIs and GS1 Digital Link URIs all become one constrained
//! canonical GS1 Digital Link URI (`https://id.gs1.org/…`), so that the same object hashes the
//! same whichever way a sender wrote it.
//!
//! The hash is only useful if every implementation computes the same string, so this follows the
//! reference implementation (RalphTro/epcis-event-hash-generator, `dl_normaliser.py`) step by
//! step, including what it does not do: it does not check the check digit of a Digital Link, and
//! a Digital Link whose value holds a percent escape is not normalised (left as written).
//! Where the reference's patterns are plainly broken (a GRAI with a 12-digit company prefix,
//! which it never matches) this reads the URN as the EPC Tag Data Standard defines it.

/// The GS1 Digital Link primary keys the normaliser knows, in the order it looks for them when
/// moving a URI onto the canonical domain.
const KEYS: [&str; 14] = [
    "00", "01", "253", "255", "401", "402", "414", "417", "8003", "8004", "8006", "8010", "8017",
    "8018",
];

/// Keys accepted by the first, loose check, with the short names of older Digital Link URIs.
const KEYS_AND_NAMES: [&str; 28] = [
    "01", "gtin", "8006", "itip", "8010", "cpid", "414", "gln", "417", "party", "8017", "gsrnp",
    "8018", "gsrn", "255", "gcn", "00", "sscc", "253", "gdti", "401", "ginc", "402", "gsin",
    "8003", "grai", "8004", "giai",
];

/// Short names replaced by their application identifiers, in this order.
const SHORT_NAMES: [(&str, &str); 17] = [
    ("/gtin/", "/01/"),
    ("/itip/", "/8006/"),
    ("/cpid/", "/8010/"),
    ("/gln/", "/414/"),
    ("/party/", "/417/"),
    ("/gsrnp/", "/8017/"),
    ("/gsrn/", "/8018/"),
    ("/gcn/", "/255/"),
    ("/sscc/", "/00/"),
    ("/gdti/", "/253/"),
    ("/ginc/", "/401/"),
    ("/gsin/", "/402/"),
    ("/grai/", "/8003/"),
    ("/giai/", "/8004/"),
    ("/cpv/", "/22/"),
    ("/lot/", "/10/"),
    ("/ser/", "/21/"),
];

const CANONICAL: &str = "https://id.gs1.org/";

/// The GS1 check digit (mod 10, weights 3 and 1 from the right) of `digits`.
pub(crate) fn check_digit(digits: &str) -> Option<char> {
    let mut sum = 0u32;
    for (index, byte) in digits.bytes().rev().enumerate() {
        let digit = char::from(byte).to_digit(10)?;
        sum += if index % 2 == 0 { digit * 3 } else { digit };
    }
    char::from_digit((10 - sum % 10) % 10, 10)
}

/// `digits` followed by its check digit.
fn with_check(digits: &str) -> Option<String> {
    Some(format!("{digits}{}", check_digit(digits)?))
}

/// Percent-encodes the characters the GS1 Digital Link syntax reserves that an EPC URI leaves
/// bare. Escapes already in the URI (`%2F`) stay as they are.
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '!' => out.push_str("%21"),
            '(' => out.push_str("%28"),
            ')' => out.push_str("%29"),
            '*' => out.push_str("%2A"),
            '+' => out.push_str("%2B"),
            ',' => out.push_str("%2C"),
            ':' => out.push_str("%3A"),
            other => out.push(other),
        }
    }
    out
}

/// The number of characters of an EPC URI component (GS1 AI encodable character set 82, with
/// the escapes an EPC URI uses; an escape counts as one), or `None` if a character is not allowed.
fn urn_units(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut at = 0;
    let mut units = 0;
    while at < bytes.len() {
        if bytes[at] == b'%' {
            let high = *bytes.get(at + 1)?;
            let low = *bytes.get(at + 2)?;
            let hex = |byte: u8| byte.is_ascii_hexdigit();
            let allowed = match high {
                b'2' => {
                    matches!(low, b'1' | b'2' | b'5'..=b'9')
                        || matches!(low, b'A'..=b'F' | b'a'..=b'f')
                }
                b'3' => hex(low),
                b'4' => matches!(low, b'1'..=b'9' | b'A'..=b'F' | b'a'..=b'f'),
                b'5' => matches!(low, b'0'..=b'9' | b'A' | b'a' | b'F' | b'f'),
                b'6' => matches!(low, b'1'..=b'9' | b'A'..=b'F' | b'a'..=b'f'),
                b'7' => matches!(low, b'0'..=b'9' | b'A' | b'a'),
                _ => false,
            };
            if !allowed {
                return None;
            }
            at += 3;
        } else if matches!(
            bytes[at],
            b'!' | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b'.'
                | b':'
                | b';'
                | b'='
                | b'_'
                | b'-'
        ) || bytes[at].is_ascii_alphanumeric()
        {
            at += 1;
        } else {
            return None;
        }
        units += 1;
    }
    Some(units)
}

/// Like [`urn_units`] for the component reference of a CPI (digits, capitals, `-`, and the
/// escapes of `#` and `/`).
fn cpi_units(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut at = 0;
    let mut units = 0;
    while at < bytes.len() {
        if bytes[at] == b'%' {
            let high = *bytes.get(at + 1)?;
            let low = *bytes.get(at + 2)?;
            let allowed = match high {
                b'2' => matches!(low, b'3' | b'd' | b'f' | b'D' | b'F'),
                b'3' => low.is_ascii_digit(),
                b'4' => matches!(low, b'1'..=b'9' | b'A'..=b'F' | b'a'..=b'f'),
                b'5' => matches!(low, b'0'..=b'9' | b'A' | b'a'),
                _ => false,
            };
            if !allowed {
                return None;
            }
            at += 3;
        } else if bytes[at].is_ascii_digit() || bytes[at].is_ascii_uppercase() || bytes[at] == b'-'
        {
            at += 1;
        } else {
            return None;
        }
        units += 1;
    }
    Some(units)
}

fn all_digits(text: &str) -> bool {
    text.bytes().all(|byte| byte.is_ascii_digit())
}

/// Splits `company.reference` where the company prefix has 6 to 12 digits and the two together
/// have `total` digits. The reference may be empty only when the prefix has 12 digits and the
/// pair 12 digits.
fn company_and_reference(component: &str, total: usize) -> Option<(&str, &str)> {
    let (company, reference) = component.split_once('.')?;
    let ok = (6..=12).contains(&company.len())
        && company.len() + reference.len() == total
        && all_digits(company)
        && all_digits(reference)
        && (!reference.is_empty() || total == 12);
    ok.then_some((company, reference))
}

/// Splits `company.item.rest` where company and item have 13 digits together (the company
/// prefix 6 to 12); `rest` may itself hold dots.
fn gtin_parts(body: &str) -> Option<(&str, &str, &str)> {
    let (company, after) = body.split_once('.')?;
    let item_len = 13usize.checked_sub(company.len())?;
    let item = after.get(..item_len)?;
    let rest = after.get(item_len..)?.strip_prefix('.')?;
    let ok = (6..=12).contains(&company.len()) && all_digits(company) && all_digits(item);
    ok.then_some((company, item, rest))
}

/// The GTIN-14 of an SGTIN-style `company.indicator+item` pair.
fn gtin(company: &str, item: &str) -> Option<String> {
    let (indicator, rest) = item.split_at_checked(1)?;
    with_check(&format!("{indicator}{company}{rest}"))
}

/// Normalises an identifier to the constrained canonical GS1 Digital Link URI the event hash
/// uses, or `None` if it is not a GS1 identifier this recognises (the value is then hashed as
/// written).
pub fn normalise_to_digital_link(uri: &str) -> Option<String> {
    if !uri.contains('.') {
        return None;
    }
    if let Some(rest) = uri.strip_prefix("urn:epc:id:") {
        return epc_id(rest);
    }
    if let Some(rest) = uri.strip_prefix("urn:epc:class:lgtin:") {
        let (company, item, lot) = gtin_parts(rest)?;
        if !(1..=20).contains(&urn_units(lot)?) {
            return None;
        }
        return Some(format!(
            "{CANONICAL}01/{}/10/{}",
            gtin(company, item)?,
            encode(lot)
        ));
    }
    if let Some(rest) = uri.strip_prefix("urn:epc:idpat:") {
        return epc_pattern(rest);
    }
    digital_link(uri)
}

/// `urn:epc:id:<scheme>:<body>` (the part after `urn:epc:id:`).
fn epc_id(rest: &str) -> Option<String> {
    let (scheme, body) = rest.split_once(':')?;
    match scheme {
        "sgtin" | "upui" => {
            let (company, item, serial) = gtin_parts(body)?;
            let units = urn_units(serial)?;
            let gtin = gtin(company, item)?;
            if scheme == "sgtin" && (1..=20).contains(&units) {
                Some(format!("{CANONICAL}01/{gtin}/21/{}", encode(serial)))
            } else if scheme == "upui" && (1..=28).contains(&units) {
                Some(format!("{CANONICAL}01/{gtin}/235/{}", encode(serial)))
            } else {
                None
            }
        }
        "sscc" => {
            let (company, serial) = company_and_reference(body, 17)?;
            let (extension, rest) = serial.split_at_checked(1)?;
            Some(format!(
                "{CANONICAL}00/{}",
                with_check(&format!("{extension}{company}{rest}"))?
            ))
        }
        "sgln" | "grai" | "gdti" | "sgcn" | "itip" => {
            let (company, after) = body.split_once('.')?;
            let total = if scheme == "itip" { 13 } else { 12 };
            let reference_len = total - company.len().min(total);
            let reference = after.get(..reference_len)?;
            let (company, reference) =
                company_and_reference(&format!("{company}.{reference}"), total)
                    .map(|_| (company, reference))?;
            let tail = after.get(reference_len..)?.strip_prefix('.')?;
            let key = format!("{company}{reference}");
            match scheme {
                "sgln" => {
                    if !(1..=20).contains(&urn_units(tail)?) {
                        return None;
                    }
                    let gln = with_check(&key)?;
                    if tail == "0" {
                        Some(format!("{CANONICAL}414/{gln}"))
                    } else {
                        Some(format!("{CANONICAL}414/{gln}/254/{}", encode(tail)))
                    }
                }
                "grai" => {
                    if !(1..=16).contains(&urn_units(tail)?) {
                        return None;
                    }
                    Some(format!(
                        "{CANONICAL}8003/{}{}",
                        with_check(&format!("0{key}"))?,
                        encode(tail)
                    ))
                }
                "gdti" => {
                    if urn_units(tail)? > 17 {
                        return None;
                    }
                    Some(format!(
                        "{CANONICAL}253/{}{}",
                        with_check(&key)?,
                        encode(tail)
                    ))
                }
                "sgcn" => {
                    if tail.is_empty() || tail.len() > 12 || !all_digits(tail) {
                        return None;
                    }
                    Some(format!("{CANONICAL}255/{}{tail}", with_check(&key)?))
                }
                _ => {
                    // itip: company.item.piece.total.serial
                    let (piece, rest) = tail.split_once('.')?;
                    let (of, serial) = rest.split_once('.')?;
                    if piece.len() != 2 || of.len() != 2 || !all_digits(piece) || !all_digits(of) {
                        return None;
                    }
                    if !(1..=20).contains(&urn_units(serial)?) {
                        return None;
                    }
                    Some(format!(
                        "{CANONICAL}8006/{}{piece}{of}/21/{}",
                        gtin(company, reference)?,
                        encode(serial)
                    ))
                }
            }
        }
        "giai" | "ginc" => {
            let (company, reference) = body.split_once('.')?;
            if !(6..=12).contains(&company.len()) || !all_digits(company) {
                return None;
            }
            if !(1..=30 - company.len()).contains(&urn_units(reference)?) {
                return None;
            }
            let key = if scheme == "giai" { "8004" } else { "401" };
            Some(format!("{CANONICAL}{key}/{company}{}", encode(reference)))
        }
        "gsrn" | "gsrnp" | "gsin" | "pgln" => {
            let (total, key) = match scheme {
                "gsrn" => (17, "8018"),
                "gsrnp" => (17, "8017"),
                "gsin" => (16, "402"),
                _ => (12, "417"),
            };
            let (company, reference) = company_and_reference(body, total)?;
            Some(format!(
                "{CANONICAL}{key}/{}",
                with_check(&format!("{company}{reference}"))?
            ))
        }
        "cpi" => {
            let (company, rest) = body.split_once('.')?;
            let (reference, serial) = rest.rsplit_once('.')?;
            if !(6..=12).contains(&company.len()) || !all_digits(company) {
                return None;
            }
            if !(1..=30 - company.len()).contains(&cpi_units(reference)?) {
                return None;
            }
            if serial.is_empty() || serial.len() > 12 || !all_digits(serial) {
                return None;
            }
            Some(format!(
                "{CANONICAL}8010/{}/8011/{serial}",
                encode(&format!("{company}{reference}"))
            ))
        }
        _ => None,
    }
}

/// `urn:epc:idpat:<scheme>:<body>` with the last component `*`: the class the pattern names.
fn epc_pattern(rest: &str) -> Option<String> {
    let (scheme, body) = rest.split_once(':')?;
    let body = body.strip_suffix(".*")?;
    match scheme {
        "sgtin" | "upui" => {
            let (company, item) = company_and_reference(body, 13)?;
            if item.is_empty() {
                return None;
            }
            Some(format!("{CANONICAL}01/{}", gtin(company, item)?))
        }
        "grai" | "gdti" | "sgcn" => {
            let (company, reference) = company_and_reference(body, 12)?;
            let key = format!("{company}{reference}");
            Some(match scheme {
                "grai" => format!("{CANONICAL}8003/{}", with_check(&format!("0{key}"))?),
                "gdti" => format!("{CANONICAL}253/{}", with_check(&key)?),
                _ => format!("{CANONICAL}255/{}", with_check(&key)?),
            })
        }
        "cpi" => {
            let (company, reference) = body.split_once('.')?;
            if !(6..=12).contains(&company.len()) || !all_digits(company) {
                return None;
            }
            if !(1..=30 - company.len()).contains(&cpi_units(reference)?) {
                return None;
            }
            Some(format!(
                "{CANONICAL}8010/{}",
                encode(&format!("{company}{reference}"))
            ))
        }
        "itip" => {
            let (company, rest) = body.split_once('.')?;
            let item_len = 13usize.checked_sub(company.len())?;
            let item = rest.get(..item_len)?;
            company_and_reference(&format!("{company}.{item}"), 13)?;
            let rest = rest.get(item_len..)?.strip_prefix('.')?;
            let (piece, of) = rest.split_once('.')?;
            if piece.len() != 2 || of.len() != 2 || !all_digits(piece) || !all_digits(of) {
                return None;
            }
            Some(format!(
                "{CANONICAL}8006/{}{piece}{of}",
                gtin(company, item)?
            ))
        }
        _ => None,
    }
}

/// Characters the reference accepts in a serial, lot, extension or other alphanumeric value of a
/// canonical Digital Link (`"`, `'`, `-`, `.`, digits, `;` to `?`, letters, `_`); `%` is not
/// among them.
fn value_char(byte: u8) -> bool {
    matches!(byte, b'"' | b'\'' | b'-' | b'.' | b';'..=b'?' | b'_') || byte.is_ascii_alphanumeric()
}

fn value_chars(text: &str, max: usize) -> bool {
    text.len() <= max && text.bytes().all(value_char)
}

fn digits_exactly(text: &str, count: usize) -> bool {
    text.len() == count && all_digits(text)
}

/// The number of leading ASCII digits of `text`.
fn leading_digits(text: &str) -> usize {
    text.bytes().take_while(u8::is_ascii_digit).count()
}

/// Whether `path` starts with `<key>/`, four digits and one more character that is not `/`.
fn keyed_value(path: &str, key: &str) -> bool {
    path.strip_prefix(key)
        .and_then(|rest| rest.strip_prefix('/'))
        .is_some_and(|value| {
            leading_digits(value) >= 4 && value.as_bytes().get(4).is_some_and(|&byte| byte != b'/')
        })
}

/// A GS1 Digital Link URI, on any domain and with or without query string.
fn digital_link(uri: &str) -> Option<String> {
    let after_scheme = uri
        .strip_prefix("https:")
        .or_else(|| uri.strip_prefix("http:"))?;
    // The loose first check: somewhere before any query or fragment, `/<key>/` followed by four
    // digits and at least one more character that is not `/`.
    let plain_end = after_scheme.find(['?', '#']).unwrap_or(after_scheme.len());
    let has_key = after_scheme[..plain_end]
        .match_indices('/')
        .any(|(slash, _)| {
            let rest = &after_scheme[slash + 1..];
            KEYS_AND_NAMES.iter().any(|key| keyed_value(rest, key))
        });
    if !has_key {
        return None;
    }

    let mut uri = match uri.find('?') {
        Some(query) => uri[..query].to_owned(),
        None => uri.to_owned(),
    };
    for (name, ai) in SHORT_NAMES {
        uri = uri.replace(name, ai);
    }

    let canonical = uri
        .strip_prefix(CANONICAL)
        .is_some_and(|path| KEYS.iter().any(|key| keyed_value(path, key)));
    if !canonical && let Some(at) = KEYS.iter().find_map(|key| uri.find(&format!("/{key}/"))) {
        uri = format!("https://id.gs1.org{}", &uri[at..]);
    }

    // Pad GTIN-8, -12 and -13 to 14 digits.
    if let Some(value) = uri.strip_prefix("https://id.gs1.org/01/") {
        let padding = match leading_digits(value) {
            14.. => "",
            13 => "0",
            12 => "00",
            8..=11 => "000000",
            _ => "",
        };
        if !padding.is_empty() {
            uri = uri.replace("/01/", &format!("/01/{padding}"));
        }
    }

    // Drop a consumer product variant (AI 22), and a lot when a serial is there as well: the
    // hash identifies the most specific level only.
    if let Some((head, cpv_and_rest)) = split_qualifier(&uri, "22") {
        if value_chars(cpv_and_rest, 20) {
            uri = head.to_owned();
        } else if cpv_and_rest.len() <= 20
            && cpv_and_rest
                .bytes()
                .all(|byte| byte == b'/' || value_char(byte))
            && let Some(slash) = cpv_and_rest.find('/')
        {
            uri = format!("{head}{}", &cpv_and_rest[slash..]);
        }
    }
    if let Some((head, lot_and_rest)) = split_qualifier(&uri, "10")
        && let Some((lot, serial)) = lot_and_rest.split_once("/21/")
        && value_chars(lot, 20)
        && value_chars(serial, 20)
    {
        uri = format!("{head}/21/{serial}");
    }

    valid_canonical(&uri).then_some(uri)
}

/// For `https://id.gs1.org/01/<14 digits>/<ai>/…` or `…/8006/<18 digits>/<ai>/…`, the part before
/// `/<ai>/` and the part after it.
fn split_qualifier<'u>(uri: &'u str, ai: &str) -> Option<(&'u str, &'u str)> {
    let path = uri.strip_prefix(CANONICAL)?;
    let key_len = if path.starts_with("01/") && digits_exactly(path.get(3..17)?, 14) {
        17
    } else if path.starts_with("8006/") && digits_exactly(path.get(5..23)?, 18) {
        23
    } else {
        return None;
    };
    let rest = path
        .get(key_len..)?
        .strip_prefix('/')?
        .strip_prefix(ai)?
        .strip_prefix('/')?;
    let head_len = CANONICAL.len() + key_len;
    Some((&uri[..head_len], rest))
}

/// The shapes a constrained canonical GS1 Digital Link URI may take.
fn valid_canonical(uri: &str) -> bool {
    let Some(path) = uri.strip_prefix(CANONICAL) else {
        return false;
    };
    let Some((key, value)) = path.split_once('/') else {
        return false;
    };
    let keyed = |length: usize, qualifiers: &[(&str, usize)]| {
        let Some(primary) = value.get(..length) else {
            return false;
        };
        if !digits_exactly(primary, length) {
            return false;
        }
        let rest = &value[length..];
        rest.is_empty()
            || qualifiers.iter().any(|(ai, max)| {
                rest.strip_prefix('/')
                    .and_then(|rest| rest.strip_prefix(ai))
                    .and_then(|rest| rest.strip_prefix('/'))
                    .is_some_and(|qualifier| value_chars(qualifier, *max))
            })
    };
    let cpi_char = |byte: u8| {
        matches!(byte, b'#' | b'-' | b'/') || byte.is_ascii_digit() || byte.is_ascii_uppercase()
    };
    match key {
        "00" => digits_exactly(value, 18),
        "01" => keyed(14, &[("21", 20), ("10", 20), ("235", 28)]),
        "253" => {
            value.get(..13).is_some_and(|key| digits_exactly(key, 13))
                && value_chars(&value[13..], 17)
        }
        "255" => value.len() >= 13 && value.len() <= 25 && all_digits(value),
        "401" | "8004" => value_chars(value, 30),
        "402" => digits_exactly(value, 17),
        "414" => keyed(13, &[("254", 20)]),
        "417" => digits_exactly(value, 13),
        "8003" => {
            value.get(..14).is_some_and(|key| digits_exactly(key, 14))
                && value_chars(&value[14..], 16)
        }
        "8006" => keyed(18, &[("21", 20), ("10", 20)]),
        "8010" => {
            let cpid_ok = |cpid: &str| cpid.len() <= 30 && cpid.bytes().all(cpi_char);
            cpid_ok(value)
                || value.match_indices("/8011/").any(|(at, _)| {
                    let serial = &value[at + 6..];
                    cpid_ok(&value[..at]) && serial.len() <= 12 && all_digits(serial)
                })
        }
        "8017" | "8018" => digits_exactly(value, 18),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multibyte_characters_do_not_split() {
        for uri in [
            "https://id.gs1.org/253/123456789012\u{df}",
            "https://id.gs1.org/8003/1234567890123\u{df}",
            "https://example.com/8003/1234567890123\u{df}x",
        ] {
            assert_eq!(normalise_to_digital_link(uri), None, "{uri}");
        }
    }

    #[test]
    fn check_digits() {
        assert_eq!(check_digit("0952123454321"), Some('3'));
        assert_eq!(check_digit("0401234511111"), Some('8'));
        assert_eq!(check_digit("12x"), None);
    }
}
