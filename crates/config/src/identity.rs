//! `identity.json`: the peer's Ed25519 key, written once and never overwritten.

use std::path::Path;

use base64::Engine as _;
use libp2p_identity::Keypair;
use serde::{Deserialize, Serialize};

use crate::ConfigError;

/// The file name of the identity inside the config folder.
pub const IDENTITY_FILE: &str = "identity.json";

/// The peer's identity: its ID and private key, as IPFS Cluster stores them.
#[derive(Clone)]
pub struct Identity {
    keypair: Keypair,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity").field("id", &self.peer_id()).finish_non_exhaustive()
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct IdentityFile {
    id: String,
    private_key: String,
}

impl Identity {
    pub fn generate() -> Identity {
        Identity { keypair: Keypair::generate_ed25519() }
    }

    /// The base58 peer ID, `12D3KooW…` for Ed25519 keys.
    pub fn peer_id(&self) -> String {
        self.keypair.public().to_peer_id().to_base58()
    }

    /// The private key in libp2p's protobuf encoding, for the IPFS node.
    pub fn keypair_protobuf(&self) -> Vec<u8> {
        // Encoding an Ed25519 key cannot fail; an empty vector makes the node refuse to start.
        self.keypair.to_protobuf_encoding().unwrap_or_default()
    }

    pub fn load(path: &Path) -> Result<Identity, ConfigError> {
        let bad = |reason: String| ConfigError::Invalid { file: path.to_path_buf(), key: "private_key".into(), reason };
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Io { file: path.to_path_buf(), source })?;
        let file: IdentityFile = serde_json::from_str(&text).map_err(|e| ConfigError::Invalid {
            file: path.to_path_buf(),
            key: String::new(),
            reason: e.to_string(),
        })?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(file.private_key.trim())
            .map_err(|e| bad(format!("not base64: {e}")))?;
        let keypair = Keypair::from_protobuf_encoding(&bytes).map_err(|e| bad(format!("not a libp2p key: {e}")))?;
        let identity = Identity { keypair };
        if identity.peer_id() != file.id {
            return Err(ConfigError::Invalid {
                file: path.to_path_buf(),
                key: "id".into(),
                reason: format!("does not match the private key (which gives {})", identity.peer_id()),
            });
        }
        Ok(identity)
    }

    /// Writes the identity with mode 0600.
    pub fn save(&self, path: &Path) -> Result<(), ConfigError> {
        let file = IdentityFile {
            id: self.peer_id(),
            private_key: base64::engine::general_purpose::STANDARD.encode(self.keypair_protobuf()),
        };
        let text = serde_json::to_string_pretty(&file).unwrap_or_default() + "\n";
        crate::load::write_private(path, text.as_bytes())
    }
}
