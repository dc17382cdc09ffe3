//! `medledger backup` and `medledger restore`: a running node's consistent copy (made by the node
//! itself, see `medledger_node::backup`) packed with the home's configuration and genesis into
//! one gzip'd tar, optionally with the home's keys encrypted under a passphrase; and a home
//! unpacked from such a file, every file checked against the manifest first.
//!
//! The archive (`manifest.json`, `config.toml`, the genesis file, `data/...` and, with keys,
//! `keys.enc`) holds the vault's ciphertext, its key slots and blind key: whoever holds the file
//! can read the records the slots still open, so it is written with mode 0600 and must be kept as
//! secret as the node's data directory. Keys are sealed with AES-256-GCM under a key derived from
//! the passphrase with Argon2id.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use medledger_api::auth::AccessHeaders;
use medledger_crypto::Hash;
use medledger_crypto::envelope::DataKey;
use rand_core::RngCore;
use serde_json::{Value, json};

use crate::client::Client;
use crate::home::{self, Config};

/// The archive format, in its manifest.
pub const FORMAT: &str = "medledger-backup/1";
/// What the sealed keys start with.
const KEYS_MAGIC: &[u8; 8] = b"MLKEYS1\0";
const KEYS_ENTRY: &str = "keys.enc";
const MANIFEST_ENTRY: &str = "manifest.json";
const SALT_BYTES: usize = 16;
const NONCE_BYTES: usize = 12;
/// How long the node may take to copy its data directory.
const BACKUP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3600);

/// The passphrase in the first line of `file`; refuses an empty one.
pub fn passphrase(file: &Path) -> Result<String> {
    let text = fs::read_to_string(file)
        .with_context(|| format!("reading the passphrase from {}", file.display()))?;
    let line = text.lines().next().unwrap_or("").to_string();
    if line.chars().count() < 12 {
        bail!(
            "the passphrase in {} must be at least 12 characters",
            file.display()
        );
    }
    Ok(line)
}

fn derive(passphrase: &str, salt: &[u8]) -> Result<DataKey> {
    let mut key = [0u8; 32];
    argon2::Argon2::default()
        .hash_password_into(passphrase.as_bytes(), salt, &mut key)
        .map_err(|error| anyhow::anyhow!("deriving the key from the passphrase: {error}"))?;
    Ok(DataKey(key))
}

/// Seals `plain` (a tar of the keys) under `passphrase`: magic, salt, nonce, ciphertext.
fn seal_keys(plain: &[u8], passphrase: &str) -> Result<Vec<u8>> {
    let mut salt = [0u8; SALT_BYTES];
    let mut nonce = [0u8; NONCE_BYTES];
    rand_core::OsRng.fill_bytes(&mut salt);
    rand_core::OsRng.fill_bytes(&mut nonce);
    let key = derive(passphrase, &salt)?;
    let mut out = KEYS_MAGIC.to_vec();
    out.extend_from_slice(&salt);
    out.extend_from_slice(&nonce);
    let aad = out.clone();
    out.extend(key.seal(nonce, &aad, plain));
    Ok(out)
}

fn open_keys(sealed: &[u8], passphrase: &str) -> Result<Vec<u8>> {
    let header = KEYS_MAGIC.len() + SALT_BYTES + NONCE_BYTES;
    if sealed.len() < header || &sealed[..KEYS_MAGIC.len()] != KEYS_MAGIC {
        bail!("{KEYS_ENTRY} is not a medledger key archive");
    }
    let salt = &sealed[KEYS_MAGIC.len()..KEYS_MAGIC.len() + SALT_BYTES];
    let mut nonce = [0u8; NONCE_BYTES];
    nonce.copy_from_slice(&sealed[KEYS_MAGIC.len() + SALT_BYTES..header]);
    let key = derive(passphrase, salt)?;
    key.open(nonce, &sealed[..header], &sealed[header..])
        .map_err(|_| {
            anyhow::anyhow!("the passphrase does not open the keys (or the file was altered)")
        })
}

/// A tar of every file in `dir` (flat: key files), in memory.
fn tar_dir(dir: &Path) -> Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    builder.mode(tar::HeaderMode::Complete);
    builder
        .append_dir_all(".", dir)
        .with_context(|| format!("reading {}", dir.display()))?;
    Ok(builder.into_inner()?)
}

/// Refuses a configuration whose paths a restore could not put back inside a new home:
/// absolute, or leaving the home.
fn check_relative(config: &Config) -> Result<()> {
    for (what, path) in [
        ("data_dir", &config.data_dir),
        ("genesis", &config.genesis),
        ("validator_key", &config.validator_key),
    ] {
        let inside = path
            .components()
            .all(|part| matches!(part, std::path::Component::Normal(_)));
        if !inside || path.as_os_str().is_empty() {
            bail!(
                "config.toml's {what} {} must be a path inside the home for a backup to restore \
                 elsewhere",
                path.display()
            );
        }
    }
    Ok(())
}

/// Takes a backup of the node running from `home` into `out`.
pub fn backup(home: &Path, out: &Path, keys_passphrase: Option<&Path>) -> Result<Value> {
    let config = Config::load(home)?;
    check_relative(&config)?;
    let key = home::read_key(&home.join(&config.validator_key))?;
    let passphrase = keys_passphrase.map(passphrase).transpose()?;
    // Refuse before the node copies gigabytes.
    if out.exists() {
        bail!("{} exists; choose a new file", out.display());
    }
    let client = Client::with_timeout(&format!("http://{}", config.listen), BACKUP_TIMEOUT);
    let (status, body) = crate::records::signed(
        &client,
        &key,
        "POST",
        "/v1/admin/backup",
        b"",
        &AccessHeaders::default(),
    )
    .with_context(|| {
        format!(
            "asking the node at {} for a backup (it must be running: a stopped node's home can \
             be copied as it is)",
            config.listen
        )
    })?;
    let manifest: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if status != 200 {
        bail!(
            "the node refused the backup ({status}): {}",
            manifest["error"]["message"]
                .as_str()
                .unwrap_or("no reason given")
        );
    }
    // The answer names the copy the CLI packs and then deletes: it must be this node's (its
    // key) and lie in its backups directory, whatever else answered on the address.
    if manifest["node_key"].as_str() != Some(key.public_key().to_hex().as_str()) {
        bail!(
            "the backup's answer names another node's key; is another process on {}?",
            config.listen
        );
    }
    let backups = fs::canonicalize(home.join(&config.data_dir).join("backups"))
        .context("the node's backups directory")?;
    let made = PathBuf::from(
        manifest["dir"]
            .as_str()
            .context("the manifest names no dir")?,
    );
    let made =
        fs::canonicalize(&made).with_context(|| format!("the copy at {}", made.display()))?;
    let named = made
        .file_name()
        .is_some_and(|name| name.to_string_lossy().starts_with("backup-"));
    if made.parent() != Some(backups.as_path()) || !named {
        bail!(
            "the node answered a copy at {}, outside {}",
            made.display(),
            backups.display()
        );
    }
    let packed = pack(home, &config, &made, &manifest, out, passphrase.as_deref());
    // The node's copy is only a staging area: remove it whatever became of the packing, and a
    // half-written archive with it.
    let _ = fs::remove_dir_all(&made);
    if packed.is_err() {
        let _ = fs::remove_file(out);
    }
    packed?;
    Ok(json!({
        "out": out,
        "height": manifest["height"],
        "files": manifest["files"].as_array().map_or(0, Vec::len),
        "keys": passphrase.is_some(),
    }))
}

fn pack(
    home: &Path,
    config: &Config,
    made: &Path,
    manifest: &Value,
    out: &Path,
    passphrase: Option<&str>,
) -> Result<()> {
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
        .with_context(|| format!("creating {}", out.display()))?;
    let gzip = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
    let mut builder = tar::Builder::new(gzip);
    builder.mode(tar::HeaderMode::Complete);
    let mut manifest = manifest.clone();
    manifest["format"] = json!(FORMAT);
    manifest["keys"] = json!(passphrase.is_some());
    manifest["genesis_file"] = json!(config.genesis);
    if let Some(object) = manifest.as_object_mut() {
        object.remove("dir");
    }
    append_bytes(
        &mut builder,
        MANIFEST_ENTRY,
        &serde_json::to_vec_pretty(&manifest)?,
    )?;
    builder.append_path_with_name(home.join("config.toml"), "config.toml")?;
    builder.append_path_with_name(home.join(&config.genesis), &config.genesis)?;
    builder
        .append_dir_all(&config.data_dir, made.join("data"))
        .context("packing the data directory")?;
    if let Some(passphrase) = passphrase {
        let keys = home.join("keys");
        let sealed = seal_keys(&tar_dir(&keys)?, passphrase)?;
        append_bytes(&mut builder, KEYS_ENTRY, &sealed)?;
    }
    let gzip = builder.into_inner()?;
    let file = gzip.finish()?;
    file.sync_all()?;
    Ok(())
}

fn append_bytes<W: Write>(builder: &mut tar::Builder<W>, name: &str, bytes: &[u8]) -> Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_size(bytes.len() as u64);
    header.set_mode(0o600);
    #[allow(clippy::disallowed_methods)] // CLI: the archive entry's time, for people.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    header.set_mtime(now);
    header.set_cksum();
    builder.append_data(&mut header, name, bytes)?;
    Ok(())
}

fn file_sha256(path: &Path) -> Result<(u64, Hash)> {
    let mut file = File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut hasher = medledger_crypto::Sha256Stream::default();
    let mut buffer = vec![0u8; 1 << 16];
    let mut bytes = 0u64;
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
        bytes += read as u64;
    }
    Ok((bytes, hasher.finish()))
}

/// Restores the backup in `from` into a new home `home`: unpacks it into a staging directory
/// beside the home, checks every file against the manifest and the genesis against its hash,
/// opens the keys (with `keys_passphrase`), and only then moves the staging directory into
/// place, so a refused archive leaves nothing behind.
pub fn restore(from: &Path, home: &Path, keys_passphrase: Option<&Path>) -> Result<Value> {
    if home.exists() && fs::read_dir(home)?.next().is_some() {
        bail!(
            "{} exists and is not empty; restore into a new home",
            home.display()
        );
    }
    let passphrase = keys_passphrase.map(passphrase).transpose()?;
    let parent = home
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(parent)?;
    let staging = tempfile_dir(parent)?;
    let result = unpack_checked(from, &staging, passphrase.as_deref());
    match result {
        Ok(summary) => {
            if home.exists() {
                fs::remove_dir(home)?;
            }
            fs::rename(&staging, home)
                .with_context(|| format!("moving the restored home to {}", home.display()))?;
            Ok(summary)
        }
        Err(error) => {
            let _ = fs::remove_dir_all(&staging);
            Err(error)
        }
    }
}

fn tempfile_dir(parent: &Path) -> Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let mut name = [0u8; 6];
    rand_core::OsRng.fill_bytes(&mut name);
    let dir = parent.join(format!(".medledger-restore-{}", hex::encode(name)));
    fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

fn unpack_checked(from: &Path, into: &Path, passphrase: Option<&str>) -> Result<Value> {
    let file = File::open(from).with_context(|| format!("opening {}", from.display()))?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    archive.set_preserve_permissions(true);
    let mut sealed_keys = None;
    for entry in archive.entries().context("reading the archive")? {
        let mut entry = entry.context("reading the archive")?;
        let path = entry.path()?.into_owned();
        if path == Path::new(KEYS_ENTRY) {
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes)?;
            sealed_keys = Some(bytes);
            continue;
        }
        // `unpack_in` refuses absolute paths and `..`, so nothing lands outside the home.
        if !entry
            .unpack_in(into)
            .with_context(|| format!("unpacking {}", path.display()))?
        {
            bail!("the archive names {}, outside the home", path.display());
        }
    }
    // The tar reader stops at its end marker; reading the gzip stream to its end checks its CRC
    // over every byte, so damage in padding, headers or unlisted files is refused too.
    std::io::copy(&mut archive.into_inner(), &mut std::io::sink())
        .context("the archive is damaged: its gzip stream does not check")?;
    let manifest: Value = serde_json::from_slice(
        &fs::read(into.join(MANIFEST_ENTRY)).context("the archive has no manifest")?,
    )
    .context("the manifest is not JSON")?;
    if manifest["format"] != FORMAT {
        bail!("not a {FORMAT} archive (format {})", manifest["format"]);
    }
    let config = Config::load(into)?;
    check_relative(&config)?;
    let data = into.join(&config.data_dir);
    for listed in manifest["files"]
        .as_array()
        .context("the manifest lists no files")?
    {
        let path = listed["path"].as_str().context("a file without a path")?;
        let (bytes, digest) = file_sha256(&data.join(path))
            .with_context(|| format!("the archive lacks the data file {path}"))?;
        if Some(bytes) != listed["bytes"].as_u64()
            || Some(digest.to_hex()) != listed["sha256"].as_str().map(str::to_string)
        {
            bail!("data file {path} differs from the manifest: the archive was altered or damaged");
        }
    }
    let genesis = home::read_genesis(&into.join(&config.genesis))?;
    if Some(genesis.hash().to_hex()) != manifest["genesis_hash"].as_str().map(str::to_string) {
        bail!("the genesis file does not hash to the manifest's genesis hash");
    }
    let keys = match (sealed_keys, passphrase) {
        (Some(sealed), Some(passphrase)) => {
            let plain = open_keys(&sealed, passphrase)?;
            let keys = into.join("keys");
            {
                use std::os::unix::fs::DirBuilderExt;
                fs::DirBuilder::new().mode(0o700).create(&keys)?;
            }
            let mut archive = tar::Archive::new(plain.as_slice());
            archive.set_preserve_permissions(true);
            archive.unpack(&keys).context("unpacking the keys")?;
            true
        }
        (Some(_), None) => bail!(
            "the backup holds encrypted keys: give --passphrase-file to restore them (or restore \
             without keys from a backup taken without them)"
        ),
        (None, _) => false,
    };
    fs::rename(into.join(MANIFEST_ENTRY), into.join("backup-manifest.json"))?;
    let key_file = into.join(&config.validator_key);
    Ok(json!({
        "chain_id": manifest["chain_id"],
        "height": manifest["height"],
        "files": manifest["files"].as_array().map_or(0, Vec::len),
        "keys": keys,
        "node_key_present": key_file.exists(),
        "node_key": manifest["node_key"],
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys sealed under a passphrase open with it only, and any changed byte is refused.
    #[test]
    fn keys_open_only_with_their_passphrase() {
        let sealed = seal_keys(b"key files", "correct horse battery").expect("sealed");
        assert_eq!(
            open_keys(&sealed, "correct horse battery").expect("opens"),
            b"key files"
        );
        assert!(open_keys(&sealed, "wrong horse battery!").is_err());
        for index in [0, 9, KEYS_MAGIC.len() + SALT_BYTES + 1, sealed.len() - 1] {
            let mut altered = sealed.clone();
            altered[index] ^= 1;
            assert!(
                open_keys(&altered, "correct horse battery").is_err(),
                "byte {index}"
            );
        }
        assert!(open_keys(&sealed[..10], "correct horse battery").is_err());
    }
}
