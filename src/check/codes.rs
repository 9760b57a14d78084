//! Optional code tables (`--codes DIR`): CSV exports of the institution's
//! Alma code tables, so codes Alma does not know are reported before the
//! load rather than in the morning's job report.
//!
//! A file names its table either by the element it governs
//! (`user_group.csv`) or by Alma's code table name (`UserGroups.csv`).
//! The codes are the column headed `Code` (any case), else the first
//! column. Codes compare exactly: Alma's codes are case-sensitive.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use crate::error::{Error, Result};

/// Alma code table names and the element each governs.
const TABLES: &[(&str, &str)] = &[
    ("UserGroups", "user_group"),
    ("UserIdentifierTypes", "id_type"),
    ("UserStatCategories", "statistic_category"),
    ("UserStatisticalTypes", "category_type"),
    ("CountryCodes", "country"),
    ("UserAddressTypes", "address_type"),
    ("UserEmailTypes", "email_type"),
    ("UserPhoneTypes", "phone_type"),
    ("NoteTypes", "note_type"),
    ("UserBlockTypes", "block_type"),
    ("UserBlockDescription", "block_description"),
    ("Genders", "gender"),
    ("UserPreferredLanguage", "preferred_language"),
    ("JobTitles", "job_category"),
    ("UserTitles", "user_title"),
    ("Campuses", "campus_code"),
    ("AddNewUserOptions", "record_type"),
];

/// The allowed codes per element name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CodeTables {
    by_element: BTreeMap<String, HashSet<String>>,
}

impl CodeTables {
    /// Loads every `*.csv` of `dir`. A file whose name is neither an
    /// element nor a known Alma table name is a usage error, so a typo
    /// does not silently disable a check.
    pub fn load(dir: &Path) -> Result<CodeTables> {
        let mut t = CodeTables::default();
        let rd = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
        let mut paths: Vec<_> = rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x.eq_ignore_ascii_case("csv")))
            .collect();
        paths.sort();
        for p in paths {
            let stem = p
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default()
                .to_string();
            let element = TABLES
                .iter()
                .find(|(table, el)| table.eq_ignore_ascii_case(&stem) || *el == stem)
                .map(|(_, el)| *el)
                .ok_or_else(|| {
                    Error::Usage(format!(
                        "--codes: {} names no known code table; use an element name \
                         (user_group.csv) or an Alma table name (UserGroups.csv)",
                        p.display()
                    ))
                })?;
            let codes = read_codes(&p)?;
            t.by_element
                .entry(element.to_string())
                .or_default()
                .extend(codes);
        }
        Ok(t)
    }

    /// Adds one table in memory (for tests and library callers).
    pub fn insert(&mut self, element: &str, codes: impl IntoIterator<Item = String>) {
        self.by_element
            .entry(element.to_string())
            .or_default()
            .extend(codes);
    }

    /// Whether `code` is allowed in `element`; true when no table governs
    /// the element.
    pub fn knows(&self, element: &str, code: &str) -> bool {
        self.by_element
            .get(element)
            .is_none_or(|set| set.contains(code))
    }

    /// The elements that have a table.
    pub fn elements(&self) -> impl Iterator<Item = &str> {
        self.by_element.keys().map(String::as_str)
    }
}

fn read_codes(p: &Path) -> Result<Vec<String>> {
    let mut rdr = csv::ReaderBuilder::new()
        .flexible(true)
        .from_path(p)
        .map_err(|e| Error::Usage(format!("--codes: {}: {e}", p.display())))?;
    let headers = rdr
        .headers()
        .map_err(|e| Error::Usage(format!("--codes: {}: {e}", p.display())))?
        .clone();
    let col = headers
        .iter()
        .position(|h| {
            h.trim()
                .trim_start_matches('\u{feff}')
                .eq_ignore_ascii_case("code")
        })
        .unwrap_or(0);
    let mut out = Vec::new();
    for r in rdr.records() {
        let r = r.map_err(|e| Error::Usage(format!("--codes: {}: {e}", p.display())))?;
        if let Some(v) = r.get(col).map(str::trim).filter(|v| !v.is_empty()) {
            out.push(v.to_string());
        }
    }
    Ok(out)
}
