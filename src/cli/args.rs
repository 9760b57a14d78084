//! Command-line flags, mirrored one to one (clap derive). No I/O here:
//! `main` turns these into library options.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

const EXIT_CODES: &str = "\
Exit status:
  0  success
  3  output written, but the reject rate exceeded --max-reject-rate
     (so a scheduler alerts; see rejects.csv)
  2  usage or profile error (nothing written)
  1  any other failure, or another run holds the output directory
     (the output directory is left as it was)
  130, 143  interrupted (SIGINT, SIGTERM): temporaries removed, the
     output directory holds the previous package or the new one";

/// Parses a reject-rate threshold: a percentage from 0 to 100.
fn reject_rate(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a number"))?;
    if !(0.0..=100.0).contains(&v) {
        return Err(format!("`{s}` is not a percentage from 0 to 100"));
    }
    Ok(v)
}

/// Flags of every command that publishes a package into a directory.
#[derive(Debug, Args)]
pub struct PublishArgs {
    /// If another run is writing into the same output directory, wait for
    /// it to finish instead of stopping at once (exit 1).
    #[arg(long)]
    pub wait: bool,
    /// Create the package's files 0640 (group may read) instead of 0600,
    /// for an upload account in the directory's group; the umask still
    /// applies.
    #[arg(long)]
    pub group_readable: bool,
}

/// The output flags of every command that writes a package (`convert`,
/// `repack`): one definition, so `--help` says the same everywhere.
#[derive(Debug, Args)]
pub struct OutputArgs {
    /// Output directory (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Users per XML file.
    #[arg(long, default_value_t = 20_000, value_name = "N")]
    pub users_per_file: u64,
    /// Deflate level, 0 (store) to 9 (smallest).
    #[arg(long, default_value_t = 6, value_name = "0-9")]
    pub compression_level: u32,
    /// Print nothing on success.
    #[arg(long, short)]
    pub quiet: bool,
    /// Locking and file modes.
    #[command(flatten)]
    pub publish: PublishArgs,
}

/// Turn SIS/HR extracts into Ex Libris Alma user XML (v2) zip packages.
#[derive(Debug, Parser)]
#[command(name = "patronload", version, after_help = EXIT_CODES)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Convert extracts described by a profile into Alma user zips,
    /// rejects.csv and summary.json.
    #[command(after_help = EXIT_CODES)]
    Convert(ConvertArgs),
    /// Check Alma user XML files or zips (as other systems produce them)
    /// before upload: parse, encoding, schema, Alma's semantic checks,
    /// identifier uniqueness across the package, packaging limits.
    #[command(after_help = CHECK_EXIT_CODES)]
    Check(CheckArgs),
    /// Rebuild Alma user XML files or zips into a corrected, split,
    /// deterministic package, with rejects.csv and summary.json.
    #[command(after_help = EXIT_CODES)]
    Repack(RepackArgs),
    /// Propose a commented profile for an extract: encoding, delimiter or
    /// fixed width, header, the columns it recognises, a user group table
    /// of the codes found; TODOs for the rest.
    Init(super::init::InitArgs),
}

const CHECK_EXIT_CODES: &str = "\
Exit status:
  0  no findings: Alma would take the package as it is
  3  findings reported (see the list, or --json)
  2  usage error
  1  an input could not be read";

/// Limits shared by `check` and `repack`.
#[derive(Debug, Args)]
pub struct PackageLimitArgs {
    /// XML files per zip.
    #[arg(long, default_value_t = 50, value_name = "N")]
    pub files_per_zip: u32,
    /// Largest zip allowed (e.g. 1GB, 500MB, 4GiB).
    #[arg(long, default_value = "1GB", value_name = "SIZE")]
    pub max_zip_bytes: bytesize::ByteSize,
    /// Largest total of all zips (the Secure FTP directory budget).
    #[arg(long, default_value = "1GB", value_name = "SIZE")]
    pub max_total_bytes: bytesize::ByteSize,
    /// Largest uncompressed zip entry read.
    #[arg(long, default_value = "8GiB", value_name = "SIZE")]
    pub max_entry_bytes: bytesize::ByteSize,
    /// Largest compression ratio of a zip entry (over 1 MiB) before it is
    /// refused as a decompression bomb.
    #[arg(long, default_value_t = 250, value_name = "N")]
    pub max_ratio: u64,
    /// Directory of CSV exports of the institution's Alma code tables
    /// (user_group.csv or UserGroups.csv, id_type.csv, ...): unknown codes
    /// are reported.
    #[arg(long, value_name = "DIR")]
    pub codes: Option<PathBuf>,
}

/// Flags of `patronload check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Print the report as JSON on stdout instead of the human list.
    #[arg(long)]
    pub json: bool,
    /// Findings listed (the rest are counted).
    #[arg(long, default_value_t = 1000, value_name = "N")]
    pub max_findings: usize,
    /// Limits and code tables.
    #[command(flatten)]
    pub limits: PackageLimitArgs,
    /// Alma user XML files and zips of them, in load order.
    #[arg(required = true, value_name = "FILE")]
    pub inputs: Vec<PathBuf>,
}

/// Flags of `patronload repack`.
#[derive(Debug, Args)]
pub struct RepackArgs {
    /// Where the package goes, its shape, and how it is published.
    #[command(flatten)]
    pub output: OutputArgs,
    /// The zip entries' timestamp, so runs are reproducible. Default:
    /// today.
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub as_of: Option<chrono::NaiveDate>,
    /// Name prefix of the zips and XML files.
    #[arg(long, default_value = "alma_users", value_name = "PREFIX")]
    pub prefix: String,
    /// Reject rate (percent, 0 to 100) above which the run exits with
    /// status 3.
    #[arg(long, default_value_t = 5.0, value_name = "PERCENT", value_parser = reject_rate)]
    pub max_reject_rate: f64,
    /// Limits and code tables.
    #[command(flatten)]
    pub limits: PackageLimitArgs,
    /// Alma user XML files and zips of them, in load order.
    #[arg(required = true, value_name = "FILE")]
    pub inputs: Vec<PathBuf>,
}

/// Flags of `patronload convert`.
#[derive(Debug, Args)]
pub struct ConvertArgs {
    /// Profile (TOML) describing the extract layout and the mapping.
    #[arg(long, value_name = "PROFILE.toml", required_unless_present = "job")]
    pub profile: Option<PathBuf>,
    /// Job file (TOML) listing several sources, each with its profile and
    /// inputs, converted into one package with one user per person
    /// (see docs/job.md). Replaces --profile and INPUT.
    #[arg(long, value_name = "JOB.toml", conflicts_with_all = ["profile", "inputs"])]
    pub job: Option<PathBuf>,
    /// Where the package goes, its shape, and how it is published.
    #[command(flatten)]
    pub output: OutputArgs,
    /// The date "today" is for every date rule, so runs are reproducible.
    /// Also the zip entries' timestamp. Default: today.
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub as_of: Option<chrono::NaiveDate>,
    /// XML files per zip.
    #[arg(long, default_value_t = 50, value_name = "N")]
    pub files_per_zip: u32,
    /// Largest zip allowed (e.g. 1GB, 500MB, 4GiB). Default: the 1 GB Ex
    /// Libris Secure FTP directory limit.
    #[arg(long, default_value = "1GB", value_name = "SIZE")]
    pub max_zip_bytes: bytesize::ByteSize,
    /// Largest total of all zips of the run.
    #[arg(long, default_value = "1GB", value_name = "SIZE")]
    pub max_total_bytes: bytesize::ByteSize,
    /// Reject rate (percent, 0 to 100) above which the run exits with
    /// status 3. Default: 5, the rate at which Alma itself alerts.
    #[arg(long, default_value_t = 5.0, value_name = "PERCENT", value_parser = reject_rate)]
    pub max_reject_rate: f64,
    /// Name prefix of the zips and XML files (overrides the profile's).
    #[arg(long, value_name = "PREFIX")]
    pub prefix: Option<String>,
    /// Worker threads. Default: all cores. Output is byte-identical for
    /// any number.
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Target shard size in bytes of input (tuning; output is identical
    /// for any size).
    #[arg(long, value_name = "BYTES", hide = true)]
    pub shard_bytes: Option<usize>,
    /// Run the single-threaded reference engine (for comparisons).
    #[arg(long, hide = true)]
    pub reference: bool,
    /// Read inputs into memory instead of memory-mapping them.
    #[arg(long)]
    pub no_mmap: bool,
    /// Extract files of the profile's layout, processed in this order.
    #[arg(required_unless_present = "job", value_name = "INPUT")]
    pub inputs: Vec<PathBuf>,
}
