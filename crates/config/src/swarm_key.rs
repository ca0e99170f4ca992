//! Reads a private network's key in Kubo's `swarm.key` format (libp2p's PSK v1 file).

use std::path::Path;

use base64::Engine;

/// The first line of every swarm key file.
const HEADER: &str = "/key/swarm/psk/1.0.0/";

/// Reads and decodes the 32-byte key of a `swarm.key` file: the header line, an encoding line
/// (`/base16/`, `/base64/` or `/bin/`) and the key. The error says what is wrong, never the key.
pub fn read_swarm_key(path: &Path) -> Result<[u8; 32], String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    parse_swarm_key(&bytes)
}

fn parse_swarm_key(bytes: &[u8]) -> Result<[u8; 32], String> {
    let (header, rest) = split_line(bytes).ok_or("the file is empty")?;
    if header.trim_ascii() != HEADER.as_bytes() {
        return Err(format!("the first line must be {HEADER}"));
    }
    let (encoding, rest) = split_line(rest).ok_or("the encoding line is missing")?;
    let key: Vec<u8> = match encoding.trim_ascii() {
        b"/base16/" => {
            let text = std::str::from_utf8(rest).map_err(|_| "the base16 key is not text")?.trim();
            if text.len() != 64 || !text.is_ascii() {
                return Err("the base16 key must be 64 hex characters".into());
            }
            (0..32)
                .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16))
                .collect::<Result<_, _>>()
                .map_err(|_| "the base16 key has a character that is not hex")?
        }
        b"/base64/" => {
            let text = std::str::from_utf8(rest).map_err(|_| "the base64 key is not text")?.trim();
            base64::engine::general_purpose::STANDARD.decode(text).map_err(|_| "the base64 key does not decode")?
        }
        b"/bin/" => rest.to_vec(),
        _ => return Err("the second line must be /base16/, /base64/ or /bin/".into()),
    };
    key.try_into().map_err(|key: Vec<u8>| format!("the key is {} bytes; it must be 32", key.len()))
}

/// The first line (without its end) and what follows it.
fn split_line(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    if bytes.is_empty() {
        return None;
    }
    Some(match bytes.iter().position(|&b| b == b'\n') {
        Some(i) => (&bytes[..i], &bytes[i + 1..]),
        None => (bytes, &[]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 32] = [7; 32];

    #[test]
    fn every_kubo_encoding_is_read() {
        let hex: String = KEY.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(parse_swarm_key(format!("{HEADER}\n/base16/\n{hex}\n").as_bytes()), Ok(KEY));
        let b64 = base64::engine::general_purpose::STANDARD.encode(KEY);
        assert_eq!(parse_swarm_key(format!("{HEADER}\r\n/base64/\r\n{b64}").as_bytes()), Ok(KEY));
        let mut bin = format!("{HEADER}\n/bin/\n").into_bytes();
        bin.extend_from_slice(&KEY);
        assert_eq!(parse_swarm_key(&bin), Ok(KEY));
    }

    #[test]
    fn bad_files_say_what_is_wrong() {
        assert!(parse_swarm_key(b"").expect_err("refused").contains("empty"));
        assert!(parse_swarm_key(b"/key/other/\n/base16/\n00").expect_err("refused").contains("first line"));
        assert!(parse_swarm_key(format!("{HEADER}\n/base32/\nAA").as_bytes())
            .expect_err("refused")
            .contains("second line"));
        assert!(parse_swarm_key(format!("{HEADER}\n/base16/\nabcd").as_bytes())
            .expect_err("refused")
            .contains("64 hex"));
        let short = base64::engine::general_purpose::STANDARD.encode([1u8; 16]);
        assert!(parse_swarm_key(format!("{HEADER}\n/base64/\n{short}").as_bytes())
            .expect_err("refused")
            .contains("16 bytes"));
    }
}
