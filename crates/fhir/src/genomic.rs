//! Genomic files as FHIR R4: a file (a VCF, plain or bgzip-compressed) is held as a
//! `MolecularSequence` record whose `repository` links to the file's bytes at `Binary/{id}`
//! (same id), and whose `genomic-file` extension names the file's media type, length and SHA-256.
//!
//! The record's keyed commitment on chain covers that extension, so it covers the file: a file
//! swapped or altered on disk no longer matches the digest its committed record names. The
//! digest lives only inside the encrypted record, never on chain in clear.

use serde_json::{Value, json};

/// The extension naming a record's file.
pub const GENOMIC_FILE_URL: &str = "https://medledger.dev/fhir/StructureDefinition/genomic-file";

/// How a genomic file is encoded: what de-identification must undo before it reads the text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GenomicFormat {
    /// VCF text.
    Vcf,
    /// VCF compressed with gzip or BGZF (concatenated gzip members).
    VcfGzip,
}

impl GenomicFormat {
    /// The media type this format is stored and served as.
    pub fn media_type(self) -> &'static str {
        match self {
            GenomicFormat::Vcf => "text/vcf",
            GenomicFormat::VcfGzip => "application/gzip",
        }
    }

    /// The file name suffix of a released file.
    pub fn suffix(self) -> &'static str {
        match self {
            GenomicFormat::Vcf => "vcf",
            GenomicFormat::VcfGzip => "vcf.gz",
        }
    }

    /// Whether `head` (the first bytes of a file) can start a file of this format.
    pub fn starts(self, head: &[u8]) -> bool {
        match self {
            GenomicFormat::Vcf => head.starts_with(b"##fileformat=VCFv4"),
            GenomicFormat::VcfGzip => head.starts_with(&[0x1f, 0x8b]),
        }
    }
}

/// The media types a genomic file may be sent as, and the format each means. Only VCF is taken,
/// because a release must de-identify the file and VCF is the format that can be de-identified
/// here (see `vcf.rs`); BAM and CRAM headers carry sample names in binary form.
pub fn genomic_format(media_type: &str) -> Option<GenomicFormat> {
    match media_type.trim().to_ascii_lowercase().as_str() {
        "text/vcf" | "text/x-vcf" | "application/vcf" => Some(GenomicFormat::Vcf),
        "application/gzip" | "application/x-gzip" | "application/x-bgzip" => {
            Some(GenomicFormat::VcfGzip)
        }
        _ => None,
    }
}

/// What a record says of its file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GenomicFile {
    pub format: GenomicFormat,
    pub bytes: u64,
    /// Lowercase hex.
    pub sha256: String,
}

/// The `genomic-file` extension for `file`, its bytes at `url`.
pub fn genomic_file_extension(file: &GenomicFile) -> Value {
    json!({
        "url": GENOMIC_FILE_URL,
        "extension": [
            {"url": "contentType", "valueCode": file.format.media_type()},
            {"url": "size", "valueDecimal": file.bytes},
            {"url": "sha256", "valueString": file.sha256},
        ]
    })
}

/// The `MolecularSequence` record of a genomic file of patient `patient_id`, as stored.
pub fn sequence_resource(id: &str, patient_id: &str, file: &GenomicFile) -> Value {
    json!({
        "resourceType": "MolecularSequence",
        "id": id,
        "extension": [genomic_file_extension(file)],
        "type": "dna",
        "coordinateSystem": 1,
        "patient": {"reference": format!("Patient/{patient_id}")},
        "repository": [{
            "type": "directlink",
            "url": format!("Binary/{id}"),
            "name": file.format.media_type(),
        }],
    })
}

/// The file a record names, if it names one.
pub fn genomic_file(resource: &Value) -> Option<GenomicFile> {
    let extension = resource
        .get("extension")?
        .as_array()?
        .iter()
        .find(|extension| extension.get("url").and_then(Value::as_str) == Some(GENOMIC_FILE_URL))?;
    let part = |name: &str| {
        extension
            .get("extension")?
            .as_array()?
            .iter()
            .find(|part| part.get("url").and_then(Value::as_str) == Some(name))
    };
    let format = genomic_format(part("contentType")?.get("valueCode")?.as_str()?)?;
    let bytes = part("size")?.get("valueDecimal")?.as_u64()?;
    let sha256 = part("sha256")?.get("valueString")?.as_str()?;
    let hex = sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_hexdigit());
    hex.then(|| GenomicFile {
        format,
        bytes,
        sha256: sha256.to_ascii_lowercase(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stored record names its file so that the file reads back from it, and the record is
    /// valid R4.
    #[test]
    fn a_sequence_names_its_file_and_is_valid_r4() {
        let file = GenomicFile {
            format: GenomicFormat::VcfGzip,
            bytes: 5_000_000_000,
            sha256: "ab".repeat(32),
        };
        let resource = sequence_resource("seq1", "p1", &file);
        assert_eq!(genomic_file(&resource), Some(file));
        assert_eq!(crate::validate(&resource), vec![]);
        assert_eq!(resource["repository"][0]["url"], "Binary/seq1");
    }

    /// Records without the extension, or with a damaged one, name no file.
    #[test]
    fn damaged_extensions_name_no_file() {
        let good = sequence_resource(
            "s",
            "p",
            &GenomicFile {
                format: GenomicFormat::Vcf,
                bytes: 1,
                sha256: "00".repeat(32),
            },
        );
        let mut short_digest = good.clone();
        short_digest["extension"][0]["extension"][2]["valueString"] = json!("abc");
        let mut negative = good.clone();
        negative["extension"][0]["extension"][1]["valueDecimal"] = json!(-1);
        let mut other_type = good.clone();
        other_type["extension"][0]["extension"][0]["valueCode"] = json!("application/pdf");
        for resource in [
            json!({"resourceType": "MolecularSequence"}),
            short_digest,
            negative,
            other_type,
        ] {
            assert_eq!(genomic_file(&resource), None, "{resource}");
        }
    }

    /// Only VCF media types are taken, and each format recognises its own first bytes.
    #[test]
    fn formats_are_named_by_media_type_and_sniffed() {
        assert_eq!(genomic_format("text/vcf"), Some(GenomicFormat::Vcf));
        assert_eq!(
            genomic_format(" Application/GZIP "),
            Some(GenomicFormat::VcfGzip)
        );
        assert_eq!(genomic_format("application/octet-stream"), None);
        assert!(GenomicFormat::Vcf.starts(b"##fileformat=VCFv4.2\n"));
        assert!(!GenomicFormat::Vcf.starts(b"\x1f\x8b"));
        assert!(GenomicFormat::VcfGzip.starts(b"\x1f\x8b\x08"));
    }
}
