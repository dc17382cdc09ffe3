//! Helpers for driving the real `medledger` binary in end-to-end tests.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod hospital;

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_medledger")
}

pub fn medledger(args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .output()
        .expect("the binary runs")
}

/// `medledger proof verify` of a proof file against a genesis file.
pub fn verify_proof(proof: &Path, genesis: &Path) -> Output {
    medledger(&[
        "proof",
        "verify",
        "--proof",
        proof.to_str().expect("utf-8"),
        "--genesis",
        genesis.to_str().expect("utf-8"),
    ])
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// A node home created with `medledger init`, and the node process when it runs.
pub struct TestNode {
    pub home: PathBuf,
    pub url: String,
    pub listen: String,
    pub child: Option<Child>,
}

impl TestNode {
    pub fn init(dir: &Path) -> TestNode {
        Self::init_orgs(dir, &["hospital=Test Hospital"], &[])
    }

    /// A home whose chain is founded by `orgs` (`id=Name`; the first runs the validator), with
    /// `gs1_prefixes` (`id=prefix`).
    pub fn init_orgs(dir: &Path, orgs: &[&str], gs1_prefixes: &[&str]) -> TestNode {
        let home = dir.join("home");
        let listen = format!("127.0.0.1:{}", free_port());
        let mut args = vec![
            "init",
            "--home",
            home.to_str().expect("utf-8"),
            "--chain-id",
            "e2e",
            "--listen",
            &listen,
        ];
        for org in orgs {
            args.extend_from_slice(&["--org", org]);
        }
        for prefix in gs1_prefixes {
            args.extend_from_slice(&["--gs1-prefix", prefix]);
        }
        let out = medledger(&args);
        assert!(
            out.status.success(),
            "init failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        TestNode {
            url: format!("http://{listen}"),
            home,
            listen,
            child: None,
        }
    }

    /// A node home made by someone else (`medledger devnet --init-only`).
    pub fn existing(home: PathBuf, listen: String) -> TestNode {
        TestNode {
            url: format!("http://{listen}"),
            home,
            listen,
            child: None,
        }
    }

    pub fn org_key(&self) -> PathBuf {
        self.home.join("keys/hospital.key")
    }

    /// Starts the node and waits until its API answers.
    pub fn start(&mut self) {
        let child = Command::new(bin())
            .args(["node", "--home", self.home.to_str().expect("utf-8")])
            .env(
                "RUST_LOG",
                "warn,medledger_node=debug,medledger_api::observe=info",
            )
            .stdout(Stdio::null())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(self.home.join("node.log"))
                    .expect("log file"),
            )
            .spawn()
            .expect("spawn node");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self.get("/health").0 == 200 {
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|child| child.try_wait().ok().flatten())
            {
                let log = std::fs::read_to_string(self.home.join("node.log")).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(30).collect();
                panic!(
                    "node exited during start-up: {status}; the end of its log:\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "node did not answer within 20 s: {}",
            std::fs::read_to_string(self.home.join("node.log")).unwrap_or_default()
        );
    }

    /// Starts the node and returns how it exited, for a start that must fail.
    pub fn start_expecting_failure(&self) -> Output {
        let mut command = Command::new(bin());
        command.args(["node", "--home", self.home.to_str().expect("utf-8")]);
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if child.try_wait().expect("wait").is_some() {
                return child.wait_with_output().expect("output");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("node started on a store that should have been refused");
    }

    /// SIGINT, as Ctrl-C: the node finishes its block and closes its database.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let status = Command::new("kill")
                .args(["-INT", &child.id().to_string()])
                .status()
                .expect("kill -INT");
            assert!(status.success());
            let deadline = Instant::now() + Duration::from_secs(20);
            while child.try_wait().expect("wait").is_none() {
                assert!(
                    Instant::now() < deadline,
                    "node did not stop within 20 s of SIGINT"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("kill -9");
            child.wait().expect("reap");
        }
    }

    pub fn get(&self, path: &str) -> (u16, Value) {
        call(ureq_agent().get(format!("{}{path}", self.url)).call())
    }

    /// GETs `path` with extra request headers; answers the status, the response's headers
    /// (names in lower case) and the body.
    pub fn get_with_headers(
        &self,
        path: &str,
        headers: &[(&str, &str)],
    ) -> (u16, Vec<(String, String)>, Value) {
        let mut request = ureq_agent().get(format!("{}{path}", self.url));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        match request.call() {
            Ok(mut response) => {
                let status = response.status().as_u16();
                let headers = response
                    .headers()
                    .iter()
                    .map(|(name, value)| {
                        (
                            name.as_str().to_string(),
                            value.to_str().unwrap_or_default().to_string(),
                        )
                    })
                    .collect();
                let text = response.body_mut().read_to_string().unwrap_or_default();
                let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
                (status, headers, body)
            }
            Err(error) => panic!("GET {path}: {error}"),
        }
    }

    pub fn post(&self, path: &str, body: &str) -> (u16, Value) {
        call(
            ureq_agent()
                .post(format!("{}{path}", self.url))
                .header("content-type", "application/json")
                .send(body),
        )
    }

    /// POSTs a form (`application/x-www-form-urlencoded`), as an OAuth client does.
    pub fn post_form(&self, path: &str, form: &[(&str, &str)]) -> (u16, Value) {
        let body = form
            .iter()
            .map(|(name, value)| format!("{}={}", encode(name), encode(value)))
            .collect::<Vec<_>>()
            .join("&");
        call(
            ureq_agent()
                .post(format!("{}{path}", self.url))
                .header("content-type", "application/x-www-form-urlencoded")
                .send(body),
        )
    }

    /// Announces a body of `length` bytes but sends none of it, then reads the answer. A node
    /// must refuse an oversized body from its declared length; sending all of it would race the
    /// node closing the connection (the client then sees a reset, not the answer).
    pub fn post_declaring_length(&self, path: &str, length: usize) -> (u16, Value) {
        use std::io::{Read, Write};
        let address = self.url.trim_start_matches("http://");
        let mut stream = std::net::TcpStream::connect(address).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n\
             Content-Length: {length}\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).expect("write");
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        let text = String::from_utf8_lossy(&answer);
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or(0);
        let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
        (
            status,
            serde_json::from_str(body).unwrap_or(Value::String(body.to_string())),
        )
    }

    /// Sends a request signed by `key` (with the access headers it covers); returns the status
    /// and the raw body.
    pub fn signed(
        &self,
        key: &medledger_crypto::SecretKey,
        method: &str,
        path: &str,
        body: &[u8],
        access: &medledger_api::auth::AccessHeaders,
    ) -> (u16, Vec<u8>) {
        let (status, _, bytes) = self.signed_response(key, method, path, body, access);
        (status, bytes)
    }

    /// Like [`TestNode::signed`], with the response headers.
    pub fn signed_response(
        &self,
        key: &medledger_crypto::SecretKey,
        method: &str,
        path: &str,
        body: &[u8],
        access: &medledger_api::auth::AccessHeaders,
    ) -> (u16, ureq::http::HeaderMap, Vec<u8>) {
        self.signed_with(key, method, path, body, access, &[])
    }

    /// Like [`TestNode::signed_response`], with more request headers (which replace the default
    /// `content-type: application/json` when they name one).
    pub fn signed_with(
        &self,
        key: &medledger_crypto::SecretKey,
        method: &str,
        path: &str,
        body: &[u8],
        access: &medledger_api::auth::AccessHeaders,
        headers: &[(&str, &str)],
    ) -> (u16, ureq::http::HeaderMap, Vec<u8>) {
        let digest = medledger_crypto::sha256(body);
        self.signed_declaring(key, method, path, body, &digest, access, headers)
    }

    /// Like [`TestNode::signed_with`], signing `declared` as the body's SHA-256 whatever the body
    /// is (as a streamed upload does).
    #[allow(clippy::too_many_arguments)]
    pub fn signed_declaring(
        &self,
        key: &medledger_crypto::SecretKey,
        method: &str,
        path: &str,
        body: &[u8],
        declared: &medledger_crypto::Hash,
        access: &medledger_api::auth::AccessHeaders,
        headers: &[(&str, &str)],
    ) -> (u16, ureq::http::HeaderMap, Vec<u8>) {
        let time_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_millis() as u64;
        let chain_id = self.get("/v1/status").1["chain_id"]
            .as_str()
            .unwrap_or("e2e")
            .to_string();
        let bytes = medledger_api::auth::sign_bytes_digest(
            &chain_id, method, path, time_ms, declared, access,
        );
        let mut request = ureq::http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.url))
            .header(
                "authorization",
                medledger_api::auth::authorization(key, time_ms, &bytes),
            );
        if !headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("content-type"))
        {
            request = request.header("content-type", "application/json");
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(purpose) = &access.purpose {
            request = request.header(medledger_api::auth::HEADER_PURPOSE, purpose);
        }
        let mut response = ureq_agent()
            .run(request.body(body.to_vec()).expect("request"))
            .expect("node answers");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_vec()
            .unwrap_or_default();
        (status, headers, bytes)
    }

    /// A request with a bearer token (and more headers); returns the status, headers and body.
    pub fn bearer(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: &[u8],
        headers: &[(&str, &str)],
    ) -> (u16, ureq::http::HeaderMap, Vec<u8>) {
        let mut request = ureq::http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.url))
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/fhir+json");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let mut response = ureq_agent()
            .run(request.body(body.to_vec()).expect("request"))
            .expect("node answers");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response.body_mut().read_to_vec().unwrap_or_default();
        (status, headers, bytes)
    }

    /// A new key file `<dir>/<name>.key`, enrolled through this node by `(root key, role)` when
    /// given.
    pub fn new_key(&self, dir: &Path, name: &str, enrol: Option<(&Path, &str)>) -> PathBuf {
        let file = dir.join(format!("{name}.key"));
        let out = medledger(&["keygen", "--out", file.to_str().expect("utf-8")]);
        assert!(out.status.success());
        if let Some((root, role)) = enrol {
            let out = self.cli(&[
                "tx",
                "--key",
                root.to_str().expect("utf-8"),
                "enrol",
                "--member",
                &public_key_of(&file),
                "--role",
                role,
            ]);
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        file
    }

    pub fn cli(&self, args: &[&str]) -> Output {
        let mut all = vec![args[0], "--node", &self.url];
        all.extend_from_slice(&args[1..]);
        medledger(&all)
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One agent for the whole test process, so connections are reused: a fresh connection per
/// call leaves tens of thousands of sockets in TIME-WAIT after a busy test, which can exhaust the
/// ephemeral ports the next test binds.
/// Percent-encodes a form value (everything but unreserved characters).
fn encode(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (byte as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

fn ureq_agent() -> ureq::Agent {
    static AGENT: std::sync::OnceLock<ureq::Agent> = std::sync::OnceLock::new();
    AGENT
        .get_or_init(|| {
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(60)))
                .build()
                .into()
        })
        .clone()
}

fn call(response: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> (u16, Value) {
    match response {
        Ok(mut response) => {
            let status = response.status().as_u16();
            let text = response
                .body_mut()
                .with_config()
                .limit(64 << 20)
                .read_to_string()
                .unwrap_or_default();
            (
                status,
                serde_json::from_str(&text).unwrap_or(Value::String(text)),
            )
        }
        Err(_) => (0, Value::Null),
    }
}

/// The secret key in a key file.
pub fn secret_of(key_file: &Path) -> medledger_crypto::SecretKey {
    let text = std::fs::read_to_string(key_file).expect("key file");
    let value: Value = serde_json::from_str(&text).expect("json");
    let secret = hex::decode(value["secret_key"].as_str().expect("secret")).expect("hex");
    medledger_crypto::SecretKey::from_bytes(secret.as_slice().try_into().expect("32 bytes"))
}

pub fn public_key_of(key_file: &Path) -> String {
    let text = std::fs::read_to_string(key_file).expect("key file");
    let value: Value = serde_json::from_str(&text).expect("json");
    value["public_key"]
        .as_str()
        .expect("public key")
        .to_string()
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The Synthea sample (`shared/testdata/fhir/synthea/sample_complete_patient.json`), as vendored
/// unchanged (gzipped) with the fhir crate's test data, so the test needs nothing outside the
/// repository.
const SYNTHEA_GZ: &str = "../fhir/tests/data/synthea-sample-complete-patient.json.gz";
/// Its Patient, a laboratory Observation and a Condition.
pub const PATIENT_ID: &str = "d5582579-7193-4866-5560-a01e723b6552";
pub const LAB_OBSERVATION: &str = "6a286f48-23d9-6fbe-8258-371f89012adb";
pub const CONDITION: &str = "9a01d04d-86de-75e6-5c07-a4ba74966e68";

/// The Synthea bundle, unpacked once per test process into a temporary file.
pub fn synthea() -> PathBuf {
    static UNPACKED: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    UNPACKED
        .get_or_init(|| {
            use std::io::Read;
            let packed =
                std::fs::File::open(Path::new(env!("CARGO_MANIFEST_DIR")).join(SYNTHEA_GZ))
                    .expect("vendored synthea bundle");
            let mut text = Vec::new();
            flate2::read::GzDecoder::new(packed)
                .read_to_end(&mut text)
                .expect("gunzip");
            let path =
                std::env::temp_dir().join(format!("medledger-synthea-{}.json", std::process::id()));
            std::fs::write(&path, text).expect("write");
            path
        })
        .clone()
}

/// The validators of a devnet.
pub const VALIDATORS: usize = 4;

/// One devnet at a time: each is four node processes, and two cores cannot run three devnets
/// at once without timeouts that say nothing about the code.
pub static ONE_DEVNET: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub fn one_devnet() -> std::sync::MutexGuard<'static, ()> {
    ONE_DEVNET
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Consecutive free ports for `nodes` nodes' APIs and consensus: probes bases until the whole
/// ranges are free.
pub fn devnet_ports(nodes: usize) -> (u16, u16) {
    loop {
        let api = free_port();
        let p2p = free_port();
        let free = |base: u16| {
            (0..nodes as u16).all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok())
        };
        if api < 60_000 && p2p < 60_000 && api.abs_diff(p2p) > 8 && free(api) && free(p2p) {
            return (api, p2p);
        }
    }
}

/// A devnet of four validators (organisations `org0`..`org3`, root keys in `<dir>/keys`) and
/// `spares` nodes outside the set, initialised but not started. Its validators start each height
/// at once (no idle interval), so heights pass while a test waits on them; the idle interval has
/// its own test.
pub fn devnet(dir: &Path, spares: usize) -> Vec<TestNode> {
    devnet_with_full_nodes(dir, spares, 0)
}

/// [`devnet`] with `full_nodes` full nodes after the spares (their keys not yet enrolled).
pub fn devnet_with_full_nodes(dir: &Path, spares: usize, full_nodes: usize) -> Vec<TestNode> {
    let nodes = VALIDATORS + spares + full_nodes;
    let (api, p2p) = devnet_ports(nodes);
    let out = medledger(&[
        "devnet",
        "--init-only",
        "--dir",
        dir.to_str().expect("utf-8"),
        "--api-port",
        &api.to_string(),
        "--p2p-port",
        &p2p.to_string(),
        "--spares",
        &spares.to_string(),
        "--idle-block-interval-ms",
        "0",
        "--full-nodes",
        &full_nodes.to_string(),
    ]);
    assert!(
        out.status.success(),
        "devnet --init-only failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (0..nodes)
        .map(|i| {
            TestNode::existing(
                dir.join(format!("node{i}")),
                format!("127.0.0.1:{}", api + i as u16),
            )
        })
        .collect()
}

/// The virtual environment holding the pinned third-party clients (`tests/python/requirements.txt`),
/// made once per target directory; answers its `python`.
pub fn python_clients() -> PathBuf {
    // Tests run on threads of one process and in several processes at once: one of them makes
    // the environment while the others wait (a lock file across processes), or two would
    // create it at once and one fail ("File exists").
    static MAKING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _making = MAKING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    std::fs::create_dir_all(&tmp).expect("target tmp dir");
    let _lock = DirLock::take(&tmp.join("fhir-clients-venv.lockdir"));
    let venv = tmp.join("fhir-clients-venv");
    let requirements =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/requirements.txt");
    let wanted = std::fs::read_to_string(&requirements).expect("requirements");
    let marker = venv.join("installed-requirements.txt");
    let python = venv.join("bin/python");
    if std::fs::read_to_string(&marker).ok().as_deref() != Some(wanted.as_str()) {
        let _ = std::fs::remove_dir_all(&venv);
        let out = std::process::Command::new("python3")
            .args(["-m", "venv", venv.to_str().expect("utf-8")])
            .output()
            .expect("python3 runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = std::process::Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "-r",
            ])
            .arg(&requirements)
            .output()
            .expect("pip runs");
        assert!(
            out.status.success(),
            "installing the FHIR clients: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::write(&marker, wanted).expect("marker");
    }
    python
}

/// Validates resources with an independent FHIR model (fhir.resources, via
/// `tests/python/validate_fhir.py`); panics naming the first invalid one. Answers how many of
/// each type were checked.
pub fn validate_with_fhir_resources(dir: &Path, resources: &[Value]) -> Value {
    let file = dir.join("to-validate.ndjson");
    let lines: Vec<String> = resources.iter().map(Value::to_string).collect();
    std::fs::write(&file, lines.join("\n")).expect("write resources");
    let out = std::process::Command::new(python_clients())
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/validate_fhir.py"))
        .arg(&file)
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "fhir.resources refused a resource: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<Value>(&out.stdout).expect("summary")["types"].clone()
}

/// A lock across processes: a directory only one of them can create. One left by a process that
/// died holding it is taken over after ten minutes.
struct DirLock(PathBuf);

impl DirLock {
    fn take(path: &Path) -> DirLock {
        let deadline = Instant::now() + Duration::from_secs(900);
        loop {
            match std::fs::create_dir(path) {
                Ok(()) => return DirLock(path.to_path_buf()),
                Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
                    let stale = std::fs::metadata(path)
                        .and_then(|meta| meta.modified())
                        .ok()
                        .and_then(|modified| modified.elapsed().ok())
                        .is_some_and(|age| age > Duration::from_secs(600));
                    if stale {
                        let _ = std::fs::remove_dir(path);
                    }
                    assert!(
                        Instant::now() < deadline,
                        "{} stayed locked",
                        path.display()
                    );
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(error) => panic!("locking {}: {error}", path.display()),
            }
        }
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// `medledger <module> alerts --follow` as a background process: the alert lines it printed.
pub struct Subscriber {
    pub lines: std::sync::mpsc::Receiver<(Value, std::time::Instant)>,
    child: std::process::Child,
}

impl Subscriber {
    pub fn start(module: &str, node: &TestNode, key: &Path, extra: &[&str]) -> Subscriber {
        let mut child = Command::new(bin())
            .args([module, "--node", &node.url, "--key"])
            .arg(key)
            .args(["alerts", "--follow"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn subscriber");
        let out = child.stdout.take().expect("stdout");
        let (send, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Ok(value) = serde_json::from_str::<Value>(&line)
                    && send.send((value, std::time::Instant::now())).is_err()
                {
                    return;
                }
            }
        });
        Subscriber { lines, child }
    }

    pub fn next(&self, within: Duration) -> Value {
        self.lines.recv_timeout(within).expect("an alert arrives").0
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `medledger <command> --key <key> <args...>` against `node`.
pub fn run_as(node: &TestNode, command: &str, key: &Path, args: &[&str]) -> Output {
    let mut all = vec![command, "--key", key.to_str().expect("utf-8")];
    all.extend_from_slice(args);
    node.cli(&all)
}

/// The JSON a command printed, failing the test with its output unless it succeeded.
pub fn ok(out: Output) -> Value {
    assert!(
        out.status.success(),
        "{}{}",
        stdout(&out),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout(&out)).unwrap_or(Value::Null)
}

/// Fails the test unless the command failed and said `text` (a refusal's code, a status).
pub fn failed(out: Output, text: &str) {
    let all = format!("{}{}", stdout(&out), String::from_utf8_lossy(&out.stderr));
    assert!(
        !out.status.success(),
        "expected a failure with {text:?}: {all}"
    );
    assert!(all.contains(text), "expected {text:?} in: {all}");
}

/// A webhook receiver on loopback: answers the first `failures` deliveries 503 and the rest 200,
/// and keeps each delivery's status, headers and body.
pub struct WebhookReceiver {
    pub url: String,
    deliveries:
        std::sync::mpsc::Receiver<(u16, std::collections::BTreeMap<String, String>, Vec<u8>)>,
}

impl WebhookReceiver {
    pub fn start(failures: usize) -> WebhookReceiver {
        use std::io::{BufRead, Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/alerts", listener.local_addr().expect("address"));
        let (sender, deliveries) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut failures = failures;
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = std::io::BufReader::new(stream.try_clone().expect("clone"));
                let mut headers = std::collections::BTreeMap::new();
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                loop {
                    line.clear();
                    if reader.read_line(&mut line).is_err() || line.trim().is_empty() {
                        break;
                    }
                    if let Some((name, value)) = line.split_once(':') {
                        headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
                    }
                }
                let length: usize = headers
                    .get("content-length")
                    .and_then(|value| value.parse().ok())
                    .unwrap_or(0);
                let mut body = vec![0u8; length];
                if reader.read_exact(&mut body).is_err() {
                    continue;
                }
                let status = if failures > 0 {
                    failures -= 1;
                    503
                } else {
                    200
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                );
                if sender.send((status, headers, body)).is_err() {
                    return;
                }
            }
        });
        WebhookReceiver { url, deliveries }
    }

    /// Every delivery until one whose body `last` accepts was answered 200.
    #[allow(clippy::type_complexity)]
    pub fn until(
        &self,
        within: std::time::Duration,
        last: impl Fn(&Value) -> bool,
    ) -> Vec<(u16, std::collections::BTreeMap<String, String>, Vec<u8>)> {
        let deadline = std::time::Instant::now() + within;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let delivery = self
                .deliveries
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no such delivery; got {} before", seen.len()));
            let done = delivery.0 == 200
                && serde_json::from_slice::<Value>(&delivery.2).is_ok_and(|body| last(&body));
            seen.push(delivery);
            if done {
                return seen;
            }
        }
    }
}

/// Checks that every delivery came from the node `node_key` and carries its signature over
/// `domain` and the body.
pub fn check_signed(
    deliveries: &[(u16, std::collections::BTreeMap<String, String>, Vec<u8>)],
    node_key: &str,
    domain: &[u8],
) {
    for (_, headers, body) in deliveries {
        assert_eq!(headers["x-medledger-node"], node_key);
        let mut signed = domain.to_vec();
        signed.extend_from_slice(body);
        medledger_crypto::PublicKey::from_hex(node_key)
            .expect("key")
            .verify(
                &signed,
                &medledger_crypto::Signature::from_hex(&headers["x-medledger-signature"])
                    .expect("signature"),
            )
            .expect("the node's signature verifies");
    }
}

// Chain-level helpers for the multi-node tests: heights, anchors, receipts and blocks.

pub fn height(node: &TestNode) -> u64 {
    let (status, body) = node.get("/v1/status");
    assert_eq!(status, 200, "{body}");
    body["height"].as_u64().expect("height")
}

pub fn wait_for_height(node: &TestNode, target: u64, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let now = height(node);
        if now >= target {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} stayed at height {now}, below {target}; log:\n{}",
            node.url,
            std::fs::read_to_string(node.home.join("node.log"))
                .unwrap_or_default()
                .lines()
                .rev()
                .take(40)
                .collect::<Vec<_>>()
                .join("\n")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Anchors a fresh id through `node`; returns the transaction id once it is committed.
pub fn anchor(node: &TestNode, key: &Path, seed: u64, wait: bool) -> String {
    let id = format!("{seed:064x}");
    let commitment = format!("{:064x}", seed + 1_000_000);
    tx(
        node,
        key,
        wait,
        &["anchor", "--id", &id, "--commitment", &commitment],
    )
}

/// Signs and submits a transaction through `node`'s CLI; returns its id.
pub fn tx(node: &TestNode, key: &Path, wait: bool, command: &[&str]) -> String {
    let mut args = vec!["tx", "--key", key.to_str().expect("utf-8")];
    if !wait {
        args.push("--no-wait");
    }
    args.extend(command);
    let out = node.cli(&args);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "tx anchor failed: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let parsed: Value = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    parsed["id"]
        .as_str()
        .or_else(|| parsed["receipt"]["tx_id"].as_str())
        .map(str::to_string)
        .unwrap_or_else(|| panic!("no transaction id in {stdout:?}"))
}

pub fn committed_on(node: &TestNode, id: &str) -> bool {
    let (status, body) = node.get(&format!("/v1/txs/{id}/receipt"));
    status == 200 && body["status"] == "committed"
}

pub fn block_hash(node: &TestNode, height: u64) -> String {
    let (status, body) = node.get(&format!("/v1/blocks/{height}"));
    assert_eq!(status, 200, "block {height} on {}: {body}", node.url);
    body["hash"].as_str().expect("block hash").to_string()
}

/// Runs one of the project's set-up scripts (`scripts/<name>.sh`), once per process and one
/// process at a time, failing the test with its output if it fails.
fn setup_script(name: &str) {
    static RUNNING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _running = RUNNING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    std::fs::create_dir_all(&tmp).expect("target tmp dir");
    let _lock = DirLock::take(&tmp.join(format!("{name}.lockdir")));
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../../scripts/{name}.sh"));
    let out = Command::new("bash")
        .arg(&script)
        .output()
        .expect("bash runs");
    assert!(
        out.status.success(),
        "scripts/{name}.sh failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Makes sure the contract toolchain (Debian's clang and lld) is installed.
pub fn contract_toolchain() {
    setup_script("contract-toolchain");
}

/// Builds an example contract (`contracts/examples/<name>.c`) with `medledger contract build`
/// into `dir`; answers the module's path.
pub fn build_contract(dir: &Path, name: &str, defines: &[&str]) -> PathBuf {
    contract_toolchain();
    let source = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(format!("../../contracts/examples/{name}.c"));
    let output = dir.join(format!("{name}{}.wasm", defines.join("_")));
    let mut args = vec![
        "contract",
        "build",
        source.to_str().expect("utf-8"),
        "--output",
        output.to_str().expect("utf-8"),
    ];
    for define in defines {
        args.extend(["-D", define]);
    }
    let out = medledger(&args);
    assert!(
        out.status.success(),
        "building {name}: {}{}",
        stdout(&out),
        String::from_utf8_lossy(&out.stderr)
    );
    output
}

/// Makes sure the browser toolchain (Debian's Chromium, Playwright and axe-core from npm) is
/// installed; answers the directory of the browser tests.
pub fn browser_toolchain() -> PathBuf {
    setup_script("browser-toolchain");
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}
