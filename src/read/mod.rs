//! Reading: extract bytes → UTF-8 text → records with file, line and
//! record number.
//!
//! [`input`] opens a file (memory-mapped or read), [`decode`] turns its
//! bytes into UTF-8, [`shard`] cuts the text into pieces that start on a
//! record boundary, and [`source`] holds the extract, its records and
//! their positions. Private to this folder, re-exported by [`source`]:
//! `dialect` (delimiter, quote, header, limits), `fixed` (fixed-width
//! layouts), `reader` (the record reader of one shard, delimited and
//! fixed-width) and `side` (side files joined on a key). Nothing here
//! knows about users, packages or the order in which records are emitted.

pub mod decode;
mod dialect;
mod fixed;
pub mod input;
mod reader;
pub mod shard;
mod side;
pub mod source;
