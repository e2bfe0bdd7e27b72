//! Ed25519 keys generated in-process: the login key strata keeps (0600) and the host key a new
//! guest receives through first-boot data, whose public half strata pins.

use crate::error::{Error, Result};
use ssh_key::{Algorithm, LineEnding, PrivateKey, PublicKey};

/// A new key pair in OpenSSH formats.
pub struct KeyPair {
    pub private_openssh: String,
    pub public_openssh: String,
}

fn key_error(e: ssh_key::Error) -> Error {
    Error::failed(format!("generating an SSH key: {e}"))
}

/// Generate an Ed25519 key pair with `comment`.
pub fn generate(comment: &str) -> Result<KeyPair> {
    let mut key =
        PrivateKey::random(&mut rand_core::OsRng, Algorithm::Ed25519).map_err(key_error)?;
    key.set_comment(comment);
    let private_openssh = key
        .to_openssh(LineEnding::LF)
        .map_err(key_error)?
        .to_string();
    let public_openssh = key.public_key().to_openssh().map_err(key_error)?;
    Ok(KeyPair {
        private_openssh,
        public_openssh,
    })
}

/// The SSH wire encoding of a public key given as an OpenSSH line ("ssh-ed25519 AAAA... c"),
/// which is what an SSH server presents during the handshake.
pub fn public_key_blob(openssh_line: &str) -> Result<Vec<u8>> {
    let key = PublicKey::from_openssh(openssh_line.trim())
        .map_err(|e| Error::failed(format!("pinned host key is unreadable: {e}")))?;
    key.to_bytes()
        .map_err(|e| Error::failed(format!("encoding the pinned host key: {e}")))
}

/// SHA256 fingerprint as OpenSSH prints it, for messages.
pub fn fingerprint_of_blob(blob: &[u8]) -> String {
    match PublicKey::from_bytes(blob) {
        Ok(key) => key.fingerprint(ssh_key::HashAlg::Sha256).to_string(),
        Err(_) => "unknown key".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_round_trip() {
        let pair = generate("strata@test").unwrap();
        assert!(pair
            .private_openssh
            .starts_with("-----BEGIN OPENSSH PRIVATE KEY-----"));
        assert!(pair.public_openssh.starts_with("ssh-ed25519 "));
        assert!(pair.public_openssh.ends_with(" strata@test"));
        let blob = public_key_blob(&pair.public_openssh).unwrap();
        assert!(fingerprint_of_blob(&blob).starts_with("SHA256:"));
        let other = generate("x").unwrap();
        assert_ne!(blob, public_key_blob(&other.public_openssh).unwrap());
    }
}
