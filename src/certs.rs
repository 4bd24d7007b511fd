//! What the served certificate is: its expiry, for `/ready` and the
//! `mcp_edge_certificate_expiry_timestamp_seconds` metric.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

/// The served certificate's state, shared by the TLS side (writer) and `/ready`.
#[derive(Debug, Default)]
pub struct CertStatus {
    /// notAfter in Unix seconds; 0 = no certificate yet.
    not_after: AtomicI64,
    /// Where the served certificate came from (`files`, `acme`, `self-signed`).
    source: std::sync::Mutex<Option<&'static str>>,
    /// The ACME client's last event, with `tls.mode = "acme"`.
    acme: std::sync::Mutex<Option<AcmeEvent>>,
}

/// What the ACME client did last: `state` is one of `ordering` (started, nothing
/// served yet), `serving_cached`, `issued`, `order_failed`, `cache_problem`;
/// `detail` is the error of a failure.
#[derive(Debug, Clone)]
pub struct AcmeEvent {
    pub state: &'static str,
    pub at: SystemTime,
    pub detail: Option<String>,
}

impl CertStatus {
    pub fn new() -> Arc<CertStatus> {
        Arc::new(CertStatus::default())
    }

    /// A certificate from `source` (`files`, `acme`, `self-signed`) is being served.
    pub fn set(&self, source: &'static str, not_after_unix: i64) {
        self.not_after.store(not_after_unix, Ordering::Release);
        *crate::sync::lock(&self.source) = Some(source);
        crate::metrics::set_certificate_expiry(source, not_after_unix);
    }

    /// Where the served certificate came from, once there is one.
    pub fn source(&self) -> Option<&'static str> {
        *crate::sync::lock(&self.source)
    }

    /// Record the ACME client's latest event (see [`AcmeEvent`]).
    pub fn acme_event(&self, state: &'static str, detail: Option<String>) {
        *crate::sync::lock(&self.acme) = Some(AcmeEvent {
            state,
            at: SystemTime::now(),
            detail,
        });
    }

    /// The ACME client's latest event; `None` without ACME.
    pub fn acme(&self) -> Option<AcmeEvent> {
        crate::sync::lock(&self.acme).clone()
    }

    /// Record the leaf of a PEM chain; false when it holds no parsable certificate.
    pub fn set_from_pem(&self, source: &'static str, pem: &[u8]) -> bool {
        match leaf_not_after_pem(pem) {
            Some(t) => {
                self.set(source, t);
                true
            }
            None => false,
        }
    }

    pub fn not_after(&self) -> Option<i64> {
        match self.not_after.load(Ordering::Acquire) {
            0 => None,
            t => Some(t),
        }
    }
}

pub fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// notAfter (Unix seconds) of a DER certificate.
pub fn not_after_der(der: &[u8]) -> Option<i64> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(cert.validity().not_after.timestamp())
}

/// notAfter of the first certificate in a PEM bundle (the leaf of a chain; any
/// private key blocks in the same bundle are skipped).
pub fn leaf_not_after_pem(pem: &[u8]) -> Option<i64> {
    let leaf = CertificateDer::pem_slice_iter(pem).find_map(Result::ok)?;
    not_after_der(&leaf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_from_a_generated_certificate() {
        let mut params = rcgen::CertificateParams::new(vec!["a.example".to_string()]).unwrap();
        params.not_after = rcgen::date_time_ymd(2031, 1, 2);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let pem = format!("{}{}", key.serialize_pem(), cert.pem());
        let status = CertStatus::new();
        assert_eq!(status.not_after(), None);
        assert!(status.set_from_pem("files", pem.as_bytes()));
        assert_eq!(status.not_after(), Some(1_925_078_400));
        assert!(!status.set_from_pem("files", b"not pem"));
    }
}
