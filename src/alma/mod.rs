//! Reading what Alma exports: its users ("Export Users", v2 or v1 XML,
//! zips of it, or a CSV), its rejected-users job report ([`triage`]), and
//! users with fines or blocks for the SIS ([`export`]).
//!
//! Everything here reads files Alma wrote, which we do not trust: zips go
//! through `check`'s vetting (zip-slip names, symbolic links,
//! decompression bombs refuse the whole zip) and XML through its bounded
//! reader. Nothing here prints, and no name, email or address is read
//! into memory beyond the user being parsed or written anywhere.

pub mod export;
pub mod read;
pub mod triage;

pub use read::{load_index, read_users, AlmaUser, Block, ReadOptions, ReadStats};
