//! Per-stage throughput of the pipeline on a generated extract, in input
//! bytes (parse, map+serialize, dedupe) or XML bytes (compress), so a
//! regression shows up in the stage that caused it. `scripts/bench` gives
//! the end-to-end figures these add up to.
//!
//! Two profiles: the students example (`stages/parse`, ...) and the rich
//! one of issue 18 (`stages/rich/parse`, ...: every segment kind, seven
//! date formats). The rich extract is `examples/rich.csv` repeated to the
//! same row count with its identifiers made unique per copy, so this file
//! needs only the committed example and the library's public API of
//! before `gen_extract --rich` (issue 18 compares commits with it).

use std::hint::black_box;
use std::path::Path;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use patronload::dedupe::{IdSet, Owner};
use patronload::gen::{generate, GenOptions};
use patronload::map::Mapper;
use patronload::model::User;
use patronload::profile::{IdentifierCase, Profile};
use patronload::read::source::{Dialect, Extract, RawRecord};
use patronload::report::MapStats;
use patronload::write::package::{compress_entry, zip_time};
use patronload::write::xml;

/// Rows per iteration: big enough that per-call setup is noise.
const ROWS: u64 = 20_000;

struct Fixture {
    /// Prefix of the benchmark ids: "" (students) or "rich/".
    name: &'static str,
    csv: Vec<u8>,
    profile: Profile,
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn students() -> Fixture {
    let mut csv = Vec::new();
    let opts = GenOptions {
        rows: ROWS,
        seed: 3,
        ..GenOptions::default()
    };
    generate(&opts, &mut csv, std::io::sink()).expect("generate");
    let profile = Profile::load(&root().join("examples/students.toml")).expect("profile");
    Fixture {
        name: "",
        csv,
        profile,
    }
}

/// `examples/rich.csv` copied until it has [`ROWS`] records; copy `k`
/// appends `k` to every identifier, so the copies claim different values
/// and each keeps its own duplicates, chain and defects.
fn rich() -> Fixture {
    const IDS: [&[u8]; 4] = [b"EMPLID", b"BARCODE", b"UNIV_ID", b"LIBRARY_ID"];
    let example = std::fs::read(root().join("examples/rich.csv")).expect("examples/rich.csv");
    let mut rdr = csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(&example[..]);
    let header = rdr.byte_headers().expect("header").clone();
    let records: Vec<csv::ByteRecord> = rdr.byte_records().map(|r| r.expect("record")).collect();
    let ids: Vec<usize> = IDS
        .iter()
        .map(|c| header.iter().position(|h| h == *c).expect("id column"))
        .collect();
    let mut wtr = csv::WriterBuilder::new()
        .flexible(true)
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new());
    wtr.write_byte_record(&header).expect("write");
    let mut field = Vec::new();
    for n in 0..ROWS as usize {
        let (k, rec) = (n / records.len(), &records[n % records.len()]);
        let out: Vec<Vec<u8>> = rec
            .iter()
            .enumerate()
            .map(|(i, f)| {
                field.clear();
                field.extend_from_slice(f);
                if k > 0 && !f.is_empty() && ids.contains(&i) {
                    field.extend_from_slice(k.to_string().as_bytes());
                }
                field.clone()
            })
            .collect();
        wtr.write_record(&out).expect("write");
    }
    let csv = wtr.into_inner().expect("flush");
    let profile = Profile::load(&root().join("examples/rich.toml")).expect("profile");
    Fixture {
        name: "rich/",
        csv,
        profile,
    }
}

fn as_of() -> chrono::NaiveDate {
    chrono::NaiveDate::from_ymd_opt(2026, 11, 24).expect("date")
}

/// Every record of the extract, parsed.
fn parse_all(x: &Extract<'_>) -> Vec<RawRecord> {
    let mut rdr = x.reader(x.whole());
    let mut out = Vec::new();
    let mut rec = RawRecord::new();
    let mut n = 1;
    while rdr.next_record(n, &mut rec).expect("parse") {
        out.push(rec.clone());
        n += 1;
    }
    out
}

fn map_one<'a>(m: &'a Mapper, rec: &'a RawRecord, stats: &mut MapStats) -> Option<User<'a>> {
    let mut fields = Vec::new();
    m.decode(&rec.fields, &mut fields).ok()?;
    m.map(&fields, stats).ok()
}

fn stages(c: &mut Criterion) {
    for fx in [students(), rich()] {
        profile_stages(c, &fx);
    }
}

/// The stages of one profile; compression only for the students (it
/// depends on the XML's size, not on the profile).
fn profile_stages(c: &mut Criterion, fx: &Fixture) {
    let dialect = Dialect::new(&fx.profile.input).expect("dialect");
    let x = Extract::open(Path::new("bench.csv"), 0, &fx.csv, &dialect).expect("open");
    let mapper = Mapper::new(&fx.profile, &x.columns, as_of()).expect("mapper");
    let records = parse_all(&x);
    let mut stats = MapStats::default();
    let users: Vec<User> = records
        .iter()
        .filter_map(|r| map_one(&mapper, r, &mut stats))
        .collect();
    let mut doc = Vec::new();
    for u in &users {
        xml::write_user(&mut doc, u);
    }

    let mut g = c.benchmark_group("stages");
    g.sample_size(20);
    g.throughput(Throughput::Bytes(fx.csv.len() as u64));
    g.bench_function(format!("{}parse", fx.name), |b| {
        b.iter(|| {
            let mut rdr = x.reader(x.whole());
            let mut rec = RawRecord::new();
            let mut n = 1;
            while rdr.next_record(n, &mut rec).expect("parse") {
                n += 1;
            }
            black_box(n)
        })
    });
    g.bench_function(format!("{}map_serialize", fx.name), |b| {
        let mut out = Vec::with_capacity(doc.len());
        b.iter(|| {
            out.clear();
            let mut stats = MapStats::default();
            for r in &records {
                if let Some(u) = map_one(&mapper, r, &mut stats) {
                    xml::write_user(&mut out, &u);
                }
            }
            black_box(out.len())
        })
    });
    g.bench_function(format!("{}dedupe", fx.name), |b| {
        b.iter(|| {
            let mut ids = IdSet::new(IdentifierCase::Insensitive);
            let mut taken = 0u32;
            for (i, u) in users.iter().enumerate() {
                let owner = Owner {
                    file: 0,
                    line: i as u64,
                };
                taken += ids.claim(u, owner).is_err() as u32;
            }
            black_box(taken)
        })
    });
    if !fx.name.is_empty() {
        g.finish();
        return;
    }
    g.throughput(Throughput::Bytes(doc.len() as u64));
    let mtime = zip_time(as_of());
    for level in [1u32, 6] {
        g.bench_with_input(BenchmarkId::new("compress", level), &level, |b, &l| {
            b.iter(|| {
                black_box(
                    compress_entry(&doc, 0, l, mtime)
                        .expect("compress")
                        .zip_len(),
                )
            })
        });
    }
    g.finish();
}

criterion_group!(benches, stages);
criterion_main!(benches);
