//! The EPCIS event hash ID (GS1 CBV 2.0 §8.9): a syntax-independent fingerprint of one event,
//! `ni:///sha-256;<hex>?ver=CBV2.0`, over a canonical "pre-hash" string of its content.
//!
//! The hash only works as an identifier if every party computes the same string, and the
//! standard's prose leaves room (which list entries sort, where extensions go, how a JSON
//! business transaction is laid out). So this follows the reference implementation
//! (RalphTro/epcis-event-hash-generator, whose test vectors `tests/data/epcis-hash` holds) step
//! by step: the event becomes a tree of `(name, text, children)` the way its `json_to_py` and
//! `json_xml_model_mismatch_correction` build it, and the pre-hash is read off that tree in the
//! canonical property order, with what is left (business transactions, sources, destinations,
//! ILMD, user extensions) appended sorted.
//!
//! Deliberate differences from the reference, all in cases its vectors do not cover:
//! * Bare CBV names (`shipping`) are expanded using the event's own values only; the reference
//!   looks across the whole document, which would make an event's hash depend on its neighbours.
//! * CURIE prefixes come from the standard EPCIS context as well as the document's and the
//!   event's `@context` (the reference reads only a document `@context` given as a list). The
//!   event's `@context` member itself is not hashed.
//! * A business transaction, source or destination contributes `type` first, then its id, then
//!   any other members sorted, whatever order they arrived in. The reference keeps the received
//!   order (and only the first two members, failing on an entry with one); its vectors, like all
//!   GS1 examples, write `type` first.
//! * Numbers are canonicalised exactly from their decimal text (see `decimal`), timestamps without
//!   an offset are read as UTC (the reference uses the local zone of the machine), and a
//!   timestamp that rounds up to the next second carries over (the reference fails).

use std::collections::{BTreeMap, BTreeSet};

use sha2::{Digest, Sha256};

use crate::context::{CBV, CodeList, GS1_VOC, Prefixes, STANDARD};
use crate::decimal::Decimal;
use crate::dl::normalise_to_digital_link;
use crate::json::Node;
use crate::time::parse_timestamp;

/// One element of the intermediate tree: a named value, or a business transaction / source /
/// destination entry whose members keep their received order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Item {
    Node(Tree),
    Entry(Vec<Item>),
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Tree {
    name: String,
    text: String,
    children: Vec<Item>,
}

/// The canonical property order: a name, and the order of its children if they have one.
struct Order {
    name: &'static str,
    children: &'static [Order],
}

const fn leaf(name: &'static str) -> Order {
    Order {
        name,
        children: &[],
    }
}

const EPC: &[Order] = &[leaf("epc")];
const QUANTITY: &[Order] = &[Order {
    name: "quantityElement",
    children: &[leaf("epcClass"), leaf("quantity"), leaf("uom")],
}];
const ID: &[Order] = &[leaf("id")];

/// The order of event fields. `bizTransactionList`, `sourceList` and `destinationList` are not
/// here: the reference lists them, but in a form that never matches, so they land among the
/// remaining fields, and its vectors depend on that.
const PROPERTY_ORDER: &[Order] = &[
    leaf("eventTime"),
    leaf("eventTimeZoneOffset"),
    leaf("certificationInfo"),
    leaf("parentID"),
    Order {
        name: "epcList",
        children: EPC,
    },
    Order {
        name: "inputEPCList",
        children: EPC,
    },
    Order {
        name: "childEPCs",
        children: EPC,
    },
    Order {
        name: "quantityList",
        children: QUANTITY,
    },
    Order {
        name: "childQuantityList",
        children: QUANTITY,
    },
    Order {
        name: "inputQuantityList",
        children: QUANTITY,
    },
    Order {
        name: "outputEPCList",
        children: EPC,
    },
    Order {
        name: "outputQuantityList",
        children: QUANTITY,
    },
    leaf("action"),
    leaf("transformationID"),
    leaf("bizStep"),
    leaf("disposition"),
    Order {
        name: "persistentDisposition",
        children: &[leaf("set"), leaf("unset")],
    },
    Order {
        name: "readPoint",
        children: ID,
    },
    Order {
        name: "bizLocation",
        children: ID,
    },
    Order {
        name: "sensorElementList",
        children: &[Order {
            name: "sensorElement",
            children: &[
                Order {
                    name: "sensorMetadata",
                    children: &[
                        leaf("time"),
                        leaf("startTime"),
                        leaf("endTime"),
                        leaf("deviceID"),
                        leaf("deviceMetadata"),
                        leaf("rawData"),
                        leaf("dataProcessingMethod"),
                        leaf("bizRules"),
                    ],
                },
                Order {
                    name: "sensorReport",
                    children: &[
                        leaf("type"),
                        leaf("exception"),
                        leaf("deviceID"),
                        leaf("deviceMetadata"),
                        leaf("rawData"),
                        leaf("dataProcessingMethod"),
                        leaf("time"),
                        leaf("microorganism"),
                        leaf("chemicalSubstance"),
                        leaf("value"),
                        leaf("component"),
                        leaf("stringValue"),
                        leaf("booleanValue"),
                        leaf("hexBinaryValue"),
                        leaf("uriValue"),
                        leaf("minValue"),
                        leaf("maxValue"),
                        leaf("meanValue"),
                        leaf("sDev"),
                        leaf("percRank"),
                        leaf("percValue"),
                        leaf("uom"),
                        leaf("coordinateReferenceSystem"),
                    ],
                },
            ],
        }],
    },
];

/// Names whose entries keep their members' received order.
const ENTRY_LISTS: [&str; 3] = ["bizTransactionList", "sourceList", "destinationList"];
const ENTRY_IDS: [&str; 3] = ["bizTransaction", "source", "destination"];

/// The pre-hash string of `event` (an event object) under `prefixes`. Top-level user extension
/// fields whose expanded name is in `ignored` are left out (see [`ignored_fields`]).
pub(crate) fn pre_hash(event: &Node, prefixes: &Prefixes, ignored: &BTreeSet<String>) -> String {
    let event = match event {
        Node::Object(members) if !ignored.is_empty() => Node::Object(
            members
                .iter()
                .filter(|(key, _)| !(key.contains(':') && ignored.contains(&prefixes.expand(key))))
                .cloned()
                .collect(),
        ),
        other => other.clone(),
    };
    let event = expand_bare_names(&event, prefixes);
    let tree = correct(to_tree(&event, prefixes));
    let mut children = tree.children;
    let mut out = format!("eventType={}", tree.name);
    out.push_str(&ordered(&mut children, PROPERTY_ORDER));
    children.retain(|item| {
        !matches!(item, Item::Node(node)
            if matches!(node.name.as_str(), "recordTime" | "eventID" | "type" | "errorDeclaration" | "@context"))
    });
    out.push_str(&generic(&children));
    out
}

/// The fields a document asks to leave out of its events' hashes: the reference implementation
/// honours a member `<prefix>:ignoreFields` (a list of field names) at document level or in
/// `epcisBody.queryResults`, so that a repository's own bookkeeping fields (a capture id, a
/// stored hash) do not change an event's identity. Only user extension fields (names with a
/// namespace prefix) can be left out this way, never standard EPCIS fields: otherwise a sender
/// could make two different events share one hash ID.
pub(crate) fn ignored_fields(document: &Node, prefixes: &Prefixes) -> BTreeSet<String> {
    let mut ignored = BTreeSet::new();
    let query_results = document
        .get("epcisBody")
        .and_then(|body| body.get("queryResults"));
    for holder in [Some(document), query_results].into_iter().flatten() {
        let Node::Object(members) = holder else {
            continue;
        };
        for (key, value) in members {
            if prefixes
                .split(key)
                .is_some_and(|(_, local)| local == "ignoreFields")
            {
                for field in value.items().iter().filter_map(Node::as_str) {
                    if field.contains(':') {
                        ignored.insert(prefixes.expand(field));
                    }
                }
            }
        }
    }
    ignored
}

/// `ni:///sha-256;<hex>?ver=CBV2.0` of a pre-hash string.
pub(crate) fn hash_id(pre_hash: &str) -> String {
    format!(
        "ni:///sha-256;{}?ver=CBV2.0",
        hex::encode(Sha256::digest(pre_hash.as_bytes()))
    )
}

// ---------------------------------------------------------------------------------------------
// Bare names → Web vocabulary URIs

/// Which code list governs a value at `path` (member names from the event down, array levels
/// skipped), for the fields the standard context types as vocabulary terms.
fn code_list(path: &[&str]) -> Option<&'static CodeList> {
    let standard = &*STANDARD;
    Some(match path {
        ["bizStep"] => &standard.biz_steps,
        ["disposition"] | ["persistentDisposition", "set" | "unset"] => &standard.dispositions,
        ["bizTransactionList", "type"] => &standard.biz_transaction_types,
        ["sourceList" | "destinationList", "type"] => &standard.source_destination_types,
        ["sensorElementList", "sensorReport", "type"] => &standard.measurement_types,
        ["sensorElementList", "sensorReport", "exception"] => &standard.sensor_alerts,
        ["sensorElementList", "sensorReport", "component"] => &standard.components,
        ["errorDeclaration", "reason"] => &standard.error_reasons,
        _ => return None,
    })
}

/// Collects the Web vocabulary URIs the event's values expand to under JSON-LD: code-list terms
/// in vocabulary fields, CURIEs, and such URIs written out in full.
fn collect_vocabulary<'n>(
    node: &'n Node,
    path: &mut Vec<&'n str>,
    prefixes: &Prefixes,
    found: &mut BTreeSet<String>,
) {
    match node {
        Node::String(text) => {
            let expanded = code_list(path)
                .and_then(|list| list.get(text).cloned())
                .unwrap_or_else(|| prefixes.expand(text));
            if expanded.starts_with(CBV.trim_end_matches('/'))
                || expanded.starts_with(GS1_VOC.trim_end_matches('/'))
            {
                found.insert(expanded);
            }
        }
        Node::Array(items) => {
            for item in items {
                collect_vocabulary(item, path, prefixes, found);
            }
        }
        Node::Object(members) => {
            for (key, value) in members {
                if key == "@context" {
                    continue;
                }
                path.push(key);
                collect_vocabulary(value, path, prefixes, found);
                path.pop();
            }
        }
        _ => {}
    }
}

/// The event with every bare string that names exactly one of its vocabulary URIs (by ending in
/// `-name` or `/name`) replaced by that URI, as the reference does after JSON-LD expansion.
fn expand_bare_names(event: &Node, prefixes: &Prefixes) -> Node {
    let mut found = BTreeSet::new();
    collect_vocabulary(event, &mut Vec::new(), prefixes, &mut found);
    let index = SuffixIndex::new(&found);
    fn replace(node: &Node, index: &SuffixIndex<'_>) -> Node {
        match node {
            Node::String(text) => match index.unique(text) {
                Some(uri) => Node::String(uri.to_owned()),
                None => node.clone(),
            },
            Node::Array(items) => {
                Node::Array(items.iter().map(|item| replace(item, index)).collect())
            }
            Node::Object(members) => Node::Object(
                members
                    .iter()
                    .map(|(key, value)| {
                        if key == "@context" {
                            (key.clone(), value.clone())
                        } else {
                            (key.clone(), replace(value, index))
                        }
                    })
                    .collect(),
            ),
            other => other.clone(),
        }
    }
    replace(event, &index)
}

/// The vocabulary URIs, each spelt backwards and sorted, so that the URIs ending in `-name` or
/// `/name` are found by binary search rather than by trying each URI for each of the event's
/// strings (which a large event could make quadratic).
struct SuffixIndex<'u> {
    reversed: Vec<(String, &'u str)>,
}

impl<'u> SuffixIndex<'u> {
    fn new(uris: &'u BTreeSet<String>) -> SuffixIndex<'u> {
        let mut reversed: Vec<(String, &str)> = uris
            .iter()
            .map(|uri| (uri.chars().rev().collect(), uri.as_str()))
            .collect();
        reversed.sort();
        SuffixIndex { reversed }
    }

    /// The one URI that ends in `-text` or `/text`, if exactly one does.
    fn unique(&self, text: &str) -> Option<&'u str> {
        let backwards: String = text.chars().rev().collect();
        let mut found = None;
        for separator in ['-', '/'] {
            let key = format!("{backwards}{separator}");
            let start = self
                .reversed
                .partition_point(|(reversed, _)| reversed.as_str() < key.as_str());
            for (reversed, uri) in &self.reversed[start..] {
                if !reversed.starts_with(&key) {
                    break;
                }
                if found.is_some() {
                    return None;
                }
                found = Some(*uri);
            }
        }
        found
    }
}

// ---------------------------------------------------------------------------------------------
// JSON → tree

/// A scalar's text as the reference sees it (Python's `str()` of the parsed JSON value), with a
/// CURIE prefix expanded.
fn scalar_text(node: &Node, prefixes: &Prefixes) -> String {
    match node {
        Node::String(text) => prefixes.expand(text),
        // The number's text: canonicalised later exactly as Python's float text would be.
        Node::Number(text) => {
            if text.contains(['.', 'e', 'E']) {
                text.clone()
            } else {
                // A JSON integer prints without sign for zero (`-0` is 0).
                Decimal::parse_json(text)
                    .and_then(|value| value.canonical_text())
                    .unwrap_or_else(|| text.clone())
            }
        }
        Node::Bool(true) => "True".to_owned(),
        Node::Bool(false) => "False".to_owned(),
        Node::Null => "None".to_owned(),
        Node::Array(_) | Node::Object(_) => String::new(),
    }
}

/// A member name with its CURIE prefix expanded to `{iri}local`.
fn key_name(key: &str, prefixes: &Prefixes) -> String {
    match prefixes.split(key) {
        Some((iri, local)) => format!("{{{iri}}}{local}"),
        None => key.to_owned(),
    }
}

fn to_tree(node: &Node, prefixes: &Prefixes) -> Tree {
    match node {
        Node::Array(items) => {
            let mut children: Vec<Item> = items
                .iter()
                .map(|item| Item::Node(to_tree(item, prefixes)))
                .collect();
            let keeps_order = items
                .iter()
                .any(|item| item.as_str().is_some_and(|text| ENTRY_IDS.contains(&text)));
            if !keeps_order {
                children.sort();
            }
            Tree {
                name: String::new(),
                text: String::new(),
                children,
            }
        }
        Node::Object(members) => {
            let name = match node.get("type") {
                Some(Node::String(text)) => text.clone(),
                _ => String::new(),
            };
            let text = node
                .get("#text")
                .map(|text| scalar_text(text, prefixes))
                .unwrap_or_default();
            let mut children = Vec::new();
            for (key, value) in members {
                if matches!(
                    key.as_str(),
                    "#text" | "rdfs:comment" | "comment" | "@context"
                ) || key.starts_with("@xmlns")
                {
                    continue;
                }
                let child = to_tree(value, prefixes);
                let key = key_name(key, prefixes);
                if matches!(value, Node::Array(_)) {
                    for element in child.children {
                        if let Item::Node(element) = element {
                            children.push(Item::Node(Tree {
                                name: key.clone(),
                                text: element.text,
                                children: element.children,
                            }));
                        }
                    }
                } else {
                    children.push(Item::Node(Tree {
                        name: key,
                        text: child.text,
                        children: child.children,
                    }));
                }
            }
            let is_entry = members
                .iter()
                .any(|(key, _)| ENTRY_IDS.contains(&key.as_str()));
            if is_entry {
                // A business transaction, source or destination: `type` first, then the id, as
                // the reference's vectors have them (it keeps the received order, and every
                // example writes `type` first). Fixing the order keeps the hash a function of
                // the event's content: a JSON object's member order carries no meaning, and
                // is lost when the event is stored as a `serde_json::Value`.
                let rank = |item: &Item| match item {
                    Item::Node(node) if node.name == "type" => 0,
                    Item::Node(node) if ENTRY_IDS.contains(&node.name.as_str()) => 1,
                    _ => 2,
                };
                children.sort_by(|a, b| rank(a).cmp(&rank(b)).then_with(|| a.cmp(b)));
            } else {
                children.sort();
            }
            Tree {
                name,
                text,
                children,
            }
        }
        scalar => Tree {
            name: String::new(),
            text: scalar_text(scalar, prefixes),
            children: Vec::new(),
        },
    }
}

/// Reshapes the JSON tree into the XML-shaped tree the canonical order is written for: list
/// members get their element names (`epcList` → `epc`, `quantityList` → `quantityElement`, …),
/// business transactions, sources and destinations become ordered entries.
fn correct(tree: Tree) -> Tree {
    let mut rest: Vec<Item> = Vec::new();
    let mut lists: Vec<(String, Vec<Item>)> = Vec::new();
    let mut list_index: BTreeMap<String, usize> = BTreeMap::new();
    for item in tree.children {
        match item {
            Item::Node(node) if node.name.ends_with("List") => {
                let element = node.name[..node.name.len() - 4].to_owned();
                let element = Item::Node(Tree {
                    name: element,
                    text: node.text,
                    children: node.children,
                });
                match list_index.get(&node.name) {
                    Some(&index) => lists[index].1.push(element),
                    None => {
                        list_index.insert(node.name.clone(), lists.len());
                        lists.push((node.name, vec![element]));
                    }
                }
            }
            other => rest.push(other),
        }
    }
    for (name, elements) in lists {
        let children = if ENTRY_LISTS.contains(&name.as_str()) {
            elements
                .into_iter()
                .map(|element| match element {
                    Item::Node(node) => Item::Entry(node.children),
                    entry => entry,
                })
                .collect()
        } else {
            elements
        };
        rest.push(Item::Node(Tree {
            name,
            text: String::new(),
            children,
        }));
    }
    let mut child_epcs = Vec::new();
    rest.retain(|item| match item {
        Item::Node(node) if node.name == "childEPCs" => {
            child_epcs.push(Item::Node(Tree {
                name: "epc".to_owned(),
                text: node.text.clone(),
                children: Vec::new(),
            }));
            false
        }
        _ => true,
    });
    if !child_epcs.is_empty() {
        rest.push(Item::Node(Tree {
            name: "childEPCs".to_owned(),
            text: String::new(),
            children: child_epcs,
        }));
    }
    let children: Vec<Item> = rest
        .into_iter()
        .map(|item| match item {
            Item::Node(node) if !ENTRY_LISTS.contains(&node.name.as_str()) => {
                Item::Node(correct(node))
            }
            other => other,
        })
        .collect();
    let name = match tree.name.as_str() {
        "inputEPC" | "outputEPC" => "epc".to_owned(),
        "inputQuantity" | "outputQuantity" | "childQuantity" => "quantityElement".to_owned(),
        "quantity" if !children.is_empty() => "quantityElement".to_owned(),
        _ => tree.name,
    };
    Tree {
        name,
        text: tree.text,
        children,
    }
}

// ---------------------------------------------------------------------------------------------
// Tree → pre-hash string

/// Trims what Python's `str.strip()` trims.
fn strip(text: &str) -> &str {
    text.trim_matches(|character: char| {
        character.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&character)
    })
}

/// A value's canonical form: CBV URNs as Web URIs, numbers without trailing zeros, GS1
/// identifiers as canonical Digital Link URIs.
fn canonical_value(text: &str) -> String {
    let mut text = text.to_owned();
    for (urn, web) in [
        (
            "urn:epcglobal:cbv:bizstep:",
            "https://ref.gs1.org/cbv/BizStep-",
        ),
        ("urn:epcglobal:cbv:disp:", "https://ref.gs1.org/cbv/Disp-"),
        ("urn:epcglobal:cbv:btt:", "https://ref.gs1.org/cbv/BTT-"),
        ("urn:epcglobal:cbv:sdt:", "https://ref.gs1.org/cbv/SDT-"),
        ("urn:epcglobal:cbv:er:", "https://ref.gs1.org/cbv/ER-"),
    ] {
        if text.contains(urn) {
            text = text.replace(urn, web);
        }
    }
    if let Some(number) = Decimal::parse_lenient(&text).and_then(|value| value.canonical_text()) {
        text = number;
    }
    normalise_to_digital_link(&text).unwrap_or(text)
}

/// Picks the children named in `order` out of `items`, in that order, each group sorted.
/// Children fully used are removed from `items`; user extensions of this level (names
/// `{namespace/}local`) are appended after the named ones. What remains is hashed later with the
/// other remaining fields.
fn ordered(items: &mut Vec<Item>, order: &[Order]) -> String {
    let extensions = take_extensions(items);
    let mut out = String::new();
    for entry in order {
        let mut values = Vec::new();
        let mut used_up = false;
        for item in items.iter_mut() {
            let Item::Node(node) = item else {
                continue;
            };
            if node.name != entry.name {
                continue;
            }
            let text = node_pre_hash(node, entry.children);
            if !text.is_empty() {
                values.push(text);
            }
            used_up |= node.children.is_empty();
        }
        // Children with nothing left are removed in one pass (removing them one by one would be
        // quadratic in a long EPC list).
        if used_up {
            items.retain(|item| {
                !matches!(item, Item::Node(node) if node.name == entry.name && node.children.is_empty())
            });
        }
        values.sort();
        out.extend(values);
    }
    if !extensions.is_empty() {
        out.push_str(&generic(&extensions));
    }
    out
}

/// Removes and returns the user extensions among `items`, except at event level (recognised, as
/// the reference does, by an `eventTime` or `action` child), where they join the remaining fields.
fn take_extensions(items: &mut Vec<Item>) -> Vec<Item> {
    if items.len() <= 1 {
        return Vec::new();
    }
    let event_level = items.iter().any(|item| {
        matches!(item, Item::Node(node) if node.name.contains("eventTime") || node.name.contains("action"))
    });
    if event_level {
        return Vec::new();
    }
    let mut extensions = Vec::new();
    items.retain(|item| match item {
        Item::Node(node) if node.name.contains('{') && node.name.contains("/}") => {
            extensions.push(item.clone());
            false
        }
        _ => true,
    });
    extensions
}

fn node_pre_hash(node: &mut Tree, children: &[Order]) -> String {
    let nested = if children.is_empty() {
        String::new()
    } else {
        ordered(&mut node.children, children)
    };
    let mut value = String::new();
    if !node.text.is_empty() {
        let text = strip(&node.text);
        let lower = node.name.to_lowercase();
        let text = if lower.contains("time") && !lower.contains("offset") {
            parse_timestamp(text, None)
                .and_then(|instant| instant.utc_text())
                .unwrap_or_else(|| text.to_owned())
        } else {
            canonical_value(text)
        };
        if !text.is_empty() {
            value = format!("={text}");
        }
    }
    if value.is_empty() && nested.is_empty() {
        return String::new();
    }
    format!("{}{value}{nested}", node.name)
}

/// Hashes fields outside the canonical order: `name=value` followed by the children, sorted,
/// except inside a business transaction, source or destination entry.
fn generic(items: &[Item]) -> String {
    let mut values: Vec<String> = items
        .iter()
        .map(|item| match item {
            Item::Entry(members) => generic(members),
            Item::Node(node) => {
                let text = strip(&node.text);
                let value = if text.is_empty() {
                    String::new()
                } else {
                    format!("={}", canonical_value(text))
                };
                format!("{}{value}{}", node.name, generic(&node.children))
            }
        })
        .collect();
    let keeps_order = items
        .iter()
        .any(|item| matches!(item, Item::Node(node) if ENTRY_IDS.contains(&node.name.as_str())));
    if items.len() > 1 && !keeps_order {
        values.sort();
    }
    values.concat()
}
