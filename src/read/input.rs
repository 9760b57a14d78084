//! Input bytes: memory-mapped when possible, read into memory otherwise.
//!
//! Mapping lets a 1 GB extract be parsed in parallel shards without a
//! copy and without counting against the process's heap. It is only a
//! policy, never a reason to fail: pipes, special files and filesystems
//! that refuse to map fall back to an ordinary read, and both paths give
//! byte-identical output (tested).
//!
//! This is the only module with `unsafe` code.
#![allow(unsafe_code)]

use std::fs::File;
use std::path::Path;

use memmap2::{Mmap, MmapOptions};

use crate::error::{Error, Result};

/// How to get at an input's bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MmapChoice {
    /// Map regular files, read anything else (the default).
    #[default]
    Auto,
    /// Always read into memory.
    Never,
}

/// The bytes of one input file.
pub enum Input {
    /// A read-only memory map of the file.
    Mapped(Mmap),
    /// The file read into memory.
    Read(Vec<u8>),
}

impl Input {
    /// Opens `path` per `choice`.
    pub fn open(path: &Path, choice: MmapChoice) -> Result<Input> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        if choice == MmapChoice::Auto {
            if let Some(map) = try_map(&file) {
                return Ok(Input::Mapped(map));
            }
        }
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut &file, &mut buf).map_err(|e| Error::io(path, e))?;
        Ok(Input::Read(buf))
    }

    /// The bytes.
    pub fn bytes(&self) -> &[u8] {
        match self {
            Input::Mapped(m) => m,
            Input::Read(v) => v,
        }
    }
}

fn try_map(file: &File) -> Option<Mmap> {
    let meta = file.metadata().ok()?;
    // Empty files cannot be mapped on every platform, and only regular
    // files have stable contents to map.
    if !meta.is_file() || meta.len() == 0 {
        return None;
    }
    // SAFETY: the map is read-only and lives as long as `Input`. If another
    // process truncates or rewrites the extract while we run, reads of the
    // map may see changed bytes or raise SIGBUS; the nightly job owns its
    // extract for the duration of the run, as it must anyway for the
    // output to mean anything (the same contract ripgrep documents).
    let map = unsafe { MmapOptions::new().map(file) }.ok()?;
    #[cfg(unix)]
    let _ = map.advise(memmap2::Advice::Sequential);
    Some(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapped_and_read_give_the_same_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.csv");
        std::fs::write(&p, b"a,b\n1,2\n").unwrap();
        let m = Input::open(&p, MmapChoice::Auto).unwrap();
        let r = Input::open(&p, MmapChoice::Never).unwrap();
        assert!(matches!(m, Input::Mapped(_)));
        assert!(matches!(r, Input::Read(_)));
        assert_eq!(m.bytes(), r.bytes());
        let e = dir.path().join("empty.csv");
        std::fs::write(&e, b"").unwrap();
        assert!(Input::open(&e, MmapChoice::Auto)
            .unwrap()
            .bytes()
            .is_empty());
    }
}
