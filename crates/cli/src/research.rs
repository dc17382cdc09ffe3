//! `medledger research ...`: research data sharing as a patient, a researcher and a custodian
//! take part in it. Consent, requests and closing are transactions the signer sends; matching
//! runs at the custodian's node; the export is FHIR Bulk Data from each custodian's node, sealed
//! to the researcher's X25519 key, which is derived from their signing key (as for records).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use medledger_api::auth::AccessHeaders;
use medledger_crypto::Hash;
use medledger_crypto::envelope::HpkeSecret;
use medledger_node::research::{SealedFile, SealedStreamHeader};
use medledger_research::ResearchOp;
use medledger_research::duo::DuoTerms;
use serde_json::{Value, json};

use crate::client::Client;
use crate::home;
use crate::records::signed;

#[derive(clap::Args)]
pub struct Terms {
    /// A DUO term (CURIE), e.g. DUO:0000006 (health/medical/biomedical) or DUO:0000021 (ethics
    /// approval); repeat for each.
    #[arg(long = "duo")]
    duo: Vec<String>,
    /// The disease of disease-specific research (DUO:0000007), e.g. MONDO:0005148.
    #[arg(long)]
    disease: Option<String>,
    /// An institution (organisation id) of institution-specific use (DUO:0000028); repeat.
    #[arg(long = "institution")]
    institutions: Vec<String>,
    /// A FHIR resource type; repeat.
    #[arg(long = "type")]
    types: Vec<String>,
}

impl Terms {
    fn duo(&self) -> DuoTerms {
        DuoTerms {
            codes: self.duo.clone(),
            disease: self.disease.clone(),
            institutions: self.institutions.clone(),
        }
    }
}

#[derive(Subcommand)]
pub enum ResearchCommand {
    /// Grant research consent (as a patient), replacing any earlier one.
    Consent {
        #[command(flatten)]
        terms: Terms,
        /// When the consent ends (milliseconds since 1970), if it does.
        #[arg(long)]
        until_ms: Option<u64>,
    },
    /// Revoke your research consent (as a patient): no release after it.
    Revoke,
    /// File a data request (as a researcher); prints its id.
    Request {
        #[arg(long)]
        title: String,
        #[command(flatten)]
        terms: Terms,
    },
    /// Match a request against the research consent of this node's patients (as its
    /// organisation's root key); prints counts only.
    Match {
        #[arg(long)]
        request: String,
    },
    /// Export the request's cohort from this node (as its researcher): FHIR Bulk Data, opened
    /// with your key into one NDJSON file per resource type in `--out`.
    Export {
        #[arg(long)]
        request: String,
        #[arg(long)]
        out: PathBuf,
    },
    /// Name the contract that must permit each release of this organisation's patients (its
    /// root key), or drop it with --none.
    SetCondition {
        #[arg(long, required_unless_present = "none")]
        contract: Option<String>,
        #[arg(long, conflicts_with = "contract")]
        none: bool,
    },
    /// Close a request (as its researcher).
    Close {
        #[arg(long)]
        request: String,
    },
    /// A request, its cohorts' sizes and its releases.
    Show {
        #[arg(long)]
        request: String,
    },
    /// Your research consent and every release of your records (as a patient).
    Log,
}

fn op_tx(
    client: &Client,
    key: &medledger_crypto::SecretKey,
    op: ResearchOp,
) -> Result<(i32, Value)> {
    let id = client.submit(key, op)?;
    let mut result = client.wait(&id, Duration::from_secs(60))?;
    let code = match result["status"].as_str() {
        Some("committed") => 0,
        _ => 2,
    };
    result["id"] = json!(id);
    Ok((code, result))
}

fn request_id(text: &str) -> Result<Hash> {
    Hash::from_hex(text.trim()).context("--request is a request id (32 bytes in hex)")
}

/// A signed GET or POST; fails with the node's message unless the status is 2xx.
fn call(
    client: &Client,
    key: &medledger_crypto::SecretKey,
    method: &str,
    path: &str,
) -> Result<(u16, Value, Vec<u8>)> {
    let (status, bytes) = signed(client, key, method, path, b"", &AccessHeaders::default())?;
    let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    if !(200..300).contains(&status) {
        let message = value["error"]["message"]
            .as_str()
            .or_else(|| value["issue"][0]["diagnostics"].as_str())
            .map(str::to_string)
            .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
        bail!("the node answered {status}: {message}");
    }
    Ok((status, value, bytes))
}

/// Kicks off a Bulk Data export, waits for its manifest, downloads and opens every file.
fn export(
    client: &Client,
    key: &medledger_crypto::SecretKey,
    request: &Hash,
    out: &Path,
) -> Result<Value> {
    let kick_off = format!("/fhir/Group/{request}/$export");
    let chain_id = client.chain_id()?;
    let time_ms = crate::records::now_ms();
    let access = AccessHeaders::default();
    let bytes = medledger_api::auth::sign_bytes(&chain_id, "GET", &kick_off, time_ms, b"", &access);
    let authorization = medledger_api::auth::authorization(key, time_ms, &bytes);
    let (status, headers, body) = client.send_for_headers(
        "GET",
        &kick_off,
        &[
            ("authorization", authorization),
            ("prefer", "respond-async".into()),
            ("accept", "application/fhir+json".into()),
        ],
        b"",
    )?;
    if status != 202 {
        let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        bail!(
            "the export was not started ({status}): {}",
            value["issue"][0]["diagnostics"].as_str().unwrap_or("")
        );
    }
    // The status URL (Content-Location) is the node's own; its path is what we poll.
    let location = headers
        .get("content-location")
        .and_then(|value| value.to_str().ok())
        .context("the export's kick-off gave no Content-Location")?;
    let status_path = location
        .find("/fhir/bulkstatus/")
        .map(|at| location[at..].to_string())
        .context("the status URL is not this node's")?;
    let deadline = Instant::now() + Duration::from_secs(300);
    let manifest = loop {
        let (status, value, _) = call(client, key, "GET", &status_path)?;
        if status == 200 {
            break value;
        }
        if Instant::now() > deadline {
            bail!("the export did not finish within 5 minutes");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let secret = HpkeSecret::derive(&key.to_bytes());
    let mut files = Vec::new();
    for output in manifest["output"].as_array().into_iter().flatten() {
        let kind = output["type"]
            .as_str()
            .context("an output without a type")?;
        let url = output["url"].as_str().context("an output without a url")?;
        let path = url
            .find("/fhir/bulkfiles/")
            .map(|at| &url[at..])
            .context("an output url off this node")?;
        let (_, _, bytes) = call(client, key, "GET", path)?;
        let sealed: SealedFile = serde_json::from_slice(&bytes).context("a sealed file")?;
        let aad = SealedFile::aad(request, &sealed.resource_type);
        let data_key = secret
            .open_key(&sealed.wrapped_key, &aad)
            .context("the file is not sealed to your key")?;
        let nonce: [u8; 12] = sealed
            .nonce
            .as_slice()
            .try_into()
            .context("a nonce of 12 bytes")?;
        let ndjson = data_key
            .open(nonce, &aad, &sealed.ciphertext)
            .context("the file does not open")?;
        // A type's parts (one per release of up to 1,000 patients) go into one file.
        let file = out.join(format!("{kind}.ndjson"));
        let mut writer = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&file)
            .with_context(|| format!("writing {}", file.display()))?;
        std::io::Write::write_all(&mut writer, &ndjson)
            .with_context(|| format!("writing {}", file.display()))?;
        files.push(json!({"type": kind, "count": output["count"], "file": file}));
    }
    let genomic = &manifest["extension"]["https://medledger.dev/research/genomic-files"];
    for entry in genomic.as_array().into_iter().flatten() {
        let url = entry["url"]
            .as_str()
            .context("a genomic file without a url")?;
        let path = url
            .find("/fhir/bulkfiles/")
            .map(|at| &url[at..])
            .context("a genomic file url off this node")?;
        let file = fetch_genomic(client, key, &secret, request, path, out)?;
        files.push(json!({"type": "Binary", "contentType": entry["contentType"], "file": file}));
    }
    Ok(json!({ "manifest": manifest, "files": files }))
}

/// Downloads a sealed genomic file and opens it into `out`, both streamed: the sealed bytes go
/// to a temporary file, then through the STREAM opener into `<name>.vcf` or `<name>.vcf.gz`.
/// Nothing is left but the opened file, and only if every chunk opened.
fn fetch_genomic(
    client: &Client,
    key: &medledger_crypto::SecretKey,
    secret: &HpkeSecret,
    request: &Hash,
    path: &str,
    out: &Path,
) -> Result<PathBuf> {
    let name = path.rsplit('/').next().unwrap_or_default();
    if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
        bail!("a genomic file's name {name:?} is not a plain name");
    }
    let sealed_path = out.join(format!(".{name}.sealed"));
    let chain_id = client.chain_id()?;
    let time_ms = crate::records::now_ms();
    let bytes = medledger_api::auth::sign_bytes(
        &chain_id,
        "GET",
        path,
        time_ms,
        b"",
        &AccessHeaders::default(),
    );
    let headers = [(
        "authorization",
        medledger_api::auth::authorization(key, time_ms, &bytes),
    )];
    let result = (|| -> Result<PathBuf> {
        let mut sealed_file = std::io::BufWriter::new(
            std::fs::File::create(&sealed_path)
                .with_context(|| format!("creating {}", sealed_path.display()))?,
        );
        let (status, _, body) = client.fetch_to(path, &headers, &mut sealed_file)?;
        if !(200..300).contains(&status) {
            bail!(
                "the node answered {status}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        std::io::Write::flush(&mut sealed_file)?;
        drop(sealed_file);
        let mut reader = std::io::BufReader::new(std::fs::File::open(&sealed_path)?);
        let header = SealedStreamHeader::read_from(&mut reader).context("a sealed genomic file")?;
        if header.file != name || header.request != *request {
            bail!("the sealed file names another file or request than the one fetched");
        }
        let aad = SealedFile::aad(request, name);
        let data_key = secret
            .open_key(&header.wrapped_key, &aad)
            .context("the file is not sealed to your key")?;
        let nonce: [u8; medledger_crypto::stream::STREAM_NONCE_BYTES] = header
            .nonce
            .as_slice()
            .try_into()
            .context("a stream nonce of 7 bytes")?;
        let suffix = match header.media_type.as_str() {
            "text/vcf" => "vcf",
            "application/gzip" => "vcf.gz",
            _ => "bin",
        };
        let target = out.join(format!("{name}.{suffix}"));
        let mut opened = medledger_crypto::stream::OpenStream::new(&data_key, nonce, &aad, reader);
        let mut writer = std::io::BufWriter::new(
            std::fs::File::create(&target)
                .with_context(|| format!("creating {}", target.display()))?,
        );
        let copied = std::io::copy(&mut opened, &mut writer)
            .and_then(|_| std::io::Write::flush(&mut writer));
        if let Err(error) = copied {
            drop(writer);
            let _ = std::fs::remove_file(&target);
            return Err(error).context("the sealed genomic file does not open");
        }
        Ok(target)
    })();
    let _ = std::fs::remove_file(&sealed_path);
    result
}

pub fn run(client: &Client, key_path: &Path, command: ResearchCommand) -> Result<i32> {
    let key = home::read_key(key_path)?;
    match command {
        ResearchCommand::Consent { terms, until_ms } => {
            let (code, result) = op_tx(
                client,
                &key,
                ResearchOp::GrantResearchConsent {
                    terms: terms.duo(),
                    resource_types: terms.types.clone(),
                    end_ms: until_ms,
                },
            )?;
            crate::print(&result);
            Ok(code)
        }
        ResearchCommand::Revoke => {
            let (code, result) = op_tx(client, &key, ResearchOp::RevokeResearchConsent)?;
            crate::print(&result);
            Ok(code)
        }
        ResearchCommand::Request { title, terms } => {
            let recipient = HpkeSecret::derive(&key.to_bytes()).public_key();
            let (code, result) = op_tx(
                client,
                &key,
                ResearchOp::FileRequest {
                    title,
                    terms: terms.duo(),
                    resource_types: terms.types.clone(),
                    recipient,
                },
            )?;
            crate::print(&result);
            Ok(code)
        }
        ResearchCommand::Match { request } => {
            let id = request_id(&request)?;
            let (_, value, _) = call(
                client,
                &key,
                "POST",
                &format!("/v1/research/requests/{id}/match"),
            )?;
            crate::print(&value);
            Ok(0)
        }
        ResearchCommand::Export { request, out } => {
            let id = request_id(&request)?;
            crate::print(&export(client, &key, &id, &out)?);
            Ok(0)
        }
        ResearchCommand::SetCondition { contract, none: _ } => {
            let contract = contract
                .map(|text| {
                    Hash::from_hex(&text)
                        .map_err(|_| anyhow::anyhow!("--contract must be 64 hex digits"))
                })
                .transpose()?;
            let (code, result) = op_tx(client, &key, ResearchOp::SetReleaseCondition { contract })?;
            crate::print(&result);
            Ok(code)
        }
        ResearchCommand::Close { request } => {
            let id = request_id(&request)?;
            let (code, result) = op_tx(client, &key, ResearchOp::CloseRequest { request: id })?;
            crate::print(&result);
            Ok(code)
        }
        ResearchCommand::Show { request } => {
            let id = request_id(&request)?;
            crate::print(&client.get(&format!("/v1/research/requests/{id}"))?);
            Ok(0)
        }
        ResearchCommand::Log => {
            let (_, value, _) = call(client, &key, "GET", "/v1/research/me")?;
            crate::print(&value);
            Ok(0)
        }
    }
}
