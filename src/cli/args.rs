//! Command-line flags, mirrored one to one (clap derive). No I/O here:
//! `main` turns these into library options.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

const EXIT_CODES: &str = "\
Exit status:
  0  success
  3  output written, but the reject rate exceeded --max-reject-rate
     (so a scheduler alerts; see rejects.csv)
  4  a guard tripped (--state): nothing published, the state file
     untouched (see the message; --accept-changes lets one run through)
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
    /// What the state file knows of one patron: every run that saw,
    /// changed, sent or expired them (field names only, never values).
    History(HistoryArgs),
    /// Upload the package published in DIR to an SFTP directory Alma
    /// polls (`[delivery.NAME]` in --config).
    #[command(after_help = DELIVER_EXIT_CODES)]
    Deliver(DeliverArgs),
    /// The nightly job: convert (as `convert`), publish, deliver to
    /// --target, notify ([notify]).
    #[command(after_help = RUN_EXIT_CODES)]
    Run(RunArgs),
    /// Triage Alma's rejected-users report (.xlsx or .csv): a cause code,
    /// the action to take and the patron's source line for every row.
    Triage(TriageArgs),
    /// Export users with fines or blocks from Alma's export into the file
    /// the SIS loads (columns, filter and encoding in an export profile).
    Export(ExportArgs),
    /// Propose a commented profile for an extract: encoding, delimiter or
    /// fixed width, header, the columns it recognises, a user group table
    /// of the codes found; TODOs for the rest.
    Init(super::init::InitArgs),
}

/// Flags of `patronload triage`.
#[derive(Debug, Args)]
pub struct TriageArgs {
    /// The output directory of the convert run that made the load (its
    /// index.csv and summary.json).
    #[arg(long, value_name = "DIR")]
    pub run: PathBuf,
    /// The triage file to write (CSV; replaced in one step).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Alma's "Rejected Users" report exported to Excel (.xlsx) or CSV.
    #[arg(value_name = "REPORT")]
    pub report: PathBuf,
}

/// Flags of `patronload export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The export profile (TOML): filter, columns, format, encoding.
    #[arg(long, value_name = "EXPORT.toml")]
    pub profile: PathBuf,
    /// Output directory (created if missing; published like convert's).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Print nothing on success.
    #[arg(long, short)]
    pub quiet: bool,
    /// Locking and file modes.
    #[command(flatten)]
    pub publish: PublishArgs,
    /// Alma's user exports (v2 or v1 XML, zips of it, or CSV), in order.
    #[arg(required = true, value_name = "ALMA_EXPORT")]
    pub inputs: Vec<PathBuf>,
}

const DELIVER_EXIT_CODES: &str = "\
Exit status:
  0  delivered (or, with --dry-run, checked)
  2  usage or configuration error (nothing sent)
  5  delivery failed or refused (host key, login, budget, permission,
     network after retries): no file under a final name was written";

const RUN_EXIT_CODES: &str = "\
Exit status:
  0  converted, published and delivered
  3  published but not delivered: the reject rate exceeded
     --max-reject-rate or an input's encoding is suspect; read
     rejects.csv, then `patronload deliver`
  4  a state guard tripped: nothing published or delivered, the state
     file unchanged (see the message; --accept-changes lets it through)
  5  published, but the delivery failed (see `deliver`)
  2  usage, profile or configuration error; nothing written
  1  any other failure of the conversion; nothing published
  130, 143  interrupted (SIGINT, SIGTERM)";

/// Flags of `patronload deliver`.
#[derive(Debug, Args)]
pub struct DeliverArgs {
    /// TOML file with `[delivery.NAME]` tables (a job file will do).
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// The `[delivery.NAME]` table to use (e.g. dev, prod).
    #[arg(long, value_name = "NAME")]
    pub target: String,
    /// Connect, check the host key, list and plan; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print nothing on success.
    #[arg(long, short)]
    pub quiet: bool,
    /// The output directory holding the published package.
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
}

/// Flags of `patronload run`: every flag of `convert`, plus where to
/// deliver.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The conversion, exactly as `convert` takes it.
    #[command(flatten)]
    pub convert: ConvertArgs,
    /// The `[delivery.NAME]` table to deliver to.
    #[arg(long, value_name = "NAME")]
    pub target: String,
    /// TOML file with `[delivery.NAME]` and `[notify]`. Default: the
    /// --job file.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Convert and publish, then check the delivery without writing to
    /// the server.
    #[arg(long)]
    pub dry_run: bool,
}

/// `patronload history`.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// The state file.
    #[arg(long, value_name = "FILE")]
    pub state: PathBuf,
    /// Print the record last sent (XML; it holds personal data).
    #[arg(long)]
    pub xml: bool,
    /// The patron's primary id.
    #[arg(value_name = "ID")]
    pub id: String,
}

/// `convert --package`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum PackageArg {
    /// Every user written.
    Full,
    /// New, changed and returned users, and departed ones expired.
    Delta,
}

/// `convert --departed`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum DepartedArg {
    /// Record them as departed, send nothing.
    Ignore,
    /// Send the last record once more with an expiry date and a note.
    Expire,
}

/// Memory of past runs (`convert --state` and its options); a job file's
/// `[state]` gives the same, and a flag given here wins.
#[derive(Debug, Args)]
pub struct StateArgs {
    /// The state file: what was sent, per patron (created on first use,
    /// mode 0600; it holds personal data).
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
    /// Which users the package holds (with --state). Default: full.
    #[arg(long, value_enum)]
    pub package: Option<PackageArg>,
    /// What happens to patrons no longer in the feed (with --state).
    /// Default: ignore.
    #[arg(long, value_enum)]
    pub departed: Option<DepartedArg>,
    /// Days after --as-of a departed patron expires. Default: 0.
    #[arg(long, value_name = "N")]
    pub departed_grace_days: Option<u32>,
    /// Note type of the departure note. Default: OTHER.
    #[arg(long, value_name = "CODE")]
    pub departed_note_type: Option<String>,
    /// Let this run through tripped guards (recorded in the state file).
    #[arg(long)]
    pub accept_changes: bool,
    /// Guard: users fewer than the last run, in percent. Default: 10.
    #[arg(long, value_name = "PERCENT", value_parser = reject_rate)]
    pub guard_population_drop: Option<f64>,
    /// Guard: departed users, in percent. Default: 5.
    #[arg(long, value_name = "PERCENT", value_parser = reject_rate)]
    pub guard_departed: Option<f64>,
    /// Guard: users whose user group changed, in percent. Default: 10.
    #[arg(long, value_name = "PERCENT", value_parser = reject_rate)]
    pub guard_group_changed: Option<f64>,
    /// Guard: users with any one field changed, in percent. Default: 20.
    #[arg(long, value_name = "PERCENT", value_parser = reject_rate)]
    pub guard_field_changed: Option<f64>,
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
    /// Alma's own users ("Export Users": v2 or v1 XML, zips of it, or a
    /// CSV with primary id, account type and identifier columns): every
    /// user is checked against them before it is written (rejects
    /// `taken_in_alma`, `internal_in_alma`). Repeat for several files;
    /// adds to a job's `[alma] users`.
    #[arg(long, value_name = "FILE")]
    pub alma_users: Vec<PathBuf>,
    /// Extract files of the profile's layout, processed in this order.
    #[arg(required_unless_present = "job", value_name = "INPUT")]
    pub inputs: Vec<PathBuf>,
    #[command(flatten)]
    pub state: StateArgs,
}
