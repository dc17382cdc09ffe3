//! The EPCIS event hash ID against the reference implementation's vectors
//! (RalphTro/epcis-event-hash-generator, `tests/data/epcis-hash`, MIT): every JSON-LD example's
//! `.hashes`, the "same event, different representation" file, and the Digital Link normaliser
//! table.
//!
//! XML inputs (the `.xml` examples and most `expected_equal` files) are out of scope: medledger
//! captures EPCIS JSON-LD only.

use std::path::{Path, PathBuf};

use medledger_epcis::{event_hash_id, normalise_to_digital_link, parse_document};

fn data(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/epcis-hash")
        .join(path)
}

/// The `.jsonld` examples, sorted by name.
fn examples() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(data("tests/examples"))
        .expect("examples folder")
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "jsonld"))
        .collect();
    files.sort();
    files
}

/// Checks the hashes of one example file against its `.hashes`, in document order. On a
/// mismatch, shows the pre-hash next to the `.prehashes` line (some are stale upstream; see the
/// data README).
fn check(path: &Path) -> Result<usize, String> {
    let name = path
        .file_name()
        .and_then(|name| name.to_str())
        .unwrap_or("?");
    let bytes = std::fs::read(path).map_err(|error| format!("{name}: {error}"))?;
    let document = parse_document(&bytes).map_err(|error| format!("{name}: {error}"))?;
    let expected = std::fs::read_to_string(path.with_extension("hashes"))
        .map_err(|error| format!("{name}: no .hashes: {error}"))?;
    let expected: Vec<&str> = expected
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect();
    let prehashes = std::fs::read_to_string(path.with_extension("prehashes")).unwrap_or_default();
    let prehashes: Vec<&str> = prehashes.lines().filter(|line| !line.is_empty()).collect();
    if document.events.len() != expected.len() {
        return Err(format!(
            "{name}: {} events, {} hashes",
            document.events.len(),
            expected.len()
        ));
    }
    // Recomputing from the stored event gives the same hash, unless the document told the
    // hash to leave fields out (then the events that have such fields hash differently).
    let directive = String::from_utf8_lossy(&bytes).contains(":ignoreFields");
    for (index, event) in document.events.iter().enumerate() {
        let again = event_hash_id(&event.json, &document.context);
        let has_ignored = event.json.get("example:captureID").is_some();
        if (again == event.hash) == (directive && has_ignored) {
            return Err(format!("{name} event {index}: recomputed {again}"));
        }
    }
    for (index, (event, expected)) in document.events.iter().zip(&expected).enumerate() {
        if event.hash != *expected {
            return Err(format!(
                "{name} event {index}: hash {} expected {expected}\n ours:      {}\n prehashes: {}",
                event.hash,
                event.pre_hash,
                prehashes.get(index).unwrap_or(&"(none)")
            ));
        }
    }
    Ok(expected.len())
}

#[test]
fn every_json_example_matches_its_hashes() {
    let files = examples();
    assert_eq!(files.len(), 22, "the 22 JSON-LD examples");
    let mut failures = Vec::new();
    let mut events = 0;
    for path in &files {
        match check(path) {
            Ok(count) => events += count,
            Err(failure) => failures.push(failure),
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    assert_eq!(events, 43);
}

#[test]
fn representations_of_one_event_hash_alike() {
    let bytes = std::fs::read(data(
        "tests/expected_equal/ReferenceEventHashAlgorithm.json",
    ))
    .expect("expected_equal file");
    let document = parse_document(&bytes).expect("valid document");
    assert!(document.events.len() >= 2);
    let first = &document.events[0].hash;
    for event in &document.events {
        assert_eq!(&event.hash, first, "{}", event.pre_hash);
    }
    // It is the reference example, whose hash is known.
    let reference =
        std::fs::read_to_string(data("tests/examples/ReferenceEventHashAlgorithm.hashes"))
            .expect("hashes");
    assert_eq!(first, reference.trim());
}

#[test]
fn digital_link_normaliser_table() {
    let table = std::fs::read_to_string(data("dl_normaliser_vectors.tsv")).expect("table");
    let mut cases = 0;
    let mut failures = Vec::new();
    for line in table
        .lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
    {
        let fields: Vec<&str> = line.split('\t').collect();
        let [input, expected, source] = fields[..] else {
            panic!("malformed line {line:?}");
        };
        let expected = (expected != "<none>").then_some(expected);
        let got = normalise_to_digital_link(input);
        if got.as_deref() != expected {
            failures.push(format!(
                "{source}: {input} -> {got:?}, expected {expected:?}"
            ));
        }
        cases += 1;
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(cases, 70);
}
