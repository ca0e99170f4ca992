//! Writes the hand-chosen seed inputs of every fuzz target into `corpus/<target>/seed-*`:
//! `cargo run -p pincluster-fuzz --example seeds`. Real blocks, CARs, Bitswap messages and
//! tokens are built here rather than kept as opaque files, so the seeds can be regenerated.

use std::path::Path;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use cid::Cid;
use rust_unixfs::dir::builder::{BufferingTreeBuilder, TreeOptions};
use rust_unixfs::file::adder::{BalancedCollector, Chunker, FileAdder};

const PEER: &str = "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA";
const CID_V0: &str = "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG";
const CID_V1: &str = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi";
const BLOCK_SEPARATOR: &[u8] = b"|BLK|";

fn write(target: &str, name: &str, data: impl AsRef<[u8]>) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus").join(target);
    std::fs::create_dir_all(&dir).expect("corpus folder");
    std::fs::write(dir.join(format!("seed-{name}")), data).expect("seed written");
}

/// A UnixFS file of `content` in `chunk`-byte leaves under nodes of `fanout` links: (cid, block)
/// in post order, the root last.
fn file(content: &[u8], chunk: usize, fanout: usize) -> Vec<(Cid, Vec<u8>)> {
    let mut adder = FileAdder::builder()
        .with_chunker(Chunker::Size(chunk))
        .with_collector(BalancedCollector::with_branching_factor(fanout))
        .build();
    let mut blocks = Vec::new();
    let mut fed = 0;
    while fed < content.len() {
        let (produced, taken) = adder.push(&content[fed..]);
        blocks.extend(produced);
        fed += taken;
    }
    blocks.extend(adder.finish());
    blocks
}

/// A directory `a/b` holding a small file `c`, over `file`: its blocks, root last.
fn directory(file_root: Cid, size: u64) -> Vec<(Cid, Vec<u8>)> {
    let mut tree = BufferingTreeBuilder::new(TreeOptions::default());
    tree.put_link("a/b/c", file_root, size).expect("link");
    tree.put_link("a/other", file_root, size).expect("link");
    tree.build().map(|node| node.expect("node")).map(|n| (n.cid, n.block.into_vec())).collect()
}

fn varint(n: usize) -> Vec<u8> {
    let mut buf = unsigned_varint::encode::usize_buffer();
    unsigned_varint::encode::usize(n, &mut buf).to_vec()
}

/// A CAR v1 of `blocks` with these roots.
fn car(roots: &[Cid], blocks: &[(Cid, Vec<u8>)]) -> Vec<u8> {
    // dag-cbor {"roots": [tag 42 links], "version": 1}, keys in canonical order.
    let mut header = vec![0xa2, 0x65];
    header.extend(b"roots");
    header.push(0x80 + u8::try_from(roots.len()).expect("few roots"));
    for root in roots {
        let mut link = vec![0x00];
        link.extend(root.to_bytes());
        header.extend([0xd8, 0x2a, 0x58, u8::try_from(link.len()).expect("short CID")]);
        header.extend(link);
    }
    header.push(0x67);
    header.extend(b"version");
    header.push(0x01);
    let mut out = varint(header.len());
    out.extend(header);
    for (cid, data) in blocks {
        let cid = cid.to_bytes();
        out.extend(varint(cid.len() + data.len()));
        out.extend(cid);
        out.extend(data);
    }
    out
}

/// A CAR v2 around the CAR v1 `inner`, without an index.
fn car_v2(inner: &[u8]) -> Vec<u8> {
    let mut out = vec![0x0a, 0xa1, 0x67];
    out.extend(b"version");
    out.push(0x02);
    let offset = (out.len() + 40) as u64;
    out.extend([0u8; 16]);
    out.extend(offset.to_le_bytes());
    out.extend((inner.len() as u64).to_le_bytes());
    out.extend(0u64.to_le_bytes());
    out.extend(inner);
    out
}

fn proto_bytes(out: &mut Vec<u8>, field: usize, bytes: &[u8]) {
    out.extend(varint((field << 3) | 2));
    out.extend(varint(bytes.len()));
    out.extend(bytes);
}

fn proto_uint(out: &mut Vec<u8>, field: usize, value: usize) {
    out.extend(varint(field << 3));
    out.extend(varint(value));
}

fn token(header: &str, claims: &str, key: &[u8]) -> String {
    let message = format!("{}.{}", URL_SAFE_NO_PAD.encode(header), URL_SAFE_NO_PAD.encode(claims));
    let key = jsonwebtoken::EncodingKey::from_secret(key);
    let signature = jsonwebtoken::crypto::sign(message.as_bytes(), &key, jsonwebtoken::Algorithm::HS256).expect("sign");
    format!("{message}.{signature}")
}

fn main() {
    // The Pinning Service API's `GET /pins`, from the spec's examples and our clients.
    for (name, query) in [
        ("empty", ""),
        ("cids", &format!("cid={CID_V0},{CID_V1}&limit=10") as &str),
        ("status", "status=queued,pinning,pinned,failed"),
        ("status-encoded", "status=failed%2Cpinned&limit=1000"),
        ("name", "name=PreciousData.pdf&match=ipartial"),
        ("times", "before=2020-07-27T17:32:28Z&after=2020-07-27T17:32:28.100000001%2B02:00"),
        ("meta-json", "meta=%7B%22app_id%22%3A%2299986338-1113-4706-8302-4420da6158aa%22%7D"),
        ("meta-js", "meta%5Bapp%5D=1&meta%5Bvendor%5D=x"),
        ("bad", "limit=0&status=done&match=fuzzy&cid=xyz"),
    ] {
        write("psa_query", name, query);
    }
    for (name, body) in [
        ("minimal", format!(r#"{{"cid":"{CID_V0}"}}"#)),
        (
            "full",
            format!(
                r#"{{"cid":"{CID_V1}","name":"PreciousData.pdf","origins":["/ip4/203.0.113.142/tcp/4001/p2p/{PEER}","/dnsaddr/example.com/p2p/{PEER}"],"meta":{{"app_id":"99986338"}}}}"#
            ),
        ),
        ("null", r#"{"cid":"x","name":null}"#.to_string()),
        ("unknown", format!(r#"{{"cid":"{CID_V0}","extra":1}}"#)),
        ("array", "[1,2,3]".to_string()),
    ] {
        write("psa_body", name, body);
    }

    // The REST API's options.
    for (name, query) in [
        (
            "go-client",
            "name=&mode=&replication-min=0&replication-max=0&shard-size=0&user-allocations=&expire-at=&pin-update=&origins=&meta-app=x",
        ),
        (
            "pin",
            &format!("name=x&mode=direct&replication=2&expire-in=1h30m&user-allocations={PEER}&origins=/ip4/1.2.3.4/tcp/4001/p2p/{PEER}&pin-update={CID_V0}") as &str,
        ),
        ("expire-at", "expire-at=2030-01-02T03:04:05.123456789Z&replication-min=1&replication-max=3"),
        ("status", &format!("filter=pinned,pin_error,unpinned&cids={CID_V0},{CID_V1}&local=true") as &str),
        ("add", "cid-version=1&raw-leaves=false&chunker=size-1024&wrap-with-directory=true&stream-channels=false&progress=1&hidden=T"),
        ("add-car", "format=car&no-copy=false&hash=sha2-256&layout=balanced&shard=false"),
        ("allocations", "filter=pin,meta-pin"),
        ("durations", "expire-in=1.5h2m300ms4us5µs"),
    ] {
        write("rest_options", name, query);
    }
    let boundary = "------------------------abcdef0123456789";
    let mut body = String::new();
    for (path, kind, content) in [
        ("dir", "application/x-directory", ""),
        ("dir%2Fa.txt", "application/octet-stream", "hello\n"),
        ("dir%2F.hidden", "text/plain", "secret"),
        ("b%C3%A9.bin", "application/octet-stream", "\r\n--not-a-boundary\r\n"),
    ] {
        body.push_str(&format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{path}\"\r\nContent-Type: {kind}\r\n\r\n{content}\r\n"
        ));
    }
    body.push_str(&format!("--{boundary}--\r\n"));
    let content_type = format!("multipart/form-data; boundary={boundary}\n");
    for split in [0u8, 1, 7, 64] {
        write(
            "add_multipart",
            &format!("files-split{split}"),
            [&[split][..], content_type.as_bytes(), body.as_bytes()].concat(),
        );
    }
    let symlink = format!(
        "--{boundary}\r\nContent-Disposition: file; filename=\"link\"\r\nContent-Type: application/symlink\r\n\r\ntarget\r\n--{boundary}--\r\n"
    );
    write("add_multipart", "symlink", [&[0u8][..], content_type.as_bytes(), symlink.as_bytes()].concat());

    // Authorization headers and tokens (users alice:secret and bob:hunter2).
    let alice = token(r#"{"alg":"HS256","typ":"JWT"}"#, r#"{"iss":"alice","iat":1700000000}"#, b"secret");
    let expired = token(r#"{"alg":"HS256"}"#, r#"{"iss":"bob","exp":1}"#, b"hunter2");
    let basic = STANDARD.encode("alice:secret");
    for (name, headers) in [
        ("basic", format!("Basic {basic}")),
        ("basic-wrong", format!("basic {}", STANDARD.encode("bob:nope"))),
        ("bearer", format!("Bearer {alice}")),
        ("bearer-expired", format!("BEARER  {expired} ")),
        ("both", format!("Bearer {alice}\nBasic {basic}\nDigest x")),
        (
            "none-alg",
            format!(
                "Bearer {}.{}.",
                URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#),
                URL_SAFE_NO_PAD.encode(r#"{"iss":"alice"}"#)
            ),
        ),
    ] {
        write("auth_headers", name, headers);
    }
    for (name, claims) in [
        ("cluster", "{\"alg\":\"HS256\",\"typ\":\"JWT\"}\n{\"iss\":\"alice\"}"),
        ("ours", "{\"alg\":\"HS256\",\"typ\":\"JWT\"}\n{\"iss\":\"alice\",\"iat\":1700000000,\"exp\":2000000000}"),
        ("nbf", "{\"alg\":\"HS384\"}\n{\"iss\":\"alice\",\"nbf\":1.5e9,\"exp\":1e300}\nHS384"),
        ("expired", "{\"alg\":\"HS512\"}\n{\"iss\":\"alice\",\"exp\":-1}\nHS512"),
        ("wrong-types", "{\"alg\":\"HS256\"}\n{\"iss\":7,\"exp\":\"soon\"}"),
    ] {
        write("jwt_claims", name, claims);
    }

    // Blocks: a three-leaf file, a one-block file, and a directory above them.
    let content: Vec<u8> = (0..700u32).map(|i| (i % 251) as u8).collect();
    let big = file(&content, 256, 2);
    let small = file(b"hello world\n", 1024, 174);
    let (big_root, big_block) = big.last().cloned().expect("root");
    let (small_root, small_block) = small.last().cloned().expect("root");
    let dir = directory(small_root, 12);
    let (dir_root, dir_block) = dir.last().cloned().expect("root");

    let mut big_car = big.clone();
    big_car.rotate_right(1);
    let car_v1 = car(&[big_root], &big_car);
    write("car", "v1-one-push", [&[0u8][..], &car_v1].concat());
    write("car", "v1-pushes-of-7", [&[7u8][..], &car_v1].concat());
    write(
        "car",
        "v1-two-roots",
        [&[0u8][..], &car(&[small_root, dir_root], &[small.clone(), dir.clone()].concat())].concat(),
    );
    write("car", "v2", [&[13u8][..], &car_v2(&car_v1)].concat());
    let identity = Cid::new_v1(0x55, cid::multihash::Multihash::<64>::wrap(0, b"inline").expect("identity"));
    write("car", "identity-block", [&[0u8][..], &car(&[identity], &[(identity, b"inline".to_vec())])].concat());

    // block_links: the first byte picks the codec (0 dag-pb, 3 dag-cbor, 5 dag-json, 6 raw).
    write("block_links", "dag-pb-file", [&[0u8][..], &big_block].concat());
    write("block_links", "dag-pb-dir", [&[0u8][..], &dir_block].concat());
    write("block_links", "dag-pb-leaf", [&[0u8][..], &small_block].concat());
    let mut cbor = vec![0xa2, 0x61, b'a', 0xd8, 0x2a, 0x58, 0x23, 0x00];
    cbor.extend(big_root.to_bytes());
    cbor.extend([0x61, b'b', 0x82, 0x01, 0xf6]);
    write("block_links", "dag-cbor", [&[3u8][..], &cbor].concat());
    write(
        "block_links",
        "dag-json",
        [&[5u8][..], format!(r#"{{"a":{{"/":"{CID_V1}"}},"b":[1,null]}}"#).as_bytes()].concat(),
    );

    // unixfs: a mode byte, two range bytes, then blocks, the root first.
    let join = |blocks: &[(Cid, Vec<u8>)]| -> Vec<u8> {
        let mut out = Vec::new();
        for (i, (_, data)) in blocks.iter().rev().enumerate() {
            if i > 0 {
                out.extend(BLOCK_SEPARATOR);
            }
            out.extend(data);
        }
        out
    };
    let mut dir_and_file = dir.clone();
    dir_and_file.splice(0..0, small.clone());
    for (name, mode, blocks) in [
        ("file-all", 0x02u8, &big),
        ("file-entity-range", 0x09, &big),
        ("file-block", 0x00, &big),
        ("dir-path-abc", 0x31, &dir_and_file),
        ("dir-entity-dups", 0x05, &dir_and_file),
    ] {
        write("unixfs", name, [&[mode, 2, 3][..], &join(blocks)].concat());
    }

    // Bitswap: a wantlist, a 1.2 block payload, a 1.0 block and presences.
    let mut want = Vec::new();
    proto_bytes(&mut want, 1, &big_root.to_bytes());
    proto_uint(&mut want, 2, 1);
    proto_uint(&mut want, 4, 1);
    proto_uint(&mut want, 5, 1);
    let mut cancel = Vec::new();
    proto_bytes(&mut cancel, 1, &Cid::try_from(CID_V1).expect("cid").to_bytes());
    proto_uint(&mut cancel, 3, 1);
    let mut list = Vec::new();
    proto_bytes(&mut list, 1, &want);
    proto_bytes(&mut list, 1, &cancel);
    proto_uint(&mut list, 2, 1);
    let mut wantlist = Vec::new();
    proto_bytes(&mut wantlist, 1, &list);
    write("bitswap", "wantlist", &wantlist);
    let mut payload = Vec::new();
    proto_bytes(&mut payload, 1, &[0x01, 0x55, 0x12, 0x20]);
    proto_bytes(&mut payload, 2, b"hello world");
    let mut blocks = Vec::new();
    proto_bytes(&mut blocks, 3, &payload);
    proto_bytes(&mut blocks, 2, &small_block);
    write("bitswap", "blocks", &blocks);
    let mut presences = Vec::new();
    for (cid, kind) in [(small_root, 0), (dir_root, 1)] {
        let mut presence = Vec::new();
        proto_bytes(&mut presence, 1, &cid.to_bytes());
        proto_uint(&mut presence, 2, kind);
        proto_bytes(&mut presences, 4, &presence);
    }
    proto_uint(&mut presences, 5, 1024);
    write("bitswap", "presences", &presences);
    let mut payload = Vec::new();
    proto_bytes(&mut payload, 1, &[0x01, 0x55, 0x1e, 0x20]);
    proto_bytes(&mut payload, 2, b"x");
    let mut other_hash = Vec::new();
    proto_bytes(&mut other_hash, 3, &payload);
    write("bitswap", "blake3-block", &other_hash);
}
