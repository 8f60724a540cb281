//! The transport of a `tcp://` engine with mutual TLS: the engine's certificate must chain to
//! the CA in the given `ca.pem` and nothing else, and git-agent shows the client certificate.
//!
//! Not bollard's own TLS transport: that trusts the system's root certificates besides the
//! given CA, so any certificate a public CA (or a TLS-inspecting proxy whose CA is in the
//! system bundle) issued for the engine's name would pass for the engine, and the engine is
//! sent repository history and agent API keys. The docker CLI trusts the given CA only; so
//! does this.
//!
//! Owns: reading the PEM files and the client configuration. Must not: accept a certificate
//! it cannot verify (there is no "insecure" switch).

use std::path::Path;
use std::sync::Arc;

use anyhow::Result;
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::address::TlsFiles;
use crate::error::hinted;

fn unreadable(path: &Path, what: &str, why: impl std::fmt::Display) -> anyhow::Error {
    hinted(
        format!("cannot read {what} from {}: {why}", path.display()),
        "give PEM files as the docker CLI takes them: ca.pem (the engine's CA), cert.pem (your \
         client certificate) and key.pem (its key), e.g. from `docker context export` or the \
         engine's administrator",
    )
}

fn certificates(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| unreadable(path, what, e))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| unreadable(path, what, e))?;
    if certs.is_empty() {
        return Err(unreadable(path, what, "it holds no certificate"));
    }
    Ok(certs)
}

/// The client configuration: trust exactly the CA of `files`, show its client certificate.
pub fn client_config(files: &TlsFiles) -> Result<rustls::ClientConfig> {
    let mut roots = RootCertStore::empty();
    for ca in certificates(&files.ca, "the engine's CA")? {
        roots
            .add(ca)
            .map_err(|e| unreadable(&files.ca, "the engine's CA", e))?;
    }
    let chain = certificates(&files.cert, "the client certificate")?;
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| unreadable(&files.key, "the client key", e))?;
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| unreadable(&files.ca, "a TLS configuration", e))?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| unreadable(&files.key, "the client key (does it match cert.pem?)", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_that_are_not_pem_are_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        for f in ["ca.pem", "cert.pem", "key.pem"] {
            std::fs::write(dir.path().join(f), "not a certificate\n").unwrap();
        }
        let e = client_config(&TlsFiles::in_dir(dir.path())).unwrap_err();
        assert!(e.to_string().contains("ca.pem"), "{e}");
        assert!(e.to_string().contains("holds no certificate"), "{e}");
        assert!(
            crate::error::find_hint(&e)
                .unwrap()
                .contains("docker context export")
        );
    }
}
