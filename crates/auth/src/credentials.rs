//! The configured users in a form that can be checked without obvious timing leaks:
//! read [`Credentials`] first.
//!
//! User names and passwords are never compared as given. Each is first run through
//! HMAC-SHA256 under a random key made for this credential set, so the map lookup
//! compares digests an attacker cannot steer, and the password check compares two
//! 32-byte digests in constant time, which also hides the password's length. An
//! unknown user costs the same work as a wrong password.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;

use jsonwebtoken::{DecodingKey, EncodingKey};
use ring::hmac;
use subtle::ConstantTimeEq;

/// A keyed digest of a user name or password.
type Digest = [u8; 32];

/// Domain separation between the two kinds of digest made with one key.
const USER_DOMAIN: u8 = 1;
const PASSWORD_DOMAIN: u8 = 2;

/// One configured user with its signing keys.
pub(crate) struct Entry {
    /// The user's name, shared with every [`crate::AuthUser`] made for it.
    pub(crate) name: Arc<str>,
    password_digest: Digest,
    /// The password as a JWT signing key.
    pub(crate) encoding: EncodingKey,
    /// The password as a JWT verification key.
    pub(crate) decoding: DecodingKey,
}

/// An immutable set of users; replaced as a whole when the configuration changes.
pub(crate) struct Credentials {
    key: hmac::Key,
    users: HashMap<Digest, Entry>,
    /// Compared against when the user is unknown, so that case costs the same.
    dummy_password_digest: Digest,
    /// Verifies (and fails) tokens whose issuer is unknown, for the same reason.
    dummy_decoding: DecodingKey,
}

impl Credentials {
    /// Builds the set from user → password pairs.
    pub(crate) fn new(users: &crate::Users) -> Credentials {
        let key_bytes = random_bytes();
        let key = hmac::Key::new(hmac::HMAC_SHA256, &key_bytes);
        let dummy_secret = random_bytes();
        let mut credentials = Credentials {
            key,
            users: HashMap::with_capacity(users.len()),
            dummy_password_digest: [0; 32],
            dummy_decoding: DecodingKey::from_secret(&dummy_secret),
        };
        credentials.dummy_password_digest = credentials.digest(PASSWORD_DOMAIN, &dummy_secret);
        for (name, password) in users {
            let entry = Entry {
                name: Arc::from(name.as_str()),
                password_digest: credentials.digest(PASSWORD_DOMAIN, password.as_bytes()),
                encoding: EncodingKey::from_secret(password.as_bytes()),
                decoding: DecodingKey::from_secret(password.as_bytes()),
            };
            let user_digest = credentials.digest(USER_DOMAIN, name.as_bytes());
            credentials.users.insert(user_digest, entry);
        }
        credentials
    }

    /// How many users the set holds.
    pub(crate) fn len(&self) -> usize {
        self.users.len()
    }

    /// Finds a user by name.
    pub(crate) fn lookup(&self, name: &[u8]) -> Option<&Entry> {
        self.users.get(&self.digest(USER_DOMAIN, name))
    }

    /// The key that verifies tokens of an unknown issuer: it matches no token.
    pub(crate) fn dummy_decoding(&self) -> &DecodingKey {
        &self.dummy_decoding
    }

    /// Checks a user name and password; `Some` only when both match.
    pub(crate) fn check_basic(&self, name: &[u8], password: &[u8]) -> Option<&Entry> {
        let supplied = self.digest(PASSWORD_DOMAIN, password);
        let entry = self.lookup(name);
        let expected = entry.map_or(&self.dummy_password_digest, |entry| &entry.password_digest);
        let equal: bool = supplied.ct_eq(expected).into();
        if equal {
            entry
        } else {
            None
        }
    }

    fn digest(&self, domain: u8, bytes: &[u8]) -> Digest {
        let mut context = hmac::Context::with_key(&self.key);
        context.update(&[domain]);
        context.update(bytes);
        let tag = context.sign();
        let mut digest = [0; 32];
        digest.copy_from_slice(tag.as_ref());
        digest
    }
}

/// 32 random bytes from the operating system, or, should that ever fail, from the
/// randomly keyed hashers of the standard library (good enough for hiding timing).
fn random_bytes() -> [u8; 32] {
    let mut bytes = [0u8; 32];
    let rng = ring::rand::SystemRandom::new();
    if ring::rand::SecureRandom::fill(&rng, &mut bytes).is_err() {
        for (index, chunk) in bytes.chunks_mut(8).enumerate() {
            let mut hasher = RandomState::new().build_hasher();
            hasher.write_usize(index);
            chunk.copy_from_slice(&hasher.finish().to_le_bytes());
        }
    }
    bytes
}
