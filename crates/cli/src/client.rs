//! A small blocking client for a node's HTTP API.

use std::io::BufRead;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use medledger_crypto::{Hash, PublicKey, SecretKey};
use medledger_ledger::{Payload, Tx, TxBody};
use serde_json::Value;

/// The largest response the client reads (a full block can be large).
const RESPONSE_BYTES_MAX: u64 = 256 * 1024 * 1024;

#[derive(Clone, Debug)]
pub struct Client {
    base: String,
    agent: ureq::Agent,
    /// The node's chain id, asked once.
    chain_id: std::sync::Arc<std::sync::OnceLock<String>>,
}

impl Client {
    pub fn new(base: &str) -> Client {
        Client::with_timeout(base, Duration::from_secs(120))
    }

    /// A client whose every request ends within `timeout`.
    pub fn with_timeout(base: &str, timeout: Duration) -> Client {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .build()
            .into();
        Client {
            base: base.trim_end_matches('/').to_string(),
            agent,
            chain_id: Default::default(),
        }
    }

    fn read(
        &self,
        response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
        path: &str,
    ) -> Result<(u16, Value)> {
        let mut response = response.with_context(|| {
            format!(
                "cannot reach the node at {}{path}; is it running?",
                self.base
            )
        })?;
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .with_config()
            .limit(RESPONSE_BYTES_MAX)
            .read_to_string()?;
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok((status, body))
    }

    /// The node's base URL, e.g. `http://127.0.0.1:8640`.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// POST a form (`application/x-www-form-urlencoded`); returns the status and the JSON body.
    pub fn post_form(&self, path: &str, form: &str) -> Result<(u16, Value)> {
        self.read(
            self.agent
                .post(format!("{}{path}", self.base))
                .content_type("application/x-www-form-urlencoded")
                .send(form),
            path,
        )
    }

    /// GET a path with a bearer token; returns the status and the JSON body.
    pub fn get_bearer(&self, path: &str, token: &str) -> Result<(u16, Value)> {
        self.read(
            self.agent
                .get(format!("{}{path}", self.base))
                .header("authorization", format!("Bearer {token}"))
                .call(),
            path,
        )
    }

    /// GET a path; returns the status and the JSON body.
    pub fn get_raw(&self, path: &str) -> Result<(u16, Value)> {
        self.read(self.agent.get(format!("{}{path}", self.base)).call(), path)
    }

    /// GET a path that must succeed.
    pub fn get(&self, path: &str) -> Result<Value> {
        let (status, body) = self.get_raw(path)?;
        ok(status, body)
    }

    pub fn post_raw(&self, path: &str, body: &Value) -> Result<(u16, Value)> {
        self.read(
            self.agent
                .post(format!("{}{path}", self.base))
                .send_json(body),
            path,
        )
    }

    /// Sends a request with extra headers and a raw body; returns the status and the raw body.
    pub fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, String)],
        body: &[u8],
    ) -> Result<(u16, Vec<u8>)> {
        self.send_for_headers(method, path, headers, body)
            .map(|(status, _, bytes)| (status, bytes))
    }

    /// Like [`Client::send`], with the response's headers.
    pub fn send_for_headers(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, String)],
        body: &[u8],
    ) -> Result<(u16, ureq::http::HeaderMap, Vec<u8>)> {
        let url = format!("{}{path}", self.base);
        let mut request = ureq::http::Request::builder().method(method).uri(&url);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let typed = headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("content-type"));
        if !body.is_empty() && !typed {
            request = request.header("content-type", "application/fhir+json");
        }
        let request = request
            .body(body.to_vec())
            .with_context(|| format!("building a request to {url}"))?;
        let mut response = self.agent.run(request).with_context(|| {
            format!(
                "cannot reach the node at {}{path}; is it running?",
                self.base
            )
        })?;
        let status = response.status().as_u16();
        let response_headers = response.headers().clone();
        let bytes = response
            .body_mut()
            .with_config()
            .limit(RESPONSE_BYTES_MAX)
            .read_to_vec()?;
        Ok((status, response_headers, bytes))
    }

    /// Runs a request to `path` with `headers` and `body`, with no overall time limit (a genomic
    /// file may take minutes).
    fn run_untimed<S: ureq::AsSendBody>(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, String)],
        body: S,
    ) -> Result<ureq::http::Response<ureq::Body>> {
        let url = format!("{}{path}", self.base);
        let mut request = ureq::http::Request::builder().method(method).uri(&url);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let request = request
            .body(body)
            .with_context(|| format!("building a request to {url}"))?;
        let request = self
            .agent
            .configure_request(request)
            .timeout_global(None)
            .build();
        self.agent
            .run(request)
            .with_context(|| format!("cannot reach the node at {url}"))
    }

    /// Sends a body streamed from `reader`; returns the status and the response body.
    pub fn send_stream(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, String)],
        content_type: &str,
        reader: &mut dyn std::io::Read,
    ) -> Result<(u16, Vec<u8>)> {
        let mut all = vec![("content-type", content_type.to_string())];
        all.extend(headers.iter().cloned());
        let mut response =
            self.run_untimed(method, path, &all, ureq::SendBody::from_reader(reader))?;
        let status = response.status().as_u16();
        let bytes = response
            .body_mut()
            .with_config()
            .limit(RESPONSE_BYTES_MAX)
            .read_to_vec()?;
        Ok((status, bytes))
    }

    /// GETs `path`, streaming a 2xx body into `writer` with no size or time limit; answers the
    /// status, the headers, and the body of any other answer.
    pub fn fetch_to(
        &self,
        path: &str,
        headers: &[(&str, String)],
        writer: &mut dyn std::io::Write,
    ) -> Result<(u16, ureq::http::HeaderMap, Vec<u8>)> {
        let mut response = self.run_untimed("GET", path, headers, ())?;
        let status = response.status().as_u16();
        let response_headers = response.headers().clone();
        if !(200..300).contains(&status) {
            let bytes = response
                .body_mut()
                .with_config()
                .limit(RESPONSE_BYTES_MAX)
                .read_to_vec()?;
            return Ok((status, response_headers, bytes));
        }
        let mut reader = response.body_mut().with_config().limit(u64::MAX).reader();
        std::io::copy(&mut reader, writer).with_context(|| format!("receiving {path}"))?;
        Ok((status, response_headers, Vec::new()))
    }

    /// Signs a payload with the next nonce of `key` and submits it; returns its id.
    pub fn submit(&self, key: &SecretKey, payload: impl Into<Payload>) -> Result<Hash> {
        let payload = payload.into();
        let status = self.get("/v1/status")?;
        let chain_id = status["chain_id"]
            .as_str()
            .context("node status has no chain id")?
            .to_string();
        let account = self.get(&format!("/v1/accounts/{}", key.public_key()))?;
        let nonce = account["next_nonce"]
            .as_u64()
            .context("account has no next nonce")?;
        let tx = TxBody {
            chain_id,
            sender: key.public_key(),
            nonce,
            payload,
        }
        .sign(key);
        let (status, body) = self.post_raw(
            "/v1/txs",
            &serde_json::json!({"tx": hex::encode(tx.to_bytes())}),
        )?;
        ok(status, body)?;
        Ok(tx.id())
    }

    /// Waits until a transaction leaves the mempool; returns its final state.
    pub fn wait(&self, id: &Hash, timeout: Duration) -> Result<Value> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let body = self.get(&format!("/v1/txs/{id}/receipt?wait_ms=10000"))?;
            if body["status"] != "pending" || std::time::Instant::now() >= deadline {
                return Ok(body);
            }
        }
    }

    pub fn next_nonce(&self, key: &PublicKey) -> Result<u64> {
        self.get(&format!("/v1/accounts/{key}"))?["next_nonce"]
            .as_u64()
            .context("account has no next nonce")
    }

    pub fn chain_id(&self) -> Result<String> {
        if let Some(chain_id) = self.chain_id.get() {
            return Ok(chain_id.clone());
        }
        let chain_id = self.get("/v1/status")?["chain_id"]
            .as_str()
            .context("node status has no chain id")?
            .to_string();
        Ok(self.chain_id.get_or_init(|| chain_id).clone())
    }

    /// Submits signed transactions in one request; returns the per-transaction results.
    pub fn submit_batch(&self, txs: &[Tx]) -> Result<Vec<Value>> {
        let hexes: Vec<String> = txs.iter().map(|tx| hex::encode(tx.to_bytes())).collect();
        let (status, body) = self.post_raw("/v1/txs", &serde_json::json!({"txs": hexes}))?;
        let body = ok(status, body)?;
        Ok(body["results"].as_array().cloned().unwrap_or_default())
    }
}

fn ok(status: u16, body: Value) -> Result<Value> {
    if (200..300).contains(&status) {
        return Ok(body);
    }
    match body["error"]["message"].as_str() {
        Some(message) => bail!(
            "the node refused the request ({status} {}): {message}",
            body["error"]["code"].as_str().unwrap_or("")
        ),
        None => bail!("the node answered {status}: {body}"),
    }
}

/// Streams an alert feed (server-sent events at `base`, signed by `key`), printing each alert as
/// a JSON line; stops after `count` alerts if given.
pub(crate) fn follow_alerts(
    client: &Client,
    key: &SecretKey,
    base: &str,
    after: Option<u64>,
    count: Option<u64>,
) -> Result<i32> {
    let path = match after {
        Some(after) => format!("{base}?after={after}"),
        None => base.to_string(),
    };
    let reader = open_event_stream(client, key, &path)?;
    let mut seen = 0u64;
    let mut data = String::new();
    for line in reader.lines() {
        let line = line.context("reading the alert stream")?;
        if let Some(rest) = line.strip_prefix("data:") {
            data.push_str(rest.trim_start());
        } else if line.is_empty() && !data.is_empty() {
            println!("{data}");
            data.clear();
            seen += 1;
            if count.is_some_and(|count| seen >= count) {
                return Ok(0);
            }
        }
    }
    Ok(0)
}

/// Opens a server-sent event stream at `path`, signed by `key`, as a reader of lines; a stream
/// has no overall deadline.
pub(crate) fn open_event_stream(
    client: &Client,
    key: &SecretKey,
    path: &str,
) -> Result<std::io::BufReader<ureq::BodyReader<'static>>> {
    let chain_id = client.chain_id()?;
    let time_ms = crate::records::now_ms();
    let access = medledger_api::auth::AccessHeaders::default();
    let bytes = medledger_api::auth::sign_bytes(&chain_id, "GET", path, time_ms, b"", &access);
    let authorization = medledger_api::auth::authorization(key, time_ms, &bytes);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let url = format!("{}{path}", client.base());
    let mut response = agent
        .get(&url)
        .header("authorization", &authorization)
        .header("accept", "text/event-stream")
        .call()
        .with_context(|| format!("cannot reach the node at {url}"))?;
    if response.status() != 200 {
        let text = response.body_mut().read_to_string().unwrap_or_default();
        bail!("the node answered {}: {text}", response.status());
    }
    Ok(std::io::BufReader::new(response.into_body().into_reader()))
}
