//! Reads of what this node already holds, for readers that must never reach the network (the
//! HTTP gateway): [`Node::local_block`], [`Node::is_pinned_block`] and [`block_links`].

use bytes::Bytes;
use cid::Cid;
use rust_ipfs::Block;

use crate::blockfile::{SmallRead, IDENTITY};
use crate::walk::RAW;
use crate::{IpfsError, Node};

/// Blocks up to this size are read on the caller's thread (see [`crate::blockfile::read_small`]).
const INLINE_READ_MAX: u64 = 64 * 1024;
/// dag-pb: the codec of CIDv0.
const DAG_PB: u64 = 0x70;

impl Node {
    /// The block of `cid` from the local block store, its hash checked; `None` when it is not
    /// there. Nothing is asked of other peers. An identity CID is answered from its digest.
    pub async fn local_block(&self, cid: &Cid) -> Result<Option<Bytes>, IpfsError> {
        if cid.hash().code() == IDENTITY {
            return Ok(Some(Bytes::copy_from_slice(cid.hash().digest())));
        }
        match crate::blockfile::read_small(&self.inner.repo_path, cid, INLINE_READ_MAX) {
            SmallRead::Block(data) => return Ok(Some(Bytes::from(data))),
            SmallRead::Missing => return Ok(None),
            SmallRead::Other => {}
        }
        let block = self.inner.ipfs.repo().get_block_now(cid).await.map_err(IpfsError::store)?;
        Ok(block.map(|block| block.into_inner().1))
    }

    /// Whether `cid` is held under one of this node's pins: a pinned root or a block below a
    /// recursive pin, whether it is named as CIDv0 or CIDv1 (the pin records keep the links as
    /// the blocks spell them). A block merely in the store (cached, imported without a pin, or
    /// released and not yet collected) is not.
    pub async fn is_pinned_block(&self, cid: &Cid) -> Result<bool, IpfsError> {
        let repo = self.inner.ipfs.repo();
        let mut forms = vec![*cid, Cid::new_v1(cid.codec(), *cid.hash())];
        if cid.codec() == DAG_PB && cid.hash().code() == 0x12 && cid.hash().size() == 32 {
            if let Ok(v0) = Cid::new_v0(*cid.hash()) {
                forms.push(v0);
            }
        }
        forms.dedup();
        for form in forms {
            if repo.is_pinned(&form).await.map_err(IpfsError::store)? {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// The CIDs a block links to, in the order the block lists them (dag-pb, dag-cbor and dag-json
/// are understood; a raw block has none).
pub fn block_links(cid: &Cid, data: &Bytes) -> Result<Vec<Cid>, IpfsError> {
    if cid.codec() == RAW {
        return Ok(Vec::new());
    }
    let mut links: Vec<Cid> = Vec::new();
    Block::new_unchecked(*cid, data.clone()).references(&mut links).map_err(|e| IpfsError::Decode {
        cid: *cid,
        reason: if e.kind() == std::io::ErrorKind::Unsupported {
            format!("codec 0x{:x} is not supported", cid.codec())
        } else {
            e.to_string()
        },
    })?;
    Ok(links)
}
