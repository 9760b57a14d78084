//! patronload turns Student Information System and HR extracts into the
//! user files Ex Libris Alma loads (User XSD v2 XML in zip files).
//!
//! The pipeline, one folder per stage (ARCHITECTURE.md at the repository
//! root has the map and the rules each stage keeps):
//!
//! 1. [`read`]: extract bytes → UTF-8 → records with file, line and record
//!    number ([`read::decode`], [`read::source`]);
//! 2. [`map`]: a [`profile::Profile`] compiled against the extract's columns
//!    maps each record to a [`model::User`] or a reject reason;
//! 3. [`dedupe`]: institution-wide identifier uniqueness, first wins, the way
//!    Alma decides it;
//! 4. [`write`](mod@write): users → XML text ([`write::xml`]) → zip parts within Alma's
//!    limits ([`write::package`]);
//! 5. [`report`]: `rejects.csv` and `summary.json`; [`html`]: `report.html`,
//!    the same for a person;
//! 6. [`outdir`]: the output directory: one run at a time, everything
//!    published in one step, private files, no leftovers.
//!
//! [`run::convert::convert`] runs them in order for one feed;
//! [`job::convert_job`] runs several feeds into one package with one user
//! per person; [`check`] reads Alma user XML back and repacks it. All of
//! them publish their results atomically. The library never prints: the
//! binary decides what the user sees.
#![deny(missing_docs)]
#![deny(unsafe_code)]

pub mod alma;
pub mod alma_ids;
pub mod check;
pub mod dedupe;
pub mod deliver;
pub mod error;
#[cfg(any(test, feature = "testkit"))]
pub mod gen;
#[cfg(any(test, feature = "testkit"))]
pub mod harness;
pub mod html;
pub mod init;
pub mod job;
pub mod map;
pub mod model;
pub mod notify;
pub mod outdir;
pub mod profile;
pub mod read;
pub mod report;
pub mod run;
pub mod state;
pub mod write;

pub use error::{Error, Result};
