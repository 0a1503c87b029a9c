//! HTTPS for the API (rustls). Integrity never depends on it — the catalog and the
//! assignments are signed — but tokens and inventories deserve confidentiality.
//!
//! An operator gives a certificate and key (`--tls-cert`, `--tls-key`), or asks for a
//! private CA (`--tls-self-signed`): the server then makes `DATA/tls/ca.pem` (give it to
//! agents with `--ca`; they pin it) and a server certificate for the names it is told.

use anyhow::Context;
use std::path::{Path, PathBuf};

/// Where the PEM files are.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    /// Server certificate chain (PEM).
    pub cert: PathBuf,
    /// Server private key (PEM).
    pub key: PathBuf,
    /// The CA agents should pin, when the server made it.
    pub ca: Option<PathBuf>,
}

/// Makes (once) a private CA and a server certificate for `names` under `DATA/tls/`.
pub fn self_signed(data: &Path, names: &[String]) -> anyhow::Result<TlsFiles> {
    let dir = data.join("tls");
    let files = TlsFiles {
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
        ca: Some(dir.join("ca.pem")),
    };
    if files.cert.exists() && files.key.exists() {
        return Ok(files);
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let ca_key = rcgen::KeyPair::generate()?;
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Patchday private CA");
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let ca = ca_params.self_signed(&ca_key)?;
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(names.to_vec())?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Patchday server");
    let cert = params.signed_by(&key, &ca, &ca_key)?;
    write_private(&files.key, key.serialize_pem().as_bytes())?;
    std::fs::write(&files.cert, cert.pem())?;
    if let Some(ca_path) = &files.ca {
        std::fs::write(ca_path, ca.pem())?;
    }
    // The CA key is not kept: a new server certificate means a new CA, pinned anew.
    Ok(files)
}

fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(bytes)?;
    Ok(())
}

/// Serves the router over HTTPS on an already bound listener, within `limits`.
pub async fn serve(
    listener: std::net::TcpListener,
    files: &TlsFiles,
    app: axum::Router,
    limits: crate::listener::ConnectionLimits,
) -> anyhow::Result<()> {
    // reqwest and rcgen bring ring; make it the process's rustls provider explicitly.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = axum_server::tls_rustls::RustlsConfig::from_pem_file(&files.cert, &files.key)
        .await
        .with_context(|| {
            format!(
                "loading TLS certificate {} and key {}",
                files.cert.display(),
                files.key.display()
            )
        })?;
    // HTTP/1.1 only: the accept loop's timeouts and connection cap are written for it.
    let mut server_config = (*config.get_inner()).clone();
    server_config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(server_config));
    let listener = tokio::net::TcpListener::from_std(listener)?;
    crate::listener::serve(listener, app, limits, Some(acceptor))
        .await
        .context("HTTPS server stopped")
}
