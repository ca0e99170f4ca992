// Drives the IPFS Cluster REST API with the @nftstorage/ipfs-cluster client
// (the one nft.storage used against Cluster), unmodified, against a running
// daemon. Usage: node cluster-client.mjs REST_URL AUTH_HEADER [PEER_ID CID CID CID]
// Without CIDs it derives its own from the current time. Prints
// "all operations passed" and exits 0, or exits 1 naming what failed.
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { Cluster } from '@nftstorage/ipfs-cluster'
import { step } from './step.mjs'

const [url, authorization, peerArg, ...cidArgs] = process.argv.slice(2)
assert.ok(url && authorization, 'usage: node cluster-client.mjs REST_URL AUTH_HEADER [PEER_ID CID...]')
const cluster = new Cluster(url, { headers: { Authorization: authorization } })

/** The binary CIDv1 (raw, sha2-256) of some bytes. */
function cidBytes (text) {
  const digest = createHash('sha256').update(text).digest()
  return Buffer.concat([Buffer.from([0x01, 0x55, 0x12, 0x20]), digest])
}

/** A one-block CAR v1 file holding `text` as its raw root, built by hand. */
function carOf (text) {
  const cid = cidBytes(text)
  const header = Buffer.concat([
    Buffer.from([0xa2, 0x65]), Buffer.from('roots'), Buffer.from([0x81, 0xd8, 0x2a, 0x58, cid.length + 1, 0x00]), cid,
    Buffer.from([0x67]), Buffer.from('version'), Buffer.from([0x01])
  ])
  const block = Buffer.concat([cid, Buffer.from(text)])
  return Buffer.concat([Buffer.from([header.length]), header, Buffer.from([block.length]), block])
}

/** A CIDv1 (raw, sha2-256) of some bytes, in base32, built by hand: what
 * Kubo gives a one-chunk file with raw leaves. */
function cidOf (text) {
  const bytes = cidBytes(text)
  const alphabet = 'abcdefghijklmnopqrstuvwxyz234567'
  let bits = 0; let value = 0; let out = 'b'
  for (const byte of bytes) {
    value = (value << 8) | byte; bits += 8
    while (bits >= 5) { out += alphabet[(value >>> (bits - 5)) & 31]; bits -= 5 }
  }
  if (bits > 0) out += alphabet[(value << (5 - bits)) & 31]
  return out
}

const seed = String(Date.now())
const [first, second, unknown] = cidArgs.length >= 3 ? cidArgs : [cidOf(seed + 'a'), cidOf(seed + 'b'), cidOf(seed + 'c')]
const inProgress = ['pin_queued', 'pinning', 'pinned', 'pin_error']

let peerId = peerArg

await step('version', async () => {
  const version = await cluster.version()
  assert.match(version, /^\d+\.\d+\.\d+/)
})

await step('info (GET /id)', async () => {
  const info = await cluster.info()
  if (peerId) assert.equal(info.id, peerId)
  peerId = info.id
  assert.deepEqual(info.clusterPeers, [peerId])
  assert.equal(typeof info.peerName, 'string')
  assert.equal(info.rpcProtocolVersion, '/ipfscluster/1.0/rpc')
  assert.ok(Array.isArray(info.addresses))
  assert.equal(info.ipfs.id, peerId)
})

await step('pin with options', async () => {
  const expireAt = new Date(Date.now() + 3600 * 1000)
  const pin = await cluster.pin(first, {
    name: 'js-first',
    mode: 'recursive',
    replicationFactorMin: 1,
    replicationFactorMax: 1,
    userAllocations: [peerId],
    expireAt,
    metadata: { app: 'js', n: '1' }
  })
  assert.equal(pin.cid, first)
  assert.equal(pin.name, 'js-first')
  assert.equal(pin.mode, 'recursive')
  assert.equal(pin.type, 'pin')
  assert.equal(pin.replicationFactorMin, 1)
  assert.equal(pin.replicationFactorMax, 1)
  assert.deepEqual(pin.userAllocations, [peerId])
  assert.deepEqual(pin.allocations, [peerId])
  assert.deepEqual(pin.metadata, { app: 'js', n: '1' })
  assert.equal(pin.maxDepth, -1)
  assert.equal(pin.expireAt.getTime(), expireAt.getTime())
})

await step('pin an /ipfs/ path', async () => {
  const pin = await cluster.pin(`/ipfs/${second}`, { name: 'js-second' })
  assert.equal(pin.cid, second)
  assert.equal(pin.name, 'js-second')
  assert.deepEqual(pin.allocations, [])
  assert.equal(pin.expireAt.getTime(), new Date('0001-01-01T00:00:00Z').getTime())
})

await step('status', async () => {
  const status = await cluster.status(first)
  assert.equal(status.cid, first)
  assert.equal(status.name, 'js-first')
  const peer = status.peerMap[peerId]
  assert.ok(inProgress.includes(peer.status), peer.status)
  assert.equal(peer.ipfsPeerId, peerId)
  assert.ok(!isNaN(peer.timestamp))
  const local = await cluster.status(first, { local: true })
  assert.equal(local.cid, first)
})

await step('status of an unknown CID is unpinned', async () => {
  const status = await cluster.status(unknown)
  assert.equal(status.peerMap[peerId].status, 'unpinned')
})

await step('statusAll', async () => {
  const all = await cluster.statusAll()
  const cids = all.map(s => s.cid)
  assert.ok(cids.includes(first) && cids.includes(second), cids.join(','))
  const some = await cluster.statusAll({ cids: [second, unknown] })
  assert.deepEqual(some.map(s => s.cid), [second, unknown])
  assert.equal(some[1].peerMap[peerId].status, 'unpinned')
  const filtered = await cluster.statusAll({ filter: inProgress })
  assert.ok(filtered.length >= 2)
})

await step('statusAll with nothing to list (200, empty body)', async () => {
  const none = await cluster.statusAll({ filter: 'unpinned' })
  assert.deepEqual(none, [])
})

await step('allocation', async () => {
  const pin = await cluster.allocation(first)
  assert.equal(pin.cid, first)
  assert.equal(pin.name, 'js-first')
  assert.deepEqual(pin.metadata, { app: 'js', n: '1' })
})

await step('recover', async () => {
  const status = await cluster.recover(first)
  assert.equal(status.cid, first)
  assert.ok(inProgress.includes(status.peerMap[peerId].status))
  const local = await cluster.recover(first, { local: true })
  assert.equal(local.cid, first)
})

await step('metricNames', async () => {
  const names = await cluster.metricNames()
  assert.ok(Array.isArray(names) && names.includes('pinqueue'), JSON.stringify(names))
})

await step('peerList', async () => {
  const peers = await cluster.peerList()
  assert.equal(peers.length, 1)
  assert.equal(peers[0].id, peerId)
})

await step('unpin, by CID and by path', async () => {
  const removed = await cluster.unpin(first)
  assert.equal(removed.cid, first)
  assert.equal(removed.name, 'js-first')
  const byPath = await cluster.unpin(`/ipfs/${second}`)
  assert.equal(byPath.cid, second)
  const status = await cluster.status(first)
  assert.equal(status.peerMap[peerId].status, 'unpinned')
})

await step('unpin of a CID that is not pinned is a 404', async () => {
  await assert.rejects(cluster.unpin(first), e => e.response?.status === 404)
})

await step('add (CIDv1, raw leaves by default)', async () => {
  const text = `added by js ${seed}`
  const added = await cluster.add(new File([text], 'note.txt'))
  assert.equal(added.cid, cidOf(text))
  assert.equal(added.name, 'note.txt')
  const streamed = await cluster.add(new Blob([text]), { streamChannels: true })
  assert.equal(streamed.cid, cidOf(text))
  const status = await cluster.status(added.cid)
  assert.ok(inProgress.includes(status.peerMap[peerId].status), status.peerMap[peerId].status)
})

await step('addDirectory (wrapped)', async () => {
  const files = [new File(['one'], 'one.txt'), new File(['two'], 'two.txt')]
  const added = await cluster.addDirectory(files)
  assert.equal(added.length, 3)
  assert.deepEqual(added.slice(0, 2).map(a => a.cid), [cidOf('one'), cidOf('two')])
  assert.equal(added[2].name, '')
  assert.match(added[2].cid, /^bafybei/)
  const pin = await cluster.allocation(added[2].cid)
  assert.equal(pin.cid, added[2].cid)
})

await step('addCAR', async () => {
  const text = `carried by js ${seed}`
  const added = await cluster.addCAR(new Blob([carOf(text)]))
  assert.equal(added.cid, cidOf(text))
  await assert.rejects(cluster.addCAR(new Blob(['not a car'])), e => e.response?.status === 400)
})

await step('bad input is a 400', async () => {
  await assert.rejects(cluster.pin('not-a-cid'), e => e.response?.status === 400)
  await assert.rejects(cluster.pin(first, { mode: 'sideways' }), e => e.response?.status === 400)
})

console.log('all operations passed')
