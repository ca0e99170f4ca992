//! Bitswap's wire messages as prost types, read from Bitswap's `message.proto` (boxo
//! `bitswap/message/pb/message.proto`, protocol 1.2.0; 1.0.0 and 1.1.0 are subsets):
//!
//! ```proto
//! message Message {
//!   message Wantlist {
//!     enum WantType { Block = 0; Have = 1; }
//!     message Entry { bytes block = 1; int32 priority = 2; bool cancel = 3;
//!                     WantType wantType = 4; bool sendDontHave = 5; }
//!     repeated Entry entries = 1; bool full = 2;
//!   }
//!   message Block { bytes prefix = 1; bytes data = 2; }
//!   enum BlockPresenceType { Have = 0; DontHave = 1; }
//!   message BlockPresence { bytes cid = 1; BlockPresenceType type = 2; }
//!   Wantlist wantlist = 1; repeated bytes blocks = 2; repeated Block payload = 3;
//!   repeated BlockPresence blockPresences = 4; int32 pendingBytes = 5;
//! }
//! ```
//!
//! The leaf messages are derived. [`Message`] and [`Wantlist`] implement `prost::Message` through
//! prost's own field codecs so that decoding keeps at most [`MAX_ITEMS`] repeated items and skips
//! (and flags, in `overflow`) the rest: a 4 MiB frame of empty two-byte entries would otherwise
//! become two million structs (over 100 MiB).
//! Byte fields are `Bytes`, slices of the received frame rather than copies.

use bytes::{Buf, BufMut, Bytes};
use prost::encoding::{bytes as pbytes, int32, message, skip_field, DecodeContext, WireType};
use prost::DecodeError;

/// Repeated items (wantlist entries, blocks, presences) one message may hold. Kubo keeps at most
/// 1024 wants per peer and sends far fewer per message; blocks fill 4 MiB long before this.
pub(crate) const MAX_ITEMS: usize = 8192;

/// `Message.Wantlist.WantType`.
pub(crate) const WANT_TYPE_HAVE: i32 = 1;
/// `Message.BlockPresenceType`.
pub(crate) const PRESENCE_DONT_HAVE: i32 = 1;

#[derive(Clone, PartialEq, Default, Debug)]
pub(crate) struct Message {
    pub(crate) wantlist: Option<Wantlist>,
    /// Bitswap 1.0.0 blocks (CIDv0, sha2-256 implied).
    pub(crate) blocks: Vec<Bytes>,
    pub(crate) payload: Vec<Block>,
    pub(crate) block_presences: Vec<BlockPresence>,
    pub(crate) pending_bytes: i32,
    /// Items were skipped because the message held more than [`MAX_ITEMS`] (not on the wire).
    pub(crate) overflow: bool,
}

#[derive(Clone, PartialEq, Default, Debug)]
pub(crate) struct Wantlist {
    pub(crate) entries: Vec<Entry>,
    pub(crate) full: bool,
    /// Entries were skipped because there were more than [`MAX_ITEMS`] (not on the wire).
    pub(crate) overflow: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Entry {
    #[prost(bytes = "bytes", tag = "1")]
    pub(crate) block: Bytes,
    #[prost(int32, tag = "2")]
    pub(crate) priority: i32,
    #[prost(bool, tag = "3")]
    pub(crate) cancel: bool,
    #[prost(int32, tag = "4")]
    pub(crate) want_type: i32,
    #[prost(bool, tag = "5")]
    pub(crate) send_dont_have: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Block {
    #[prost(bytes = "bytes", tag = "1")]
    pub(crate) prefix: Bytes,
    #[prost(bytes = "bytes", tag = "2")]
    pub(crate) data: Bytes,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct BlockPresence {
    #[prost(bytes = "bytes", tag = "1")]
    pub(crate) cid: Bytes,
    #[prost(int32, tag = "2")]
    pub(crate) r#type: i32,
}

impl Message {
    fn items(&self) -> usize {
        let wants = self.wantlist.as_ref().map_or(0, |w| w.entries.len());
        wants + self.blocks.len() + self.payload.len() + self.block_presences.len()
    }
}

impl prost::Message for Message {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        if let Some(wantlist) = &self.wantlist {
            message::encode(1, wantlist, buf);
        }
        pbytes::encode_repeated(2, &self.blocks, buf);
        message::encode_repeated(3, &self.payload, buf);
        message::encode_repeated(4, &self.block_presences, buf);
        if self.pending_bytes != 0 {
            int32::encode(5, &self.pending_bytes, buf);
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        if matches!(tag, 2..=4) && self.items() >= MAX_ITEMS {
            self.overflow = true;
            return skip_field(wire_type, tag, buf, ctx);
        }
        match tag {
            // The wantlist counts its own entries (a message holds at most twice MAX_ITEMS).
            1 => message::merge(wire_type, self.wantlist.get_or_insert_with(Wantlist::default), buf, ctx),
            2 => pbytes::merge_repeated(wire_type, &mut self.blocks, buf, ctx),
            3 => message::merge_repeated(wire_type, &mut self.payload, buf, ctx),
            4 => message::merge_repeated(wire_type, &mut self.block_presences, buf, ctx),
            5 => int32::merge(wire_type, &mut self.pending_bytes, buf, ctx),
            _ => skip_field(wire_type, tag, buf, ctx),
        }
    }

    fn encoded_len(&self) -> usize {
        self.wantlist.as_ref().map_or(0, |w| message::encoded_len(1, w))
            + pbytes::encoded_len_repeated(2, &self.blocks)
            + message::encoded_len_repeated(3, &self.payload)
            + message::encoded_len_repeated(4, &self.block_presences)
            + if self.pending_bytes != 0 { int32::encoded_len(5, &self.pending_bytes) } else { 0 }
    }

    fn clear(&mut self) {
        *self = Message::default();
    }
}

impl prost::Message for Wantlist {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        message::encode_repeated(1, &self.entries, buf);
        if self.full {
            prost::encoding::bool::encode(2, &self.full, buf);
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        match tag {
            1 if self.entries.len() >= MAX_ITEMS => {
                self.overflow = true;
                skip_field(wire_type, tag, buf, ctx)
            }
            1 => message::merge_repeated(wire_type, &mut self.entries, buf, ctx),
            2 => prost::encoding::bool::merge(wire_type, &mut self.full, buf, ctx),
            _ => skip_field(wire_type, tag, buf, ctx),
        }
    }

    fn encoded_len(&self) -> usize {
        message::encoded_len_repeated(1, &self.entries)
            + if self.full { prost::encoding::bool::encoded_len(2, &self.full) } else { 0 }
    }

    fn clear(&mut self) {
        *self = Wantlist::default();
    }
}
