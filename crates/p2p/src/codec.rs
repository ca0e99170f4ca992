//! The wire format of `/pincluster/rpc/1.0.0`: one message per direction per stream, an unsigned
//! varint length then that many raw bytes, with a size limit checked before anything is allocated.

use std::{fmt, io};

use async_trait::async_trait;
use libp2p::{
    futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    request_response::Codec,
    StreamProtocol,
};

/// The protocol name negotiated on every stream.
pub(crate) const PROTOCOL: StreamProtocol = StreamProtocol::new("/pincluster/rpc/1.0.0");

/// A varint of a `u64` takes at most ten bytes.
const MAX_VARINT_LEN: usize = 10;

/// Raw bytes both ways, at most `max` bytes each.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BytesCodec {
    max: usize,
}

impl BytesCodec {
    /// A codec refusing messages longer than `max` bytes.
    pub(crate) fn new(max: usize) -> Self {
        Self { max }
    }

    async fn read<T: AsyncRead + Unpin + Send>(&self, io: &mut T) -> io::Result<Vec<u8>> {
        let len = read_length(io).await?;
        if len > self.max as u64 {
            return Err(Oversize::error(usize::try_from(len).unwrap_or(usize::MAX), self.max));
        }
        // `len <= max`, so it fits a usize. The buffer grows as bytes arrive: a peer that
        // announces `max` and sends nothing costs no more than what it sent.
        let len = len as usize;
        let mut body = Vec::with_capacity(len.min(64 * 1024));
        io.take(len as u64).read_to_end(&mut body).await?;
        if body.len() != len {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "message shorter than its length prefix"));
        }
        // Growing by doubling may have left up to twice the message allocated.
        body.shrink_to_fit();
        Ok(body)
    }

    async fn write<T: AsyncWrite + Unpin + Send>(&self, io: &mut T, body: &[u8]) -> io::Result<()> {
        if body.len() > self.max {
            return Err(Oversize::error(body.len(), self.max));
        }
        let mut buf = unsigned_varint::encode::usize_buffer();
        io.write_all(unsigned_varint::encode::usize(body.len(), &mut buf)).await?;
        io.write_all(body).await?;
        io.flush().await
    }
}

/// Reads a varint length byte by byte, giving up after ten bytes.
async fn read_length<T: AsyncRead + Unpin + Send>(io: &mut T) -> io::Result<u64> {
    let mut buf = [0u8; MAX_VARINT_LEN];
    for i in 0..MAX_VARINT_LEN {
        io.read_exact(&mut buf[i..=i]).await?;
        if unsigned_varint::decode::is_last(buf[i]) {
            return unsigned_varint::decode::u64(&buf[..=i])
                .map(|(len, _)| len)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e));
        }
    }
    Err(io::Error::new(io::ErrorKind::InvalidData, "length prefix longer than ten bytes"))
}

/// A message over the size limit; carried inside an `io::Error` so the transport can report it
/// as [`crate::NetError::TooLarge`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Oversize {
    /// The size of the message, or the size its length prefix announced.
    pub(crate) size: usize,
    /// The limit in force.
    pub(crate) max: usize,
}

impl Oversize {
    fn error(size: usize, max: usize) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, Oversize { size, max })
    }

    /// The oversize marker inside an I/O error, if that is what it is.
    pub(crate) fn find(error: &io::Error) -> Option<Oversize> {
        error.get_ref().and_then(|inner| inner.downcast_ref::<Oversize>()).copied()
    }
}

impl fmt::Display for Oversize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "message of {} bytes over the limit of {} bytes", self.size, self.max)
    }
}

impl std::error::Error for Oversize {}

#[async_trait]
impl Codec for BytesCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        self.read(io).await
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        self.read(io).await
    }

    async fn write_request<T>(&mut self, _: &StreamProtocol, io: &mut T, req: Vec<u8>) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        self.write(io, &req).await
    }

    async fn write_response<T>(&mut self, _: &StreamProtocol, io: &mut T, res: Vec<u8>) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        self.write(io, &res).await
    }
}

#[cfg(test)]
mod tests {
    use libp2p::futures::{executor::block_on, io::Cursor};

    use super::*;

    #[test]
    fn round_trip() {
        let codec = BytesCodec::new(1000);
        let mut wire = Cursor::new(Vec::new());
        block_on(codec.write(&mut wire, &[7u8; 300])).expect("write");
        let mut wire = Cursor::new(wire.into_inner());
        assert_eq!(block_on(codec.read(&mut wire)).expect("read"), vec![7u8; 300]);
    }

    #[test]
    fn oversized_prefix_refused_without_reading_body() {
        let codec = BytesCodec::new(10);
        let mut buf = unsigned_varint::encode::u64_buffer();
        let prefix = unsigned_varint::encode::u64(u64::MAX, &mut buf).to_vec();
        let err = block_on(codec.read(&mut Cursor::new(prefix))).expect_err("too large");
        let oversize = Oversize::find(&err).expect("oversize marker");
        assert_eq!(oversize.max, 10);
    }

    #[test]
    fn oversized_write_refused() {
        let codec = BytesCodec::new(10);
        let err = block_on(codec.write(&mut Cursor::new(Vec::new()), &[0u8; 11])).expect_err("too large");
        assert!(Oversize::find(&err).is_some());
    }

    #[test]
    fn endless_prefix_and_short_body_refused() {
        let codec = BytesCodec::new(100);
        assert!(block_on(codec.read(&mut Cursor::new(vec![0x80u8; 20]))).is_err());
        assert!(block_on(codec.read(&mut Cursor::new(vec![5u8, 1, 2]))).is_err());
    }
}
