//! TLS settings and the certificates they name: CA files and directories, the client
//! certificate and its key, each checked when the HTTP client is built. Uses only the
//! error type.

use std::path::{Path, PathBuf};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::Error;
use crate::error::causes;

/// TLS settings for an `https` agent address.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct TlsConfig {
    /// A PEM file of CA certificates to trust (`CONSUL_CACERT`).
    pub ca_cert: Option<PathBuf>,
    /// A directory of PEM CA certificates to trust (`CONSUL_CAPATH`).
    pub ca_path: Option<PathBuf>,
    /// A PEM client certificate (`CONSUL_CLIENT_CERT`), with `client_key`.
    pub client_cert: Option<PathBuf>,
    /// The PEM private key of `client_cert` (`CONSUL_CLIENT_KEY`).
    pub client_key: Option<PathBuf>,
    /// The name to verify the server's certificate against and send as SNI, instead of
    /// the address's host (`CONSUL_TLS_SERVER_NAME`).
    pub server_name: Option<String>,
    /// Skip certificate verification (`CONSUL_HTTP_SSL_VERIFY=false`). Dangerous.
    pub insecure_skip_verify: bool,
}

/// What `TlsConfig` names, read and checked once: a transport builds one HTTP client per
/// connection it may hold, each from the same material.
#[derive(Debug, Clone)]
pub(crate) struct TlsMaterial {
    insecure_skip_verify: bool,
    roots: Vec<reqwest::Certificate>,
    identity: Option<reqwest::Identity>,
}

impl TlsMaterial {
    /// Reads the files `tls` names, each checked so that an unusable one is an error naming
    /// its setting.
    pub(crate) fn load(tls: &TlsConfig) -> Result<Self, Error> {
        let mut roots = Vec::new();
        for (var, path) in ca_files(tls)? {
            roots.extend(ca_certificates(var, &path)?);
        }
        let identity = match (&tls.client_cert, &tls.client_key) {
            (Some(cert), Some(key)) => Some(client_identity(cert, key)?),
            _ => None,
        };
        Ok(TlsMaterial {
            insecure_skip_verify: tls.insecure_skip_verify,
            roots,
            identity,
        })
    }

    /// Adds the verification settings, trusted CAs and client identity to `builder`.
    pub(crate) fn apply(&self, mut builder: reqwest::ClientBuilder) -> reqwest::ClientBuilder {
        if self.insecure_skip_verify {
            builder = builder.danger_accept_invalid_certs(true);
        }
        for cert in &self.roots {
            builder = builder.add_root_certificate(cert.clone());
        }
        if let Some(identity) = &self.identity {
            builder = builder.identity(identity.clone());
        }
        builder
    }
}

fn ca_files(tls: &TlsConfig) -> Result<Vec<(&'static str, PathBuf)>, Error> {
    let mut files = Vec::new();
    if let Some(path) = &tls.ca_cert {
        files.push(("CONSUL_CACERT", path.clone()));
    }
    if let Some(dir) = &tls.ca_path {
        let entries = std::fs::read_dir(dir).map_err(|e| {
            Error::config(
                "CONSUL_CAPATH",
                format!("cannot read {}: {e}", dir.display()),
            )
        })?;
        for entry in entries.flatten() {
            let path = entry.path();
            if path
                .extension()
                .is_some_and(|ext| ext == "pem" || ext == "crt")
            {
                files.push(("CONSUL_CAPATH", path));
            }
        }
    }
    Ok(files)
}

/// The CA certificates in one PEM file. A file with none is an error, not an empty trust
/// list; and since reqwest checks a certificate only when a client is built (and then says
/// only "builder error"), each file is checked here so that the error names it and the
/// cause.
fn ca_certificates(var: &'static str, path: &Path) -> Result<Vec<reqwest::Certificate>, Error> {
    let pem = read_certificates(path, var)?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| Error::config(var, format!("{}: {}", path.display(), causes(&e))))?;
    let check = certs.iter().fold(
        reqwest::Client::builder().tls_built_in_root_certs(false),
        |check, cert| check.add_root_certificate(cert.clone()),
    );
    accepted(check, var, || {
        format!("{} is not a usable CA certificate", path.display())
    })?;
    Ok(certs)
}

/// The client certificate and its key, as the identity reqwest presents. reqwest takes both
/// in one PEM, checks the key only when a client is built, and then says only "builder
/// error"; each file is checked here first so that the error names the one at fault. The
/// key's contents never go into a message.
fn client_identity(cert: &Path, key: &Path) -> Result<reqwest::Identity, Error> {
    let cert_pem = read_certificates(cert, "CONSUL_CLIENT_CERT")?;
    let key_pem = read(key, "CONSUL_CLIENT_KEY")?;
    if PrivateKeyDer::from_pem_slice(&key_pem).is_err() {
        return Err(Error::config(
            "CONSUL_CLIENT_KEY",
            format!("no PEM private key in {}", key.display()),
        ));
    }
    let mut pem = cert_pem;
    pem.push(b'\n');
    pem.extend(key_pem);
    let identity = reqwest::Identity::from_pem(&pem).map_err(|e| {
        Error::config(
            "CONSUL_CLIENT_CERT",
            format!("{} with {}: {}", cert.display(), key.display(), causes(&e)),
        )
    })?;
    // Whether the key parses, and is the certificate's, is known only once a client is built.
    let check = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .identity(identity.clone());
    accepted(check, "CONSUL_CLIENT_KEY", || {
        format!(
            "{} is not a usable key for {}",
            key.display(),
            cert.display()
        )
    })?;
    Ok(identity)
}

/// Reads a PEM file that must hold at least one certificate (`var` names the setting).
fn read_certificates(path: &Path, var: &'static str) -> Result<Vec<u8>, Error> {
    let pem = read(path, var)?;
    let found = CertificateDer::pem_slice_iter(&pem).collect::<Result<Vec<_>, _>>();
    if !found.is_ok_and(|certs| !certs.is_empty()) {
        return Err(Error::config(
            var,
            format!("no PEM certificate in {}", path.display()),
        ));
    }
    Ok(pem)
}

/// Builds a throwaway client from `check` to learn whether reqwest accepts what was added
/// to it (it checks certificates and keys only then); if not, a configuration error for
/// `var` saying `what` and the cause.
fn accepted(
    check: reqwest::ClientBuilder,
    var: &'static str,
    what: impl FnOnce() -> String,
) -> Result<(), Error> {
    check
        .build()
        .map(drop)
        .map_err(|e| Error::config(var, format!("{}: {}", what(), causes(&e))))
}

fn read(path: &Path, var: &'static str) -> Result<Vec<u8>, Error> {
    std::fs::read(path)
        .map_err(|e| Error::config(var, format!("cannot read {}: {e}", path.display())))
}
