//! patronload turns Student Information System and HR extracts into the
//! user files Ex Libris Alma loads (User XSD v2 XML in zip files).
//!
//! The pipeline, one module per stage:
//!
//! 1. [`decode`] then [`source`]: extract bytes → UTF-8 → records with file,
//!    line and record number;
//! 2. [`map`]: a [`profile::Profile`] compiled against the extract's columns
//!    maps each record to a [`model::User`] or a reject reason;
//! 3. [`dedupe`]: institution-wide identifier uniqueness, first wins, the way
//!    Alma decides it;
//! 4. [`xml`]: users → XML text;
//! 5. [`package`]: XML entries → zip parts within Alma's limits;
//! 6. [`report`]: `rejects.csv` and `summary.json`;
//! 7. [`outdir`]: the output directory: one run at a time, everything
//!    published in one step, private files, no leftovers.
//!
//! [`convert::convert`] runs them in order for one feed; [`job::convert_job`]
//! runs several feeds into one package with one user per person. Both publish their results
//! atomically. The library never prints: the binary decides what the user
//! sees.
#![deny(missing_docs)]
#![deny(unsafe_code)]

pub mod check;
pub mod convert;
pub mod decode;
pub mod dedupe;
mod engine;
pub mod error;
pub mod gen;
pub mod harness;
pub mod input;
pub mod job;
pub mod map;
pub mod model;
pub mod outdir;
pub mod package;
pub mod profile;
pub mod report;
pub mod shard;
pub mod source;
pub mod xml;

pub use error::{Error, Result};
