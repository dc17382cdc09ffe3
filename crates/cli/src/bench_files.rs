//! `medledger bench-files`: genomic files through a node's real API, and the release path's cost
//! in this process.
//!
//! A VCF of `--mib` MiB is generated on the fly (never held whole), hashed once (the machine's
//! SHA-256 rate, a bound on everything after), streamed to the node as `POST /fhir/Binary` and
//! streamed back as `GET /fhir/Binary/{id}` (a break-glass read by a practitioner, its access
//! event committed first), its digest checked. With `--node-pid`, the node's peak resident memory
//! (`VmHWM`) is read before and after, to show that a file of any size costs the node a bounded
//! amount of memory. Then, in this process, the release path alone: VCF de-identification, and
//! de-identification followed by STREAM sealing (AES-256-GCM), as a release runs them.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use medledger_api::auth::{AccessHeaders, HEADER_BREAK_GLASS, HEADER_PURPOSE};
use medledger_crypto::{SecretKey, Sha256Stream};
use medledger_ledger::CoreOp;
use serde_json::{Value, json};

use crate::bench_research::{sign_all, submit_waiting};
use crate::client::Client;
use crate::home;
use crate::records::{now_ms, signed};

#[derive(clap::Args)]
pub struct FilesBenchArgs {
    #[arg(long, default_value = "http://127.0.0.1:8640")]
    node: String,
    /// The custodian organisation's root key file.
    #[arg(long)]
    key: PathBuf,
    /// The size of the generated VCF, in MiB.
    #[arg(long, default_value_t = 1_024)]
    mib: u64,
    /// The node's process id, to report its peak resident memory.
    #[arg(long)]
    node_pid: Option<u32>,
}

/// A VCF of one sample, about `bytes` long, made line by line as it is read.
struct GeneratedVcf {
    bytes: u64,
    produced: u64,
    line: Vec<u8>,
    at: usize,
    next: u64,
}

impl GeneratedVcf {
    fn new(bytes: u64) -> GeneratedVcf {
        GeneratedVcf {
            bytes,
            produced: 0,
            line: b"##fileformat=VCFv4.2\n##fileDate=20260101\n##source=bench\n\
                    ##INFO=<ID=DP,Number=1,Type=Integer,Description=\"Depth\">\n\
                    ##FORMAT=<ID=GT,Number=1,Type=String,Description=\"Genotype\">\n\
                    #CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tSAMPLE01\n"
                .to_vec(),
            at: 0,
            next: 0,
        }
    }
}

impl Read for GeneratedVcf {
    /// Fills `buffer` (many lines at once), as reading a file would.
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        let mut filled = 0;
        while filled < buffer.len() {
            let read = self.read_line_part(&mut buffer[filled..])?;
            if read == 0 {
                break;
            }
            filled += read;
        }
        Ok(filled)
    }
}

impl GeneratedVcf {
    fn read_line_part(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        if self.at == self.line.len() {
            if self.produced >= self.bytes {
                return Ok(0);
            }
            let n = self.next;
            self.next += 1;
            self.line.clear();
            writeln!(
                self.line,
                "{}\t{}\trs{}\t{}\t{}\t{}\tPASS\tDP={}\tGT\t{}",
                1 + n % 22,
                10_000 + n * 13,
                n,
                ["A", "C", "G", "T"][(n % 4) as usize],
                ["G", "T", "A", "C"][(n % 4) as usize],
                20 + n % 40,
                n % 90,
                ["0|1", "1|1", "0|0", "1|0"][(n % 4) as usize],
            )?;
            self.at = 0;
        }
        let count = buffer.len().min(self.line.len() - self.at);
        buffer[..count].copy_from_slice(&self.line[self.at..self.at + count]);
        self.at += count;
        self.produced += count as u64;
        Ok(count)
    }
}

/// Hashes and counts what is written, keeping nothing.
#[derive(Default)]
struct HashingSink {
    hasher: Sha256Stream,
    bytes: u64,
}

impl Write for HashingSink {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.hasher.update(data);
        self.bytes += data.len() as u64;
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn peak_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
}

fn mib_per_s(bytes: u64, seconds: f64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0) / seconds.max(1e-9)
}

pub fn run(args: FilesBenchArgs) -> Result<()> {
    if args.mib == 0 {
        bail!("--mib must be positive");
    }
    let bytes = args.mib * 1024 * 1024;
    let client = Client::new(&args.node);
    let root = home::read_key(&args.key)?;
    let chain_id = client.chain_id()?;
    let author = SecretKey::generate(rand_core::OsRng);
    let first = client.next_nonce(&root.public_key())?;
    submit_waiting(
        &client,
        &sign_all(
            &chain_id,
            vec![(
                root.clone(),
                first,
                CoreOp::Enrol {
                    member: author.public_key(),
                    role: medledger_types::Role::Practitioner,
                }
                .into(),
            )],
        ),
    )?;
    let patient = format!("bench-files-{}", hex::encode(&author.public_key().0[..4]));
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [{
        "resource": {"resourceType": "Patient", "id": patient},
        "request": {"method": "PUT", "url": format!("Patient/{patient}")},
    }]});
    let (status, body) = signed(
        &client,
        &author,
        "POST",
        "/fhir",
        &serde_json::to_vec(&bundle)?,
        &AccessHeaders::default(),
    )?;
    if !(200..300).contains(&status) {
        bail!(
            "importing the patient: {status} {}",
            String::from_utf8_lossy(&body)
        );
    }
    let peak_before = args.node_pid.and_then(peak_kib);

    // The machine's limits for this work, on 256 MiB in memory: SHA-256 (every stage hashes the
    // bytes at least once) and STREAM sealing (AES-256-GCM).
    let block = vec![0x5au8; 256 * 1024 * 1024];
    let started = Instant::now();
    let mut limit = HashingSink::default();
    limit.write_all(&block)?;
    let _ = limit.hasher.finish();
    let sha256_s = started.elapsed().as_secs_f64();
    let key = medledger_crypto::envelope::DataKey::generate(rand_core::OsRng);
    let started = Instant::now();
    let mut sealing = medledger_crypto::stream::SealingWriter::new(
        &key,
        [0; medledger_crypto::stream::STREAM_NONCE_BYTES],
        b"bench",
        std::io::sink(),
    );
    sealing.write_all(&block)?;
    sealing.finish()?;
    let seal_s = started.elapsed().as_secs_f64();
    let block_bytes = block.len() as u64;
    drop(block);

    // The file's digest, as the CLI computes it before sending (generating it costs too).
    let started = Instant::now();
    let mut sink = HashingSink::default();
    std::io::copy(&mut GeneratedVcf::new(bytes), &mut sink)?;
    let hash_s = started.elapsed().as_secs_f64();
    let size = sink.bytes;
    let digest = sink.hasher.finish();

    let time_ms = now_ms();
    let signature = medledger_api::auth::sign_bytes_digest(
        &chain_id,
        "POST",
        "/fhir/Binary",
        time_ms,
        &digest,
        &AccessHeaders::default(),
    );
    let headers = [
        (
            "authorization",
            medledger_api::auth::authorization(&author, time_ms, &signature),
        ),
        (medledger_api::auth::HEADER_CONTENT_SHA256, digest.to_hex()),
        ("x-security-context", format!("Patient/{patient}")),
    ];
    let started = Instant::now();
    let (status, body) = client.send_stream(
        "POST",
        "/fhir/Binary",
        &headers,
        "text/vcf",
        &mut GeneratedVcf::new(bytes),
    )?;
    let upload_s = started.elapsed().as_secs_f64();
    if status != 201 {
        bail!(
            "upload answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    let sequence: Value = serde_json::from_slice(&body).context("the upload's answer")?;
    let id = sequence["id"].as_str().context("the sequence's id")?;

    let path = format!("/fhir/Binary/{id}");
    let access = AccessHeaders {
        purpose: Some("ETREAT".into()),
        break_glass: true,
        wrap_to: None,
    };
    let time_ms = now_ms();
    let signature = medledger_api::auth::sign_bytes(&chain_id, "GET", &path, time_ms, b"", &access);
    let headers = [
        (
            "authorization",
            medledger_api::auth::authorization(&author, time_ms, &signature),
        ),
        (HEADER_PURPOSE, "ETREAT".to_string()),
        (HEADER_BREAK_GLASS, "true".to_string()),
    ];
    let started = Instant::now();
    let mut received = HashingSink::default();
    let (status, _, body) = client.fetch_to(&path, &headers, &mut received)?;
    let download_s = started.elapsed().as_secs_f64();
    if status != 200 {
        bail!(
            "download answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    if received.bytes != size || received.hasher.finish() != digest {
        bail!("the file read back is not the file sent");
    }
    let peak_after = args.node_pid.and_then(peak_kib);

    // The release path in this process: de-identification alone, then followed by sealing.
    let started = Instant::now();
    let mut released = HashingSink::default();
    let stats = medledger_fhir::deidentify_vcf(
        std::io::BufReader::new(GeneratedVcf::new(bytes)),
        &mut released,
        "pseudonym",
        2026,
    )?;
    let deidentify_s = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let mut sealing = medledger_crypto::stream::SealingWriter::new(
        &key,
        [1; medledger_crypto::stream::STREAM_NONCE_BYTES],
        b"bench",
        HashingSink::default(),
    );
    medledger_fhir::deidentify_vcf(
        std::io::BufReader::new(GeneratedVcf::new(bytes)),
        &mut sealing,
        "pseudonym",
        2026,
    )?;
    sealing.finish()?;
    let release_s = started.elapsed().as_secs_f64();

    crate::print(&json!({
        "bytes": size,
        "records": stats.records,
        "limit_sha256_mib_per_s": mib_per_s(block_bytes, sha256_s),
        "limit_stream_seal_mib_per_s": mib_per_s(block_bytes, seal_s),
        "generate_and_hash_mib_per_s": mib_per_s(size, hash_s),
        "upload_s": upload_s,
        "upload_mib_per_s": mib_per_s(size, upload_s),
        "download_s": download_s,
        "download_mib_per_s": mib_per_s(size, download_s),
        "deidentify_mib_per_s": mib_per_s(size, deidentify_s),
        "deidentify_and_seal_mib_per_s": mib_per_s(size, release_s),
        "node_peak_rss_kib_before": peak_before,
        "node_peak_rss_kib_after": peak_after,
    }));
    Ok(())
}
