//! Replays the committed fuzz corpus (`fuzz/corpus/<target>/`) and the
//! crashes turned regression cases (`tests/data/fuzz/<target>/`) through
//! the same library entry points the cargo-fuzz targets call
//! (`patronload::harness`), on the stable toolchain. The fuzzers
//! themselves run from `scripts/fuzz`, never in CI.

use std::path::Path;

use crate::util::root;

/// Runs `check` on every file under each of `dirs`; returns how many.
fn replay(target: &str, check: fn(&[u8])) -> usize {
    let mut n = 0;
    for dir in [
        root().join("fuzz/corpus").join(target),
        root().join("tests/data/fuzz").join(target),
    ] {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut paths: Vec<_> = rd.map(|e| e.unwrap().path()).collect();
        paths.sort();
        for p in paths {
            if p.is_file() {
                let data = std::fs::read(&p).unwrap();
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                let r = std::panic::catch_unwind(|| check(&data));
                assert!(r.is_ok(), "{target}: {} fails", Path::new(&name).display());
                n += 1;
            }
        }
    }
    n
}

#[test]
fn delimited_corpus() {
    assert!(replay("delimited", patronload::harness::delimited) > 0);
}

#[test]
fn fixed_width_corpus() {
    assert!(replay("fixed_width", patronload::harness::fixed_width) > 0);
}

#[test]
fn decode_corpus() {
    assert!(replay("decode", patronload::harness::decode_parse) > 0);
}

#[test]
fn end_to_end_corpus() {
    assert!(
        replay("end_to_end", |d| {
            patronload::harness::end_to_end(d);
        }) > 0
    );
}

#[test]
fn end_to_end_seeds_write_users() {
    // The hand-written seeds must reach the XML stage, or the target
    // would only ever fuzz input errors.
    for seed in ["csv", "pipe", "fixed", "auto"] {
        let data = std::fs::read(root().join("fuzz/corpus/end_to_end").join(seed)).unwrap();
        assert!(patronload::harness::end_to_end(&data) > 0, "seed {seed}");
    }
}
