//! GS1 identifiers as EPCIS events carry them: EPC URNs (`urn:epc:id:sgtin:0614141.107346.2017`)
//! or GS1 Digital Link URIs (`https://id.gs1.org/01/10614141073464/21/2017`, on any domain),
//! read into one typed form so that the two spellings of an object compare equal.
//!
//! An EPC URN states where the GS1 company prefix ends; a Digital Link does not, and the length
//! is not recoverable from the key without GS1's prefix tables. So [`Epc`] holds the keys
//! without it, and [`Epc::to_urn`] takes it as an argument.

use crate::dl::{check_digit, normalise_to_digital_link};

/// A GS1 identifier from an EPCIS event.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Epc {
    /// A serialised trade item: GTIN-14 (check digit included) and serial number (AI 21,
    /// decoded, 1 to 20 characters of GS1 character set 82).
    Sgtin { gtin: String, serial: String },
    /// A logistic unit: the 18-digit SSCC, check digit included.
    Sscc(String),
    /// A location: the 13-digit GLN and its extension (AI 254), if any.
    Sgln {
        gln: String,
        extension: Option<String>,
    },
    /// A batch or lot of a trade item (class level, as in quantity lists).
    Lgtin { gtin: String, lot: String },
    /// All instances of a trade item (class level: an EPC pattern `…sgtin:….*` or a Digital
    /// Link naming only the GTIN).
    Gtin(String),
    /// Anything else, as written: other GS1 keys (GRAI, GIAI, …), other URIs, or a malformed
    /// identifier.
    Other(String),
}

/// GS1 AI encodable character set 82, which serials, lots and extensions are drawn from.
fn is_cset82(character: char) -> bool {
    character.is_ascii_alphanumeric()
        || matches!(
            character,
            '!' | '"'
                | '%'
                | '&'
                | '\''
                | '('
                | ')'
                | '*'
                | '+'
                | ','
                | '-'
                | '.'
                | '/'
                | ':'
                | ';'
                | '<'
                | '='
                | '>'
                | '?'
                | '_'
        )
}

fn is_alphanumeric_value(text: &str) -> bool {
    (1..=20).contains(&text.chars().count()) && text.chars().all(is_cset82)
}

fn all_digits(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|byte| byte.is_ascii_digit())
}

/// Whether `key` (all digits) ends with its correct check digit.
fn valid_key(key: &str, length: usize) -> bool {
    key.len() == length
        && all_digits(key)
        && check_digit(&key[..length - 1]) == key[length - 1..].chars().next()
}

/// Decodes `%XX` escapes; `None` on a malformed escape or a result that is not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at] == b'%' {
            let hex = text.get(at + 1..at + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            at += 3;
        } else {
            out.push(bytes[at]);
            at += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Escapes what an EPC URN must escape (EPC Tag Data Standard, URI form of character set 82).
fn urn_encode(text: &str) -> String {
    encode(text, &['"', '%', '&', '/', '<', '>', '?'])
}

/// Escapes what a Digital Link path segment must escape. The set matches what the event-hash
/// normaliser produces from an EPC URN, so both routes give the same URI.
fn link_encode(text: &str) -> String {
    encode(
        text,
        &[
            '"', '%', '&', '/', '<', '>', '?', '!', '(', ')', '*', '+', ',', ':', '#', ' ',
        ],
    )
}

fn encode(text: &str, reserved: &[char]) -> String {
    let mut out = String::with_capacity(text.len());
    for character in text.chars() {
        if reserved.contains(&character) {
            out.push_str(&format!("%{:02X}", u32::from(character)));
        } else {
            out.push(character);
        }
    }
    out
}

/// Splits `company.reference.rest` with the company prefix 6 to 12 digits and company plus
/// reference `total` digits; `rest` may hold dots.
fn split_key(body: &str, total: usize) -> Option<(&str, &str, Option<&str>)> {
    let (company, after) = body.split_once('.')?;
    let reference_len = total.checked_sub(company.len())?;
    let reference = after.get(..reference_len)?;
    let rest = after.get(reference_len..)?;
    let rest = if rest.is_empty() {
        None
    } else {
        Some(rest.strip_prefix('.')?)
    };
    let ok = (6..=12).contains(&company.len())
        && all_digits(company)
        && (reference.is_empty() || all_digits(reference));
    ok.then_some((company, reference, rest))
}

/// The GTIN-14 from an EPC's company prefix and indicator-plus-item reference.
fn gtin_of(company: &str, item: &str) -> Option<String> {
    let (indicator, rest) = item.split_at_checked(1)?;
    let body = format!("{indicator}{company}{rest}");
    Some(format!("{body}{}", check_digit(&body)?))
}

impl Epc {
    /// Reads an EPC URN or GS1 Digital Link URI. Never fails: what is not a well-formed SGTIN,
    /// SSCC, SGLN, LGTIN or GTIN class is [`Epc::Other`] with the text as written.
    pub fn parse(text: &str) -> Epc {
        let parsed = if text.starts_with("urn:epc:") {
            Epc::from_urn(text)
        } else {
            Epc::from_digital_link(text)
        };
        parsed.unwrap_or_else(|| Epc::Other(text.to_owned()))
    }

    fn from_urn(text: &str) -> Option<Epc> {
        if let Some(body) = text.strip_prefix("urn:epc:id:sgtin:") {
            let (company, item, serial) = split_key(body, 13)?;
            let serial = percent_decode(serial?)?;
            is_alphanumeric_value(&serial).then_some(())?;
            return Some(Epc::Sgtin {
                gtin: gtin_of(company, item)?,
                serial,
            });
        }
        if let Some(body) = text.strip_prefix("urn:epc:id:sscc:") {
            let (company, serial, rest) = split_key(body, 17)?;
            if rest.is_some() {
                return None;
            }
            let (extension, serial) = serial.split_at_checked(1)?;
            let body = format!("{extension}{company}{serial}");
            return Some(Epc::Sscc(format!("{body}{}", check_digit(&body)?)));
        }
        if let Some(body) = text.strip_prefix("urn:epc:id:sgln:") {
            let (company, location, extension) = split_key(body, 12)?;
            let body = format!("{company}{location}");
            let gln = format!("{body}{}", check_digit(&body)?);
            let extension = match percent_decode(extension?)? {
                zero if zero == "0" => None,
                extension if is_alphanumeric_value(&extension) => Some(extension),
                _ => return None,
            };
            return Some(Epc::Sgln { gln, extension });
        }
        if let Some(body) = text.strip_prefix("urn:epc:class:lgtin:") {
            let (company, item, lot) = split_key(body, 13)?;
            let lot = percent_decode(lot?)?;
            is_alphanumeric_value(&lot).then_some(())?;
            return Some(Epc::Lgtin {
                gtin: gtin_of(company, item)?,
                lot,
            });
        }
        if let Some(body) = text.strip_prefix("urn:epc:idpat:sgtin:") {
            let (company, item, rest) = split_key(body, 13)?;
            return (rest == Some("*")).then(|| gtin_of(company, item).map(Epc::Gtin))?;
        }
        None
    }

    fn from_digital_link(text: &str) -> Option<Epc> {
        let rest = text
            .strip_prefix("https://")
            .or_else(|| text.strip_prefix("http://"))?;
        let end = rest.find(['?', '#']).unwrap_or(rest.len());
        let (host, path) = rest[..end].split_once('/')?;
        if host.is_empty() {
            return None;
        }
        let segments: Vec<&str> = path.split('/').collect();
        // A Digital Link may have a path prefix before the primary key: take the first segment
        // that names a key this type knows.
        let start = segments.iter().position(|segment| {
            matches!(*segment, "01" | "gtin" | "00" | "sscc" | "414" | "gln")
        })?;
        let key = segments[start];
        let value = percent_decode(segments.get(start + 1)?)?;
        let mut qualifiers = Vec::new();
        let mut rest = segments[start + 2..].iter();
        while let Some(ai) = rest.next() {
            if ai.is_empty() && rest.len() == 0 {
                break; // a trailing slash
            }
            let ai = match *ai {
                "cpv" => "22",
                "lot" => "10",
                "ser" => "21",
                other => other,
            };
            qualifiers.push((ai, percent_decode(rest.next()?)?));
        }
        match key {
            "01" | "gtin" => {
                let gtin = match value.len() {
                    8 | 12 | 13 | 14 => format!("{value:0>14}"),
                    _ => return None,
                };
                valid_key(&gtin, 14).then_some(())?;
                // Qualifiers in the Digital Link order 22, 10, 21, each at most once.
                let mut last = 0;
                let (mut lot, mut serial) = (None, None);
                for (ai, qualifier) in qualifiers {
                    let rank = match ai {
                        "22" => 1,
                        "10" => 2,
                        "21" => 3,
                        _ => return None,
                    };
                    if rank <= last || !is_alphanumeric_value(&qualifier) {
                        return None;
                    }
                    last = rank;
                    match ai {
                        "10" => lot = Some(qualifier),
                        "21" => serial = Some(qualifier),
                        _ => {}
                    }
                }
                Some(match (serial, lot) {
                    (Some(serial), _) => Epc::Sgtin { gtin, serial },
                    (None, Some(lot)) => Epc::Lgtin { gtin, lot },
                    (None, None) => Epc::Gtin(gtin),
                })
            }
            "00" | "sscc" => {
                (qualifiers.is_empty() && valid_key(&value, 18)).then_some(Epc::Sscc(value))
            }
            _ => {
                valid_key(&value, 13).then_some(())?;
                let extension = match qualifiers.as_slice() {
                    [] => None,
                    [("254", extension)] if is_alphanumeric_value(extension) => {
                        Some(extension.clone())
                    }
                    _ => return None,
                };
                Some(Epc::Sgln {
                    gln: value,
                    extension,
                })
            }
        }
    }

    /// The canonical GS1 Digital Link URI (`https://id.gs1.org/…`). For [`Epc::Other`], the
    /// event-hash normaliser's reading of it, if it is a GS1 identifier that knows.
    pub fn to_digital_link(&self) -> Option<String> {
        Some(match self {
            Epc::Sgtin { gtin, serial } => {
                format!("https://id.gs1.org/01/{gtin}/21/{}", link_encode(serial))
            }
            Epc::Sscc(sscc) => format!("https://id.gs1.org/00/{sscc}"),
            Epc::Sgln { gln, extension } => match extension {
                Some(extension) => {
                    format!(
                        "https://id.gs1.org/414/{gln}/254/{}",
                        link_encode(extension)
                    )
                }
                None => format!("https://id.gs1.org/414/{gln}"),
            },
            Epc::Lgtin { gtin, lot } => {
                format!("https://id.gs1.org/01/{gtin}/10/{}", link_encode(lot))
            }
            Epc::Gtin(gtin) => format!("https://id.gs1.org/01/{gtin}"),
            Epc::Other(text) => return normalise_to_digital_link(text),
        })
    }

    /// The EPC URN, given the length of the GS1 company prefix (6 to 12 digits), which a GS1
    /// key does not record. `None` if the length does not fit the key, or for [`Epc::Other`]
    /// unless it is already a URN.
    pub fn to_urn(&self, company_prefix_len: usize) -> Option<String> {
        let cp = company_prefix_len;
        if !(6..=12).contains(&cp) {
            return match self {
                Epc::Other(text) if text.starts_with("urn:") => Some(text.clone()),
                _ => None,
            };
        }
        // GTIN-14: indicator, company prefix, item reference, check digit.
        let gtin_parts = |gtin: &str| -> Option<(String, String)> {
            let company = gtin.get(1..1 + cp)?;
            let item = format!("{}{}", gtin.get(..1)?, gtin.get(1 + cp..13)?);
            Some((company.to_owned(), item))
        };
        Some(match self {
            Epc::Sgtin { gtin, serial } => {
                let (company, item) = gtin_parts(gtin)?;
                format!("urn:epc:id:sgtin:{company}.{item}.{}", urn_encode(serial))
            }
            Epc::Lgtin { gtin, lot } => {
                let (company, item) = gtin_parts(gtin)?;
                format!("urn:epc:class:lgtin:{company}.{item}.{}", urn_encode(lot))
            }
            Epc::Gtin(gtin) => {
                let (company, item) = gtin_parts(gtin)?;
                format!("urn:epc:idpat:sgtin:{company}.{item}.*")
            }
            Epc::Sscc(sscc) => {
                let company = sscc.get(1..1 + cp)?;
                let serial = format!("{}{}", sscc.get(..1)?, sscc.get(1 + cp..17)?);
                format!("urn:epc:id:sscc:{company}.{serial}")
            }
            Epc::Sgln { gln, extension } => {
                let company = gln.get(..cp)?;
                let location = gln.get(cp..12)?;
                let extension = extension
                    .as_deref()
                    .map_or_else(|| "0".to_owned(), urn_encode);
                format!("urn:epc:id:sgln:{company}.{location}.{extension}")
            }
            Epc::Other(text) if text.starts_with("urn:") => text.clone(),
            Epc::Other(_) => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urn_and_digital_link_agree() {
        let from_urn = Epc::parse("urn:epc:id:sgtin:0614141.107346.2017");
        let from_link = Epc::parse("https://example.com/some/path/01/10614141073464/21/2017?x=1");
        assert_eq!(
            from_urn,
            Epc::Sgtin {
                gtin: "10614141073464".to_owned(),
                serial: "2017".to_owned()
            }
        );
        assert_eq!(from_urn, from_link);
        assert_eq!(
            from_urn.to_urn(7).as_deref(),
            Some("urn:epc:id:sgtin:0614141.107346.2017")
        );
        assert_eq!(
            from_urn.to_digital_link().as_deref(),
            Some("https://id.gs1.org/01/10614141073464/21/2017")
        );
        assert_eq!(
            Epc::parse("urn:epc:id:sscc:0614141.1234567890"),
            Epc::Sscc("106141412345678908".to_owned())
        );
        assert_eq!(
            Epc::parse("urn:epc:id:sgln:0614141.07346.0"),
            Epc::Sgln {
                gln: "0614141073467".to_owned(),
                extension: None
            }
        );
        assert_eq!(
            Epc::parse("https://id.gs1.org/414/0614141073467/254/1234"),
            Epc::Sgln {
                gln: "0614141073467".to_owned(),
                extension: Some("1234".to_owned())
            }
        );
        assert_eq!(
            Epc::parse("urn:epc:class:lgtin:4012345.012345.998877"),
            Epc::Lgtin {
                gtin: "04012345123456".to_owned(),
                lot: "998877".to_owned()
            }
        );
        assert_eq!(
            Epc::parse("urn:epc:idpat:sgtin:4012345.012345.*"),
            Epc::Gtin("04012345123456".to_owned())
        );
        assert_eq!(
            Epc::parse("https://id.gs1.org/01/9780345418913"),
            Epc::Gtin("09780345418913".to_owned())
        );
        assert_eq!(
            Epc::parse("urn:epc:id:sgtin:0614141.812345.6789%2F%26"),
            Epc::Sgtin {
                gtin: "80614141123458".to_owned(),
                serial: "6789/&".to_owned()
            }
        );
    }

    #[test]
    fn malformed_is_other() {
        for text in [
            "urn:epc:id:sgtin:0614141.10734.2017",
            "urn:epc:id:sgtin:0614141.107346.",
            "https://id.gs1.org/01/10614141073465/21/2017",
            "https://id.gs1.org/00/106141412345678909",
            "https://id.gs1.org/01/10614141073464/99/x",
            "https://id.gs1.org/01/10614141073464/21/2017/10/LOT",
            "urn:epc:id:giai:4000001.111",
            "geo:47.506694,11.104301",
        ] {
            assert_eq!(Epc::parse(text), Epc::Other(text.to_owned()), "{text}");
        }
    }
}
