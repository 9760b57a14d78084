//! The rich example (issue 18): examples/rich.csv with examples/rich.toml,
//! a profile that uses every segment kind and seven date formats, checked
//! against the generator's ground truth and across engines.

use std::fs::File;
use std::io::BufWriter;

use patronload::gen::{generate_rich, GenOptions};

use crate::example::check_against_truth;
use crate::util::*;

/// Converts the rich example from the checkout's root with `extra` flags.
fn convert_rich(out: &std::path::Path, extra: &[&str]) {
    let o = patronload()
        .current_dir(root())
        .args(["convert", "--profile", "examples/rich.toml", "--out"])
        .arg(out)
        .args(["--as-of", "2026-11-24"])
        .args(extra)
        .arg("examples/rich.csv")
        .output()
        .unwrap();
    assert_status(&o, 0);
}

#[test]
fn rich_example_converts_as_the_truth_file_says() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("out");
    convert_rich(&out, &[]);
    check_against_truth(
        &out,
        &root().join("examples/rich.truth.csv"),
        "examples/rich.csv",
    );
    assert_xsd_valid(&out);
    let s = summary(&out);
    // No date of the seven formats is left out or refused but the
    // generator's bad ones (rejected, counted in the truth file).
    assert_eq!(s["warnings"], 0, "{s}");
    // Every segment kind is written.
    let xml: String = xml_entries(&out).into_iter().map(|(_, t)| t).collect();
    for element in [
        "<address ",
        "<email_type>school",
        "<email_type>personal",
        "<phone_type>mobile",
        "<phone_type>office",
        "<id_type>BARCODE",
        "<id_type>UNIV_ID",
        "<id_type>OTHER_ID_1",
        "<statistic_category>",
        "<note_type>REGISTAR",
        "<note_type>CIRCULATION",
        "Research &amp; teaching",
        "Fines review &lt;2027",
    ] {
        assert!(xml.contains(element), "no {element}");
    }
}

#[test]
fn rich_example_is_identical_across_threads_and_shards() {
    let t = tempfile::tempdir().unwrap();
    let mut outs = Vec::new();
    for extra in [
        vec!["--reference"],
        vec!["--threads", "1"],
        vec!["--threads", "2"],
        vec!["--threads", "4", "--shard-bytes", "64", "--no-mmap"],
        vec!["--threads", "2", "--shard-bytes", "1"],
    ] {
        let out = t.path().join(format!("o{}", outs.len()));
        convert_rich(&out, &extra);
        outs.push(dir_files(&out));
    }
    for (i, o) in outs.iter().enumerate().skip(1) {
        assert!(&outs[0] == o, "run {i} differs from the reference engine");
    }
}

/// The parallel engines (one feed, and a job's second pass) put each
/// stage's CPU seconds into `run.cpu_s`; the reference engine does not
/// (issue 18). The figures themselves vary run to run.
#[test]
fn parallel_runs_report_cpu_per_stage() {
    let t = tempfile::tempdir().unwrap();
    let cpu_s = |out: &std::path::Path| summary(out)["run"]["cpu_s"].clone();
    let (reference, parallel) = (t.path().join("r"), t.path().join("p"));
    convert_rich(&reference, &["--reference"]);
    assert!(cpu_s(&reference).is_null());
    convert_rich(&parallel, &["--threads", "2"]);
    let job = t.path().join("j");
    let o = patronload()
        .current_dir(root())
        .args(["convert", "--job", "examples/job/job.toml", "--out"])
        .arg(&job)
        .args([
            "--as-of",
            "2026-11-24",
            "--threads",
            "2",
            "--max-reject-rate",
            "20",
        ])
        .output()
        .unwrap();
    assert_status(&o, 0);
    for out in [&parallel, &job] {
        let c = cpu_s(out);
        for stage in ["map", "consume", "compress", "place"] {
            assert!(c[stage].as_f64().unwrap() >= 0.0, "{stage}: {c}");
        }
        assert_eq!(c.as_object().unwrap().len(), 4, "{c}");
    }
}

/// A larger rich extract than the example: every date in every format
/// read (none dropped as unreadable), every outcome as the truth says.
#[test]
fn generated_rich_rows_match_the_ground_truth() {
    let t = tempfile::tempdir().unwrap();
    let (input, truth) = (t.path().join("rich.csv"), t.path().join("truth.csv"));
    let opts = GenOptions {
        rows: 30_000,
        seed: 2027,
        ..GenOptions::default()
    };
    let stats = generate_rich(
        &opts,
        BufWriter::new(File::create(&input).unwrap()),
        BufWriter::new(File::create(&truth).unwrap()),
    )
    .unwrap();
    let out = t.path().join("out");
    let o = convert(
        &root().join("examples/rich.toml"),
        &out,
        &[&input],
        &["--max-reject-rate", "50", "--threads", "2"],
    );
    assert_status(&o, 0);
    let written = check_against_truth(&out, &truth, &input.display().to_string());
    assert_eq!(written.len() as u64, stats.expected_written);
    let s = summary(&out);
    assert_eq!(s["warnings"], 0, "{}", s["dropped_fields"]);
}
