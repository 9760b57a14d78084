//! The compiled input dialect: delimiter, quote, encoding, header and
//! the limits the reader enforces, checked once per profile.

use std::sync::Arc;

use crate::profile::{InputFormat, InputSpec, InvalidBytes};
use crate::read::decode::Encoding;

use super::source::*;

/// The compiled input dialect.
#[derive(Debug, Clone)]
pub struct Dialect {
    pub(super) delimiter: u8,
    pub(super) quote: Option<u8>,
    pub(super) header: bool,
    pub(super) columns: Option<Vec<String>>,
    /// The declared encoding.
    pub encoding: Encoding,
    pub(super) invalid_bytes: InvalidBytes,
    pub(super) max_record_lines: u64,
    pub(super) max_record_bytes: u64,
    pub(super) max_field_bytes: u64,
    pub(super) fixed: Option<Arc<FixedLayout>>,
    pub(super) aliases: Vec<(String, Vec<String>)>,
    pub(super) side_files: Vec<Arc<SideFile>>,
    /// Columns whose quoted values may span lines.
    pub(super) multiline: Vec<String>,
    /// Fixed-width: lines need not be the layout's length.
    pub(super) ragged: bool,
}

impl Dialect {
    /// Adds loaded side files (see [`SideFile::load`]).
    pub fn with_side_files(mut self, files: Vec<SideFile>) -> Dialect {
        self.side_files = files.into_iter().map(Arc::new).collect();
        self
    }

    /// Validates the `[input]` table of a profile.
    pub fn new(spec: &InputSpec) -> std::result::Result<Dialect, String> {
        let encoding = Encoding::from_label(&spec.encoding)?;
        if spec.max_record_lines == 0 || spec.max_record_bytes == 0 || spec.max_field_bytes == 0 {
            return Err(
                "max_record_lines, max_record_bytes and max_field_bytes must be at least 1".into(),
            );
        }
        let mut d = Dialect {
            delimiter: b',',
            quote: None,
            header: false,
            columns: None,
            encoding,
            invalid_bytes: spec.invalid_bytes,
            max_record_lines: spec.max_record_lines,
            max_record_bytes: spec.max_record_bytes,
            max_field_bytes: spec.max_field_bytes,
            fixed: None,
            aliases: spec
                .aliases
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            side_files: Vec::new(),
            multiline: spec.multiline.clone(),
            ragged: spec.ragged,
        };
        if spec.format == InputFormat::FixedWidth {
            if !spec.multiline.is_empty() {
                return Err("`multiline` applies to delimited extracts: a fixed-width \
                            record is one line"
                    .into());
            }
            if spec.columns.is_some() {
                return Err(
                    "fixed_width layouts name their columns in `fields`, not `columns`".into(),
                );
            }
            let layout = FixedLayout::new(spec)?;
            d.columns = Some(layout.names.clone());
            d.fixed = Some(Arc::new(layout));
            d.header = spec.header.unwrap_or(false);
            return Ok(d);
        }
        if !spec.fields.is_empty() || !spec.segments.is_empty() {
            return Err("`fields` and `segments` need format = \"fixed_width\"".into());
        }
        if spec.ragged {
            return Err(
                "`ragged` applies to fixed-width layouts; delimited extracts \
                        use `ragged_rows`"
                    .into(),
            );
        }
        d.delimiter =
            single_byte("delimiter", &spec.delimiter)?.ok_or("delimiter must not be `none`")?;
        d.quote = single_byte("quote", &spec.quote)?;
        if Some(d.delimiter) == d.quote {
            return Err("delimiter and quote must differ".into());
        }
        if matches!(d.delimiter, b'\r' | b'\n') || matches!(d.quote, Some(b'\r' | b'\n')) {
            return Err("delimiter and quote may not be a line break".into());
        }
        d.header = spec.header.unwrap_or(true);
        if !d.header && spec.columns.is_none() {
            return Err("header = false needs `columns = [...]` naming every column".into());
        }
        d.columns = spec.columns.clone();
        Ok(d)
    }

    /// A dialect from `[input]` TOML text (tests and fuzz targets).
    pub fn from_toml(text: &str) -> std::result::Result<Dialect, String> {
        let spec: InputSpec = toml::from_str(text).map_err(|e| e.to_string())?;
        Dialect::new(&spec)
    }
}

pub(super) fn single_byte(what: &str, s: &str) -> std::result::Result<Option<u8>, String> {
    match s {
        "tab" | "\t" => Ok(Some(b'\t')),
        "none" | "" => Ok(None),
        _ if s.len() == 1 && s.is_ascii() => Ok(Some(s.as_bytes()[0])),
        _ => Err(format!(
            "{what} must be one ASCII character, `tab` or `none`, not `{s}`"
        )),
    }
}
