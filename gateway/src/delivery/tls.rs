//! The client of a destination with `tls:`: its own roots (a private CA,
//! with or without the public ones) and its own client certificate.
//!
//! Every other destination shares one client ([`super::client::Client`]);
//! trust and identity are per rustls config, so a destination that
//! changes either gets a client (and a connection pool) of its own. A bad
//! file is reported with its key and what is wrong with it, at `hookgate
//! check` and at reload.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

use crate::config::DestinationTlsConfig;

/// A destination's own client, and what it was built from: a reload
/// whose `tls:` block and files are unchanged keeps the client, and with
/// it the connections it holds open.
#[derive(Clone, Debug)]
pub struct DestinationClient {
    /// The client.
    pub client: super::client::Client,
    /// SHA-256 of the `tls:` block and of the bytes of every file it names.
    pub fingerprint: [u8; 32],
}

/// A problem with one key of a destination's `tls:` block.
#[derive(Debug, PartialEq, Eq)]
pub struct TlsProblem {
    /// The key under `tls.` (`ca_file`, `client_cert_file`, ...).
    pub key: &'static str,
    /// What is wrong, naming the file; never the key's contents.
    pub message: String,
}

fn problem(key: &'static str, message: String) -> TlsProblem {
    TlsProblem { key, message }
}

/// A file read: where from, and its bytes.
type Read = (PathBuf, Vec<u8>);

/// The files of `tls`, read (relative paths from `base_dir`).
struct Files {
    ca: Option<Read>,
    /// The certificate and its key.
    client: Option<(Read, Read)>,
}

fn read(key: &'static str, base_dir: &Path, file: &Path) -> Result<Read, TlsProblem> {
    let path = base_dir.join(file);
    std::fs::read(&path)
        .map(|bytes| (path.clone(), bytes))
        .map_err(|e| problem(key, format!("cannot read {}: {e}", path.display())))
}

fn read_files(tls: &DestinationTlsConfig, base_dir: &Path) -> Result<Files, Vec<TlsProblem>> {
    let mut problems = Vec::new();
    let mut take = |key, file: &Option<PathBuf>| match file {
        None => None,
        Some(f) => read(key, base_dir, f).map_err(|p| problems.push(p)).ok(),
    };
    let ca = take("ca_file", &tls.ca_file);
    let cert = take("client_cert_file", &tls.client_cert_file);
    let key = take("client_key_file", &tls.client_key_file);
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Files {
        ca,
        client: cert.zip(key),
    })
}

/// What the client is built from, hashed: the block as written and every
/// file's bytes (a renewed certificate at the same path is a change).
fn fingerprint(tls: &DestinationTlsConfig, files: &Files) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(serde_json::to_vec(tls).unwrap_or_default());
    for (_, bytes) in files
        .ca
        .iter()
        .chain(files.client.iter().flat_map(|(c, k)| [c, k]))
    {
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    }
    h.finalize().into()
}

/// The client `tls` asks for; `previous` is kept when nothing it was
/// built from changed.
pub fn client(
    tls: &DestinationTlsConfig,
    base_dir: &Path,
    previous: Option<&DestinationClient>,
) -> Result<DestinationClient, Vec<TlsProblem>> {
    let files = read_files(tls, base_dir)?;
    let fingerprint = fingerprint(tls, &files);
    if let Some(previous) = previous.filter(|p| p.fingerprint == fingerprint) {
        return Ok(previous.clone());
    }
    let config = rustls_config(tls, &files).map_err(|p| vec![p])?;
    Ok(DestinationClient {
        client: super::client::Client::new(config),
        fingerprint,
    })
}

/// The TLS of destinations without `tls:`: Mozilla's roots, no client
/// certificate.
pub fn default_config() -> rustls::ClientConfig {
    let roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    builder(roots).with_no_client_auth()
}

/// A client config trusting `roots`, on ring, TLS 1.2 and 1.3: what
/// every delivery client shares before its client certificate.
fn builder(
    roots: RootCertStore,
) -> rustls::ConfigBuilder<rustls::ClientConfig, rustls::client::WantsClientCert> {
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(roots)
}

fn certificates(
    key: &'static str,
    (path, bytes): &Read,
) -> Result<Vec<CertificateDer<'static>>, TlsProblem> {
    let shown = path.display();
    let certs = CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| problem(key, format!("{shown}: not PEM certificates: {e}")))?;
    if certs.is_empty() {
        return Err(problem(
            key,
            format!(
                "{shown}: no certificate in the file (expected PEM, -----BEGIN CERTIFICATE-----)"
            ),
        ));
    }
    Ok(certs)
}

fn rustls_config(
    tls: &DestinationTlsConfig,
    files: &Files,
) -> Result<rustls::ClientConfig, TlsProblem> {
    let mut roots = RootCertStore::empty();
    if tls.public_roots {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
    if let Some(ca) = &files.ca {
        let (_, refused) = roots.add_parsable_certificates(certificates("ca_file", ca)?);
        if refused > 0 {
            return Err(problem(
                "ca_file",
                format!(
                    "{}: {refused} of its certificates cannot be used as a CA",
                    ca.0.display()
                ),
            ));
        }
    }
    let builder = builder(roots);
    let config = match &files.client {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = certificates("client_cert_file", cert)?;
            // The key's parse error is rustls's, which names the PEM
            // section it expected, never the bytes.
            let key_der = PrivateKeyDer::from_pem_slice(&key.1).map_err(|e| {
                problem(
                    "client_key_file",
                    format!("{}: not a PEM private key: {e}", key.0.display()),
                )
            })?;
            builder.with_client_auth_cert(chain, key_der).map_err(|e| {
                problem(
                    "client_key_file",
                    format!(
                        "{} does not go with {}: {e}",
                        key.0.display(),
                        cert.0.display()
                    ),
                )
            })?
        }
    };
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tls(yaml: &str) -> DestinationTlsConfig {
        serde_saphyr::from_str(yaml).unwrap()
    }

    fn self_signed(name: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![name.to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn problems(t: &DestinationTlsConfig, dir: &Path) -> Vec<(&'static str, String)> {
        match client(t, dir, None) {
            Ok(_) => Vec::new(),
            Err(p) => p.into_iter().map(|p| (p.key, p.message)).collect(),
        }
    }

    #[test]
    fn each_bad_file_is_named_at_its_key_without_its_contents() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = self_signed("a");
        let (_, other_key) = self_signed("b");
        std::fs::write(dir.path().join("cert.pem"), &cert).unwrap();
        std::fs::write(dir.path().join("key.pem"), &key).unwrap();
        std::fs::write(dir.path().join("other.key"), &other_key).unwrap();
        std::fs::write(dir.path().join("empty.pem"), "").unwrap();
        std::fs::write(dir.path().join("secret.txt"), "not pem: s3cr3t-value").unwrap();

        let found = problems(&tls("ca_file: missing.pem"), dir.path());
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0, "ca_file");
        assert!(found[0].1.contains("missing.pem"), "{found:?}");

        let found = problems(&tls("ca_file: empty.pem"), dir.path());
        assert_eq!(found[0].0, "ca_file");
        assert!(found[0].1.contains("no certificate"), "{found:?}");

        // Both missing files are reported, each at its key.
        let found = problems(
            &tls("client_cert_file: nope.pem\nclient_key_file: nokey.pem"),
            dir.path(),
        );
        let keys: Vec<_> = found.iter().map(|p| p.0).collect();
        assert_eq!(keys, ["client_cert_file", "client_key_file"]);

        let found = problems(
            &tls("client_cert_file: cert.pem\nclient_key_file: secret.txt"),
            dir.path(),
        );
        assert_eq!(found[0].0, "client_key_file", "{found:?}");
        assert!(!found[0].1.contains("s3cr3t"), "{found:?}");

        let found = problems(
            &tls("client_cert_file: cert.pem\nclient_key_file: other.key"),
            dir.path(),
        );
        assert_eq!(found[0].0, "client_key_file", "{found:?}");
        assert!(found[0].1.contains("does not go with"), "{found:?}");

        assert!(
            problems(
                &tls("ca_file: cert.pem\nclient_cert_file: cert.pem\nclient_key_file: key.pem"),
                dir.path()
            )
            .is_empty()
        );
    }

    #[test]
    fn a_client_is_kept_while_its_block_and_files_are_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, _) = self_signed("a");
        std::fs::write(dir.path().join("ca.pem"), &cert).unwrap();
        let t = tls("ca_file: ca.pem");
        let first = client(&t, dir.path(), None).unwrap();
        let again = client(&t, dir.path(), Some(&first)).unwrap();
        assert_eq!(again.fingerprint, first.fingerprint);

        // The same path with new bytes (a renewed CA) is a new client.
        let (renewed, _) = self_signed("a");
        std::fs::write(dir.path().join("ca.pem"), &renewed).unwrap();
        let after = client(&t, dir.path(), Some(&first)).unwrap();
        assert_ne!(after.fingerprint, first.fingerprint);

        // So is another setting with the same files.
        let only = client(
            &tls("ca_file: ca.pem\npublic_roots: false"),
            dir.path(),
            Some(&after),
        )
        .unwrap();
        assert_ne!(only.fingerprint, after.fingerprint);
    }
}
