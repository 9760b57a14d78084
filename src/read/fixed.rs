//! Fixed-width layouts: a profile's columns compiled to byte or character
//! ranges, cut from each line by the reader.

use crate::profile::{InputSpec, Units};

/// The largest fixed-width start or length: far beyond any real layout,
/// small enough that positions never overflow.
pub(super) const MAX_POSITION: usize = 1 << 20;
/// The most repetitions of one fixed-width segment.
pub(super) const MAX_SEGMENTS: usize = 1000;

/// A compiled fixed-width layout: byte or character ranges per column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FixedLayout {
    /// Column names, in layout order (segments expanded).
    pub names: Vec<String>,
    /// `(start, end)` per column, 0-based, end exclusive, in `units`.
    pub ranges: Vec<(usize, usize)>,
    /// Whether ranges count characters or bytes.
    pub units: Units,
    /// Units the layout covers: text beyond it must be blank.
    pub width: usize,
}

impl FixedLayout {
    /// Compiles the `fields` and `segments` of `spec`.
    pub fn new(spec: &InputSpec) -> std::result::Result<FixedLayout, String> {
        let mut names = Vec::new();
        let mut ranges = Vec::new();
        let mut push = |name: String,
                        base: usize,
                        f: &crate::profile::FixedField,
                        limit: Option<usize>|
         -> std::result::Result<(), String> {
            if f.start == 0 || f.length == 0 {
                return Err(format!(
                    "field `{name}`: start is 1-based and length must be at least 1"
                ));
            }
            if f.start > MAX_POSITION || f.length > MAX_POSITION {
                return Err(format!(
                    "field `{name}`: start and length may not exceed {MAX_POSITION}"
                ));
            }
            let start = base + f.start - 1;
            if let Some(l) = limit {
                if f.start - 1 + f.length > l {
                    return Err(format!(
                        "field `{name}` ends past its segment's length ({l})"
                    ));
                }
            }
            if names.contains(&name) {
                return Err(format!("column `{name}` is declared twice"));
            }
            names.push(name);
            ranges.push((start, start + f.length));
            Ok(())
        };
        for f in &spec.fields {
            push(f.name.clone(), 0, f, None)?;
        }
        for seg in &spec.segments {
            if seg.start == 0 || seg.length == 0 || seg.count == 0 {
                return Err(format!(
                    "segment `{}`: start is 1-based, length and count must be at least 1",
                    seg.prefix
                ));
            }
            if seg.start > MAX_POSITION || seg.length > MAX_POSITION || seg.count > MAX_SEGMENTS {
                return Err(format!(
                    "segment `{}`: start and length may not exceed {MAX_POSITION}, count {MAX_SEGMENTS}",
                    seg.prefix
                ));
            }
            for n in 1..=seg.count {
                let base = seg.start - 1 + (n - 1) * seg.length;
                for f in &seg.fields {
                    push(
                        format!("{}{n}_{}", seg.prefix, f.name),
                        base,
                        f,
                        Some(seg.length),
                    )?;
                }
            }
        }
        if names.is_empty() {
            return Err("format = \"fixed_width\" needs `fields` (or `segments`)".into());
        }
        let width = ranges.iter().map(|r| r.1).max().unwrap_or(0);
        Ok(FixedLayout {
            names,
            ranges,
            units: spec.units,
            width,
        })
    }
}
