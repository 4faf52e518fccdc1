//! The process's one TLS crypto provider: ring, for every rustls client in the binary.
//!
//! The binary links one provider only. Service Bus (fe2o3's amqps) and the azure_core clients
//! (reqwest 0.13 without a provider of its own) both ask rustls for the process default, and
//! building either before one is installed fails. So every constructor that leads to a TLS
//! client calls [`install_crypto_provider`] first; only the first call does anything. The
//! rotation tests (HTTPS to the simulator's vaults) fail when the Key Vault connector skips it.

use std::sync::Once;

/// Installs ring as the process's rustls provider, once; later calls return at once.
pub fn install_crypto_provider() {
    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(|| {
        // An error only means a provider is installed already (by an embedding program).
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}
