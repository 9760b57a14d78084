//! Generated extracts checked against the generator's ground truth.

use std::fs::File;
use std::io::BufWriter;

use patronload::gen::{generate, GenOptions};

use crate::example::check_against_truth;
use crate::util::*;

#[test]
fn generated_100k_rows_match_the_ground_truth_and_validate() {
    let t = tempfile::tempdir().unwrap();
    let input = t.path().join("extract.csv");
    let truth = t.path().join("truth.csv");
    let opts = GenOptions {
        rows: 100_000,
        seed: 2026,
        dup_rate: 0.03,
        bad_rate: 0.03,
    };
    let stats = generate(
        &opts,
        BufWriter::new(File::create(&input).unwrap()),
        BufWriter::new(File::create(&truth).unwrap()),
    )
    .unwrap();
    let out = t.path().join("out");
    let o = convert(
        &root().join("examples/students.toml"),
        &out,
        &[&input],
        &["--max-reject-rate", "50"],
    );
    assert_status(&o, 0);
    let written = check_against_truth(&out, &truth, &input.display().to_string());
    assert_eq!(written.len() as u64, stats.expected_written);
    let s = summary(&out);
    assert_eq!(s["rejected"].as_u64().unwrap(), stats.expected_rejected);
    // 20,000 users per XML file by default: five files in one zip.
    assert_eq!(s["zips"][0]["entries"].as_array().unwrap().len(), 5);
    assert_xsd_valid(&out);
}
