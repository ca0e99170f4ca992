//! UnixFS and CAR import through the public API: CIDs equal a real Kubo 0.22 peer's and Kubo's
//! published sharness vectors, Kubo fetches what we imported, CAR streams are verified, and
//! imported blocks are safe from GC until their protection goes. The Kubo tests need
//! `scripts/setup-test-deps.sh` (they fail with that advice when the venv is missing).
#![allow(clippy::unwrap_used)] // Unwrap is fine in tests.

mod common;

use std::time::Duration;

use common::{random_file, start_node, KuboPeer};
use pincluster_ipfs::{AddedEntry, FetchOptions, ImportOptions, Imported, IpfsError, Node};
use pincluster_model::{Cid, PinMode};

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;

/// One import: files (path, content) in order, then declared directories; file contents are
/// written in `piece`-byte writes. Returns the file entries and the finished import.
async fn import(
    node: &Node,
    options: ImportOptions,
    files: &[(&str, &[u8])],
    dirs: &[&str],
    piece: usize,
) -> (Vec<AddedEntry>, Imported) {
    let mut importer = node.importer(options).unwrap();
    let mut added = Vec::new();
    for (path, content) in files {
        importer.start_file(path).unwrap();
        for part in content.chunks(piece.max(1)) {
            importer.write(part).await.unwrap();
        }
        added.push(importer.finish_file().await.unwrap());
    }
    for dir in dirs {
        importer.add_directory(dir).unwrap();
    }
    let imported = importer.finish().await.unwrap();
    (added, imported)
}

fn cid(text: &str) -> Cid {
    text.parse().unwrap()
}

/// `(name, cid)` pairs of entries, for whole-list comparisons.
fn names(entries: &[AddedEntry]) -> Vec<(String, String)> {
    entries.iter().map(|e| (e.name.clone(), e.cid.to_string())).collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter().map(|(n, c)| (n.to_string(), c.to_string())).collect()
}

/// Kubo's sharness vectors (t0040-add-and-cat.sh): the `planets` directory under every option
/// combination Kubo's wrapper cannot set, the nested `moons` tree with Kubo's output order, and
/// single files (empty, raw empty, CIDv1 raw leaves).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_kubo_vectors() {
    let dir = tempfile::tempdir().unwrap();
    let node = start_node(dir.path(), 31).await;
    let planets: [(&str, &[u8]); 2] =
        [("planets/mars.txt", b"Hello Mars!\n"), ("planets/venus.txt", b"Hello Venus!\n")];
    let variants = [
        (
            ImportOptions::default(),
            "QmPrrHqJzto9m7SyiRzarwkqPcCSsKR2EB1AyqJfe8L8tN",
            "QmU5kp3BH3B8tnWUU2Pikdb2maksBNkb92FHRr56hyghh4",
            "QmWSgS32xQEcXMeqd3YPJLrNBLSdsfYCep2U7CFkyrjXwY",
        ),
        (
            ImportOptions { raw_leaves: true, ..ImportOptions::default() },
            "bafkreibmlvvgdyihetgocpof6xk64kjjzdeq2e4c7hqs3krdheosk4tgj4",
            "bafkreihfsphazrk2ilejpekyltjeh5k4yvwgjuwg26ueafohqioeo3sdca",
            "QmfWfQfKCY5Ukv9peBbxM5vqWM9BzmqUSXvdCgjT2wsiBT",
        ),
        (
            ImportOptions::kubo(1, None),
            "bafkreibmlvvgdyihetgocpof6xk64kjjzdeq2e4c7hqs3krdheosk4tgj4",
            "bafkreihfsphazrk2ilejpekyltjeh5k4yvwgjuwg26ueafohqioeo3sdca",
            "bafybeih7e5dmkyk25up5vxug4q3hrg2fxbzf23dfrac2fns5h7z4aa7ioi",
        ),
        (
            ImportOptions::kubo(1, Some(false)),
            "bafybeiawta2ntdmsy24aro35w3homzl4ak7svr3si7l7gesvq4erglyye4",
            "bafybeicvkvhs2fr75ynebtdjqpgm4g2fc63abqbmysupwpmcjl4gx7mzrm",
            "bafybeif5tuep5ap2d7zyhbktucey75aoacxufgt6i3v4gebmixyipnyp7y",
        ),
    ];
    for (options, mars, venus, planets_cid) in variants {
        let (files, imported) = import(&node, options, &planets, &[], 5).await;
        assert_eq!(names(&files), pairs(&[("planets/mars.txt", mars), ("planets/venus.txt", venus)]), "{options:?}");
        assert_eq!(names(&imported.entries), pairs(&[("planets", planets_cid)]), "{options:?}");
        assert_eq!(imported.roots, vec![cid(planets_cid)]);
    }

    // Nested tree: files in the order given, directories post-order by name, the root last.
    let moons: [(&str, &[u8]); 3] = [
        ("moons/jupiter/europa.txt", b"Hello Europa!\n"),
        ("moons/mercury.txt", b"hey youre no moon!\n"),
        ("moons/saturn/titan.txt", b"Hello Titan!\n"),
    ];
    let (files, imported) = import(&node, ImportOptions::default(), &moons, &[], 1000).await;
    assert_eq!(
        names(&files),
        pairs(&[
            ("moons/jupiter/europa.txt", "Qmbjg7zWdqdMaK2BucPncJQDxiALExph5k3NkQv5RHpccu"),
            ("moons/mercury.txt", "QmUJjVtnN8YEeYcS8VmUeWffTWhnMQAkk5DzZdKnPhqUdK"),
            ("moons/saturn/titan.txt", "QmZzppb9WHn552rmRqpPfgU5FEiHH6gDwi3MrB9cTdPwdb"),
        ])
    );
    assert_eq!(
        names(&imported.entries),
        pairs(&[
            ("moons/jupiter", "QmS5mZddhFPLWFX3w6FzAy9QxyYkaxvUpsWCtZ3r7jub9J"),
            ("moons/saturn", "QmaMagZT4rTE7Nonw8KGSK4oe1bh533yhZrCo1HihSG8FK"),
            ("moons", "QmVKvomp91nMih5j6hYBA8KjbiaYvEetU2Q7KvtZkLe9nQ"),
        ])
    );

    // CIDv1 directory of two raw-leaf files (t0040's --to-files case).
    let test_dir: [(&str, &[u8]); 2] = [("test/mfs1.txt", b"file1\n"), ("test/mfs2.txt", b"file2\n")];
    let (files, imported) = import(&node, ImportOptions::kubo(1, None), &test_dir, &[], 3).await;
    assert_eq!(files[0].cid, cid("bafkreihm3rktn5z33luic3youqdsn326toaq3ekesmdvsa53sbrd3f5r3a"));
    assert_eq!(files[1].cid, cid("bafkreidh5zkhr2vnwa2luwmuj24xo6l3jhfgvkgtk5cyp43oxs7owzpxby"));
    assert_eq!(imported.roots, vec![cid("bafybeic7xwqwovt4g4bax6d3udp6222i63vj2rblpbim7uy2uw4a5gahha")]);

    // Single files: Kubo's empty file, raw empty file, and a small file; an empty directory.
    let (files, imported) =
        import(&node, ImportOptions::default(), &[("zero", b""), ("hello.txt", b"Hello Worlds!\n")], &[], 1).await;
    assert_eq!(
        names(&files),
        pairs(&[
            ("zero", "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH"),
            ("hello.txt", "QmVr26fY1tKyspEJBniVhqxQeEjhF78XerGiqWAwraVLQH"),
        ])
    );
    assert_eq!((files[0].bytes, files[1].bytes), (0, 14));
    assert!(imported.entries.is_empty(), "no directory: {:?}", imported.entries);
    assert_eq!(imported.roots, vec![files[0].cid, files[1].cid]);

    let raw = ImportOptions { raw_leaves: true, ..ImportOptions::default() };
    let (files, _) = import(&node, raw, &[("zero", b"")], &[], 1).await;
    assert_eq!(files[0].cid, cid("bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"));
    assert_eq!((files[0].size, files[0].bytes), (0, 0));

    let (_, imported) = import(&node, ImportOptions::default(), &[], &["empty"], 1).await;
    assert_eq!(names(&imported.entries), pairs(&[("empty", "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn")]));
    assert_eq!(imported.entries[0].size, 4, "an empty directory is 4 bytes");
    node.shutdown().await;
}

/// Issue 6: the same files and tree added by a real Kubo peer and by us give the same CIDs:
/// empty, 1 byte, exactly one chunk, one chunk + 1, a 50 MiB file (more than 174 chunks, so two
/// levels of links), a nested tree with an empty file and an empty directory, and that tree
/// wrapped (Kubo adds the folder holding it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cids_equal_kubo_for_files_and_trees() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input");
    std::fs::create_dir_all(&input).unwrap();
    let mut kubo = KuboPeer::start(&dir.path().join("kubo")).await;
    let node = start_node(&dir.path().join("node"), 32).await;

    let sizes = [0, 1, 256 * KIB, 256 * KIB + 1, 50 * MIB];
    for (i, size) in sizes.into_iter().enumerate() {
        let path = input.join(format!("file-{size}"));
        let content = random_file(&path, size, 100 + i as u64);
        let expected = kubo.add(&path).await;
        // Odd write sizes exercise the chunker's buffering.
        let (files, imported) = import(&node, ImportOptions::default(), &[("file", &content)], &[], 100_003).await;
        assert_eq!(files[0].cid, expected, "file of {size} bytes");
        assert_eq!(files[0].bytes, size as u64);
        assert!(files[0].size >= size as u64, "{:?}", files[0]);
        assert_eq!(imported.roots, vec![expected]);
        if size == 50 * MIB {
            // 200 leaves: two link nodes under the root.
            assert_eq!(imported.blocks, 200 + 2 + 1, "distinct blocks written");
            let out = dir.path().join("out.bin");
            node.export_file(&expected, &out).await.unwrap();
            assert!(std::fs::read(&out).unwrap() == content, "bytes differ");
            std::fs::remove_file(&out).unwrap();
        }
        std::fs::remove_file(&path).unwrap();
    }

    // A nested tree, written on disk for Kubo and imported by us.
    let tree: Vec<(&str, Vec<u8>)> = vec![
        ("tree/a.txt", b"alpha\n".to_vec()),
        ("tree/b/big.bin", vec![7u8; 600 * KIB]),
        ("tree/b/c/deep.txt", b"deep\n".to_vec()),
        ("tree/b/empty.txt", Vec::new()),
        ("tree/z.bin", vec![1u8; 3]),
    ];
    let wrap = dir.path().join("wrap");
    for (path, content) in &tree {
        let file = wrap.join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, content).unwrap();
    }
    std::fs::create_dir_all(wrap.join("tree/b/void")).unwrap();
    let kubo_tree = kubo.add(&wrap.join("tree")).await;
    let kubo_wrap = kubo.add(&wrap).await;

    let files: Vec<(&str, &[u8])> = tree.iter().map(|(p, c)| (*p, c.as_slice())).collect();
    let (_, imported) = import(&node, ImportOptions::default(), &files, &["tree/b/void"], 4096).await;
    assert_eq!(imported.roots, vec![kubo_tree]);
    let order: Vec<&str> = imported.entries.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(order, ["tree/b/c", "tree/b/void", "tree/b", "tree"]);

    let wrapped = ImportOptions { wrap_with_directory: true, ..ImportOptions::default() };
    let (_, imported) = import(&node, wrapped, &files, &["tree/b/void"], 4096).await;
    assert_eq!(imported.roots, vec![kubo_wrap]);
    let last = imported.entries.last().unwrap();
    assert_eq!((last.name.as_str(), last.cid), ("", kubo_wrap));
    assert_eq!(imported.entries[imported.entries.len() - 2].cid, kubo_tree);
    node.shutdown().await;
}

/// Directories past Kubo's HAMT threshold: 4096 entries whose names and CIDs add up to exactly
/// 256 KiB (Kubo 0.22 shards at that size) and 4095 entries (flat) give Kubo's CIDs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_directories_match_kubo_sharding() {
    let dir = tempfile::tempdir().unwrap();
    let mut kubo = KuboPeer::start(&dir.path().join("kubo")).await;
    let node = start_node(&dir.path().join("node"), 33).await;
    for count in [4095usize, 4096] {
        let root = dir.path().join(format!("big-{count}"));
        let mut files: Vec<(String, Vec<u8>)> = Vec::new();
        for i in 0..count {
            // 30-byte names + 34-byte CIDv0 = 64 bytes per entry; 4096 entries = 256 KiB.
            let name = format!("big/entry-{i:024}");
            let content = format!("{i}\n").into_bytes();
            let file = root.join(&name);
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(&file, &content).unwrap();
            files.push((name, content));
        }
        let expected = kubo.add(&root.join("big")).await;
        let refs: Vec<(&str, &[u8])> = files.iter().map(|(p, c)| (p.as_str(), c.as_slice())).collect();
        let (_, imported) = import(&node, ImportOptions::default(), &refs, &[], 64).await;
        assert_eq!(imported.roots, vec![expected], "{count} entries");
        assert_eq!(imported.entries.len(), 1, "one directory line");
    }
    node.shutdown().await;
}

/// Options Kubo's wrapper cannot set (raw leaves, CIDv1, a 1000-byte chunker, wrapping): a fresh
/// Kubo peer fetches the wrapped DAG from our node and gets the same bytes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubo_fetches_an_import_with_every_option() {
    let dir = tempfile::tempdir().unwrap();
    let big = random_file(&dir.path().join("big.bin"), 300_000, 41);
    let node = start_node(&dir.path().join("node"), 34).await;
    let options = ImportOptions { chunk_size: 1000, raw_leaves: true, cid_version: 1, wrap_with_directory: true };
    let files: [(&str, &[u8]); 2] = [("big.bin", &big), ("small.txt", b"small\n")];
    let (added, imported) = import(&node, options, &files, &[], 65_536).await;
    // 300 raw leaves, two link nodes (174 + 126) and a root; one raw leaf; the wrapper.
    assert_eq!(imported.blocks, 300 + 2 + 1 + 1 + 1);
    assert_eq!(added[0].cid.version(), cid::Version::V1);
    assert_eq!(added[0].cid.codec(), 0x70);
    assert_eq!(added[1].cid.codec(), 0x55, "a one-chunk raw file is its leaf");
    assert_eq!(added[1].size, 6);
    let wrapper = imported.roots[0];
    assert_eq!(imported.entries.len(), 1);

    let mut kubo = KuboPeer::start(&dir.path().join("kubo")).await;
    let ours = node
        .listen_addresses()
        .await
        .into_iter()
        .next()
        .unwrap()
        .with(multiaddr::Protocol::P2p(node.peer_id().parse().unwrap()));
    assert!(kubo.connect(&ours).await, "kubo could not connect to {ours}");
    let out = dir.path().join("out");
    assert!(kubo.download(&wrapper, &out, Duration::from_secs(120)).await);
    assert!(std::fs::read(out.join("big.bin")).unwrap() == big, "big.bin differs");
    assert_eq!(std::fs::read(out.join("small.txt")).unwrap(), b"small\n");
    node.shutdown().await;
}

/// Imported blocks are safe from GC while the protection lives; a later GC removes them unless
/// their root is passed as an extra root, whose DAG is walked on disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_keeps_protected_imports_and_extra_roots() {
    let dir = tempfile::tempdir().unwrap();
    let node = start_node(dir.path(), 35).await;
    let content = random_file(&dir.path().join("f.bin"), MIB + 5, 51);
    let (files, imported) =
        import(&node, ImportOptions::default(), &[("d/f.bin", &content), ("d/g.txt", b"g\n")], &[], MIB).await;
    let root = imported.roots[0];
    // 5 leaves + a file root, a one-block file, the directory.
    assert_eq!(imported.blocks, 8);
    assert_eq!(node.repo_stat().await.unwrap().blocks, 8);

    assert_eq!(node.gc(&[]).await.unwrap().removed_blocks, 0, "protected");
    drop(imported.protection);
    // Only the file is an extra root: the directory block and the other file go.
    let gc = node.gc(&[files[0].cid]).await.unwrap();
    assert_eq!(gc.removed_blocks, 2, "{gc:?}");
    assert!(!node.has_block(&root).await.unwrap());
    assert_eq!(node.repo_stat().await.unwrap().blocks, 6);
    // An extra root that is not on disk walks nothing and fails nothing.
    let missing = cid("bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy");
    assert_eq!(node.gc(&[missing, files[0].cid]).await.unwrap().removed_blocks, 0);
    let out = dir.path().join("out.bin");
    node.export_file(&files[0].cid, &out).await.unwrap();
    assert!(std::fs::read(&out).unwrap() == content);
    assert_eq!(node.gc(&[]).await.unwrap().removed_blocks, 6);
    assert_eq!(node.repo_stat().await.unwrap().blocks, 0);
    node.shutdown().await;
}

/// The import works from another runtime than the node's (actix runs current-thread workers),
/// and the pin walk then finds every block local.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_from_a_current_thread_runtime_then_pin_locally() {
    let dir = tempfile::tempdir().unwrap();
    let node = start_node(dir.path(), 36).await;
    let content = random_file(&dir.path().join("f.bin"), 700 * KIB, 61);
    let worker_node = node.clone();
    let worker_content = content.clone();
    let (root, protection) = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async move {
            let (files, imported) =
                import(&worker_node, ImportOptions::default(), &[("f.bin", &worker_content)], &[], 10_000).await;
            assert_eq!(imported.roots, vec![files[0].cid]);
            (files[0].cid, imported.protection)
        })
    })
    .join()
    .unwrap();
    let options = FetchOptions { stall_timeout: Duration::from_secs(5), ..FetchOptions::default() };
    let stats = node.pin(&root, PinMode::Recursive, options, |_| {}).await.unwrap();
    assert_eq!((stats.blocks, stats.fetched_blocks), (4, 0), "3 leaves and a root, all local");
    drop(protection);
    assert_eq!(node.gc(&[]).await.unwrap().removed_blocks, 0, "pinned");
    node.shutdown().await;
}

fn assert_send<T: Send>(_: &T) {}

/// The importers and their futures are `Send`, so callers can run them on spawned tasks.
#[tokio::test]
async fn importers_and_their_futures_are_send() {
    let dir = tempfile::tempdir().unwrap();
    let node = start_node(dir.path(), 40).await;
    let mut importer = node.importer(ImportOptions::default()).unwrap();
    importer.start_file("a").unwrap();
    assert_send(&importer.write(b"a"));
    let mut car = node.car_importer();
    assert_send(&car.write(b""));
    assert_send(&car);
    let task = tokio::spawn(async move {
        importer.finish_file().await.unwrap();
        importer.finish().await.unwrap()
    });
    let imported = task.await.unwrap();
    assert_send(&imported);
    assert_eq!(imported.roots.len(), 1);
    node.shutdown().await;
}

/// Bad options, bad paths and misuse are errors, never panics.
#[tokio::test]
async fn bad_import_input_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let node = start_node(dir.path(), 37).await;
    for options in [
        ImportOptions { chunk_size: 0, ..ImportOptions::default() },
        ImportOptions { chunk_size: MIB + 1, ..ImportOptions::default() },
        ImportOptions { cid_version: 2, ..ImportOptions::default() },
    ] {
        assert!(matches!(node.importer(options), Err(IpfsError::InvalidOptions(_))), "{options:?}");
    }
    assert!(node.importer(ImportOptions { chunk_size: MIB, ..ImportOptions::default() }).is_ok());

    let mut importer = node.importer(ImportOptions::default()).unwrap();
    for bad in ["", "/abs", "a//b", "a/../b", "./a", "a/", "a\0b"] {
        assert!(matches!(importer.start_file(bad), Err(IpfsError::InvalidPath { .. })), "{bad:?}");
        assert!(importer.add_directory(bad).is_err(), "{bad:?}");
    }
    assert!(matches!(importer.write(b"x").await, Err(IpfsError::Import(_))));
    assert!(matches!(importer.finish_file().await, Err(IpfsError::Import(_))));
    importer.start_file("a").unwrap();
    assert!(matches!(importer.start_file("b"), Err(IpfsError::Import(_))));
    importer.finish_file().await.unwrap();
    importer.start_file("a").unwrap();
    let duplicate = importer.finish_file().await.unwrap_err();
    assert!(duplicate.to_string().contains("\"a\""), "{duplicate}");
    importer.start_file("open").unwrap();
    assert!(matches!(importer.finish().await, Err(IpfsError::Import(_))));
    node.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// CAR

fn varint(n: u64, out: &mut Vec<u8>) {
    out.extend_from_slice(unsigned_varint::encode::u64(n, &mut unsigned_varint::encode::u64_buffer()));
}

fn sha256_cid(codec: u64, data: &[u8]) -> Cid {
    use multihash_codetable::{Code, MultihashDigest};
    Cid::new_v1(codec, Code::Sha2_256.digest(data))
}

/// A small DAG: three raw blocks under a dag-cbor root listing them, plus a dag-pb file block
/// named by a CIDv0. Returns (root, blocks in CAR order).
fn sample_dag() -> (Cid, Vec<(Cid, Vec<u8>)>) {
    use ipld_core::ipld::Ipld;
    let mut blocks = Vec::new();
    let mut links = Vec::new();
    for i in 0..3u8 {
        let data = vec![i; 1000 + i as usize];
        let cid = sha256_cid(0x55, &data);
        links.push(Ipld::Link(cid));
        blocks.push((cid, data));
    }
    // Kubo's empty file, as CIDv0.
    let empty_file = vec![0x0a, 0x04, 0x08, 0x02, 0x18, 0x00];
    let v0 = Cid::new_v0(*sha256_cid(0x70, &empty_file).hash()).unwrap();
    assert_eq!(v0.to_string(), "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH");
    links.push(Ipld::Link(v0));
    blocks.push((v0, empty_file));
    let root_bytes = serde_ipld_dagcbor::to_vec(&Ipld::List(links)).unwrap();
    let root = sha256_cid(0x71, &root_bytes);
    blocks.insert(0, (root, root_bytes));
    (root, blocks)
}

fn car_v1(roots: &[Cid], blocks: &[(Cid, Vec<u8>)]) -> Vec<u8> {
    use ipld_core::ipld::Ipld;
    let header = Ipld::Map(
        [
            ("roots".to_string(), Ipld::List(roots.iter().map(|c| Ipld::Link(*c)).collect())),
            ("version".to_string(), Ipld::Integer(1)),
        ]
        .into_iter()
        .collect(),
    );
    let header = serde_ipld_dagcbor::to_vec(&header).unwrap();
    let mut out = Vec::new();
    varint(header.len() as u64, &mut out);
    out.extend(header);
    for (cid, data) in blocks {
        let cid = cid.to_bytes();
        varint((cid.len() + data.len()) as u64, &mut out);
        out.extend(cid);
        out.extend(data);
    }
    out
}

/// A CAR v2 around `payload` (a CAR v1), with some padding and a fake index after it.
fn car_v2(payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0x0a, 0xa1, 0x67, 0x76, 0x65, 0x72, 0x73, 0x69, 0x6f, 0x6e, 0x02];
    let data_offset = 11 + 40 + 7;
    out.extend([0u8; 16]);
    out.extend((data_offset as u64).to_le_bytes());
    out.extend((payload.len() as u64).to_le_bytes());
    out.extend(((data_offset + payload.len()) as u64).to_le_bytes());
    out.extend([0u8; 7]);
    out.extend(payload);
    out.extend(b"not an index, ignored");
    out
}

/// Pushes `car` in seeded random pieces.
async fn import_car(node: &Node, car: &[u8], seed: u64) -> Result<Imported, IpfsError> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut importer = node.car_importer();
    let mut rest = car;
    while !rest.is_empty() {
        let n = rng.gen_range(1..=rest.len().min(700));
        importer.write(&rest[..n]).await?;
        rest = &rest[n..];
    }
    importer.finish().await
}

/// A CAR v1 and the same payload in a CAR v2 import in any write sizes; the roots come back,
/// every block is local (the pin fetches nothing), and GC keeps the blocks only while protected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn car_round_trip_and_gc_protection() {
    let dir = tempfile::tempdir().unwrap();
    let node = start_node(dir.path(), 38).await;
    let (root, blocks) = sample_dag();
    let car = car_v1(&[root], &blocks);

    for (seed, stream) in [(1, car.clone()), (2, car_v2(&car))] {
        let imported = import_car(&node, &stream, seed).await.unwrap();
        assert_eq!(imported.roots, vec![root]);
        assert_eq!(imported.blocks, 5);
        assert!(imported.entries.is_empty());
        for (cid, _) in &blocks {
            assert!(node.has_block(cid).await.unwrap(), "{cid}");
        }
        assert_eq!(node.gc(&[]).await.unwrap().removed_blocks, 0, "protected");
        drop(imported.protection);
        assert_eq!(node.gc(&[]).await.unwrap().removed_blocks, 5);
        assert_eq!(node.repo_stat().await.unwrap().blocks, 0);
    }

    let imported = import_car(&node, &car, 3).await.unwrap();
    let options = FetchOptions { stall_timeout: Duration::from_secs(5), ..FetchOptions::default() };
    let stats = node.pin(&root, PinMode::Recursive, options, |_| {}).await.unwrap();
    assert_eq!((stats.blocks, stats.fetched_blocks), (5, 0));
    drop(imported);
    assert_eq!(node.gc(&[]).await.unwrap().removed_blocks, 0, "pinned");
    node.shutdown().await;
}

/// A block that does not match its CID, a truncated stream, an oversized section and a broken
/// header are refused with a clear error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_car_streams_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let node = start_node(dir.path(), 39).await;
    let (root, mut blocks) = sample_dag();
    let good = car_v1(&[root], &blocks);

    blocks[2].1[10] ^= 1;
    let forged = car_v1(&[root], &blocks);
    let error = import_car(&node, &forged, 4).await.unwrap_err();
    assert!(matches!(error, IpfsError::Car(_)), "{error:?}");
    assert!(error.to_string().contains("does not match its hash"), "{error}");
    assert!(error.to_string().contains(&blocks[2].0.to_string()), "{error}");

    for cut in [5, good.len() / 2, good.len() - 1] {
        let error = import_car(&node, &good[..cut], 5).await.unwrap_err();
        assert!(error.to_string().contains("the stream ends inside"), "{cut}: {error}");
    }

    let mut oversized = car_v1(&[root], &[]);
    varint(3 * MIB as u64, &mut oversized);
    oversized.extend([0u8; 64]);
    let error = import_car(&node, &oversized, 6).await.unwrap_err();
    assert!(error.to_string().contains("exceeds the limit"), "{error}");

    let mut junk_header = Vec::new();
    varint(4, &mut junk_header);
    junk_header.extend([0xff, 0x00, 0x13, 0x37]);
    let error = import_car(&node, &junk_header, 7).await.unwrap_err();
    assert!(error.to_string().contains("header"), "{error}");

    let error = import_car(&node, &[], 8).await.unwrap_err();
    assert!(error.to_string().contains("the stream ends inside a header"), "{error}");
    node.shutdown().await;
}
