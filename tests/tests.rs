//! The one integration-test binary: runs the real `patronload` executable.

// Helpers: fresh directories, running the binary, reading zips, xmllint.
mod util;

// Flags, exit statuses, atomic publication.
mod cli;
// The output directory: lock, one-step publish, signals, modes.
mod publish;
// The bundled example end to end.
mod example;
// Generated extracts checked against the generator's ground truth.
mod generated;
// The rich example: every segment kind, seven date formats (issue 18).
mod rich;
// Profiles for the public peer samples in ../shared.
mod peer;
// Parallel engine = reference engine, byte for byte.
mod determinism;
// Several feeds, one user per person (convert --job).
mod job;
// The committed fuzz corpus, replayed on stable.
mod fuzz_replay;
// Encodings, broken rows and fixed-width extracts against golden files.
mod input;
// Issue 11's reader regressions: every line's outcome, pinned.
mod reader;
// check and repack: samples, reason-code fixtures, untrusted zips.
mod check;
// Issue 11: C1 controls, strict Windows-1252, dates, encoding mistakes,
// binary and oversized headers.
mod chars;
// Every input line accounted for: random faulty extracts against an
// independent model of the reader (issue 11).
mod differential;
// Issue 14: memory of past runs (--state): nights against an oracle.
mod state;
// Issue 15: delivery over SFTP to a real sshd on loopback, and notifications.
mod deliver;
mod notify;
mod sshd;
// Issue 16: Alma's exports (pre-check, triage, export to the SIS).
mod alma;
// What people see: progress on a terminal, report.html in a browser, init.
mod ux;
