// Drives every Pinning Service API operation with the official JS client
// (@ipfs-shipyard/pinning-service-client), unmodified, against a running
// daemon. Usage: node psa-client.mjs BASE_URL TOKEN PEER_ID CID... (at least 4 CIDs)
// Prints "all operations passed" and exits 0, or exits 1 naming what failed.
import assert from 'node:assert/strict'
import { Configuration, RemotePinningServiceClient, Status, TextMatchingStrategy } from '@ipfs-shipyard/pinning-service-client'
import { step } from './step.mjs'

const [base, token, peerId, ...cids] = process.argv.slice(2)
assert.ok(cids.length >= 4, 'need at least 4 CIDs')
const replacement = cids.pop()
const client = new RemotePinningServiceClient(new Configuration({ endpointUrl: base, accessToken: token }))
const everyStatus = [Status.Queued, Status.Pinning, Status.Pinned, Status.Failed]

// This client version throws the fetch Response itself on a non-2xx status.
const statusOf = e => e?.status ?? e?.response?.status

await step('pinsPost creates pin objects (202, queued, requestid = CID)', async () => {
  for (const [i, cid] of cids.entries()) {
    const raw = await client.pinsPostRaw({ pin: { cid, name: `js-${i}`, meta: { app: 'js', i: String(i) } } })
    assert.equal(raw.raw.status, 202)
    const status = await raw.value()
    assert.equal(status.requestid, cid)
    assert.equal(status.pin.cid, cid)
    assert.ok(['queued', 'pinning'].includes(status.status), status.status)
    assert.ok(status.created instanceof Date && !isNaN(status.created))
    assert.ok(status.delegates.length >= 1)
    assert.ok(status.delegates.every(d => d.endsWith(`/p2p/${peerId}`)))
  }
})

await step('pinsRequestidGet reads one back', async () => {
  const status = await client.pinsRequestidGet({ requestid: cids[0] })
  assert.equal(status.pin.name, 'js-0')
  assert.deepEqual(status.pin.meta, { app: 'js', i: '0' })
})

await step('pinsGet pages with before = oldest created, never skipping or repeating', async () => {
  const seen = new Set()
  let before
  for (;;) {
    const page = await client.pinsGet({ status: everyStatus, limit: 7, before })
    for (const r of page.results) {
      assert.ok(!seen.has(r.requestid), `repeated ${r.requestid}`)
      seen.add(r.requestid)
    }
    assert.equal(page.count >= page.results.length, true)
    if (page.count === page.results.length) break
    before = page.results[page.results.length - 1].created
  }
  assert.equal(seen.size, cids.length)
})

await step('pinsGet filters: meta object (meta[k]=v), name iexact, cid list, status', async () => {
  const byMeta = await client.pinsGet({ meta: { app: 'js', i: '2' } })
  assert.equal(byMeta.count, 1)
  assert.equal(byMeta.results[0].requestid, cids[2])
  const byJsonMeta = await client.pinsGet({ meta: JSON.stringify({ app: 'js' }), limit: 1000 })
  assert.equal(byJsonMeta.count, cids.length)
  const byName = await client.pinsGet({ name: 'JS-1', match: TextMatchingStrategy.Iexact })
  assert.equal(byName.count, 1)
  assert.equal(byName.results[0].requestid, cids[1])
  const partial = await client.pinsGet({ name: 'js-', match: TextMatchingStrategy.Partial, limit: 1000 })
  assert.equal(partial.count, cids.length)
  const byCid = await client.pinsGet({ cid: [cids[0], cids[1]] })
  assert.equal(byCid.count, 2)
  const pinnedOnly = await client.pinsGet({})
  assert.equal(pinnedOnly.count, 0, 'no filter means pinned only, and nothing is pinned yet')
})

await step('pinsRequestidPost replaces a pin (202, new requestid, old one gone)', async () => {
  const raw = await client.pinsRequestidPostRaw({ requestid: cids[0], pin: { cid: replacement, name: 'replaced' } })
  assert.equal(raw.raw.status, 202)
  const status = await raw.value()
  assert.equal(status.requestid, replacement)
  await assert.rejects(client.pinsRequestidGet({ requestid: cids[0] }), e => statusOf(e) === 404)
  cids[0] = replacement
})

await step('pinsRequestidDelete removes every pin (202, empty body)', async () => {
  for (const cid of cids) {
    const raw = await client.pinsRequestidDeleteRaw({ requestid: cid })
    assert.equal(raw.raw.status, 202)
    assert.equal(await raw.raw.text(), '')
  }
  const left = await client.pinsGet({ status: everyStatus })
  assert.equal(left.count, 0)
  assert.deepEqual(left.results, [])
})

await step('errors come back as the spec Failure body', async () => {
  let failure
  try {
    await client.pinsRequestidGet({ requestid: cids[1] })
  } catch (e) {
    failure = e
  }
  assert.equal(statusOf(failure), 404)
  const body = await (failure.response ?? failure).json()
  assert.equal(body.error.reason, 'NOT_FOUND')
  const bad = new RemotePinningServiceClient(new Configuration({ endpointUrl: base, accessToken: 'wrong' }))
  await assert.rejects(bad.pinsGet({}), e => statusOf(e) === 401)
})

console.log('all operations passed')
