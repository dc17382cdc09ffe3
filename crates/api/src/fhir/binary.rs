//! `Binary`: genomic files (VCF, plain or gzip), streamed in and out, never whole in memory.
//!
//! - `POST /fhir/Binary` takes the file's own bytes with its own media type (R4 §3.1.0.1.10:
//!   a Binary is exchanged in its native format) and `X-Security-Context: Patient/{id}` naming
//!   the patient it belongs to (R4's header for whose access rules govern a Binary). The node
//!   stores it as a `MolecularSequence` record of the patient ([`medledger_fhir::sequence_resource`])
//!   whose id the file shares, and answers 201 with that record. A signed request signs the
//!   SHA-256 it declares in `X-Content-SHA256` instead of the body, and the file is refused (and
//!   nothing kept) if the bytes differ.
//! - `GET /fhir/Binary/{id}` reads the file of `MolecularSequence/{id}`: consent and the access
//!   event on chain are exactly a read of that record, and only then do the bytes flow, checked
//!   against the record's digest to the last byte (a mismatch aborts the response).

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use medledger_crypto::Hash;
use medledger_fhir::IssueType;
use medledger_node::records::FileUpload;
use tokio::sync::mpsc;

use super::{
    FhirFailure, FhirResult, add_event_header, blocking, caller, caller_digest, fhir_bytes,
    media_type, records, release_one,
};
use crate::AppState;
use crate::auth::HEADER_CONTENT_SHA256;
use crate::smart::Action;

/// The header naming the patient a Binary belongs to.
pub const HEADER_SECURITY_CONTEXT: &str = "x-security-context";
/// How many pieces of a file may wait between the network and the disk.
const PIECES_IN_FLIGHT: usize = 8;
/// The size of each piece of a file sent to a reader.
const PIECE_BYTES: usize = 64 * 1024;
/// How much of a refused upload is still read (and discarded), so that a client which sends its
/// whole body before reading the answer gets the answer rather than a broken connection.
const DRAIN_BYTES_MAX: u64 = crate::API_BODY_BYTES_MAX as u64;

/// Whether a request is for `Binary`, whose bodies and answers are not FHIR JSON.
pub(crate) fn is_binary_path(uri: &Uri) -> bool {
    let path = uri.path();
    path == "/fhir/Binary" || path == "/fhir/Binary/" || path.starts_with("/fhir/Binary/")
}

fn bad_request(code: IssueType, diagnostics: impl Into<String>) -> FhirFailure {
    FhirFailure::new(StatusCode::BAD_REQUEST, code, diagnostics)
}

/// A blocking reader of a request body, fed by a task that reads the body off the connection.
struct BodyReader {
    pieces: mpsc::Receiver<Result<Bytes, String>>,
    current: Bytes,
}

impl std::io::Read for BodyReader {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.pieces.blocking_recv() {
                Some(Ok(piece)) => self.current = piece,
                Some(Err(error)) => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::ConnectionAborted,
                        format!("the upload was cut short: {error}"),
                    ));
                }
                None => return Ok(0),
            }
        }
        let count = buffer.len().min(self.current.len());
        buffer[..count].copy_from_slice(&self.current[..count]);
        let _ = self.current.split_to(count);
        Ok(count)
    }
}

/// Reads the body off the connection for a [`BodyReader`]. If the reader goes away first (the
/// upload was refused), up to `DRAIN_BYTES_MAX` more is read and discarded before the connection
/// is given up.
fn body_reader(body: Body) -> BodyReader {
    let (sender, pieces) = mpsc::channel(PIECES_IN_FLIGHT);
    tokio::spawn(async move {
        let mut stream = body.into_data_stream();
        let mut drained = 0u64;
        let mut refused = false;
        while let Some(piece) = stream.next().await {
            let Ok(piece) = piece else {
                if !refused {
                    let _ = sender.send(Err("the connection failed".to_string())).await;
                }
                return;
            };
            if refused {
                drained += piece.len() as u64;
                if drained > DRAIN_BYTES_MAX {
                    return;
                }
            } else if sender.send(Ok(piece)).await.is_err() {
                refused = true;
            }
        }
    });
    BodyReader {
        pieces,
        current: Bytes::new(),
    }
}

#[utoipa::path(post, path = "/fhir/Binary", tag = "fhir", security(("medledger_signature" = []), ("smart_bearer" = [])),
    request_body(content = String, content_type = "text/vcf", description = "The file's bytes: text/vcf, or application/gzip for a bgzipped VCF"),
    params(("X-Security-Context" = String, Header, description = "Patient/{id}: the patient the file belongs to, held here"),
        ("X-Content-SHA256" = Option<String>, Header, description = "The body's SHA-256 in hex: required for a signed request, which signs it in place of the body")),
    responses((status = 201, description = "Stored as MolecularSequence/{id}, whose file is Binary/{id}; Location names it"),
        (status = 400, description = "OperationOutcome: no patient, not a VCF, or not the declared bytes; nothing kept"),
        (status = 413, description = "Over the node's file size limit"),
        (status = 415, description = "Not a genomic media type")))]
pub(crate) async fn upload(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> FhirResult<Response> {
    // Read from the start, so that a refusal below still drains what the client sends.
    let reader = body_reader(body);
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .map(media_type)
        .unwrap_or_default();
    let format = medledger_fhir::genomic_format(&content_type).ok_or_else(|| {
        FhirFailure::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            IssueType::NotSupported,
            format!(
                "a Binary of type {content_type:?} is not taken: files here are genomic, text/vcf or application/gzip (a bgzipped VCF)"
            ),
        )
    })?;
    let patient = headers
        .get(HEADER_SECURITY_CONTEXT)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().strip_prefix("Patient/"))
        .filter(|id| medledger_fhir::is_id(id))
        .map(str::to_string)
        .ok_or_else(|| {
            bad_request(
                IssueType::Required,
                "X-Security-Context must name the file's patient: Patient/{id}",
            )
        })?;
    let declared = match headers.get(HEADER_CONTENT_SHA256) {
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .and_then(|text| Hash::from_hex(text).ok())
                .ok_or_else(|| {
                    bad_request(
                        IssueType::Value,
                        "X-Content-SHA256 must be the body's SHA-256 in hex",
                    )
                })?,
        ),
        None => None,
    };
    let bearer = headers.contains_key(header::AUTHORIZATION)
        && headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.to_ascii_lowercase().starts_with("bearer "));
    let caller = match (declared, bearer) {
        (Some(digest), _) => caller_digest(&state, &method, &uri, &headers, &digest).await?,
        (None, true) => caller(&state, &method, &uri, &headers, b"").await?,
        (None, false) => {
            return Err(bad_request(
                IssueType::Required,
                "a signed upload must declare its body's SHA-256 in X-Content-SHA256 and sign that",
            ));
        }
    };
    caller.may("MolecularSequence", Action::Create, Some(&patient))?;
    caller.check_replay(&state)?;
    let records = records(&state)?;
    let imported = records
        .import_file(
            &caller.key,
            FileUpload {
                patient_fhir_id: patient,
                format,
                declared_sha256: declared,
            },
            reader,
        )
        .await?;
    let finder = records.clone();
    let (record, version) = (imported.record, imported.version);
    let (content, last_updated_ms) = blocking(move || {
        let (_, versions) = finder.provenance(&record)?;
        let time_ms = versions
            .iter()
            .find(|written| written.version == version)
            .map_or(0, |written| written.time_ms);
        Ok((finder.stored_content(&record, version)?, time_ms))
    })
    .await?;
    let mut response = fhir_bytes(
        StatusCode::CREATED,
        medledger_fhir::served(&content, &imported.fhir_id, version, last_updated_ms)?,
    );
    let base = crate::smart::base_url(&headers);
    let location = format!(
        "{base}/fhir/MolecularSequence/{}/_history/{version}",
        imported.fhir_id
    );
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    if let Ok(value) = HeaderValue::from_str(&format!("W/\"{version}\"")) {
        response.headers_mut().insert(header::ETAG, value);
    }
    Ok(response)
}

#[utoipa::path(get, path = "/fhir/Binary/{id}", tag = "fhir", security(("medledger_signature" = []), ("smart_bearer" = [])),
    params(("id" = String, Path, description = "The id of the MolecularSequence the file belongs to"),
        ("X-Purpose-Of-Use" = String, Header, description = "HL7 PurposeOfUse code")),
    responses((status = 200, description = "The file's bytes in its own media type, streamed; X-Access-Event names the access event"),
        (status = 403, description = "Denied by consent; the denial is recorded on chain"),
        (status = 404, description = "No such record, or it has no file")))]
pub(crate) async fn download(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> FhirResult<Response> {
    let caller = caller(&state, &method, &uri, &headers, b"").await?;
    if caller.access.wrap_to.is_some() {
        return Err(bad_request(
            IssueType::NotSupported,
            "X-Wrap-To is not offered for files: read the file over TLS, or have it released sealed through a research request",
        ));
    }
    let (released, event_tx) =
        match release_one(&state, &caller, "MolecularSequence", &id, None).await? {
            Ok(released) => released,
            Err(denied) => return Ok(denied),
        };
    let records = records(&state)?;
    let version = released.version;
    let opened = blocking(move || {
        Ok(records.open_file(&released.record, released.version, &released.content)?)
    })
    .await?;
    let Some((file, info)) = opened else {
        let mut response = FhirFailure::new(
            StatusCode::NOT_FOUND,
            IssueType::NotFound,
            format!("MolecularSequence/{id} has no file"),
        )
        .into_response();
        add_event_header(&mut response, &event_tx);
        return Ok(response);
    };
    let length = file.bytes;
    let mut response = (StatusCode::OK, streamed_body(file)).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(info.format.media_type()),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    if let Ok(value) = HeaderValue::from_str(&format!(
        "attachment; filename=\"{id}.{}\"",
        info.format.suffix()
    )) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    if let Ok(value) = HeaderValue::from_str(&format!("W/\"{version}\"")) {
        headers.insert(header::ETAG, value);
    }
    add_event_header(&mut response, &event_tx);
    Ok(response)
}

/// A response body read from `reader` on a blocking thread, a piece at a time. A read error
/// aborts the response, so the receiver sees a broken transfer rather than wrong bytes.
pub(crate) fn streamed_body(mut reader: impl std::io::Read + Send + 'static) -> Body {
    let (sender, pieces) = mpsc::channel::<Result<Bytes, std::io::Error>>(PIECES_IN_FLIGHT);
    tokio::task::spawn_blocking(move || {
        loop {
            let mut piece = vec![0u8; PIECE_BYTES];
            match reader.read(&mut piece) {
                Ok(0) => return,
                Ok(read) => {
                    piece.truncate(read);
                    if sender.blocking_send(Ok(Bytes::from(piece))).is_err() {
                        return;
                    }
                }
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
                Err(error) => {
                    tracing::error!(%error, "a file failed while being sent");
                    let _ = sender.blocking_send(Err(error));
                    return;
                }
            }
        }
    });
    let stream = futures_util::stream::unfold(pieces, |mut pieces| async move {
        pieces.recv().await.map(|piece| (piece, pieces))
    });
    Body::from_stream(stream)
}
