//! Compresses one XML document with the deflate backend this build was
//! given (a flate2 feature) and with libdeflate, at levels 1 and 6, on one
//! thread; prints one line per backend and level: best of five runs.
//!
//! usage: deflate-backends FILE.xml

use std::io::Write;
use std::time::Instant;

fn best_of<F: FnMut() -> usize>(mut f: F) -> (f64, usize) {
    let mut best = f64::MAX;
    let mut len = 0;
    for _ in 0..5 {
        let t = Instant::now();
        len = f();
        best = best.min(t.elapsed().as_secs_f64());
    }
    (best, len)
}

fn report(name: &str, level: u32, input: usize, (secs, len): (f64, usize)) {
    println!(
        "{name:<10} level {level}  {:>7.1} MiB/s  {:>6.2} s/GiB  compressed {:>5.2} %",
        input as f64 / secs / (1 << 20) as f64,
        secs * (1u64 << 30) as f64 / input as f64,
        100.0 * len as f64 / input as f64
    );
}

fn main() {
    let path = std::env::args().nth(1).expect("usage: deflate-backends FILE.xml");
    let xml = std::fs::read(&path).expect("read the XML file");
    let flate = if cfg!(feature = "zlib-ng") {
        "zlib-ng"
    } else if cfg!(feature = "zlib-rs") {
        "zlib-rs"
    } else {
        "miniz"
    };
    for level in levels() {
        // Raw deflate, as a zip entry holds it.
        let r = best_of(|| {
            let mut e = flate2::write::DeflateEncoder::new(
                Vec::with_capacity(xml.len() / 8),
                flate2::Compression::new(level),
            );
            e.write_all(&xml).expect("compress");
            e.finish().expect("compress").len()
        });
        report(flate, level, xml.len(), r);
        if flate == "zlib-rs" {
            let lvl = libdeflater::CompressionLvl::new(level as i32).expect("level");
            let r = best_of(|| {
                let mut c = libdeflater::Compressor::new(lvl);
                let mut out = vec![0; c.deflate_compress_bound(xml.len())];
                c.deflate_compress(&xml, &mut out).expect("compress")
            });
            report("libdeflate", level, xml.len(), r);
        }
    }
}

/// Levels to run: `LEVELS="1 6"` or, by default, 1 to 9.
fn levels() -> Vec<u32> {
    std::env::var("LEVELS")
        .unwrap_or_else(|_| "1 2 3 4 5 6 7 8 9".into())
        .split_whitespace()
        .map(|l| l.parse().expect("LEVELS: numbers 0 to 9"))
        .collect()
}
