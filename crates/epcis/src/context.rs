//! The JSON-LD `@context` as far as this crate needs it: CURIE prefixes (the standard EPCIS
//! context's and a document's own) and the CBV code lists the standard context maps bare names
//! onto (`shipping` → `https://ref.gs1.org/cbv/BizStep-shipping`).
//!
//! No context is ever fetched: the standard EPCIS 2.0 context is compiled in
//! (`schema/epcis-context.jsonld`, a copy of the one GS1 publishes), and any context URL a
//! document names is read as that standard context. The "simple" context of older examples uses
//! the same names.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use serde_json::Value;

use crate::json::Node;

/// The EPCIS 2.0 JSON-LD context, as published at
/// `https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld`.
pub const EPCIS_CONTEXT_JSONLD: &str = include_str!("../schema/epcis-context.jsonld");

/// The URL of the standard EPCIS 2.0 context, which rendered documents name.
pub const EPCIS_CONTEXT_URL: &str =
    "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld";

pub(crate) const CBV: &str = "https://ref.gs1.org/cbv/";
pub(crate) const GS1_VOC: &str = "https://gs1.org/voc/";

/// A code list of the standard context: bare name → full IRI.
pub(crate) type CodeList = BTreeMap<String, String>;

/// What the crate reads from the standard context.
#[derive(Debug, Default)]
pub(crate) struct Standard {
    /// CURIE prefixes (`cbv`, `gs1`, `cbvmda`, …) → IRI.
    pub(crate) prefixes: BTreeMap<String, String>,
    pub(crate) biz_steps: CodeList,
    pub(crate) dispositions: CodeList,
    pub(crate) biz_transaction_types: CodeList,
    pub(crate) source_destination_types: CodeList,
    pub(crate) measurement_types: CodeList,
    pub(crate) sensor_alerts: CodeList,
    pub(crate) components: CodeList,
    pub(crate) error_reasons: CodeList,
}

/// The standard context, read once. The text is compiled in, and a unit test checks that every
/// list below is found, so the fallback to empty lists never happens in a released build.
pub(crate) static STANDARD: LazyLock<Standard> = LazyLock::new(|| {
    serde_json::from_str::<Value>(EPCIS_CONTEXT_JSONLD)
        .map(|value| Standard::read(&value["@context"]))
        .unwrap_or_default()
});

/// Whether an IRI can serve as a CURIE prefix (JSON-LD 1.1: it ends with a general delimiter).
fn is_prefix_iri(iri: &str) -> bool {
    iri.contains(':') && iri.ends_with(['/', '#', ':', '?', '[', ']', '@'])
}

impl Standard {
    fn read(context: &Value) -> Standard {
        let mut prefixes = BTreeMap::new();
        if let Some(terms) = context.as_object() {
            for (term, definition) in terms {
                if let Some(iri) = definition.as_str().filter(|iri| is_prefix_iri(iri)) {
                    prefixes.insert(term.clone(), iri.to_owned());
                }
            }
        }
        let expand = |curie: &str| -> String {
            match curie.split_once(':') {
                Some((prefix, rest)) => prefixes
                    .get(prefix)
                    .map_or_else(|| curie.to_owned(), |iri| format!("{iri}{rest}")),
                None => curie.to_owned(),
            }
        };
        let list = |scoped: &Value| -> CodeList {
            let mut out = CodeList::new();
            let maps: Vec<&Value> = match scoped {
                Value::Array(items) => items.iter().collect(),
                other => vec![other],
            };
            for map in maps {
                if let Some(terms) = map.as_object() {
                    for (name, iri) in terms {
                        if let Some(iri) = iri.as_str().filter(|_| !name.starts_with('@')) {
                            let iri = expand(iri);
                            if iri.starts_with(CBV) || iri.starts_with(GS1_VOC) {
                                out.insert(name.clone(), iri);
                            }
                        }
                    }
                }
            }
            out
        };
        let sensor_report = &context["sensorElementList"]["@context"]["sensorReport"]["@context"];
        Standard {
            biz_steps: list(&context["bizStep"]["@context"]),
            dispositions: list(&context["disposition"]["@context"]),
            biz_transaction_types: list(
                &context["bizTransactionList"]["@context"]["type"]["@context"],
            ),
            source_destination_types: list(&context["sourceList"]["@context"]["type"]["@context"]),
            measurement_types: list(&sensor_report["type"]["@context"]),
            sensor_alerts: list(&sensor_report["exception"]["@context"]),
            components: list(&sensor_report["component"]["@context"]),
            error_reasons: list(&context["errorDeclaration"]["@context"]["reason"]["@context"]),
            prefixes,
        }
    }
}

/// The CURIE prefixes in force for one event: the standard context's, then the document's, then
/// the event's own (a later definition wins, as in JSON-LD).
#[derive(Debug, Clone, Default)]
pub(crate) struct Prefixes {
    map: BTreeMap<String, String>,
}

impl Prefixes {
    /// The standard prefixes with those `context` (a document's or event's `@context`) defines.
    pub(crate) fn standard() -> Prefixes {
        Prefixes {
            map: STANDARD.prefixes.clone(),
        }
    }

    /// Adds the prefixes a `@context` value defines: string members of its objects, whether the
    /// context is one object or a list of URLs and objects.
    pub(crate) fn add(&mut self, context: &Node) {
        for entry in context.items() {
            if let Node::Object(members) = entry {
                for (term, definition) in members {
                    let iri = match definition {
                        Node::String(iri) => Some(iri.as_str()),
                        Node::Object(_) => definition.get("@id").and_then(Node::as_str),
                        _ => None,
                    };
                    if let Some(iri) = iri.filter(|iri| !term.starts_with('@') && iri.contains(':'))
                    {
                        self.map.insert(term.clone(), iri.to_owned());
                    }
                }
            }
        }
    }

    /// The IRI `prefix` stands for.
    pub(crate) fn get(&self, prefix: &str) -> Option<&str> {
        self.map.get(prefix).map(String::as_str)
    }

    /// `(iri, local)` if `text` is a CURIE `prefix:local` with a known prefix. `//` after the
    /// colon means an absolute IRI (`https://…`), never a CURIE.
    pub(crate) fn split<'t>(&self, text: &'t str) -> Option<(&str, &'t str)> {
        let (prefix, local) = text.split_once(':')?;
        if local.starts_with("//") {
            return None;
        }
        Some((self.get(prefix)?, local))
    }

    /// `text` with a known CURIE prefix expanded; anything else unchanged.
    pub(crate) fn expand(&self, text: &str) -> String {
        match self.split(text) {
            Some((iri, local)) => format!("{iri}{local}"),
            None => text.to_owned(),
        }
    }
}

/// The CBV short name of a vocabulary value written in any of its forms: bare (`shipping`), as a
/// CURIE (`cbv:BizStep-shipping`), as the GS1 Web URI (`https://ref.gs1.org/cbv/BizStep-shipping`)
/// or as the EPCIS 1.x URN (`urn:epcglobal:cbv:bizstep:shipping`). `web` is the term's prefix in
/// the Web vocabulary (`BizStep-`), `urn` its URN prefix. Values outside the CBV (a company's own
/// URI) are returned as written.
pub(crate) fn short_name(value: &str, web: &str, urn: &str, prefixes: &Prefixes) -> String {
    let value = value.trim();
    let expanded = prefixes.expand(value);
    for base in [CBV, GS1_VOC] {
        if let Some(name) = expanded
            .strip_prefix(base)
            .and_then(|rest| rest.strip_prefix(web))
        {
            return name.to_owned();
        }
    }
    if !urn.is_empty()
        && let Some(name) = expanded.strip_prefix(urn)
    {
        return name.to_owned();
    }
    value.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_standard_context_is_read() {
        let standard = &*STANDARD;
        assert_eq!(standard.prefixes.get("cbv").map(String::as_str), Some(CBV));
        assert_eq!(
            standard.prefixes.get("cbvmda").map(String::as_str),
            Some("urn:epcglobal:cbv:mda:")
        );
        assert_eq!(
            standard.biz_steps.get("shipping").map(String::as_str),
            Some("https://ref.gs1.org/cbv/BizStep-shipping")
        );
        assert_eq!(
            standard.dispositions.get("in_transit").map(String::as_str),
            Some("https://ref.gs1.org/cbv/Disp-in_transit")
        );
        assert_eq!(
            standard.biz_transaction_types.get("po").map(String::as_str),
            Some("https://ref.gs1.org/cbv/BTT-po")
        );
        assert_eq!(standard.source_destination_types.len(), 3);
        assert_eq!(
            standard
                .measurement_types
                .get("Temperature")
                .map(String::as_str),
            Some("https://gs1.org/voc/Temperature")
        );
        assert_eq!(standard.sensor_alerts.len(), 2);
        assert_eq!(standard.components.len(), 14);
        assert_eq!(standard.error_reasons.len(), 2);
        assert!(standard.biz_steps.len() > 30 && standard.dispositions.len() > 30);
    }

    #[test]
    fn short_names() {
        let prefixes = Prefixes::standard();
        for value in [
            "shipping",
            "cbv:BizStep-shipping",
            "https://ref.gs1.org/cbv/BizStep-shipping",
            "urn:epcglobal:cbv:bizstep:shipping",
            " shipping ",
        ] {
            assert_eq!(
                short_name(value, "BizStep-", "urn:epcglobal:cbv:bizstep:", &prefixes),
                "shipping"
            );
        }
        assert_eq!(
            short_name(
                "https://example.com/step",
                "BizStep-",
                "urn:epcglobal:cbv:bizstep:",
                &prefixes
            ),
            "https://example.com/step"
        );
    }
}
