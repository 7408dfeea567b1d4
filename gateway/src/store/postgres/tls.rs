//! TLS to PostgreSQL, with libpq's meanings of `sslmode` and `sslrootcert`.
//!
//! A `store.url` is a libpq connection string, and users bring the ones
//! their managed database printed (`?sslmode=verify-full&sslrootcert=...`).
//! tokio-postgres reads `sslmode` only as `disable`, `prefer` or `require`
//! and refuses `sslrootcert`, so [`split`] takes both out of the string,
//! and [`connector`] builds the rustls configuration they ask for:
//!
//! | `sslmode` | encrypted | certificate checked |
//! |---|---|---|
//! | `disable` | never | - |
//! | `prefer` (default) | when the server offers it | no (with `sslrootcert`: its chain) |
//! | `require` | always | no (with `sslrootcert`: its chain) |
//! | `verify-ca` | always | its chain, against `sslrootcert` |
//! | `verify-full` | always | its chain and the host name |
//!
//! As in libpq, `prefer` and `require` without a root certificate protect
//! against eavesdropping, not against an impostor: use `verify-full` on any
//! network you do not own. `sslrootcert` is a PEM file of CA certificates,
//! or `system` for the Mozilla roots built into hookgate (with `system`,
//! `sslmode` defaults to and must be `verify-full`, as in libpq 16). A
//! `verify-*` mode without `sslrootcert` uses the same built-in roots
//! (libpq would read `~/.postgresql/root.crt`; a gateway has no home to
//! keep one in). `sslcert` and `sslkey` (PEM files, given together) log in
//! with a client certificate; libpq's default files under `~/.postgresql`
//! are not read. `sslpassword`, `sslcrl` and `sslcrldir` are refused by
//! name rather than ignored.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres_rustls::MakeRustlsConnect;

/// How much TLS a connection string asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Never encrypt.
    Disable,
    /// Encrypt when the server offers it.
    Prefer,
    /// Always encrypt.
    Require,
    /// Always encrypt; check the certificate's chain.
    VerifyCa,
    /// Always encrypt; check the chain and that it names the host.
    VerifyFull,
}

/// Where the trusted roots come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Roots {
    /// No `sslrootcert`.
    Unset,
    /// `sslrootcert=system`: the built-in Mozilla roots.
    System,
    /// `sslrootcert=<path>`: CA certificates in a PEM file.
    File(PathBuf),
}

/// The TLS options of a connection string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// `sslmode`.
    pub mode: Mode,
    /// `sslrootcert`.
    pub roots: Roots,
    /// `sslcert` and `sslkey`: a client certificate (chain) and its key.
    pub client: Option<(PathBuf, PathBuf)>,
}

impl Options {
    /// What an impostor on the network could do to connections to `hosts`
    /// with these options, when a host is not this machine: said once, at
    /// start, as a warning (libpq's defaults are kept, not enforced).
    pub fn weakness(&self, hosts: &[Host]) -> Option<String> {
        let remote = hosts.iter().any(|h| match h {
            Host::Unix(_) => false,
            Host::Tcp(name) => {
                name != "localhost"
                    && !name
                        .trim_matches(|c| c == '[' || c == ']')
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback())
            }
        });
        if !remote {
            return None;
        }
        match (self.mode, &self.roots) {
            (Mode::Disable, _) => Some(
                "sslmode=disable: the database connection is not encrypted; use \
                 sslmode=verify-full unless the network is private"
                    .into(),
            ),
            (Mode::Prefer | Mode::Require, Roots::Unset) => Some(format!(
                "sslmode={}: the database's certificate is not checked, so an impostor could \
                 read the connection; use sslmode=verify-full (with sslrootcert)",
                if self.mode == Mode::Prefer {
                    "prefer (the default)"
                } else {
                    "require"
                }
            )),
            _ => None,
        }
    }

    /// What tokio-postgres is told: it negotiates; the verifier checks.
    pub fn ssl_mode(&self) -> SslMode {
        match self.mode {
            Mode::Disable => SslMode::Disable,
            Mode::Prefer => SslMode::Prefer,
            Mode::Require | Mode::VerifyCa | Mode::VerifyFull => SslMode::Require,
        }
    }
}

/// Options libpq has and hookgate refuses by name (silently ignored, an
/// encrypted key or a revocation list would fail later, or not at all).
const UNSUPPORTED: &[&str] = &["sslpassword", "sslcrl", "sslcrldir"];

/// Takes the TLS options out of `conninfo` (a `postgres://` URL or
/// `key=value` pairs): the rest, for tokio-postgres, and the options. The
/// error never quotes the string (it holds the password).
pub fn split(conninfo: &str) -> Result<(String, Options), String> {
    let trimmed = conninfo.trim_start();
    let (rest, pairs) =
        if trimmed.starts_with("postgres://") || trimmed.starts_with("postgresql://") {
            split_url(conninfo)?
        } else {
            split_pairs(conninfo)?
        };
    let mut mode = None;
    let mut roots = Roots::Unset;
    let (mut cert_file, mut key_file) = (None, None);
    for (key, value) in pairs {
        match key.as_str() {
            "sslmode" => {
                mode = Some(match value.as_str() {
                    "disable" => Mode::Disable,
                    // libpq's `allow` tries plain text first; nothing here
                    // needs that, and `prefer` is the safer order.
                    "allow" | "prefer" => Mode::Prefer,
                    "require" => Mode::Require,
                    "verify-ca" => Mode::VerifyCa,
                    "verify-full" => Mode::VerifyFull,
                    other => {
                        return Err(format!(
                            "sslmode {other:?} is not one of disable, allow, prefer, require, \
                             verify-ca, verify-full"
                        ));
                    }
                })
            }
            "sslrootcert" if value == "system" => roots = Roots::System,
            "sslrootcert" if value.is_empty() => roots = Roots::Unset,
            "sslrootcert" => roots = Roots::File(PathBuf::from(value)),
            "sslcert" => {
                cert_file = Some(PathBuf::from(value)).filter(|p| !p.as_os_str().is_empty())
            }
            "sslkey" => key_file = Some(PathBuf::from(value)).filter(|p| !p.as_os_str().is_empty()),
            _ => return Err(format!("{key} is not supported")),
        }
    }
    let client = match (cert_file, key_file) {
        (Some(cert), Some(key)) => Some((cert, key)),
        (None, None) => None,
        (Some(_), None) => return Err("sslcert needs sslkey (its private key)".into()),
        (None, Some(_)) => return Err("sslkey needs sslcert (its certificate)".into()),
    };
    let mode = match (mode, &roots) {
        (None, Roots::System) => Mode::VerifyFull,
        (Some(m), Roots::System) if m != Mode::VerifyFull => {
            return Err(
                "sslrootcert=system needs sslmode=verify-full (a weaker mode would trust any \
                 certificate)"
                    .into(),
            );
        }
        (m, _) => m.unwrap_or(Mode::Prefer),
    };
    Ok((
        rest,
        Options {
            mode,
            roots,
            client,
        },
    ))
}

fn is_ours(key: &str) -> bool {
    matches!(key, "sslmode" | "sslrootcert" | "sslcert" | "sslkey") || UNSUPPORTED.contains(&key)
}

/// The query of a URL: ours decoded and taken out, the rest left as
/// written (tokio-postgres decodes it).
fn split_url(url: &str) -> Result<(String, Vec<(String, String)>), String> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_owned(), Vec::new()));
    };
    let mut kept = Vec::new();
    let mut ours = Vec::new();
    for param in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = param.split_once('=').unwrap_or((param, ""));
        let key = decode(key)?;
        if is_ours(&key) {
            ours.push((key, decode(value)?));
        } else {
            kept.push(param);
        }
    }
    let rest = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((rest, ours))
}

fn decode(s: &str) -> Result<String, String> {
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| "the connection string's query is not UTF-8 once decoded".to_owned())
}

/// `key=value` pairs, values bare or in single quotes with backslash
/// escapes (libpq's rules): ours taken out, the rest written back quoted.
fn split_pairs(conninfo: &str) -> Result<(String, Vec<(String, String)>), String> {
    let mut chars = conninfo.chars().peekable();
    let mut kept = Vec::new();
    let mut ours = Vec::new();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            break;
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            // The key is not quoted: in a malformed string, it may be
            // part of the password.
            return Err("an option of the connection string has no `=`".into());
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    Some('\'') => break,
                    Some('\\') => value.extend(chars.next()),
                    Some(c) => value.push(c),
                    None => return Err("a quoted value in the connection string has no end".into()),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    value.extend(chars.next());
                } else {
                    value.push(c);
                }
            }
        }
        if is_ours(&key) {
            ours.push((key, value));
        } else {
            let quoted = value.replace('\\', "\\\\").replace('\'', "\\'");
            kept.push(format!("{key}='{quoted}'"));
        }
    }
    Ok((kept.join(" "), ours))
}

/// The rustls connector `options` ask for (also for `disable`, where
/// tokio-postgres never calls it). Reads the root file.
pub fn connector(options: &Options) -> Result<MakeRustlsConnect, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let roots = match &options.roots {
        Roots::File(path) => Some(read_roots(path)?),
        Roots::System => Some(builtin_roots()),
        Roots::Unset if matches!(options.mode, Mode::VerifyCa | Mode::VerifyFull) => {
            Some(builtin_roots())
        }
        Roots::Unset => None,
    };
    let algorithms = provider.signature_verification_algorithms;
    let verifier: Arc<dyn ServerCertVerifier> = match roots {
        None => Arc::new(NameUnchecked {
            chain: None,
            algorithms,
        }),
        Some(roots) => {
            let chain =
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(|e| format!("sslrootcert: {e}"))?;
            if options.mode == Mode::VerifyFull {
                chain
            } else {
                Arc::new(NameUnchecked {
                    chain: Some(chain),
                    algorithms,
                })
            }
        }
    };
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let config = match &options.client {
        None => config.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .and_then(Iterator::collect::<Result<Vec<_>, _>>)
                .map_err(|e| format!("sslcert {}: {e}", cert.display()))?;
            if chain.is_empty() {
                return Err(format!(
                    "sslcert {}: no certificate in the file",
                    cert.display()
                ));
            }
            let key_der = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| format!("sslkey {}: {e}", key.display()))?;
            config
                .with_client_auth_cert(chain, key_der)
                .map_err(|e| format!("sslcert and sslkey: {e}"))?
        }
    };
    Ok(MakeRustlsConnect::new(config))
}

fn builtin_roots() -> RootCertStore {
    RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    }
}

fn read_roots(path: &std::path::Path) -> Result<RootCertStore, String> {
    let shown = path.display();
    let mut roots = RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("sslrootcert {shown}: {e}"))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("sslrootcert {shown}: {e}"))?;
    let (_, unusable) = roots.add_parsable_certificates(certs);
    if roots.is_empty() {
        return Err(format!(
            "sslrootcert {shown}: no usable CA certificate in the file ({unusable} refused)"
        ));
    }
    Ok(roots)
}

/// Every mode but `verify-full` (libpq's meanings): with a `chain`
/// (`verify-ca`, or `prefer`/`require` with a root file) the certificate
/// must lead to a trusted root, whatever host it names; without one
/// (`prefer`/`require` alone) any certificate goes. Either way the
/// handshake must be signed by the certificate's key, so the session is
/// encrypted to whoever holds it.
#[derive(Debug)]
struct NameUnchecked {
    chain: Option<Arc<WebPkiServerVerifier>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for NameUnchecked {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            // webpki checks the name last, after the chain and its dates.
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(mode: Mode, roots: Roots) -> Options {
        Options {
            mode,
            roots,
            client: None,
        }
    }

    #[test]
    fn a_url_loses_our_options_and_keeps_the_others_as_written() {
        let (rest, o) = split(
            "postgres://hg:p%40ss@db.example:5432/hookgate?sslmode=verify-full&options=-c%20search_path%3Dx&sslrootcert=%2Fetc%2Fca%20dir%2Froot.pem",
        )
        .unwrap();
        assert_eq!(
            rest,
            "postgres://hg:p%40ss@db.example:5432/hookgate?options=-c%20search_path%3Dx"
        );
        assert_eq!(
            o,
            opts(Mode::VerifyFull, Roots::File("/etc/ca dir/root.pem".into()))
        );
        let pg: tokio_postgres::Config = rest.parse().unwrap();
        assert_eq!(pg.get_password(), Some(&b"p@ss"[..]));
        assert_eq!(pg.get_options(), Some("-c search_path=x"));

        let (rest, o) = split("postgresql://h/db?sslmode=require").unwrap();
        assert_eq!(rest, "postgresql://h/db");
        assert_eq!(o, opts(Mode::Require, Roots::Unset));
        let (rest, o) = split("postgres://h/db").unwrap();
        assert_eq!(rest, "postgres://h/db");
        assert_eq!(o, opts(Mode::Prefer, Roots::Unset));
    }

    #[test]
    fn key_value_pairs_lose_our_options_and_keep_quoting() {
        // `''` is not libpq's escape: the value ends at the second quote
        // and `s` is then a key without `=`.
        assert!(split("host=db password='it''s x'").is_err());

        let (rest, o) = split(
            "host=db port=5432 password='it\\'s a \\\\ x' sslmode = verify-ca sslrootcert='/a b/ca.pem' dbname=hookgate",
        )
        .unwrap();
        assert_eq!(o, opts(Mode::VerifyCa, Roots::File("/a b/ca.pem".into())));
        let pg: tokio_postgres::Config = rest.parse().unwrap();
        assert_eq!(pg.get_password(), Some(&b"it's a \\ x"[..]));
        assert_eq!(pg.get_dbname(), Some("hookgate"));
        assert_eq!(pg.get_ports(), &[5432]);
    }

    #[test]
    fn bad_or_unsupported_options_are_refused_without_quoting_the_string() {
        let secret = "s3cr3t";
        for (s, says) in [
            (
                "postgres://u:s3cr3t@h/db?sslmode=verify",
                "sslmode \"verify\"",
            ),
            (
                "postgres://u:s3cr3t@h/db?sslpassword=x",
                "sslpassword is not supported",
            ),
            (
                "postgres://u:s3cr3t@h/db?sslcert=/c.pem",
                "sslcert needs sslkey",
            ),
            ("password=s3cr3t sslkey=/k.pem", "sslkey needs sslcert"),
            (
                "postgres://u:s3cr3t@h/db?sslrootcert=system&sslmode=require",
                "needs sslmode=verify-full",
            ),
            ("password='s3cr3t", "no end"),
            ("host=h 's3cr3t' x", "has no `=`"),
        ] {
            let err = split(s).unwrap_err();
            assert!(err.contains(says), "{s}: {err}");
            assert!(!err.contains(secret), "{err}");
        }
        let (_, o) = split("postgres://h/db?sslrootcert=system").unwrap();
        assert_eq!(o, opts(Mode::VerifyFull, Roots::System));
        assert_eq!(o.ssl_mode(), SslMode::Require);
        let (_, o) = split("host=h sslmode=disable").unwrap();
        assert_eq!(o.ssl_mode(), SslMode::Disable);
        let (rest, o) = split("postgres://h/db?sslcert=%2Fc.pem&sslkey=%2Fk.pem").unwrap();
        assert_eq!(rest, "postgres://h/db");
        assert_eq!(o.client, Some(("/c.pem".into(), "/k.pem".into())));
    }

    #[test]
    fn a_remote_host_without_a_checked_certificate_is_warned_about() {
        let hosts = |s: &str| -> Vec<Host> {
            s.parse::<tokio_postgres::Config>()
                .unwrap()
                .get_hosts()
                .to_vec()
        };
        let weak = |url: &str| {
            let (rest, o) = split(url).unwrap();
            o.weakness(&hosts(&rest))
        };
        for local in [
            "postgres://127.0.0.1/db",
            "postgres://localhost/db?sslmode=disable",
            "postgres://[::1]:5432/db",
            "host=/run/postgresql dbname=db",
        ] {
            assert_eq!(weak(local), None, "{local}");
        }
        assert!(
            weak("postgres://db.internal/db")
                .unwrap()
                .contains("prefer (the default)")
        );
        assert!(
            weak("postgres://db.internal/db?sslmode=require")
                .unwrap()
                .contains("not checked")
        );
        assert!(
            weak("postgres://10.0.0.5/db?sslmode=disable")
                .unwrap()
                .contains("not encrypted")
        );
        for checked in [
            "postgres://db.internal/db?sslmode=verify-full",
            "postgres://db.internal/db?sslmode=verify-ca",
            "postgres://db.internal/db?sslmode=require&sslrootcert=%2Fca.pem",
        ] {
            assert_eq!(weak(checked), None, "{checked}");
        }
    }

    #[test]
    fn a_root_file_must_hold_a_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let err = connector(&opts(Mode::VerifyFull, Roots::File(empty.clone())))
            .err()
            .unwrap();
        assert!(err.contains("no usable CA certificate"), "{err}");
        let err = connector(&opts(
            Mode::VerifyCa,
            Roots::File(dir.path().join("missing.pem")),
        ))
        .err()
        .unwrap();
        assert!(err.contains("missing.pem"), "{err}");
        let client = |cert: &std::path::Path| Options {
            client: Some((cert.to_owned(), dir.path().join("key.pem"))),
            ..opts(Mode::Require, Roots::Unset)
        };
        let err = connector(&client(&dir.path().join("nope.pem")))
            .err()
            .unwrap();
        assert!(
            err.starts_with("sslcert") && err.contains("nope.pem"),
            "{err}"
        );
        let err = connector(&client(&empty)).err().unwrap();
        assert!(err.contains("no certificate"), "{err}");
        assert!(connector(&opts(Mode::Require, Roots::Unset)).is_ok());
        assert!(connector(&opts(Mode::VerifyFull, Roots::System)).is_ok());
    }
}
