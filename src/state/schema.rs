//! The state file's layout and its forward migrations.
//!
//! `PRAGMA user_version` holds the layout version; each migration takes a
//! file from version `n` to `n + 1` inside one transaction, so a file is
//! always at one whole version. A file written by a newer patronload (a
//! higher version than [`VERSION`]) is refused rather than guessed at.

use rusqlite::Connection;

use crate::error::{Error, Result};

/// Migrations in order: `MIGRATIONS[n]` takes version `n` to `n + 1`.
const MIGRATIONS: [&str; 2] = [
    // v1: users as last sent, runs.
    "CREATE TABLE meta (name TEXT PRIMARY KEY, value BLOB NOT NULL);
     CREATE TABLE runs (
         id INTEGER PRIMARY KEY,
         as_of TEXT NOT NULL,
         started_at TEXT NOT NULL,
         status TEXT NOT NULL,
         package TEXT NOT NULL,
         inputs TEXT NOT NULL,
         config_sha256 TEXT NOT NULL,
         counts TEXT NOT NULL,
         packages TEXT NOT NULL
     );
     CREATE TABLE users (
         id INTEGER PRIMARY KEY,
         key TEXT NOT NULL UNIQUE,
         primary_id TEXT NOT NULL,
         hash BLOB NOT NULL,
         xml BLOB NOT NULL,
         grp TEXT NOT NULL,
         first_run INTEGER NOT NULL,
         sent_run INTEGER NOT NULL,
         departed_run INTEGER
     );",
    // v2: per-user events for `history`, and whether a run was let
    // through its guards.
    "ALTER TABLE runs ADD COLUMN accepted_changes INTEGER NOT NULL DEFAULT 0;
     CREATE TABLE events (
         run INTEGER NOT NULL,
         key TEXT NOT NULL,
         kind TEXT NOT NULL,
         fields TEXT NOT NULL DEFAULT ''
     );
     CREATE INDEX events_key ON events (key, run);",
];

/// The layout this build writes.
pub const VERSION: u32 = MIGRATIONS.len() as u32;

/// The file's layout version (0 for a new, empty file).
pub(crate) fn version(conn: &Connection) -> rusqlite::Result<u32> {
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
}

/// Brings the file at `conn` up to version `target`, one migration per
/// transaction.
pub(crate) fn migrate(conn: &mut Connection, target: u32, path: &std::path::Path) -> Result<()> {
    let err = |e: rusqlite::Error| super::db_err(path, e);
    let mut v = version(conn).map_err(err)?;
    if v > VERSION {
        return Err(Error::Usage(format!(
            "state file {} has layout version {v}, newer than this patronload knows ({VERSION}); \
             use the patronload that wrote it",
            path.display()
        )));
    }
    while v < target {
        let tx = conn.transaction().map_err(err)?;
        tx.execute_batch(MIGRATIONS[v as usize]).map_err(err)?;
        tx.pragma_update(None, "user_version", v + 1).map_err(err)?;
        tx.commit().map_err(err)?;
        v += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_first_version_file_migrates_with_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let mut c = Connection::open(&path).unwrap();
        migrate(&mut c, 1, &path).unwrap();
        assert_eq!(version(&c).unwrap(), 1);
        c.execute(
            "INSERT INTO users (key, primary_id, hash, xml, grp, first_run, sent_run) \
             VALUES ('s1', 'S1', x'00', x'00', 'STAFF', 1, 1)",
            [],
        )
        .unwrap();
        // v1 has no events table.
        assert!(c.execute("SELECT * FROM events", []).is_err());
        migrate(&mut c, VERSION, &path).unwrap();
        assert_eq!(version(&c).unwrap(), VERSION);
        let n: i64 = c
            .query_row("SELECT count(*) FROM users WHERE key = 's1'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(n, 1);
        c.execute(
            "INSERT INTO events (run, key, kind) VALUES (1, 's1', 'new')",
            [],
        )
        .unwrap();
        let accepted: i64 = c
            .query_row(
                "SELECT count(*) FROM runs WHERE accepted_changes = 0",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(accepted, 0);
    }

    #[test]
    fn a_newer_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let mut c = Connection::open(&path).unwrap();
        c.pragma_update(None, "user_version", VERSION + 1).unwrap();
        let e = migrate(&mut c, VERSION, &path).unwrap_err();
        assert!(e.to_string().contains("newer"), "{e}");
    }
}
