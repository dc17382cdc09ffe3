//! `medledger fhir ...` and `medledger consent ...`: health records and consent from the command
//! line, through the node's FHIR face and signed requests, as an EHR or a patient's app would.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use medledger_api::auth::{
    AccessHeaders, HEADER_BREAK_GLASS, HEADER_CONTENT_SHA256, HEADER_PURPOSE, HEADER_WRAP_TO,
};
use medledger_crypto::envelope::{HpkeSecret, WrappedKey};
use medledger_crypto::{Hash, SecretKey};
use medledger_records::{
    ConsentGrant, Grantee, Provision, ProvisionKind, Purpose, RecordsOp, Scope,
};
use medledger_types::Role;
use serde_json::{Value, json};

use crate::client::Client;
use crate::home;

#[derive(Subcommand)]
pub enum FhirCommand {
    /// Import FHIR Bundles (transaction, batch or collection), e.g. Synthea output, with a
    /// progress bar. The signer is the author: a practitioner or the root key of this node's
    /// organisation.
    Import {
        /// Bundle files; each is stored whole or not at all.
        files: Vec<PathBuf>,
    },
    /// Read a record (`Type/id`) for a purpose. The read is recorded on chain first.
    Read {
        reference: String,
        #[arg(long)]
        purpose: String,
        /// Emergency access (ETREAT, practitioners only): flagged, and shown to the patient.
        #[arg(long)]
        break_glass: bool,
        /// Receive the ciphertext and its key sealed to you with HPKE, and decrypt it here.
        #[arg(long)]
        wrap: bool,
    },
    /// Store a genomic file (VCF, plain or bgzip-compressed) of a patient held here, streamed:
    /// it becomes a MolecularSequence record whose file is `Binary/{id}`. Prints the record.
    Upload {
        file: PathBuf,
        /// The patient's logical id (`Patient/{id}`).
        #[arg(long)]
        patient: String,
        /// The media type; by default from the name (`.vcf`: text/vcf, `.gz`: application/gzip).
        #[arg(long)]
        content_type: Option<String>,
    },
    /// Read the genomic file of a MolecularSequence (`id`) for a purpose into a file, streamed.
    /// The read is recorded on chain first, like any read.
    Download {
        id: String,
        #[arg(long)]
        purpose: String,
        #[arg(long)]
        break_glass: bool,
        /// Where to write the file.
        #[arg(long, short)]
        output: PathBuf,
    },
    /// Search a patient's records (optionally of one type) for a purpose.
    Search {
        #[arg(long)]
        patient: String,
        #[arg(long = "type")]
        resource_type: Option<String>,
        #[arg(long)]
        purpose: String,
        #[arg(long)]
        break_glass: bool,
    },
    /// Bind a patient held here to the patient's enrolled key (signer: the custodian).
    Bind {
        #[arg(long)]
        patient: String,
        #[arg(long)]
        patient_key: String,
    },
    /// A patient's access log as FHIR AuditEvents (signer: the patient, the custodian or an
    /// auditor).
    Log {
        #[arg(long)]
        patient: String,
    },
    /// The Provenance of a record (`Type/id`).
    Provenance { reference: String },
    /// Erase a patient by crypto-shredding (signer: the patient or the custodian).
    Erase {
        #[arg(long)]
        patient: String,
    },
    /// The signer's own view as a patient: their patient ids, every access, their grants.
    Me,
    /// Approve an app's SMART authorization request (the id its consent screen shows), as the
    /// signer. A clinician launching for a patient names the patient.
    Approve {
        /// The authorization request's id.
        request: String,
        /// The Patient (logical id) to launch for; a patient's own app needs none.
        #[arg(long)]
        patient: Option<String>,
    },
    /// Register a SMART app on this node (signer: the organisation's root key); prints its
    /// client_id.
    RegisterApp {
        #[arg(long)]
        name: String,
        /// An exact redirect URI of the app (repeat for more).
        #[arg(long = "redirect-uri", required = true)]
        redirect_uris: Vec<String>,
    },
    /// Register on chain a P-384 public key of the signer's, for ES384 SMART client assertions
    /// that name it by `--kid`.
    RegisterClientKey {
        #[arg(long)]
        kid: String,
        /// A file holding the public key as a JWK (`{"kty": "EC", "crv": "P-384", "x", "y"}`).
        #[arg(long)]
        jwk: PathBuf,
    },
    /// Revoke one of the signer's client keys.
    RevokeClientKey {
        #[arg(long)]
        kid: String,
    },
    /// Get a SMART on FHIR access token for the signer (Backend Services: a client assertion
    /// signed with the key), for a FHIR client or `curl -H "Authorization: Bearer ..."`.
    Token {
        /// SMART scopes, e.g. `system/*.rs` or `system/Observation.read system/Patient.read`.
        #[arg(long, default_value = "system/*.rs")]
        scope: String,
        /// The purpose of use the token carries (HL7 PurposeOfUse, e.g. TREAT).
        #[arg(long)]
        purpose: Option<String>,
    },
}

/// The uncompressed SEC1 point of a P-384 public JWK.
fn p384_point(text: &str) -> Result<Vec<u8>> {
    use base64::Engine as _;
    let jwk: Value = serde_json::from_str(text).context("not JSON")?;
    if jwk["kty"] != "EC" || jwk["crv"] != "P-384" {
        bail!("kty must be EC and crv P-384");
    }
    let coordinate = |name: &str| -> Result<Vec<u8>> {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(
                jwk[name]
                    .as_str()
                    .with_context(|| format!("{name} is missing"))?,
            )
            .with_context(|| format!("{name} is not base64url"))?;
        if bytes.len() != 48 {
            bail!("{name} must be 48 bytes");
        }
        Ok(bytes)
    };
    let mut point = vec![4u8];
    point.extend(coordinate("x")?);
    point.extend(coordinate("y")?);
    Ok(point)
}

/// Submits one payload signed by `key`, waits for its receipt and prints it.
fn submit_and_wait(
    client: &Client,
    key: &SecretKey,
    payload: medledger_ledger::Payload,
) -> Result<i32> {
    let id: Hash = client.submit(key, payload)?;
    let result = client.wait(&id, Duration::from_secs(60))?;
    crate::print(&result);
    Ok(match result["status"].as_str() {
        Some("committed") => 0,
        _ => 2,
    })
}

/// Fetches an access token for `key` from the node's token endpoint.
pub(crate) fn fetch_token(
    client: &Client,
    key: &SecretKey,
    scope: &str,
    purpose: Option<&str>,
) -> Result<Value> {
    let token_url = format!("{}/oauth/token", client.base());
    let assertion = medledger_api::smart::client_assertion(key, &token_url, now_ms() / 1_000, 60);
    let form = medledger_api::smart::token_request(&assertion, scope, purpose);
    let (status, body) = client.post_form("/oauth/token", &form)?;
    if status != 200 {
        bail!(
            "the token request was refused ({status}): {}",
            body["error_description"]
                .as_str()
                .unwrap_or(&body.to_string())
        );
    }
    Ok(body)
}

#[derive(Subcommand)]
pub enum ConsentCommand {
    /// Grant consent (signer: the patient or a delegate). One provision per grant from the
    /// command line: who (`--to key:<hex>`, `org:<id>`, `role:<name>`), what (`--type`,
    /// `--category`, `--record`; none means everything), why (`--purpose`), until when.
    Grant {
        /// The patient's public key; the signer's own by default.
        #[arg(long)]
        patient: Option<String>,
        #[arg(long = "to")]
        actors: Vec<String>,
        #[arg(long = "purpose")]
        purposes: Vec<String>,
        #[arg(long = "type")]
        types: Vec<String>,
        #[arg(long = "category")]
        categories: Vec<String>,
        #[arg(long = "record")]
        records: Vec<String>,
        /// Make this a deny provision, which wins over any permit.
        #[arg(long)]
        deny: bool,
        /// Valid for this many days from now (default: until revoked).
        #[arg(long)]
        days: Option<u64>,
    },
    /// Revoke a grant.
    Revoke {
        #[arg(long)]
        grant: String,
    },
    /// Name (or with `--remove`, drop) a delegate who may sign consent for you.
    Delegate {
        #[arg(long)]
        delegate: String,
        #[arg(long)]
        remove: bool,
    },
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as u64)
        .unwrap_or(0)
}

/// Sends a signed request; returns the status, the response headers' access event, and the body.
pub fn signed(
    client: &Client,
    key: &SecretKey,
    method: &str,
    path: &str,
    body: &[u8],
    access: &AccessHeaders,
) -> Result<(u16, Vec<u8>)> {
    let chain_id = client.chain_id()?;
    let time_ms = now_ms();
    let bytes = medledger_api::auth::sign_bytes(&chain_id, method, path, time_ms, body, access);
    let authorization = medledger_api::auth::authorization(key, time_ms, &bytes);
    let mut headers = vec![("authorization", authorization)];
    if let Some(purpose) = &access.purpose {
        headers.push((HEADER_PURPOSE, purpose.clone()));
    }
    if access.break_glass {
        headers.push((HEADER_BREAK_GLASS, "true".into()));
    }
    if let Some(wrap_to) = &access.wrap_to {
        headers.push((HEADER_WRAP_TO, wrap_to.clone()));
    }
    client.send(method, path, &headers, body)
}

pub(crate) fn json_body(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()))
}

/// Fails with the OperationOutcome's diagnostics (or the API error) unless the status is 2xx.
pub(crate) fn expect_ok(status: u16, body: &[u8]) -> Result<Value> {
    let value = json_body(body);
    if (200..300).contains(&status) {
        return Ok(value);
    }
    let message = value["issue"][0]["diagnostics"]
        .as_str()
        .or_else(|| value["error"]["message"].as_str())
        .map(str::to_string)
        .unwrap_or_else(|| value.to_string());
    bail!("the node answered {status}: {message}")
}

fn reads(purpose: &str, break_glass: bool) -> Result<AccessHeaders> {
    purpose.parse::<Purpose>().map_err(anyhow::Error::msg)?;
    Ok(AccessHeaders {
        purpose: Some(purpose.to_string()),
        break_glass,
        wrap_to: None,
    })
}

/// Streams a genomic file to the node, signed over its SHA-256 (read once to hash, once to send).
fn upload(
    client: &Client,
    key: &SecretKey,
    file: &Path,
    patient: &str,
    content_type: Option<String>,
) -> Result<Value> {
    let name = file.to_string_lossy().to_ascii_lowercase();
    let content_type = match content_type {
        Some(given) => given,
        None if name.ends_with(".gz") || name.ends_with(".bgz") => "application/gzip".into(),
        None if name.ends_with(".vcf") => "text/vcf".into(),
        None => bail!(
            "cannot tell the media type of {}: pass --content-type",
            file.display()
        ),
    };
    let open = || std::fs::File::open(file).with_context(|| format!("opening {}", file.display()));
    let mut hasher = medledger_crypto::Sha256Stream::default();
    let mut reader = std::io::BufReader::new(open()?);
    // The node refuses a file that does not start as its type must; say so before sending it.
    let head = std::io::BufRead::fill_buf(&mut reader)
        .with_context(|| format!("reading {}", file.display()))?;
    // (Other media types go to the node, which names the ones it takes.)
    let starts = match content_type.as_str() {
        "text/vcf" | "text/x-vcf" | "application/vcf" => head.starts_with(b"##fileformat=VCFv4"),
        "application/gzip" | "application/x-gzip" | "application/x-bgzip" => {
            head.starts_with(&[0x1f, 0x8b])
        }
        _ => true,
    };
    if !starts {
        bail!(
            "{} is not {content_type}: a VCF starts with ##fileformat=VCFv4, a gzip file with 1f 8b",
            file.display()
        );
    }
    loop {
        let buffer = std::io::BufRead::fill_buf(&mut reader)
            .with_context(|| format!("reading {}", file.display()))?;
        if buffer.is_empty() {
            break;
        }
        hasher.update(buffer);
        let read = buffer.len();
        std::io::BufRead::consume(&mut reader, read);
    }
    let digest = hasher.finish();
    let path = "/fhir/Binary";
    let chain_id = client.chain_id()?;
    let time_ms = now_ms();
    let access = AccessHeaders::default();
    let bytes =
        medledger_api::auth::sign_bytes_digest(&chain_id, "POST", path, time_ms, &digest, &access);
    let headers = [
        (
            "authorization",
            medledger_api::auth::authorization(key, time_ms, &bytes),
        ),
        (HEADER_CONTENT_SHA256, digest.to_hex()),
        ("x-security-context", format!("Patient/{patient}")),
    ];
    let mut body = std::io::BufReader::with_capacity(256 * 1024, open()?);
    let (status, body) = client.send_stream("POST", path, &headers, &content_type, &mut body)?;
    expect_ok(status, &body)
}

/// Streams the file of a MolecularSequence into `output`, removing a partial file on failure.
fn download(
    client: &Client,
    key: &SecretKey,
    id: &str,
    access: &AccessHeaders,
    output: &Path,
) -> Result<Value> {
    let path = format!("/fhir/Binary/{id}");
    let chain_id = client.chain_id()?;
    let time_ms = now_ms();
    let bytes = medledger_api::auth::sign_bytes(&chain_id, "GET", &path, time_ms, b"", access);
    let mut headers = vec![(
        "authorization",
        medledger_api::auth::authorization(key, time_ms, &bytes),
    )];
    if let Some(purpose) = &access.purpose {
        headers.push((HEADER_PURPOSE, purpose.clone()));
    }
    if access.break_glass {
        headers.push((HEADER_BREAK_GLASS, "true".into()));
    }
    let mut file = std::io::BufWriter::new(
        std::fs::File::create(output).with_context(|| format!("creating {}", output.display()))?,
    );
    let fetched = client.fetch_to(&path, &headers, &mut file);
    let flushed = std::io::Write::flush(&mut file);
    let (status, response_headers, body) = match (fetched, flushed) {
        (Ok(fetched), Ok(())) => fetched,
        (Err(error), _) => {
            let _ = std::fs::remove_file(output);
            return Err(error);
        }
        (_, Err(error)) => {
            let _ = std::fs::remove_file(output);
            return Err(error).with_context(|| format!("writing {}", output.display()));
        }
    };
    if !(200..300).contains(&status) {
        let _ = std::fs::remove_file(output);
        expect_ok(status, &body)?;
    }
    let header = |name: &str| {
        response_headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    Ok(json!({
        "file": output,
        "bytes": std::fs::metadata(output).map(|meta| meta.len()).unwrap_or(0),
        "content_type": header("content-type"),
        "access_event": header("x-access-event"),
    }))
}

pub fn run_fhir(client: &Client, key: &Path, command: FhirCommand) -> Result<i32> {
    let key = home::read_key(key)?;
    match command {
        FhirCommand::Upload {
            file,
            patient,
            content_type,
        } => {
            crate::print(&upload(client, &key, &file, &patient, content_type)?);
            Ok(0)
        }
        FhirCommand::Download {
            id,
            purpose,
            break_glass,
            output,
        } => {
            let access = reads(&purpose, break_glass)?;
            crate::print(&download(client, &key, &id, &access, &output)?);
            Ok(0)
        }
        FhirCommand::Import { files } => import(client, &key, &files),
        FhirCommand::Read {
            reference,
            purpose,
            break_glass,
            wrap,
        } => {
            let mut access = reads(&purpose, break_glass)?;
            let hpke = HpkeSecret::derive(&key.to_bytes());
            if wrap {
                access.wrap_to = Some(hex::encode(hpke.public_key()));
            }
            let (status, body) = signed(
                client,
                &key,
                "GET",
                &format!("/fhir/{reference}"),
                b"",
                &access,
            )?;
            if !(200..300).contains(&status) {
                expect_ok(status, &body)?;
            }
            if wrap {
                let sealed = json_body(&body);
                let content = open_sealed(&hpke, &sealed)?;
                println!("{}", String::from_utf8_lossy(&content));
            } else {
                println!("{}", String::from_utf8_lossy(&body));
            }
            Ok(0)
        }
        FhirCommand::Search {
            patient,
            resource_type,
            purpose,
            break_glass,
        } => {
            let path = match resource_type {
                Some(kind) => format!("/fhir/{kind}?patient={patient}"),
                None => format!("/fhir?patient={patient}"),
            };
            let access = reads(&purpose, break_glass)?;
            let (status, body) = signed(client, &key, "GET", &path, b"", &access)?;
            crate::print(&expect_ok(status, &body)?);
            Ok(0)
        }
        FhirCommand::Bind {
            patient,
            patient_key,
        } => {
            let body = serde_json::to_vec(&json!({"key": crate::parse_key(&patient_key)?}))?;
            let path = format!("/v1/records/patients/{patient}/bind");
            let (status, body) = signed(
                client,
                &key,
                "POST",
                &path,
                &body,
                &AccessHeaders::default(),
            )?;
            crate::print(&expect_ok(status, &body)?);
            Ok(0)
        }
        FhirCommand::Log { patient } => {
            let path = format!("/fhir/AuditEvent?patient={patient}");
            let (status, body) =
                signed(client, &key, "GET", &path, b"", &AccessHeaders::default())?;
            crate::print(&expect_ok(status, &body)?);
            Ok(0)
        }
        FhirCommand::Provenance { reference } => {
            let path = format!("/fhir/Provenance?target={reference}");
            let (status, body) =
                signed(client, &key, "GET", &path, b"", &AccessHeaders::default())?;
            crate::print(&expect_ok(status, &body)?);
            Ok(0)
        }
        FhirCommand::Erase { patient } => {
            let path = format!("/fhir/Patient/{patient}/$erase");
            let (status, body) =
                signed(client, &key, "POST", &path, b"", &AccessHeaders::default())?;
            crate::print(&expect_ok(status, &body)?);
            Ok(0)
        }
        FhirCommand::Approve { request, patient } => {
            let body = serde_json::to_vec(&json!({"patient": patient}))?;
            let (status, body) = signed(
                client,
                &key,
                "POST",
                &format!("/oauth/authorize/{request}/approve"),
                &body,
                &AccessHeaders::default(),
            )?;
            crate::print(&expect_ok(status, &body)?);
            eprintln!("approved: continue in the app's browser window");
            Ok(0)
        }
        FhirCommand::RegisterApp {
            name,
            redirect_uris,
        } => {
            let body = serde_json::to_vec(&json!({"name": name, "redirect_uris": redirect_uris}))?;
            let (status, body) = signed(
                client,
                &key,
                "POST",
                "/oauth/apps",
                &body,
                &AccessHeaders::default(),
            )?;
            crate::print(&expect_ok(status, &body)?);
            Ok(0)
        }
        FhirCommand::RegisterClientKey { kid, jwk } => {
            let text = std::fs::read_to_string(&jwk)
                .with_context(|| format!("reading {}", jwk.display()))?;
            let public_key = p384_point(&text)
                .with_context(|| format!("{} is not a P-384 public JWK", jwk.display()))?;
            let op = medledger_credentials::CredentialsOp::RegisterClientKey {
                kid,
                algorithm: medledger_credentials::KeyAlgorithm::Es384,
                public_key,
            };
            submit_and_wait(client, &key, op.into())
        }
        FhirCommand::RevokeClientKey { kid } => submit_and_wait(
            client,
            &key,
            medledger_credentials::CredentialsOp::RevokeClientKey { kid }.into(),
        ),
        FhirCommand::Token { scope, purpose } => {
            crate::print(&fetch_token(client, &key, &scope, purpose.as_deref())?);
            Ok(0)
        }
        FhirCommand::Me => {
            let (status, body) = signed(
                client,
                &key,
                "GET",
                "/v1/records/me",
                b"",
                &AccessHeaders::default(),
            )?;
            crate::print(&expect_ok(status, &body)?);
            Ok(0)
        }
    }
}

/// Opens a record received with its key sealed to this reader.
fn open_sealed(hpke: &HpkeSecret, sealed: &Value) -> Result<Vec<u8>> {
    let field = |name: &str| -> Result<Vec<u8>> {
        hex::decode(
            sealed[name]
                .as_str()
                .with_context(|| format!("no {name} in the answer"))?,
        )
        .with_context(|| format!("{name} is not hex"))
    };
    let wrapped: WrappedKey = serde_json::from_value(sealed["wrapped_key"].clone())
        .context("the answer has no wrapped key")?;
    let aad = field("aad")?;
    let nonce: [u8; 12] = field("nonce")?
        .try_into()
        .map_err(|_| anyhow::anyhow!("the nonce is not 12 bytes"))?;
    let data_key = hpke
        .open_key(&wrapped, &aad)
        .context("the key was not sealed to this reader")?;
    data_key
        .open(nonce, &aad, &field("ciphertext")?)
        .context("the ciphertext does not open under the unwrapped key")
}

fn import(client: &Client, key: &SecretKey, files: &[PathBuf]) -> Result<i32> {
    if files.is_empty() {
        bail!("name at least one Bundle file to import");
    }
    let mut bundles = Vec::with_capacity(files.len());
    let mut total = 0u64;
    for file in files {
        let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
        let entries = serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|value| value["entry"].as_array().map(Vec::len))
            .unwrap_or(0) as u64;
        total += entries;
        bundles.push((file, bytes, entries));
    }
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "importing {bar:40} {pos}/{len} resources ({per_sec}, eta {eta}) {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let started = std::time::Instant::now();
    let mut failed = 0;
    // The Patients stored, by logical id: what `fhir bind --patient` and searches take.
    let mut patients = Vec::new();
    for (file, bytes, entries) in bundles {
        bar.set_message(file.display().to_string());
        let (status, body) = signed(
            client,
            key,
            "POST",
            "/fhir",
            &bytes,
            &AccessHeaders::default(),
        )?;
        match expect_ok(status, &body) {
            Ok(response) => {
                bar.inc(entries);
                for entry in response["entry"].as_array().into_iter().flatten() {
                    if let Some(id) = entry["response"]["location"]
                        .as_str()
                        .and_then(|location| location.strip_prefix("Patient/"))
                        .and_then(|rest| rest.split('/').next())
                    {
                        patients.push(id.to_string());
                    }
                }
            }
            Err(error) => {
                failed += 1;
                bar.suspend(|| eprintln!("{}: {error:#}", file.display()));
            }
        }
    }
    bar.finish_with_message("done");
    let seconds = started.elapsed().as_secs_f64().max(1e-9);
    crate::print(&json!({
        "bundles": files.len(),
        "failed": failed,
        "resources": bar.position(),
        "seconds": (seconds * 1000.0).round() / 1000.0,
        "resources_per_second": (bar.position() as f64 / seconds).round(),
        "patients": patients,
    }));
    if let Some(id) = patients.first() {
        eprintln!(
            "bind a patient to their enrolled key with: medledger fhir bind --patient {id} --patient-key <hex>"
        );
    }
    Ok(if failed == 0 { 0 } else { 2 })
}

fn grantee(text: &str) -> Result<Grantee> {
    let (kind, value) = text
        .split_once(':')
        .with_context(|| format!("{text:?}: write key:<hex>, org:<id> or role:<name>"))?;
    Ok(match kind {
        "key" => Grantee::Key(crate::parse_key(value)?),
        "org" => Grantee::Organisation(value.to_string()),
        "role" => Grantee::Role(value.parse::<Role>().map_err(anyhow::Error::msg)?),
        _ => bail!("{text:?}: write key:<hex>, org:<id> or role:<name>"),
    })
}

pub fn run_consent(
    client: &Client,
    key: &Path,
    no_wait: bool,
    command: ConsentCommand,
) -> Result<i32> {
    let signer = home::read_key(key)?;
    let is_grant = matches!(command, ConsentCommand::Grant { .. });
    let payload = match command {
        ConsentCommand::Grant {
            patient,
            actors,
            purposes,
            types,
            categories,
            records,
            deny,
            days,
        } => {
            let patient = match patient {
                Some(text) => crate::parse_key(&text)?,
                None => signer.public_key(),
            };
            let mut scope: Vec<Scope> = types.into_iter().map(Scope::ResourceType).collect();
            scope.extend(categories.into_iter().map(Scope::Category));
            for record in records {
                scope.push(Scope::Record(crate::parse_hash(&record, "record id")?));
            }
            let start_ms = now_ms().saturating_sub(60_000);
            RecordsOp::GrantConsent {
                grant: ConsentGrant {
                    patient,
                    provisions: vec![Provision {
                        kind: if deny {
                            ProvisionKind::Deny
                        } else {
                            ProvisionKind::Permit
                        },
                        actors: actors.iter().map(|a| grantee(a)).collect::<Result<_>>()?,
                        scope,
                        purposes: purposes
                            .iter()
                            .map(|p| p.parse::<Purpose>().map_err(anyhow::Error::msg))
                            .collect::<Result<_>>()?,
                    }],
                    start_ms,
                    end_ms: days
                        .map(|days| now_ms().saturating_add(days.saturating_mul(86_400_000))),
                },
            }
        }
        ConsentCommand::Revoke { grant } => RecordsOp::RevokeConsent {
            grant: crate::parse_hash(&grant, "grant id")?,
        },
        ConsentCommand::Delegate { delegate, remove } => RecordsOp::SetDelegate {
            delegate: crate::parse_key(&delegate)?,
            active: !remove,
        },
    };
    let id: Hash = client.submit(&signer, payload)?;
    if no_wait {
        crate::print(&json!({"id": id, "status": "pending"}));
        return Ok(0);
    }
    let mut result = client.wait(&id, Duration::from_secs(60))?;
    if is_grant && result["status"] == "committed" {
        // A grant's id is its transaction's id: the one `consent revoke --grant` takes.
        result["grant"] = json!(id);
        eprintln!("revoke this grant with: medledger consent revoke --grant {id}");
    }
    crate::print(&result);
    Ok(match result["status"].as_str() {
        Some("committed") => 0,
        _ => {
            eprintln!("the consent transaction was not applied");
            2
        }
    })
}
