//! What a delivery does to the remote directory, decided from its listing
//! alone: pure, so every rule is unit-tested without a server.
//!
//! Names: a published zip `<prefix>_NNN.zip` goes to the server as
//! `<prefix>_<run>_NNN.zip`, where `<run>` is `<as-of YYYYMMDD>_<8 hex>`
//! from the package's SHA-256s: the same package always gets the same
//! names (a re-delivery after an interrupted attempt finds what is already
//! there and uploads only the rest), a different package never does. It
//! is uploaded first as `.<final>.part`, which Alma ignores. Alma renames
//! what it has picked up, e.g. `<final>.handled`. Anything else in the
//! directory is not ours and is never touched.

/// A file in the remote directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteEntry {
    /// File name (no directory).
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, seconds since the epoch (0 when unknown).
    pub mtime: u64,
}

/// A zip of the local package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalZip {
    /// Name in the output directory, `<prefix>_NNN.zip`.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256, lower-case hex (from `summary.json`).
    pub sha256: String,
}

/// The package and the rules a plan follows.
#[derive(Debug, Clone)]
pub struct PlanInput<'a> {
    /// Zip and XML name prefix of the package.
    pub prefix: &'a str,
    /// `<as-of YYYYMMDD>_<8 hex>`, see [`run_id`].
    pub run_id: &'a str,
    /// The package's zips, in order.
    pub zips: &'a [LocalZip],
    /// A delta package: earlier packages not yet picked up are kept.
    pub delta: bool,
    /// Now, seconds since the epoch.
    pub now: u64,
    /// `.handled` files older than this many days are removed.
    pub keep_handled_days: u32,
    /// Budget of the directory in bytes.
    pub max_dir_bytes: u64,
    /// Zips the directory may hold after delivery.
    pub max_zips: u32,
}

/// One zip to upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    /// Local name in the package.
    pub local: String,
    /// Temporary remote name.
    pub temp: String,
    /// Final remote name.
    pub final_name: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 the upload must have, lower-case hex.
    pub sha256: String,
}

/// What a delivery does, in this order: remove `remove_temps`,
/// `remove_stale` and `remove_handled`, upload each of `uploads` under its
/// temporary name, check it, then rename it to its final name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Zips to upload.
    pub uploads: Vec<Upload>,
    /// Final names of this package already on the server (or picked up).
    pub already_there: Vec<String>,
    /// Our temporaries of interrupted attempts.
    pub remove_temps: Vec<String>,
    /// Our earlier packages not picked up, removed because this one is full.
    pub remove_stale: Vec<String>,
    /// Our earlier packages not picked up, kept because this one is a delta.
    pub keep_stale: Vec<String>,
    /// Our `.handled` files older than `keep_handled_days`.
    pub remove_handled: Vec<String>,
    /// Files that are not ours (left alone).
    pub foreign: Vec<String>,
    /// Bytes in the directory after the delivery.
    pub bytes_after: u64,
    /// Zips in the directory after the delivery.
    pub zips_after: u32,
}

/// Why a plan is refused before anything is written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The directory would exceed its byte budget.
    #[error(
        "the remote directory would hold {after} bytes ({existing} already there that stay, \
         {upload} to upload), over max_dir_bytes {limit}"
    )]
    Bytes {
        /// Bytes of files that stay.
        existing: u64,
        /// Bytes to upload.
        upload: u64,
        /// Their sum.
        after: u64,
        /// The budget.
        limit: u64,
    },
    /// The directory would hold more zips than Alma loads in one run.
    #[error(
        "the remote directory would hold {after} zips ({existing} already there that stay, \
         {upload} to upload), over the {limit} Alma loads in one run"
    )]
    Zips {
        /// Zips that stay.
        existing: u32,
        /// Zips to upload.
        upload: u32,
        /// Their sum.
        after: u32,
        /// The limit.
        limit: u32,
    },
}

/// The run id of a package: its as-of date (`YYYY-MM-DD`) and the first 8
/// hex digits of the SHA-256 over its zips' names and SHA-256s.
pub fn run_id(as_of: &str, zips: &[LocalZip]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for z in zips {
        h.update(z.name.as_bytes());
        h.update([0]);
        h.update(z.sha256.as_bytes());
        h.update([0]);
    }
    let digest = h.finalize();
    let hex: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    let date: String = as_of.chars().filter(char::is_ascii_digit).collect();
    format!("{date}_{hex}")
}

/// `NNN` of a local `<prefix>_NNN.zip`.
pub fn local_number<'a>(prefix: &str, name: &'a str) -> Option<&'a str> {
    let num = name
        .strip_prefix(prefix)?
        .strip_prefix('_')?
        .strip_suffix(".zip")?;
    (num.len() == 3 && num.bytes().all(|b| b.is_ascii_digit())).then_some(num)
}

/// The final remote name of a local zip.
pub fn final_name(prefix: &str, run_id: &str, local: &str) -> Option<String> {
    local_number(prefix, local).map(|n| format!("{prefix}_{run_id}_{n}.zip"))
}

/// What one of our remote names is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Own<'a> {
    /// `<prefix>_<run>_NNN.zip`, with its run id.
    Final(&'a str),
    /// `<final>.handled`.
    Handled(&'a str),
    /// `.<final>.part`.
    Temp,
}

/// Classifies `name` as ours (with its run id) or not.
fn own<'a>(prefix: &str, name: &'a str) -> Option<Own<'a>> {
    if let Some(inner) = name.strip_prefix('.').and_then(|n| n.strip_suffix(".part")) {
        return is_final(prefix, inner).map(|_| Own::Temp);
    }
    if let Some(inner) = name.strip_suffix(".handled") {
        return is_final(prefix, inner).map(Own::Handled);
    }
    is_final(prefix, name).map(Own::Final)
}

/// The run id of a final name `<prefix>_<YYYYMMDD>_<8 hex>_NNN.zip`.
fn is_final<'a>(prefix: &str, name: &'a str) -> Option<&'a str> {
    let rest = name
        .strip_prefix(prefix)?
        .strip_prefix('_')?
        .strip_suffix(".zip")?;
    let (run, num) = rest.rsplit_once('_')?;
    let (date, hash) = run.split_once('_')?;
    let ok = num.len() == 3
        && num.bytes().all(|b| b.is_ascii_digit())
        && date.len() == 8
        && date.bytes().all(|b| b.is_ascii_digit())
        && hash.len() == 8
        && hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    ok.then_some(run)
}

/// Decides what a delivery does to a directory holding `listing`, or why
/// it must not start.
pub fn plan(input: &PlanInput<'_>, listing: &[RemoteEntry]) -> Result<Plan, Refusal> {
    let mut p = Plan::default();
    let handled_cutoff = input
        .now
        .saturating_sub(u64::from(input.keep_handled_days) * 86_400);
    let mut ours_there = std::collections::HashSet::new();
    let mut existing_bytes = 0u64;
    let mut existing_zips = 0u32;
    for e in listing {
        let stays = match own(input.prefix, &e.name) {
            Some(Own::Temp) => {
                p.remove_temps.push(e.name.clone());
                false
            }
            Some(Own::Final(run)) if run == input.run_id => {
                ours_there.insert(e.name.clone());
                true
            }
            Some(Own::Final(_)) if input.delta => {
                p.keep_stale.push(e.name.clone());
                true
            }
            Some(Own::Final(_)) => {
                p.remove_stale.push(e.name.clone());
                false
            }
            Some(Own::Handled(run)) => {
                if run == input.run_id {
                    // Alma took this package's zip already: never again.
                    ours_there.insert(e.name.trim_end_matches(".handled").to_string());
                }
                if e.mtime < handled_cutoff {
                    p.remove_handled.push(e.name.clone());
                    false
                } else {
                    true
                }
            }
            None => {
                p.foreign.push(e.name.clone());
                true
            }
        };
        if stays {
            existing_bytes = existing_bytes.saturating_add(e.size);
            if e.name.ends_with(".zip") {
                existing_zips += 1;
            }
        }
    }
    let mut upload_bytes = 0u64;
    for z in input.zips {
        let Some(final_name) = final_name(input.prefix, input.run_id, &z.name) else {
            continue;
        };
        if ours_there.contains(&final_name) {
            p.already_there.push(final_name);
            continue;
        }
        upload_bytes = upload_bytes.saturating_add(z.size);
        p.uploads.push(Upload {
            local: z.name.clone(),
            temp: format!(".{final_name}.part"),
            final_name,
            size: z.size,
            sha256: z.sha256.clone(),
        });
    }
    let upload_zips = p.uploads.len() as u32;
    p.bytes_after = existing_bytes.saturating_add(upload_bytes);
    p.zips_after = existing_zips + upload_zips;
    if p.bytes_after > input.max_dir_bytes {
        return Err(Refusal::Bytes {
            existing: existing_bytes,
            upload: upload_bytes,
            after: p.bytes_after,
            limit: input.max_dir_bytes,
        });
    }
    if p.zips_after > input.max_zips {
        return Err(Refusal::Zips {
            existing: existing_zips,
            upload: upload_zips,
            after: p.zips_after,
            limit: input.max_zips,
        });
    }
    for v in [
        &mut p.remove_temps,
        &mut p.remove_stale,
        &mut p.keep_stale,
        &mut p.remove_handled,
        &mut p.foreign,
    ] {
        v.sort();
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 86_400;
    const NOW: u64 = 1_800_000_000;

    fn zips(n: usize, size: u64) -> Vec<LocalZip> {
        (1..=n)
            .map(|i| LocalZip {
                name: format!("pl_{i:03}.zip"),
                size,
                sha256: format!("{i:064x}"),
            })
            .collect()
    }

    fn entry(name: &str, size: u64, age_days: u64) -> RemoteEntry {
        RemoteEntry {
            name: name.into(),
            size,
            mtime: NOW - age_days * DAY,
        }
    }

    fn input<'a>(zips: &'a [LocalZip], run: &'a str, delta: bool) -> PlanInput<'a> {
        PlanInput {
            prefix: "pl",
            run_id: run,
            zips,
            delta,
            now: NOW,
            keep_handled_days: 30,
            max_dir_bytes: 1000,
            max_zips: 20,
        }
    }

    #[test]
    fn run_id_follows_the_package() {
        let a = zips(2, 10);
        let mut b = a.clone();
        b[1].sha256 = "f".repeat(64);
        let ra = run_id("2026-12-04", &a);
        assert!(ra.starts_with("20261204_") && ra.len() == 17, "{ra}");
        assert_eq!(ra, run_id("2026-12-04", &a));
        assert_ne!(ra, run_id("2026-12-04", &b));
        assert_ne!(ra, run_id("2026-12-05", &a));
    }

    #[test]
    fn fresh_directory_uploads_everything_under_temp_names() {
        let z = zips(2, 100);
        let run = run_id("2026-12-04", &z);
        let p = plan(&input(&z, &run, false), &[]).unwrap();
        assert_eq!(p.uploads.len(), 2);
        let u = &p.uploads[1];
        assert_eq!(u.final_name, format!("pl_{run}_002.zip"));
        assert_eq!(u.temp, format!(".pl_{run}_002.zip.part"));
        assert!(!u.temp.ends_with(".zip"));
        assert_eq!((p.bytes_after, p.zips_after), (200, 2));
    }

    #[test]
    fn full_removes_stale_delta_keeps_them_foreign_untouched() {
        let z = zips(1, 100);
        let run = run_id("2026-12-04", &z);
        let listing = [
            entry("pl_20261203_0123abcd_001.zip", 50, 1),
            entry("pl_20261203_0123abcd_001.zip.handled", 50, 1),
            entry("pl_20261001_0123abcd_001.zip.handled", 50, 60),
            entry(".pl_20261203_0123abcd_002.zip.part", 7, 1),
            entry("pl_001.zip", 5, 1),
            entry("other_20261203_0123abcd_001.zip", 5, 1),
            entry("notes.txt", 5, 100),
        ];
        let full = plan(&input(&z, &run, false), &listing).unwrap();
        assert_eq!(full.remove_stale, ["pl_20261203_0123abcd_001.zip"]);
        assert!(full.keep_stale.is_empty());
        assert_eq!(
            full.remove_handled,
            ["pl_20261001_0123abcd_001.zip.handled"]
        );
        assert_eq!(full.remove_temps, [".pl_20261203_0123abcd_002.zip.part"]);
        assert_eq!(
            full.foreign,
            ["notes.txt", "other_20261203_0123abcd_001.zip", "pl_001.zip"]
        );
        // Recent .handled 50 + foreign 15 + upload 100.
        assert_eq!((full.bytes_after, full.zips_after), (165, 3));

        let delta = plan(&input(&z, &run, true), &listing).unwrap();
        assert!(delta.remove_stale.is_empty());
        assert_eq!(delta.keep_stale, ["pl_20261203_0123abcd_001.zip"]);
        assert_eq!((delta.bytes_after, delta.zips_after), (215, 4));
    }

    #[test]
    fn same_package_again_uploads_only_what_is_missing() {
        let z = zips(3, 100);
        let run = run_id("2026-12-04", &z);
        let listing = [
            entry(&format!("pl_{run}_001.zip"), 100, 0),
            entry(&format!("pl_{run}_002.zip.handled"), 100, 0),
            entry(&format!(".pl_{run}_003.zip.part"), 40, 0),
        ];
        let p = plan(&input(&z, &run, false), &listing).unwrap();
        assert_eq!(
            p.already_there,
            [format!("pl_{run}_001.zip"), format!("pl_{run}_002.zip")]
        );
        assert_eq!(p.uploads.len(), 1);
        assert_eq!(p.uploads[0].local, "pl_003.zip");
        assert_eq!(p.remove_temps, [format!(".pl_{run}_003.zip.part")]);
        assert!(p.remove_stale.is_empty());
    }

    #[test]
    fn budget_counts_what_stays() {
        let z = zips(2, 400);
        let run = run_id("2026-12-04", &z);
        // A foreign 300-byte file: 300 + 800 > 1000.
        let over = plan(&input(&z, &run, false), &[entry("x.csv", 300, 0)]).unwrap_err();
        assert_eq!(
            over,
            Refusal::Bytes {
                existing: 300,
                upload: 800,
                after: 1100,
                limit: 1000
            }
        );
        // Our stale full package of 300 goes first, so it does not count.
        let stale = entry("pl_20261203_0123abcd_001.zip", 300, 1);
        assert!(plan(&input(&z, &run, false), std::slice::from_ref(&stale)).is_ok());
        // A delta keeps it, so it does.
        assert!(matches!(
            plan(&input(&z, &run, true), &[stale]),
            Err(Refusal::Bytes { .. })
        ));
    }

    #[test]
    fn zip_count_limit() {
        let z = zips(3, 1);
        let run = run_id("2026-12-04", &z);
        let mut i = input(&z, &run, false);
        i.max_zips = 4;
        let listing = [entry("a.zip", 1, 0), entry("b.zip", 1, 0)];
        assert_eq!(
            plan(&i, &listing).unwrap_err(),
            Refusal::Zips {
                existing: 2,
                upload: 3,
                after: 5,
                limit: 4
            }
        );
    }

    #[test]
    fn names_that_only_look_like_ours_are_foreign() {
        for name in [
            "pl_2026120_0123abcd_001.zip",
            "pl_20261203_0123ABCD_001.zip",
            "pl_20261203_0123abcd_01.zip",
            "plx_20261203_0123abcd_001.zip",
            ".pl_20261203_0123abcd_001.zip",
            "pl_20261203_0123abcd_001.zip.part",
        ] {
            assert_eq!(own("pl", name), None, "{name}");
        }
    }
}
