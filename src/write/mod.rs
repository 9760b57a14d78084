//! Writing: users → XML text ([`xml`]) → zip parts within Alma's limits
//! ([`package`]). Nothing here reads an extract or decides which user is
//! written.

pub mod package;
pub mod xml;
