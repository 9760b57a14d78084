//! Running one feed: the options of a run ([`options`]), what it reports as it
//! goes ([`progress`]), the ordered `Emitter`
//! (`emit`)
//! that takes every decision that depends on input order, and the two
//! engines (the one-thread reference and the parallel one) that feed it.
//! A run reads through [`crate::read`], maps through [`crate::map`], writes
//! through [`crate::write`] and publishes through [`crate::outdir`].

pub mod convert;
pub(crate) mod cpu;
mod emit;
pub(crate) mod engine;
pub mod options;
pub mod progress;
