//! Typed errors for everything that stops a run.
//!
//! Record-level problems (a bad date, a duplicate identifier) are *not*
//! errors: they become rejects with a reason code (see [`crate::report`]).
//! What lives here is what makes the whole run fail: an unusable profile,
//! an unreadable input, an output that cannot be written or would break
//! Alma's limits. Each variant carries enough context (file, line, field)
//! for a librarian to act on the message without reading code.

use std::path::PathBuf;

/// Result alias used across the library.
pub type Result<T> = std::result::Result<T, Error>;

/// Everything that can make a run fail as a whole.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The profile file is not valid TOML or does not describe a usable
    /// mapping. Maps to exit status 2 (nothing written).
    #[error("profile error in {path}: {message}")]
    Profile {
        /// The profile file.
        path: PathBuf,
        /// What is wrong, in words a librarian understands.
        message: String,
    },
    /// A command-line value is unusable (for example a limit of zero).
    /// Maps to exit status 2.
    #[error("usage error: {0}")]
    Usage(String),
    /// An input extract cannot be read or its structure is unusable
    /// (for example a missing header row or a header without a column the
    /// profile needs).
    #[error("input error in {path}{}: {message}", line.map(|l| format!(" (line {l})")).unwrap_or_default())]
    Input {
        /// The input file.
        path: PathBuf,
        /// The line, when the problem is at one.
        line: Option<u64>,
        /// What is wrong.
        message: String,
    },
    /// The output would not fit Alma's or the SFTP directory's limits.
    #[error("output limit: {0}")]
    Limit(String),
    /// The run's own bookkeeping does not add up: a bug, reported rather
    /// than hidden, and nothing is published.
    #[error("internal check failed: {0}")]
    Invariant(String),
    /// An I/O error while reading or writing, with the path involved.
    #[error("i/o error on {path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Another run holds the output directory (exit status 1; `--wait`
    /// waits for it instead).
    #[error(
        "{dir} is in use by another patronload run ({holder}); this run stopped without \
         touching it (use --wait to wait for the other run)"
    )]
    Busy {
        /// The output directory.
        dir: PathBuf,
        /// The other run: pid and start time, from its lock file.
        holder: String,
    },
    /// The disk filled up while the run wrote its package.
    #[error(
        "no space left on the disk holding {dir} while writing {file}: the new package needs \
         more than the {} that were free when the run started (until it replaces the \
         previous package, both take room); free some space or choose another --out, and \
         run again",
        free_at_start.map_or("(unknown)".to_string(), |f| bytesize::ByteSize::b(f).to_string())
    )]
    NoSpace {
        /// The output directory.
        dir: PathBuf,
        /// The file being written when the disk filled up.
        file: PathBuf,
        /// Bytes free on that filesystem when the run started, when known.
        free_at_start: Option<u64>,
    },
    /// A guard against a broken extract tripped (`--state`): nothing was
    /// published and the state file is as it was. Exit status 4.
    #[error("guard tripped, nothing published: {message}")]
    Guard {
        /// Each tripped guard with its numbers.
        message: String,
        /// The `guards` part of the summary, as JSON.
        guards_json: String,
    },
    /// The zip library failed while writing a package.
    #[error("zip error on {path}: {source}")]
    Zip {
        /// The zip being written.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: zip::result::ZipError,
    },
}

impl Error {
    /// Builds an [`Error::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// Whether this error is the user's to fix in the command line or the
    /// profile (exit status 2) rather than a run failure (exit status 1).
    pub fn is_usage(&self) -> bool {
        matches!(self, Error::Profile { .. } | Error::Usage(_))
    }
}

/// The most characters of input text a message quotes.
pub const EXCERPT_CHARS: usize = 200;

/// `text` as a message may quote it: at most `max` characters, controls
/// and other unprintable characters escaped (`\u{0}`), and what was cut
/// said in words, so a binary file or a 10 MB header line never floods a
/// terminal or a report.
pub fn excerpt(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max + 16));
    let mut chars = text.chars();
    for (shown, c) in chars.by_ref().enumerate() {
        if shown == max {
            let rest = 1 + chars.count();
            out.push_str(&format!("… ({rest} more characters)"));
            return out;
        }
        if c == '\u{FFFD}' || c.is_control() || is_odd(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Invisible or layout-breaking characters that are not controls.
fn is_odd(c: char) -> bool {
    matches!(
        c,
        '\u{200B}'..='\u{200F}' | '\u{2028}' | '\u{2029}' | '\u{FEFF}' | '\u{FFFE}' | '\u{FFFF}'
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpts_are_short_and_printable() {
        assert_eq!(excerpt("EMPLID", 200), "EMPLID");
        assert_eq!(
            excerpt("\u{7F}ELF\u{2}\u{0}", 200),
            "\\u{7f}ELF\\u{2}\\u{0}"
        );
        let long = "A".repeat(10 << 20);
        let e = excerpt(&long, EXCERPT_CHARS);
        assert!(e.chars().count() < 240, "{}", e.len());
        assert!(
            e.ends_with(&format!("… ({} more characters)", (10 << 20) - 200)),
            "{e}"
        );
        assert_eq!(excerpt("é\u{FFFD}", 1), "é… (1 more characters)");
    }
}
