// Drives pincluster's trustless gateway the way a verifying client does (issue #16): every
// response is parsed with @ipld/car, every block's hash is checked with
// @web3-storage/car-block-validator, the CAR's root and its depth-first block order are checked
// against the spec, and the verified bytes must equal the files a Kubo peer added.
//
// Usage: node gateway-client.mjs <gateway-url> <cases.json>; prints "all operations passed".
import { readFileSync } from 'node:fs'
import assert from 'node:assert/strict'
import { CarReader } from '@ipld/car'
import { validateBlock } from '@web3-storage/car-block-validator'
import * as dagPb from '@ipld/dag-pb'
import { UnixFS } from 'ipfs-unixfs'
import { CID } from 'multiformats/cid'

const [base, casesFile] = process.argv.slice(2)
const cases = JSON.parse(readFileSync(casesFile, 'utf8'))
const RAW = 0x55
const DAG_PB = 0x70

function step (name) {
  console.log(`- ${name}`)
}

/** Fetches a CAR, checks its headers and root, validates every block; returns the blocks in order. */
async function fetchCar (path, query, expectedRoot, { accept = true } = {}) {
  const url = `${base}${path}${query ? `?${query}` : ''}`
  const headers = accept ? { accept: 'application/vnd.ipld.car; version=1; order=dfs; dups=n' } : {}
  const response = await fetch(url, { headers })
  assert.equal(response.status, 200, `${url}: ${await response.clone().text()}`)
  const type = response.headers.get('content-type')
  assert.match(type, /^application\/vnd\.ipld\.car; ?version=1; ?order=dfs; ?dups=n$/, `content type of ${url}`)
  assert.equal(response.headers.get('x-content-type-options'), 'nosniff')
  assert.equal(response.headers.get('cache-control'), 'public, max-age=29030400, immutable')
  assert.ok(response.headers.get('etag')?.startsWith('"'), 'a strong etag')
  const reader = await CarReader.fromBytes(new Uint8Array(await response.arrayBuffer()))
  assert.equal(reader.version, 1)
  const roots = await reader.getRoots()
  assert.deepEqual(roots.map(String), [expectedRoot], 'the CAR names the requested root')
  const blocks = []
  const seen = new Set()
  for await (const block of reader.blocks()) {
    await validateBlock(block)
    assert.ok(!seen.has(String(block.cid)), `dups=n, yet ${block.cid} came twice`)
    seen.add(String(block.cid))
    blocks.push(block)
  }
  return blocks
}

function byCid (blocks) {
  return new Map(blocks.map(b => [String(b.cid), b]))
}

function links (block) {
  if (block.cid.code !== DAG_PB) return []
  return dagPb.decode(block.bytes).Links
}

function unixfs (block) {
  return UnixFS.unmarshal(dagPb.decode(block.bytes).Data)
}

/** The order a depth-first walk of `root` meets the blocks (each once), from the blocks given. */
function dfsOrder (root, map, descend = () => true) {
  const order = []
  const seen = new Set()
  const visit = (cid) => {
    const key = String(cid)
    if (seen.has(key)) return
    const block = map.get(key)
    assert.ok(block, `block ${key} is missing from the CAR`)
    seen.add(key)
    order.push(key)
    for (const link of links(block)) {
      if (descend(link)) visit(link.Hash)
    }
  }
  visit(CID.parse(root))
  return order
}

/** The bytes of the UnixFS file `cid` from the blocks given. */
function fileBytes (cid, map) {
  const parts = []
  const walk = (c) => {
    const block = map.get(String(c))
    assert.ok(block, `block ${c} of the file is missing`)
    if (block.cid.code === RAW) { parts.push(block.bytes); return }
    const node = unixfs(block)
    if (node.data && node.data.length > 0) parts.push(node.data)
    for (const link of links(block)) walk(link.Hash)
  }
  walk(cid)
  return Buffer.concat(parts)
}

async function wholeFile () {
  const { cid, file } = cases.file
  step(`a ${readFileSync(file).length} byte file as a CAR (dag-scope=all)`)
  const blocks = await fetchCar(`/ipfs/${cid}`, '', cid)
  assert.deepEqual(blocks.map(b => String(b.cid)), dfsOrder(cid, byCid(blocks)), 'depth-first order')
  assert.ok(fileBytes(cid, byCid(blocks)).equals(readFileSync(file)), 'the bytes Kubo added')
  assert.ok(blocks.length > 10, 'a multi-block file')

  step('the same with ?format=car and no Accept')
  const again = await fetchCar(`/ipfs/${cid}`, 'format=car', cid, { accept: false })
  assert.deepEqual(again.map(b => String(b.cid)), blocks.map(b => String(b.cid)))
}

async function entityBytes () {
  const { cid, file } = cases.file
  const content = readFileSync(file)
  const [from, to] = cases.range
  step(`dag-scope=entity with entity-bytes=${from}:${to}`)
  const blocks = await fetchCar(`/ipfs/${cid}`, `dag-scope=entity&entity-bytes=${from}:${to}`, cid)
  const map = byCid(blocks)
  assert.equal(String(blocks[0].cid), cid, 'the file root first')
  // Walk the tree from the root: a child that holds some byte of the range must be there (and
  // in depth-first order), one that does not must not.
  const order = []
  const parts = []
  const walk = (c, offset) => {
    const block = map.get(String(c))
    assert.ok(block, `block ${c} (at ${offset}) is needed for the range but missing`)
    order.push(String(c))
    if (block.cid.code === RAW) { parts.push([offset, block.bytes]); return }
    const node = unixfs(block)
    if (node.data && node.data.length > 0) parts.push([offset, node.data])
    let at = offset
    links(block).forEach((link, i) => {
      const size = Number(node.blockSizes[i])
      const overlaps = at <= to && at + size - 1 >= from
      if (overlaps) walk(link.Hash, at)
      else assert.ok(!map.has(String(link.Hash)), `block ${link.Hash} (bytes ${at}..${at + size - 1}) is outside the range`)
      at += size
    })
  }
  walk(CID.parse(cid), 0)
  assert.deepEqual(blocks.map(b => String(b.cid)), order, 'the range blocks in depth-first order')
  const have = Buffer.concat(parts.map(([, bytes]) => bytes))
  const start = parts[0][0]
  assert.ok(have.subarray(from - start, to - start + 1).equals(content.subarray(from, to + 1)), 'the range bytes')
  assert.ok(blocks.length < 10, `only the leaves of the range, got ${blocks.length} blocks`)
}

async function directory () {
  const { cid, files } = cases.dir
  step('a directory as a CAR')
  const blocks = await fetchCar(`/ipfs/${cid}`, '', cid)
  const map = byCid(blocks)
  assert.deepEqual(blocks.map(b => String(b.cid)), dfsOrder(cid, map), 'depth-first order')
  assert.equal(unixfs(blocks[0]).type, 'directory')
  const entries = links(blocks[0])
  assert.deepEqual(entries.map(l => l.Name).sort(), Object.keys(files).sort(), 'the entries Kubo added')
  for (const link of entries) {
    assert.ok(fileBytes(link.Hash, map).equals(readFileSync(files[link.Name])), `${link.Name} bytes`)
  }

  const [name, path] = Object.entries(files)[0]
  step(`a path through it: /ipfs/<dir>/${name}`)
  const through = await fetchCar(`/ipfs/${cid}/${encodeURIComponent(name)}`, '', cid)
  assert.equal(String(through[0].cid), cid, 'the directory first')
  const target = entries.find(l => l.Name === name).Hash
  assert.equal(String(through[1].cid), String(target), 'then the file')
  assert.ok(fileBytes(target, byCid(through)).equals(readFileSync(path)))

  step('dag-scope=entity on a flat directory is its one block')
  const listing = await fetchCar(`/ipfs/${cid}`, 'dag-scope=entity', cid)
  assert.deepEqual(listing.map(b => String(b.cid)), [cid])
}

async function hamt () {
  const { cid, count, entry, entryFile } = cases.hamt
  step(`a HAMT-sharded directory of ${count} files, dag-scope=entity`)
  const blocks = await fetchCar(`/ipfs/${cid}`, 'dag-scope=entity', cid)
  const map = byCid(blocks)
  for (const block of blocks) {
    assert.equal(unixfs(block).type, 'hamt-sharded-directory', `only shards, got ${block.cid}`)
  }
  assert.ok(blocks.length > 1, 'a sharded directory of several shards')
  assert.deepEqual(
    blocks.map(b => String(b.cid)),
    dfsOrder(cid, map, (link) => link.Name.length === 2),
    'the shards depth-first'
  )
  const names = blocks.flatMap(b => links(b).filter(l => l.Name.length > 2).map(l => l.Name.slice(2)))
  assert.equal(names.length, count, 'every entry is listed once')

  step(`a path into it: /ipfs/<hamt>/${entry}`)
  const through = await fetchCar(`/ipfs/${cid}/${encodeURIComponent(entry)}`, 'dag-scope=all', cid)
  assert.equal(String(through[0].cid), cid, 'the HAMT root first')
  let i = 0
  while (unixfs(through[i + 1]).type === 'hamt-sharded-directory') {
    const child = String(through[i + 1].cid)
    assert.ok(links(through[i]).some(l => l.Name.length === 2 && String(l.Hash) === child), `shard ${i + 1} hangs off shard ${i}`)
    i++
  }
  const holder = links(through[i]).find(l => l.Name.slice(2) === entry)
  assert.ok(holder, `the last shard on the way holds ${entry}`)
  assert.equal(String(through[i + 1].cid), String(holder.Hash), 'then the entry')
  assert.ok(fileBytes(holder.Hash, byCid(through)).equals(readFileSync(entryFile)), `${entry} bytes`)
  const shards = blocks.length
  assert.ok(i + 1 < shards, `only the shards on the way (${i + 1} of ${shards})`)
}

async function raw () {
  const { cid, file } = cases.small
  step('format=raw on a small block')
  const response = await fetch(`${base}/ipfs/${cid}?format=raw`)
  assert.equal(response.status, 200)
  assert.equal(response.headers.get('content-type'), 'application/vnd.ipld.raw')
  assert.equal(response.headers.get('etag'), `"${cid}.raw"`)
  assert.equal(response.headers.get('x-content-type-options'), 'nosniff')
  assert.equal(response.headers.get('cache-control'), 'public, max-age=29030400, immutable')
  const bytes = new Uint8Array(await response.arrayBuffer())
  const parsed = CID.parse(cid)
  await validateBlock({ cid: parsed, bytes })
  const content = parsed.code === RAW ? Buffer.from(bytes) : Buffer.from(UnixFS.unmarshal(dagPb.decode(bytes).Data).data)
  assert.ok(content.equals(readFileSync(file)), 'the block holds the file')

  step('Accept: application/vnd.ipld.raw, and HEAD')
  const byAccept = await fetch(`${base}/ipfs/${cid}`, { headers: { accept: 'application/vnd.ipld.raw' } })
  assert.equal(byAccept.status, 200)
  assert.deepEqual(new Uint8Array(await byAccept.arrayBuffer()), bytes)
  const head = await fetch(`${base}/ipfs/${cid}?format=raw`, { method: 'HEAD' })
  assert.equal(head.status, 200)
  assert.equal(head.headers.get('content-length'), String(bytes.length))

  step('If-None-Match with the etag: 304')
  const cached = await fetch(`${base}/ipfs/${cid}?format=raw`, { headers: { 'if-none-match': `"${cid}.raw"` } })
  assert.equal(cached.status, 304)
}

try {
  await wholeFile()
  await entityBytes()
  await directory()
  await hamt()
  await raw()
  console.log('all operations passed')
} catch (error) {
  console.error(error)
  process.exit(1)
}
