//! A certificate authority made per test (rcgen): `ca.pem`, a server certificate for
//! 127.0.0.1 and localhost (`server-cert.pem`, `server-key.pem`) and a client certificate
//! (`cert.pem`, `key.pem`), in a temporary directory, as Docker's TLS documentation lays them out.

use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};
use tempfile::TempDir;

/// One CA with its server and client certificates.
#[derive(Debug)]
pub struct Pki {
    dir: TempDir,
}

impl Pki {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("weave-tls-test")
            .tempdir()
            .unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.distinguished_name
            .push(DnType::CommonName, "weave test CA");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca, ca_key);
        let write = |name: &str, pem: String| std::fs::write(dir.path().join(name), pem).unwrap();
        write("ca.pem", ca_cert.pem());
        let leaves = [
            (
                "server-",
                vec!["127.0.0.1".to_owned(), "localhost".to_owned()],
                ExtendedKeyUsagePurpose::ServerAuth,
            ),
            ("", vec![], ExtendedKeyUsagePurpose::ClientAuth),
        ];
        for (prefix, names, purpose) in leaves {
            let key = KeyPair::generate().unwrap();
            let mut params = CertificateParams::new(names).unwrap();
            params.extended_key_usages = vec![purpose];
            let cert = params.signed_by(&key, &issuer).unwrap();
            write(&format!("{prefix}cert.pem"), cert.pem());
            write(&format!("{prefix}key.pem"), key.serialize_pem());
        }
        Self { dir }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    /// The proxy's flags: its certificate, and with `verify` the CA for client certificates.
    pub fn server_flags(&self, verify: bool) -> Vec<String> {
        let mut flags = vec![
            if verify { "--tlsverify" } else { "--tls" }.to_owned(),
            "--tlscert".to_owned(),
            self.path("server-cert.pem"),
            "--tlskey".to_owned(),
            self.path("server-key.pem"),
        ];
        if verify {
            flags.extend(["--tlscacert".to_owned(), self.path("ca.pem")]);
        }
        flags
    }

    /// The docker CLI's flags for a client that verifies the proxy and shows its certificate.
    pub fn client_flags(&self, host: &str) -> Vec<String> {
        [
            "--tlsverify",
            "--tlscacert",
            &self.path("ca.pem"),
            "--tlscert",
            &self.path("cert.pem"),
            "--tlskey",
            &self.path("key.pem"),
            "-H",
            host,
        ]
        .map(str::to_owned)
        .to_vec()
    }

    /// A directory with this CA's `ca.pem` and `other`'s client certificate and key.
    pub fn mixed_with(&self, other: &Pki) -> TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(self.dir().join("ca.pem"), dir.path().join("ca.pem")).unwrap();
        for name in ["cert.pem", "key.pem"] {
            std::fs::copy(other.dir().join(name), dir.path().join(name)).unwrap();
        }
        dir
    }
}

impl Default for Pki {
    fn default() -> Self {
        Self::new()
    }
}
