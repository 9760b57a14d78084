//! Reading what Alma exports: its users ("Export Users", v2 or v1 XML,
//! zips of it, or a CSV), its rejected-users job report ([`triage`]), and
//! users with fines or blocks for the SIS ([`export`]).

pub mod read;

pub use read::{load_index, read_users, AlmaUser, Block, ReadOptions, ReadStats};
