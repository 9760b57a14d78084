//! Reading: extract bytes → UTF-8 text → records with file, line and
//! record number.
//!
//! [`input`] opens a file (memory-mapped or read), [`decode`] turns its
//! bytes into UTF-8, [`shard`] cuts the text into pieces that start on a
//! record boundary, and [`source`] reads delimited and fixed-width records
//! and the side files a profile joins. Nothing here knows about users,
//! packages or the order in which records are emitted.

pub mod decode;
pub mod input;
pub mod shard;
pub mod source;
