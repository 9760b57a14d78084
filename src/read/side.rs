//! Side files: small extracts joined to the main one on a key column
//! (see [`SideFileSpec`]), loaded whole before the run.

use std::collections::HashMap;
use std::path::Path;

use crate::error::{Error, Result};
use crate::profile::SideFileSpec;
use crate::read::decode::{self, Encoding};

use super::dialect::single_byte;
use super::reader::csv_reader;

/// A side file loaded for joining (see [`SideFileSpec`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SideFile {
    /// The value columns it adds to the extract (all but its key).
    pub columns: Vec<String>,
    /// The extract column it joins on; `None` for a one-row file that
    /// applies to every record.
    pub join_on: Option<String>,
    /// Trimmed key → values.
    pub(super) rows: HashMap<Vec<u8>, Vec<Vec<u8>>>,
    /// The values of a file without a key.
    pub(super) constant: Vec<Vec<u8>>,
}

impl SideFile {
    /// Loads `spec.path`, relative to `base` (the profile's directory),
    /// decoded like the extract. A row with the wrong number of fields,
    /// or a key given twice, is an input error: a join that could pick
    /// either value would lose data silently.
    pub fn load(spec: &SideFileSpec, base: &Path, encoding: Encoding) -> Result<SideFile> {
        let path = base.join(&spec.path);
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        let text = decode::decode(&bytes, encoding).map_err(|message| Error::Input {
            path: path.clone(),
            line: None,
            message,
        })?;
        SideFile::parse(spec, &path, &text.bytes)
    }

    /// Parses a side file's UTF-8 text (see [`SideFile::load`]).
    pub fn parse(spec: &SideFileSpec, path: &Path, text: &[u8]) -> Result<SideFile> {
        let err = |line: Option<u64>, message: String| Error::Input {
            path: path.to_path_buf(),
            line,
            message,
        };
        let delimiter = single_byte("delimiter", &spec.delimiter)
            .map_err(|m| err(None, m))?
            .ok_or_else(|| err(None, "delimiter must not be `none`".into()))?;
        let key = match &spec.key {
            Some(k) => Some(
                spec.columns
                    .iter()
                    .position(|c| c == k)
                    .ok_or_else(|| err(None, format!("key `{k}` is not one of its columns")))?,
            ),
            None => None,
        };
        let mut side = SideFile {
            columns: spec
                .columns
                .iter()
                .enumerate()
                .filter(|(i, _)| Some(*i) != key)
                .map(|(_, c)| c.clone())
                .collect(),
            join_on: key.map(|_| {
                spec.join_on
                    .clone()
                    .or(spec.key.clone())
                    .unwrap_or_default()
            }),
            rows: HashMap::new(),
            constant: Vec::new(),
        };
        let mut rdr = csv_reader(text, 0, delimiter, None);
        let mut rec = csv::ByteRecord::new();
        let mut first = true;
        while rdr
            .read_byte_record(&mut rec)
            .map_err(|e| err(None, e.to_string()))?
        {
            let line = rec.position().map_or(0, |p| p.line());
            if rec.len() != spec.columns.len() {
                return Err(err(
                    Some(line),
                    format!(
                        "the row has {} fields; `columns` names {}",
                        rec.len(),
                        spec.columns.len()
                    ),
                ));
            }
            let values: Vec<Vec<u8>> = rec
                .iter()
                .enumerate()
                .filter(|(i, _)| Some(*i) != key)
                .map(|(_, f)| f.to_vec())
                .collect();
            match key {
                Some(k) => {
                    let kv = rec[k].trim_ascii().to_vec();
                    if side.rows.insert(kv, values).is_some() {
                        return Err(err(
                            Some(line),
                            format!(
                                "key `{}` is given twice",
                                crate::error::excerpt(&String::from_utf8_lossy(&rec[k]), 200)
                            ),
                        ));
                    }
                }
                None if first => side.constant = values,
                None => {
                    return Err(err(
                        Some(line),
                        "a side file without `key` must have one row".into(),
                    ))
                }
            }
            first = false;
        }
        if key.is_none() && first {
            return Err(err(None, "the side file is empty".into()));
        }
        Ok(side)
    }

    /// The values joined to a record whose join column holds `key`;
    /// `None` when the file has no row for it.
    pub(super) fn values(&self, key: Option<&[u8]>) -> Option<&[Vec<u8>]> {
        match key {
            None => Some(&self.constant),
            Some(k) => self.rows.get(k.trim_ascii()).map(|v| v.as_slice()),
        }
    }
}
