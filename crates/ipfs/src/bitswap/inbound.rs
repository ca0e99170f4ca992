//! Accepts every inbound Bitswap stream: [`InboundBehaviour`], a libp2p behaviour plugged into
//! the engine's swarm as its custom behaviour.
//!
//! libp2p-stream's `accept` would be simpler, but it hands streams over through a channel with
//! one slot and drops a stream when the slot is taken. Kubo opens a new stream for every response
//! message, several at once, so those drops lost blocks. Here every negotiated stream goes to a
//! channel of `STREAM_QUEUE` slots read by the Bitswap tasks; a stream that finds it full (a
//! peer opening streams faster than we read them) is reset.

use std::convert::Infallible;
use std::task::{Context, Poll};

use connexa::prelude::transport::transport::PortUse;
use connexa::prelude::transport::upgrade::{DeniedUpgrade, InboundUpgrade, UpgradeInfo};
use connexa::prelude::transport::Endpoint;
use rust_ipfs::swarm::handler::{ConnectionEvent, FullyNegotiatedInbound};
use rust_ipfs::swarm::{
    ConnectionDenied, ConnectionHandler, ConnectionHandlerEvent, ConnectionId, FromSwarm, NetworkBehaviour,
    SubstreamProtocol, THandler, THandlerInEvent, THandlerOutEvent, ToSwarm,
};
use rust_ipfs::{Multiaddr, PeerId, Stream, StreamProtocol};
use tokio::sync::mpsc::Sender;

use super::ACCEPTED;

/// Hands every inbound Bitswap stream, with its peer, to `streams`.
pub(crate) struct InboundBehaviour {
    streams: Sender<(PeerId, Stream)>,
}

impl InboundBehaviour {
    pub(crate) fn new(streams: Sender<(PeerId, Stream)>) -> InboundBehaviour {
        InboundBehaviour { streams }
    }

    fn handler(&self, peer: PeerId) -> InboundHandler {
        InboundHandler { peer, streams: self.streams.clone() }
    }
}

impl NetworkBehaviour for InboundBehaviour {
    type ConnectionHandler = InboundHandler;
    type ToSwarm = Infallible;

    fn handle_established_inbound_connection(
        &mut self,
        _: ConnectionId,
        peer: PeerId,
        _: &Multiaddr,
        _: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(self.handler(peer))
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        peer: PeerId,
        _: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(self.handler(peer))
    }

    fn on_swarm_event(&mut self, _: FromSwarm) {}

    fn on_connection_handler_event(&mut self, _: PeerId, _: ConnectionId, event: THandlerOutEvent<Self>) {
        match event {}
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}

/// Per connection: accepts the Bitswap protocols and forwards each negotiated stream.
pub(crate) struct InboundHandler {
    peer: PeerId,
    streams: Sender<(PeerId, Stream)>,
}

impl ConnectionHandler for InboundHandler {
    type FromBehaviour = Infallible;
    type ToBehaviour = Infallible;
    type InboundProtocol = Accept;
    type OutboundProtocol = DeniedUpgrade;
    type InboundOpenInfo = ();
    type OutboundOpenInfo = ();

    fn listen_protocol(&self) -> SubstreamProtocol<Accept> {
        SubstreamProtocol::new(Accept, ())
    }

    fn on_behaviour_event(&mut self, event: Infallible) {
        match event {}
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ConnectionHandlerEvent<DeniedUpgrade, (), Infallible>> {
        Poll::Pending
    }

    fn on_connection_event(&mut self, event: ConnectionEvent<Accept, DeniedUpgrade>) {
        if let ConnectionEvent::FullyNegotiatedInbound(FullyNegotiatedInbound { protocol: stream, .. }) = event {
            // Full: dropping the stream resets it. Closed: the node is shutting down.
            if self.streams.try_send((self.peer, stream)).is_err() {
                tracing::debug!(peer = %self.peer, "bitswap stream queue full, resetting a stream");
            }
        }
    }
}

/// The inbound upgrade: any of the Bitswap protocol names, the stream as is.
pub(crate) struct Accept;

impl UpgradeInfo for Accept {
    type Info = StreamProtocol;
    type InfoIter = [StreamProtocol; 4];

    fn protocol_info(&self) -> Self::InfoIter {
        ACCEPTED
    }
}

impl InboundUpgrade<Stream> for Accept {
    type Output = Stream;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Stream, Infallible>>;

    fn upgrade_inbound(self, stream: Stream, _: StreamProtocol) -> Self::Future {
        std::future::ready(Ok(stream))
    }
}
