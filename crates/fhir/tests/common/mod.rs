//! Test data shared by the integration tests: the vendored FHIR R4 JSON Schema, HL7's example
//! resources and a Synthea patient Bundle, all under `tests/data/` (see its README).

#![allow(dead_code)]

use std::io::Read;
use std::path::PathBuf;

pub fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

/// Reads a gzip-compressed file from `tests/data/`.
pub fn read_gz(name: &str) -> Vec<u8> {
    let path = data_dir().join(name);
    let file = std::fs::File::open(&path).unwrap_or_else(|error| panic!("{path:?}: {error}"));
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(file)
        .read_to_end(&mut bytes)
        .unwrap_or_else(|error| panic!("{path:?}: {error}"));
    bytes
}

/// The Synthea transaction Bundle, exactly as Synthea wrote it.
pub fn synthea_bundle() -> Vec<u8> {
    read_gz("synthea-sample-complete-patient.json.gz")
}

/// HL7's R4 example resources, as (file name, bytes), sorted by name.
pub fn hl7_examples() -> Vec<(String, Vec<u8>)> {
    let dir = data_dir().join("hl7-r4-examples");
    let mut examples: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("{dir:?}: {error}"))
        .map(|entry| {
            let path = entry.expect("directory entry").path();
            let name = path
                .file_name()
                .expect("file name")
                .to_string_lossy()
                .into_owned();
            let bytes = std::fs::read(&path).unwrap_or_else(|error| panic!("{path:?}: {error}"));
            (name, bytes)
        })
        .filter(|(name, _)| name.ends_with(".json"))
        .collect();
    examples.sort();
    examples
}
