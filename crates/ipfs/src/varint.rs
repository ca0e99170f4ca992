//! The one place this crate reads and writes unsigned varints (CAR sections, Bitswap frames and
//! CID prefixes), on the `unsigned-varint` crate with the multiformats limits: at most
//! [`MAX_VARINT_BYTES`] bytes, minimal encodings only (an over-long `0x80 0x00` is refused).

use futures_util::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The multiformats limit: 9 bytes, 63 bits.
pub(crate) const MAX_VARINT_BYTES: usize = 9;

/// Why bytes are not a usable varint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum VarintError {
    #[error("varint longer than {MAX_VARINT_BYTES} bytes")]
    TooLong,
    #[error("varint not minimally encoded")]
    NotMinimal,
}

/// The varint at the start of `bytes`: its value and length, `Ok(None)` while incomplete.
pub(crate) fn read(bytes: &[u8]) -> Result<Option<(u64, usize)>, VarintError> {
    let head = &bytes[..bytes.len().min(MAX_VARINT_BYTES)];
    match unsigned_varint::decode::u64(head) {
        Ok((value, rest)) => Ok(Some((value, head.len() - rest.len()))),
        Err(unsigned_varint::decode::Error::Insufficient) if bytes.len() < MAX_VARINT_BYTES => Ok(None),
        Err(unsigned_varint::decode::Error::NotMinimal) => Err(VarintError::NotMinimal),
        Err(_) => Err(VarintError::TooLong),
    }
}

/// Reads a varint from the front of `bytes` and advances past it; `None` when incomplete or
/// invalid (for complete inputs such as a CID prefix).
pub(crate) fn take(bytes: &mut &[u8]) -> Option<u64> {
    let (value, used) = read(bytes).ok()??;
    *bytes = &bytes[used..];
    Some(value)
}

/// Appends `value` as a varint.
pub(crate) fn put(out: &mut Vec<u8>, value: u64) {
    let mut buf = unsigned_varint::encode::u64_buffer();
    out.extend_from_slice(unsigned_varint::encode::u64(value, &mut buf));
}

/// Why a length-prefixed frame could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FrameError {
    #[error("invalid frame length: {0}")]
    Varint(#[from] VarintError),
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge { len: u64, max: usize },
    #[error("reading the frame")]
    Io(#[from] std::io::Error),
}

/// Reads the varint length prefix of the next frame, refusing lengths above `max`; `Ok(None)` at
/// a clean end of stream. The body is left to the caller, which can reserve memory for it first.
pub(crate) async fn read_frame_len<R: AsyncRead + Unpin>(
    reader: &mut R,
    max: usize,
) -> Result<Option<usize>, FrameError> {
    let mut buf = [0u8; MAX_VARINT_BYTES];
    for i in 0..MAX_VARINT_BYTES {
        if reader.read(&mut buf[i..=i]).await? == 0 {
            if i == 0 {
                return Ok(None);
            }
            return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
        }
        if let Some((len, _)) = read(&buf[..=i])? {
            return match usize::try_from(len) {
                Ok(len) if len <= max => Ok(Some(len)),
                _ => Err(FrameError::TooLarge { len, max }),
            };
        }
    }
    Err(VarintError::TooLong.into())
}

/// Writes `body` with its varint length prefix and flushes.
pub(crate) async fn write_frame<W: AsyncWrite + Unpin>(writer: &mut W, body: &[u8]) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(MAX_VARINT_BYTES);
    put(&mut head, body.len() as u64);
    writer.write_all(&head).await?;
    writer.write_all(body).await?;
    writer.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_those_of_multiformats() {
        assert_eq!(read(&[0x05, 0xff]), Ok(Some((5, 1))));
        assert_eq!(read(&[0xac, 0x02]), Ok(Some((300, 2))));
        assert_eq!(read(&[0xac]), Ok(None));
        assert_eq!(read(&[]), Ok(None));
        // Over-long encodings of small numbers are refused, not read as their value.
        assert_eq!(read(&[0x80, 0x00]), Err(VarintError::NotMinimal));
        assert_eq!(read(&[0x81, 0x80, 0x00]), Err(VarintError::NotMinimal));
        // Nine bytes is the most; a tenth is never waited for.
        let nine = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f];
        assert_eq!(read(&nine), Ok(Some(((1u64 << 63) - 1, 9))));
        assert_eq!(read(&[0xff; 9]), Err(VarintError::TooLong));
        assert_eq!(read(&[0xff; 12]), Err(VarintError::TooLong));
    }

    #[test]
    fn round_trips() {
        for value in [0, 1, 127, 128, 300, 1 << 40, (1u64 << 63) - 1] {
            let mut out = Vec::new();
            put(&mut out, value);
            let mut rest = &out[..];
            assert_eq!(take(&mut rest), Some(value));
            assert!(rest.is_empty());
        }
    }

    #[tokio::test]
    async fn frames_have_one_size_limit() {
        let mut buf = Vec::new();
        write_frame(&mut buf, b"abc").await.expect("write");
        write_frame(&mut buf, &[7u8; 300]).await.expect("write");
        let mut reader = futures_util::io::Cursor::new(buf);
        assert_eq!(read_frame_len(&mut reader, 300).await.expect("len"), Some(3));
        let mut body = [0u8; 3];
        reader.read_exact(&mut body).await.expect("body");
        assert!(matches!(read_frame_len(&mut reader, 299).await, Err(FrameError::TooLarge { len: 300, max: 299 })));
        let mut empty = futures_util::io::Cursor::new(Vec::new());
        assert!(read_frame_len(&mut empty, 10).await.expect("eof").is_none());
        let mut cut = futures_util::io::Cursor::new(vec![0x80]);
        assert!(matches!(read_frame_len(&mut cut, 10).await, Err(FrameError::Io(_))));
        let mut long = futures_util::io::Cursor::new(vec![0x80, 0x00]);
        assert!(matches!(read_frame_len(&mut long, 10).await, Err(FrameError::Varint(VarintError::NotMinimal))));
    }
}
