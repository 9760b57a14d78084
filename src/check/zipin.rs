//! Reading zips we did not write: every entry is untrusted.
//!
//! Before any entry is inflated, the central directory is vetted: names
//! that would escape a folder when unpacked (`../evil.xml`, `/etc/x`,
//! `C:\x`), symbolic links, and sizes that betray a decompression bomb
//! (declared size over the per-entry or per-zip limit, or a compression
//! ratio no real user file reaches). A zip failing any of these is
//! refused whole: uploading it anywhere is the mistake to prevent. While
//! an entry is read, `Guard` stops it at its declared size, so an entry
//! lying about its size cannot inflate past what was vetted.

use std::io::{self, Read, Seek};

use zip::ZipArchive;

use super::Code;

/// Limits on reading an untrusted zip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZipLimits {
    /// Largest uncompressed entry. By default 8 GiB.
    pub max_entry_bytes: u64,
    /// Largest uncompressed total of one zip. By default 32 GiB.
    pub max_total_bytes: u64,
    /// Largest uncompressed/compressed ratio of an entry over 1 MiB. By
    /// default 250: user XML deflates about 10–30 to 1, a bomb of zeros
    /// about 1000 to 1.
    pub max_ratio: u64,
}

impl Default for ZipLimits {
    fn default() -> Self {
        ZipLimits {
            max_entry_bytes: 8 << 30,
            max_total_bytes: 32 << 30,
            max_ratio: 250,
        }
    }
}

/// Entries smaller than this are never refused for their ratio: tiny
/// files of repeated markup compress extremely well and harm no one.
const RATIO_FLOOR: u64 = 1 << 20;

/// One entry to read, in stored order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EntryPlan {
    pub(crate) index: usize,
    pub(crate) name: String,
    pub(crate) size: u64,
    pub(crate) is_xml: bool,
}

/// Why a zip is refused, or what to read from it.
pub(crate) enum Plan {
    /// Refused: `(code, message)` for each reason.
    Refused(Vec<(Code, String)>),
    /// The entries in stored order (directories left out).
    Entries(Vec<EntryPlan>),
}

/// Whether `head` (a file's first four bytes) opens a zip: a local file
/// header, an empty zip's end record, or a spanned zip's marker.
pub(crate) fn is_zip_magic(head: &[u8; 4]) -> bool {
    matches!(head, b"PK\x03\x04" | b"PK\x05\x06" | b"PK\x07\x08")
}

/// Why an entry name is unsafe, if it is.
pub(crate) fn unsafe_name(name: &str) -> Option<&'static str> {
    let b = name.as_bytes();
    if name.starts_with('/') || name.starts_with('\\') {
        Some("an absolute path")
    } else if b.len() >= 2 && b[1] == b':' && b[0].is_ascii_alphabetic() {
        Some("a drive-letter path")
    } else if name.split(['/', '\\']).any(|c| c == "..") {
        Some("a `..` component that climbs out of the folder")
    } else if name.contains('\0') {
        Some("a NUL byte")
    } else {
        None
    }
}

/// Vets the central directory of `ar`.
pub(crate) fn plan<R: Read + Seek>(ar: &mut ZipArchive<R>, limits: ZipLimits) -> Plan {
    let mut refused = Vec::new();
    let mut entries = Vec::new();
    let mut total = 0u64;
    for i in 0..ar.len() {
        let f = match ar.by_index_raw(i) {
            Ok(f) => f,
            Err(e) => {
                refused.push((Code::ZipUnreadable, format!("entry {}: {e}", i + 1)));
                continue;
            }
        };
        let name = String::from_utf8_lossy(f.name_raw()).into_owned();
        if let Some(why) = unsafe_name(&name) {
            refused.push((
                Code::UnsafeZip,
                format!("entry `{name}` has {why}; refusing the zip (zip-slip)"),
            ));
            continue;
        }
        if f.enclosed_name().is_none() {
            refused.push((
                Code::UnsafeZip,
                format!("entry `{name}` does not stay inside its folder; refusing the zip"),
            ));
            continue;
        }
        if f.is_symlink() {
            refused.push((
                Code::UnsafeZip,
                format!("entry `{name}` is a symbolic link; refusing the zip"),
            ));
            continue;
        }
        if f.is_dir() {
            continue;
        }
        let (size, packed) = (f.size(), f.compressed_size());
        total = total.saturating_add(size);
        if size > limits.max_entry_bytes {
            refused.push((
                Code::ZipBomb,
                format!(
                    "entry `{name}` declares {size} bytes uncompressed, over the {} byte limit",
                    limits.max_entry_bytes
                ),
            ));
        } else if size > RATIO_FLOOR && size / packed.max(1) > limits.max_ratio {
            refused.push((
                Code::ZipBomb,
                format!(
                    "entry `{name}` inflates {size} bytes from {packed} (ratio {}:1, limit \
                     {}:1): a decompression bomb",
                    size / packed.max(1),
                    limits.max_ratio
                ),
            ));
        }
        let is_xml = name.to_ascii_lowercase().ends_with(".xml");
        entries.push(EntryPlan {
            index: i,
            name,
            size,
            is_xml,
        });
    }
    if total > limits.max_total_bytes {
        refused.push((
            Code::ZipBomb,
            format!(
                "entries declare {total} bytes uncompressed in all, over the {} byte limit",
                limits.max_total_bytes
            ),
        ));
    }
    if refused.is_empty() {
        Plan::Entries(entries)
    } else {
        Plan::Refused(refused)
    }
}

/// The error [`Guard`] raises; the driver recognises it to report a bomb
/// rather than an I/O failure.
#[derive(Debug)]
pub(crate) struct Tripped(pub(crate) String);

impl std::fmt::Display for Tripped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Tripped {}

/// Whether `e` is a [`Guard`] stop, and its message.
pub(crate) fn tripped(e: &io::Error) -> Option<String> {
    e.get_ref()
        .and_then(|i| i.downcast_ref::<Tripped>())
        .map(|t| t.0.clone())
}

/// Reads at most `limit` bytes of an entry, failing (not truncating) if
/// there are more.
pub(crate) struct Guard<R> {
    inner: R,
    read: u64,
    limit: u64,
}

impl<R: Read> Guard<R> {
    /// Guards `inner` to `limit` bytes.
    pub(crate) fn new(inner: R, limit: u64) -> Guard<R> {
        Guard {
            inner,
            read: 0,
            limit,
        }
    }
}

impl<R: Read> Read for Guard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // Ask for one byte more than allowed so an overlong entry is
        // noticed rather than silently cut.
        let room = (self.limit - self.read.min(self.limit)).saturating_add(1);
        let want = buf.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        self.read += n as u64;
        if self.read > self.limit {
            return Err(io::Error::other(Tripped(format!(
                "the entry inflates past its declared {} bytes: a decompression bomb or a \
                 corrupt zip",
                self.limit
            ))));
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(unsafe_name("../evil.xml").is_some());
        assert!(unsafe_name("a/../../evil.xml").is_some());
        assert!(unsafe_name("/etc/passwd").is_some());
        assert!(unsafe_name("C:\\x.xml").is_some());
        assert!(unsafe_name("a\\..\\x.xml").is_some());
        assert!(unsafe_name("users_001.xml").is_none());
        assert!(unsafe_name("dir/users..v2.xml").is_none());
    }

    #[test]
    fn guard_fails_past_the_limit() {
        let data = [0u8; 100];
        let mut g = Guard::new(&data[..], 50);
        let mut out = Vec::new();
        let e = g.read_to_end(&mut out).unwrap_err();
        assert!(tripped(&e).is_some());
        let mut g = Guard::new(&data[..], 100);
        out.clear();
        assert_eq!(g.read_to_end(&mut out).unwrap(), 100);
    }
}
