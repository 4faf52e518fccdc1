//! The process's one TLS crypto provider: ring, for every rustls client in the binary.
//!
//! The binary links one provider only. Service Bus (fe2o3's amqps) and the azure_core clients
//! (reqwest 0.13 without a provider of its own) both ask rustls for the process default, and
//! building either before one is installed fails. So every constructor that leads to a TLS
//! client calls [`install_crypto_provider`] first; only the first call does anything.

use std::sync::Once;

/// Installs ring as the process's rustls provider, once; later calls return at once.
pub fn install_crypto_provider() {
    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(|| {
        // An error only means a provider is installed already (by an embedding program).
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn after_it_a_client_config_can_be_built_and_uses_ring() {
        install_crypto_provider();
        install_crypto_provider();
        let provider = rustls::crypto::CryptoProvider::get_default().expect("a provider");
        assert!(
            provider
                .cipher_suites
                .iter()
                .eq(rustls::crypto::ring::default_provider()
                    .cipher_suites
                    .iter()),
            "the process default is ring's"
        );
        let _ = rustls::ClientConfig::builder();
    }
}
