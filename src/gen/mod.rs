//! Synthetic SIS extracts with known defects, for tests and benchmarks.
//!
//! Real student and staff extracts cannot leave the institution, yet the
//! converter has to be tested and measured on large files that contain every
//! kind of record it must reject or handle specially: duplicate identifiers
//! (including the "chain" case where a rejected record must not block a later
//! one), missing mandatory fields, unknown codes, bad dates, ragged rows,
//! quoted commas and quoted newlines. [`generate`] writes such an extract,
//! entirely made up, together with a ground-truth CSV that says what the
//! converter is expected to do with every record, so tests can compare
//! outcomes record by record and benchmarks can use millions of rows.
//!
//! Output is a pure function of [`GenOptions`]: the same options give
//! byte-identical files on any machine (a seeded ChaCha8 generator, integer
//! ranges of fixed width, no clock and no thread-local randomness).
//!
//! # Extract
//!
//! UTF-8, LF line ends, comma delimiter, `"` quoting where needed, with the
//! header [`HEADER`]. Normal records have a unique `EMPLID` (`S0001234`,
//! derived from the record number) and a unique 14-digit `BARCODE`.
//!
//! # Truth file
//!
//! Header [`TRUTH_HEADER`], one row per extract record in order:
//!
//! * `line`: 1-based physical line where the record starts (the header is
//!   line 1; a record with a quoted newline spans two lines);
//! * `record`: 1-based record number, header excluded;
//! * `primary_id`: the `EMPLID` as written (may be empty);
//! * `outcome`: `written` or `rejected`;
//! * `reason`: the expected reject reason code, empty when written;
//! * `kind`: `normal`, `self_barcode` (barcode equals the record's own
//!   EMPLID; written, the converter drops that identifier),
//!   `unknown_campus` (written, the code is counted), `multiline` (an
//!   `ADDR2` with a quoted newline; written), or one of the defect kinds
//!   `dup_primary`, `dup_barcode`, `chain` (written), `missing_last`,
//!   `missing_id`, `unknown_group`, `bad_date`, `ragged`.
//!
//! # Rich extract
//!
//! [`generate_rich`] writes the same records with the columns of
//! [`RICH_EXTRA`] after [`HEADER`]'s, so that one profile
//! (`examples/rich.toml`) uses every segment kind: a second phone, two
//! more identifiers (`UNIV_ID`, `LIBRARY_ID`, unique per record like the
//! barcode), and a free-text note (with commas, `&` and `<` to escape).
//! Its dates are written in the seven [`RICH_DATE_FORMATS`], chosen per
//! value, so a profile that lists them all reads every one. The truth file
//! is the same kinds and outcomes: the new columns carry no defect, and
//! a `ragged` record still lacks the last three fields.

use std::io::{self, BufWriter, Write};

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The extract's header row, in column order.
pub const HEADER: [&str; 20] = [
    "EMPLID",
    "BARCODE",
    "LAST_NAME",
    "FIRST_NAME",
    "MIDDLE_NAME",
    "PREF_FIRST_NAME",
    "PATRON_TYPE",
    "CAMPUS",
    "EMAIL",
    "ALT_EMAIL",
    "PHONE",
    "ADDR1",
    "ADDR2",
    "CITY",
    "STATE",
    "POSTAL",
    "COUNTRY",
    "BIRTH_DATE",
    "EXPIRY_DATE",
    "DEPT",
];

/// The columns [`generate_rich`] writes after [`HEADER`]'s, in order.
pub const RICH_EXTRA: [&str; 4] = ["WORK_PHONE", "UNIV_ID", "LIBRARY_ID", "NOTE"];

/// The date formats of a rich extract (chrono syntax), each one as likely;
/// tried in this order, every value reads as the date it was written for
/// (`%m/%d/%Y` refuses `08/14/53` as year 53, so `%m/%d/%y` then reads it).
pub const RICH_DATE_FORMATS: [&str; 7] = [
    "%Y-%m-%d", "%m/%d/%Y", "%d.%m.%Y", "%Y%m%d", "%d-%b-%Y", "%b %d %Y", "%m/%d/%y",
];

/// The truth file's header row, in column order.
pub const TRUTH_HEADER: [&str; 6] = ["line", "record", "primary_id", "outcome", "reason", "kind"];

/// How many trailing fields a `ragged` record lacks.
const RAGGED_DROP: usize = 3;

/// Records at the start that are always plain `normal`, so duplicates have
/// something to copy.
const LEAD_NORMAL: u64 = 10;

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct GenOptions {
    /// Number of extract records (header excluded).
    pub rows: u64,
    /// Seed of the random generator; same seed and options, same bytes.
    pub seed: u64,
    /// Fraction of records that duplicate an identifier of an earlier
    /// written record (`dup_primary`, `dup_barcode`, and some `chain`).
    pub dup_rate: f64,
    /// Fraction of records with one malformed or rejectable defect
    /// (`missing_last`, `missing_id`, `unknown_group`, `bad_date`, `ragged`).
    pub bad_rate: f64,
}

impl Default for GenOptions {
    /// 300 rows, seed 1, 3% duplicates and 3% bad records.
    fn default() -> Self {
        GenOptions {
            rows: 300,
            seed: 1,
            dup_rate: 0.03,
            bad_rate: 0.03,
        }
    }
}

/// Counts of what [`generate`] wrote, as the truth file has them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GenStats {
    /// Extract records written (header excluded).
    pub rows: u64,
    /// Records the converter is expected to write as users.
    pub expected_written: u64,
    /// Records the converter is expected to reject.
    pub expected_rejected: u64,
}

/// The kind of one generated record; its name is the truth file's `kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Normal,
    SelfBarcode,
    UnknownCampus,
    Multiline,
    DupPrimary,
    DupBarcode,
    Chain,
    MissingLast,
    MissingId,
    UnknownGroup,
    BadDate,
    Ragged,
}

impl Kind {
    /// The five `bad_rate` kinds, picked uniformly.
    const BAD: [Kind; 5] = [
        Kind::MissingLast,
        Kind::MissingId,
        Kind::UnknownGroup,
        Kind::BadDate,
        Kind::Ragged,
    ];

    fn name(self) -> &'static str {
        match self {
            Kind::Normal => "normal",
            Kind::SelfBarcode => "self_barcode",
            Kind::UnknownCampus => "unknown_campus",
            Kind::Multiline => "multiline",
            Kind::DupPrimary => "dup_primary",
            Kind::DupBarcode => "dup_barcode",
            Kind::Chain => "chain",
            Kind::MissingLast => "missing_last",
            Kind::MissingId => "missing_id",
            Kind::UnknownGroup => "unknown_group",
            Kind::BadDate => "bad_date",
            Kind::Ragged => "ragged",
        }
    }

    /// The expected reject reason code, or `None` when the record is written.
    fn reason(self) -> Option<&'static str> {
        match self {
            Kind::Normal
            | Kind::SelfBarcode
            | Kind::UnknownCampus
            | Kind::Multiline
            | Kind::Chain => None,
            Kind::DupPrimary | Kind::DupBarcode => Some("duplicate_id"),
            Kind::MissingLast | Kind::MissingId => Some("missing_field"),
            Kind::UnknownGroup => Some("unknown_code"),
            Kind::BadDate => Some("invalid_date"),
            Kind::Ragged => Some("field_count"),
        }
    }
}

/// A name as shown, and its ASCII form for email addresses.
type Name = (&'static str, &'static str);

const FIRST: &[Name] = &[
    ("Alden", "alden"),
    ("Brisa", "brisa"),
    ("Calder", "calder"),
    ("Delia", "delia"),
    ("Emrys", "emrys"),
    ("Fenna", "fenna"),
    ("Gideon", "gideon"),
    ("Halle", "halle"),
    ("Ilsa", "ilsa"),
    ("Jorah", "jorah"),
    ("Kestrel", "kestrel"),
    ("Liora", "liora"),
    ("Marek", "marek"),
    ("Nadia", "nadia"),
    ("Orrin", "orrin"),
    ("Petra", "petra"),
    ("Quill", "quill"),
    ("Rosalind", "rosalind"),
    ("Soren", "soren"),
    ("Talia", "talia"),
    ("Ulric", "ulric"),
    ("Vesna", "vesna"),
    ("Wren", "wren"),
    ("Xavi", "xavi"),
    ("Yara", "yara"),
    ("Zoë", "zoe"),
    ("José", "jose"),
    ("Siobhán", "siobhan"),
    ("Anh", "anh"),
    ("Mei-Lin", "mei-lin"),
];

const LAST: &[Name] = &[
    ("Ashdown", "ashdown"),
    ("Brackley", "brackley"),
    ("Corvell", "corvell"),
    ("Dunmore", "dunmore"),
    ("Eastwick", "eastwick"),
    ("Fairholt", "fairholt"),
    ("Garrow", "garrow"),
    ("Hollins", "hollins"),
    ("Ingleby", "ingleby"),
    ("Jessup", "jessup"),
    ("Kettering", "kettering"),
    ("Lindqvist", "lindqvist"),
    ("Marchbank", "marchbank"),
    ("Northcott", "northcott"),
    ("O'Daly", "odaly"),
    ("Pemberton", "pemberton"),
    ("Quayle", "quayle"),
    ("Ravensworth", "ravensworth"),
    ("Stroud", "stroud"),
    ("Thistlewood", "thistlewood"),
    ("Underhill", "underhill"),
    ("Vance-Ortiz", "vance-ortiz"),
    ("Whitlock", "whitlock"),
    ("Yardley", "yardley"),
    ("Zeller", "zeller"),
    ("Núñez", "nunez"),
    ("Øster", "oster"),
    ("Van der Berg", "vanderberg"),
    ("Mac an tSaoi", "macantsaoi"),
    ("Tran", "tran"),
];

const STREETS: &[&str] = &[
    "Alder",
    "Birchwood",
    "Cobble Hill",
    "Drover",
    "Elmstead",
    "Foundry",
    "Glasshouse",
    "Harrow",
    "Juniper",
    "Kiln",
    "Lantern",
    "Millrace",
    "Orchard",
    "Quarry",
    "Saltmarsh",
    "Tanner",
];

const STREET_SUFFIXES: &[&str] = &["Street", "Road", "Lane", "Avenue", "Way", "Court"];

const HALLS: &[&str] = &["Hall A", "Hall B", "Hall C", "North Tower", "West Court"];

const CITIES: &[&str] = &[
    "Ashford Falls",
    "Bramble Bay",
    "Cedar Hollow",
    "Dunmere",
    "Eastbrook",
    "Fallowfield",
    "Greystone",
    "Harrowgate",
    "Ironvale",
    "Larkspur",
];

const STATES: &[&str] = &["NY", "CA", "TX", "MA", "OH", "WA", "ON", "BC", "IL", "PA"];

/// `(value, weight)`; the empty country is "occasionally empty".
const COUNTRIES: &[(&str, u32)] = &[("US", 55), ("USA", 20), ("CA", 10), ("GB", 10), ("", 5)];

const PATRON_TYPES: &[(&str, u32)] = &[("UG", 62), ("GR", 20), ("FAC", 8), ("STF", 10)];

const CAMPUSES: &[(&str, u32)] = &[("M", 70), ("D", 30)];

const UNKNOWN_CAMPUSES: &[&str] = &["Z", "Q", "NORTH"];

const DEPTS: &[&str] = &[
    "HIST", "PHYS", "MATH", "CHEM", "ENGL", "BIOL", "ECON", "MUSC",
];

const ADDR2: &[&str] = &[
    "Apt 4B",
    "Suite 200",
    "Unit 7",
    "Floor 3",
    "c/o Porter's Lodge",
];

const MULTILINE_ADDR2: &[&str] = &[
    "Flat 3\nBack door",
    "Unit 12\nRing twice",
    "Room 5\nc/o Front desk",
];

/// Free-text notes of a rich extract: commas to quote, `&` and `<` to
/// escape in XML; no personal data.
const NOTES: &[&str] = &[
    "Carrel holder, spring term",
    "Proxy borrower for the department",
    "Distance learner: post items",
    "Research & teaching collection access",
    "Fines review <2027>",
    "Reading room only",
];

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// How a date is written: an index into [`RICH_DATE_FORMATS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct DateFormat(usize);

impl DateFormat {
    const ISO: DateFormat = DateFormat(0);
    const US: DateFormat = DateFormat(1);
}

/// Values no date format accepts.
const BAD_DATES: &[&str] = &[
    "2027-13-45",
    "not a date",
    "2028-02-30",
    "2029-00-12",
    "13/45/2027",
];

/// Reusable per-record buffers, so generating a record does not allocate.
#[derive(Default)]
struct Scratch {
    emplid: Vec<u8>,
    barcode: Vec<u8>,
    email: Vec<u8>,
    alt_email: Vec<u8>,
    phone: Vec<u8>,
    addr1: Vec<u8>,
    postal: Vec<u8>,
    birth: Vec<u8>,
    expiry: Vec<u8>,
    work_phone: Vec<u8>,
    univ_id: Vec<u8>,
    library_id: Vec<u8>,
    truth: Vec<u8>,
}

/// Writes a synthetic extract to `extract` and its ground truth to `truth`.
///
/// Both writers are buffered internally; pass a plain `File` or `Stdout`.
/// Fails with [`io::ErrorKind::InvalidInput`] when a rate is not within
/// `0..=1` or the two rates add up to more than 1, and with the writers'
/// errors otherwise.
pub fn generate<W1: Write, W2: Write>(
    opts: &GenOptions,
    extract: W1,
    truth: W2,
) -> io::Result<GenStats> {
    write_extract(opts, false, extract, truth)
}

/// Writes a rich synthetic extract (see [the module docs](self#rich-extract))
/// to `extract` and its ground truth to `truth`: [`generate`]'s records,
/// kinds and outcomes, with the columns of [`RICH_EXTRA`] and dates in
/// every one of [`RICH_DATE_FORMATS`]. Same options, same bytes; errors
/// as [`generate`]'s.
pub fn generate_rich<W1: Write, W2: Write>(
    opts: &GenOptions,
    extract: W1,
    truth: W2,
) -> io::Result<GenStats> {
    write_extract(opts, true, extract, truth)
}

/// [`generate`] (`rich` false, whose bytes tests pin: rich mode draws its
/// extra random numbers only when on) or [`generate_rich`].
fn write_extract<W1: Write, W2: Write>(
    opts: &GenOptions,
    rich: bool,
    extract: W1,
    truth: W2,
) -> io::Result<GenStats> {
    let rate_ok = |r: f64| r.is_finite() && (0.0..=1.0).contains(&r);
    if !rate_ok(opts.dup_rate) || !rate_ok(opts.bad_rate) || opts.dup_rate + opts.bad_rate > 1.0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "dup_rate ({}) and bad_rate ({}) must be within 0..=1 and add up to at most 1",
                opts.dup_rate, opts.bad_rate
            ),
        ));
    }

    // The csv writer buffers itself (wrapping it in a BufWriter would only
    // copy twice); the truth file is written by hand through a BufWriter.
    let mut out = csv::WriterBuilder::new()
        .flexible(true)
        .terminator(csv::Terminator::Any(b'\n'))
        .buffer_capacity(1 << 16)
        .from_writer(extract);
    let mut truth = BufWriter::with_capacity(1 << 16, truth);
    if rich {
        out.write_record(HEADER.iter().chain(&RICH_EXTRA))?;
    } else {
        out.write_record(HEADER)?;
    }
    truth.write_all(TRUTH_HEADER.join(",").as_bytes())?;
    truth.write_all(b"\n")?;

    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    let mut s = Scratch::default();
    // (emplid number, barcode number) of records whose outcome is written,
    // except self_barcode ones (their barcode is dropped by the converter).
    let mut written: Vec<(u64, u64)> = Vec::new();
    // Barcode numbers of rejected dup_primary records not yet reused by a
    // chain record (each may be reused once: a second reuse would collide
    // with the first, written, chain record).
    let mut chainable: Vec<u64> = Vec::new();
    let mut stats = GenStats::default();
    let mut line: u64 = 2;

    for rec in 1..=opts.rows {
        let kind = pick_kind(&mut rng, opts, rec, &written, &chainable);

        // Identifiers.
        s.emplid.clear();
        s.barcode.clear();
        let mut own = (rec, rec);
        match kind {
            Kind::MissingId => {}
            Kind::DupPrimary => {
                let (e, _) = written[pick_index(&mut rng, written.len())];
                push_emplid(&mut s.emplid, e, true);
            }
            _ => push_emplid(&mut s.emplid, rec, false),
        }
        match kind {
            Kind::SelfBarcode => s.barcode.extend_from_slice(&s.emplid),
            Kind::DupBarcode => {
                let (_, b) = written[pick_index(&mut rng, written.len())];
                push_barcode(&mut s.barcode, b);
            }
            Kind::Chain => {
                let b = chainable.swap_remove(pick_index(&mut rng, chainable.len()));
                own.1 = b;
                push_barcode(&mut s.barcode, b);
            }
            _ => push_barcode(&mut s.barcode, rec),
        }

        // Names.
        let first = pick(&mut rng, FIRST);
        let last = pick(&mut rng, LAST);
        let last_name = if kind == Kind::MissingLast {
            ""
        } else {
            last.0
        };
        let middle = if rng.random_ratio(3, 10) {
            if rng.random_bool(0.5) {
                pick(&mut rng, FIRST).0
            } else {
                pick(&mut rng, &["A.", "J.", "M.", "R.", "T."])
            }
        } else {
            ""
        };
        let pref = if rng.random_ratio(1, 10) {
            pick(&mut rng, FIRST).0
        } else {
            ""
        };

        // Codes.
        let patron_type = if kind == Kind::UnknownGroup {
            "XX"
        } else {
            pick_weighted(&mut rng, PATRON_TYPES)
        };
        let campus = if kind == Kind::UnknownCampus {
            pick(&mut rng, UNKNOWN_CAMPUSES)
        } else {
            pick_weighted(&mut rng, CAMPUSES)
        };

        // Contact details.
        s.email.clear();
        if rng.random_ratio(95, 100) {
            push_email(
                &mut s.email,
                first.1,
                b".",
                last.1,
                &mut rng,
                b"example.edu",
            );
        }
        s.alt_email.clear();
        if rng.random_ratio(2, 5) {
            push_email(
                &mut s.alt_email,
                first.1,
                b"_",
                last.1,
                &mut rng,
                b"mail.example.com",
            );
        }
        s.phone.clear();
        if rng.random_ratio(4, 5) {
            s.phone.extend_from_slice(b"+1 555 0");
            push_num(&mut s.phone, rng.random_range(10..20u32).into(), 2);
            s.phone.push(b' ');
            push_num(&mut s.phone, rng.random_range(0..10_000u32).into(), 4);
        }

        // Address: all of it or none, multiline records always have one.
        s.addr1.clear();
        s.postal.clear();
        let (mut addr2, mut city, mut state, mut country) = ("", "", "", "");
        if kind == Kind::Multiline || rng.random_ratio(95, 100) {
            if rng.random_ratio(3, 20) {
                // A comma inside the field: must be quoted.
                s.addr1.extend_from_slice(pick(&mut rng, HALLS).as_bytes());
                s.addr1.extend_from_slice(b", Room ");
                push_num(&mut s.addr1, rng.random_range(1..400u32).into(), 1);
            } else {
                push_num(&mut s.addr1, rng.random_range(1..2000u32).into(), 1);
                s.addr1.push(b' ');
                s.addr1
                    .extend_from_slice(pick(&mut rng, STREETS).as_bytes());
                s.addr1.push(b' ');
                s.addr1
                    .extend_from_slice(pick(&mut rng, STREET_SUFFIXES).as_bytes());
            }
            if kind == Kind::Multiline {
                addr2 = pick(&mut rng, MULTILINE_ADDR2);
            } else if rng.random_ratio(3, 20) {
                addr2 = pick(&mut rng, ADDR2);
            }
            city = pick(&mut rng, CITIES);
            state = pick(&mut rng, STATES);
            push_num(&mut s.postal, rng.random_range(1001..99_951u32).into(), 5);
            country = pick_weighted(&mut rng, COUNTRIES);
        }

        // Dates.
        s.birth.clear();
        if rng.random_ratio(7, 10) {
            let fmt = if rich {
                pick_date_format(&mut rng)
            } else if rng.random_bool(0.5) {
                DateFormat::US
            } else {
                DateFormat::ISO
            };
            push_date(&mut s.birth, &mut rng, 1950, 2006, fmt);
        }
        s.expiry.clear();
        if kind == Kind::BadDate {
            s.expiry
                .extend_from_slice(pick(&mut rng, BAD_DATES).as_bytes());
        } else if rng.random_bool(0.5) {
            let fmt = if rich {
                pick_date_format(&mut rng)
            } else {
                DateFormat::ISO
            };
            push_date(&mut s.expiry, &mut rng, 2027, 2030, fmt);
        }
        let dept = if rng.random_ratio(9, 10) {
            pick(&mut rng, DEPTS)
        } else {
            ""
        };

        // Rich columns, drawn last so the records above stay the same
        // whatever the layout.
        s.work_phone.clear();
        s.univ_id.clear();
        s.library_id.clear();
        let mut note = "";
        if rich {
            if rng.random_ratio(3, 10) {
                s.work_phone.extend_from_slice(b"+1 555 02");
                push_num(&mut s.work_phone, rng.random_range(0..100u32).into(), 2);
                s.work_phone.push(b' ');
                push_num(&mut s.work_phone, rng.random_range(0..10_000u32).into(), 4);
                if rng.random_ratio(1, 4) {
                    s.work_phone.extend_from_slice(b" ext. ");
                    push_num(&mut s.work_phone, rng.random_range(100..1000u32).into(), 3);
                }
            }
            // Derived from the record number, like EMPLID and BARCODE, so
            // unique per record; no other column ever holds these shapes.
            s.univ_id.push(b'U');
            push_num(&mut s.univ_id, rec, 9);
            s.library_id.extend_from_slice(b"LIB-");
            push_num(&mut s.library_id, rec, 8);
            if rng.random_ratio(3, 20) {
                note = pick(&mut rng, NOTES);
            }
        }

        let fields: [&[u8]; 24] = [
            &s.emplid,
            &s.barcode,
            last_name.as_bytes(),
            first.0.as_bytes(),
            middle.as_bytes(),
            pref.as_bytes(),
            patron_type.as_bytes(),
            campus.as_bytes(),
            &s.email,
            &s.alt_email,
            &s.phone,
            &s.addr1,
            addr2.as_bytes(),
            city.as_bytes(),
            state.as_bytes(),
            &s.postal,
            country.as_bytes(),
            &s.birth,
            &s.expiry,
            dept.as_bytes(),
            &s.work_phone,
            &s.univ_id,
            &s.library_id,
            note.as_bytes(),
        ];
        let width = if rich { fields.len() } else { HEADER.len() };
        let n = if kind == Kind::Ragged {
            width - RAGGED_DROP
        } else {
            width
        };
        out.write_record(&fields[..n])?;

        // Truth.
        let t = &mut s.truth;
        t.clear();
        push_num(t, line, 1);
        t.push(b',');
        push_num(t, rec, 1);
        t.push(b',');
        t.extend_from_slice(&s.emplid);
        match kind.reason() {
            None => {
                t.extend_from_slice(b",written,,");
                stats.expected_written += 1;
                if kind != Kind::SelfBarcode {
                    written.push(own);
                }
            }
            Some(reason) => {
                t.extend_from_slice(b",rejected,");
                t.extend_from_slice(reason.as_bytes());
                t.push(b',');
                stats.expected_rejected += 1;
                if kind == Kind::DupPrimary {
                    chainable.push(rec);
                }
            }
        }
        t.extend_from_slice(kind.name().as_bytes());
        t.push(b'\n');
        truth.write_all(t)?;

        stats.rows += 1;
        line += 1 + fields[..n]
            .iter()
            .map(|f| f.iter().filter(|&&b| b == b'\n').count() as u64)
            .sum::<u64>();
    }

    out.flush()?;
    truth.flush()?;
    Ok(stats)
}

/// Chooses the kind of record `rec`.
fn pick_kind(
    rng: &mut ChaCha8Rng,
    opts: &GenOptions,
    rec: u64,
    written: &[(u64, u64)],
    chainable: &[u64],
) -> Kind {
    if rec <= LEAD_NORMAL {
        return Kind::Normal;
    }
    let u: f64 = rng.random();
    if u < opts.dup_rate {
        if !chainable.is_empty() && rng.random_ratio(1, 5) {
            return Kind::Chain;
        }
        // `written` is never empty after the lead records, but be safe.
        if !written.is_empty() {
            return if rng.random_bool(0.5) {
                Kind::DupPrimary
            } else {
                Kind::DupBarcode
            };
        }
        return Kind::Normal;
    }
    if u < opts.dup_rate + opts.bad_rate {
        return pick(rng, &Kind::BAD);
    }
    match rng.random_range(0..1000u32) {
        0..=4 => Kind::SelfBarcode,
        5..=14 => Kind::UnknownCampus,
        15..=19 => Kind::Multiline,
        _ => Kind::Normal,
    }
}

/// A uniform index below `len` (> 0), drawn as `u64` so the stream does
/// not depend on the width of `usize`.
/// The header of the synthetic HR extract [`generate_employees`] writes
/// (the layout of `examples/job/employees.toml`).
pub const EMPLOYEE_HEADER: [&str; 9] = [
    "EMPLOYEE_ID",
    "BARCODE",
    "LAST",
    "FIRST",
    "EMP_CLASS",
    "EMAIL",
    "PHONE",
    "DEPT",
    "END_DATE",
];

/// Employee classes and their weights: faculty, staff, graduate
/// assistants (who are GRAD patrons, like graduate students).
const EMP_CLASSES: &[(&str, u32)] = &[("FAC", 30), ("STF", 60), ("GRA", 10)];

/// What [`generate_employees`] writes.
#[derive(Debug, Clone, PartialEq)]
pub struct EmployeeOptions {
    /// Employee records.
    pub rows: u64,
    /// Seed of the random generator.
    pub seed: u64,
    /// Records of the student extract the employees may overlap with (its
    /// EMPLIDs are `S` + the record number, as [`generate`] writes them).
    pub students: u64,
    /// Fraction of employees who are also students: their `EMPLOYEE_ID` is
    /// a student's EMPLID (the same student may be picked twice).
    pub overlap: f64,
    /// Fraction of the other employees whose barcode is a student's: a
    /// different person holding a taken identifier.
    pub collide: f64,
}

/// Writes a synthetic HR extract ([`EMPLOYEE_HEADER`]) that overlaps a
/// student extract made by [`generate`], for multi-feed jobs. Employees
/// who are not students get `E` + the record number; every employee gets a
/// fresh `29990…` barcode unless chosen to collide. Returns the rows
/// written.
pub fn generate_employees<W: Write>(opts: &EmployeeOptions, out: W) -> io::Result<u64> {
    let rate_ok = |r: f64| r.is_finite() && (0.0..=1.0).contains(&r);
    if !rate_ok(opts.overlap) || !rate_ok(opts.collide) || opts.students == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "overlap and collide must be within 0..=1, with at least one student",
        ));
    }
    let mut out = csv::WriterBuilder::new()
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(out);
    out.write_record(EMPLOYEE_HEADER)?;
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    let (mut id, mut barcode, mut email) = (Vec::new(), Vec::new(), Vec::new());
    for rec in 1..=opts.rows {
        id.clear();
        barcode.clear();
        email.clear();
        let student = rng
            .random_bool(opts.overlap)
            .then(|| 1 + pick_index(&mut rng, opts.students as usize) as u64);
        match student {
            Some(n) => push_emplid(&mut id, n, false),
            None => {
                id.push(b'E');
                push_num(&mut id, rec, 7);
            }
        }
        if student.is_none() && rng.random_bool(opts.collide) {
            push_barcode(
                &mut barcode,
                1 + pick_index(&mut rng, opts.students as usize) as u64,
            );
        } else {
            barcode.extend_from_slice(b"29990");
            push_num(&mut barcode, rec, 9);
        }
        let (first, last) = (pick(&mut rng, FIRST), pick(&mut rng, LAST));
        email.extend_from_slice(first.1.as_bytes());
        email.push(b'.');
        email.extend_from_slice(last.1.as_bytes());
        email.push(b'.');
        push_num(&mut email, rec, 7);
        email.extend_from_slice(b"@staff.example.edu");
        let class = pick_weighted(&mut rng, EMP_CLASSES);
        let dept = pick(&mut rng, DEPTS);
        out.write_record([
            &id[..],
            &barcode,
            last.0.as_bytes(),
            first.0.as_bytes(),
            class.as_bytes(),
            &email,
            b"",
            dept.as_bytes(),
            b"",
        ])?;
    }
    out.flush()?;
    Ok(opts.rows)
}

fn pick_index(rng: &mut ChaCha8Rng, len: usize) -> usize {
    rng.random_range(0..len as u64) as usize
}

fn pick<T: Copy>(rng: &mut ChaCha8Rng, items: &[T]) -> T {
    items[pick_index(rng, items.len())]
}

fn pick_weighted(rng: &mut ChaCha8Rng, items: &[(&'static str, u32)]) -> &'static str {
    let total: u32 = items.iter().map(|&(_, w)| w).sum();
    let mut x = rng.random_range(0..total);
    for &(v, w) in items {
        if x < w {
            return v;
        }
        x -= w;
    }
    unreachable!("x < total")
}

/// Appends `n` in decimal, zero-padded to at least `width` digits.
fn push_num(buf: &mut Vec<u8>, mut n: u64, width: usize) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let len = digits.len() - i;
    buf.extend(std::iter::repeat_n(b'0', width.saturating_sub(len)));
    buf.extend_from_slice(&digits[i..]);
}

/// `S0001234` (or `s0001234`, the same id in another case).
fn push_emplid(buf: &mut Vec<u8>, n: u64, lower: bool) {
    buf.push(if lower { b's' } else { b'S' });
    push_num(buf, n, 7);
}

/// `21234` and nine digits: 14 digits for the first billion numbers.
fn push_barcode(buf: &mut Vec<u8>, n: u64) {
    buf.extend_from_slice(b"21234");
    push_num(buf, n, 9);
}

fn push_email(
    buf: &mut Vec<u8>,
    first: &str,
    sep: &[u8],
    last: &str,
    rng: &mut ChaCha8Rng,
    domain: &[u8],
) {
    buf.extend_from_slice(first.as_bytes());
    buf.extend_from_slice(sep);
    buf.extend_from_slice(last.as_bytes());
    push_num(buf, rng.random_range(1..1000u32).into(), 1);
    buf.push(b'@');
    buf.extend_from_slice(domain);
}

/// One of the seven rich date formats, each as likely.
fn pick_date_format(rng: &mut ChaCha8Rng) -> DateFormat {
    DateFormat(pick_index(rng, RICH_DATE_FORMATS.len()))
}

/// A valid date with a year in `from..=to`, in format `fmt` (one of
/// [`RICH_DATE_FORMATS`]; days and months zero-padded).
fn push_date(buf: &mut Vec<u8>, rng: &mut ChaCha8Rng, from: u32, to: u32, fmt: DateFormat) {
    let y = rng.random_range(from..=to);
    let m = rng.random_range(1..=12u32);
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days: u32 = match m {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    let d = rng.random_range(1..=days);
    let (y, m, d) = (u64::from(y), u64::from(m), u64::from(d));
    let mon = MONTHS[m as usize - 1].as_bytes();
    let num = |buf: &mut Vec<u8>, n: u64, width: usize, then: &[u8]| {
        push_num(buf, n, width);
        buf.extend_from_slice(then);
    };
    match RICH_DATE_FORMATS[fmt.0] {
        "%Y-%m-%d" => {
            num(buf, y, 4, b"-");
            num(buf, m, 2, b"-");
            num(buf, d, 2, b"");
        }
        "%m/%d/%Y" => {
            num(buf, m, 2, b"/");
            num(buf, d, 2, b"/");
            num(buf, y, 4, b"");
        }
        "%d.%m.%Y" => {
            num(buf, d, 2, b".");
            num(buf, m, 2, b".");
            num(buf, y, 4, b"");
        }
        "%Y%m%d" => {
            num(buf, y, 4, b"");
            num(buf, m, 2, b"");
            num(buf, d, 2, b"");
        }
        "%d-%b-%Y" => {
            num(buf, d, 2, b"-");
            buf.extend_from_slice(mon);
            buf.push(b'-');
            num(buf, y, 4, b"");
        }
        "%b %d %Y" => {
            buf.extend_from_slice(mon);
            buf.push(b' ');
            num(buf, d, 2, b" ");
            num(buf, y, 4, b"");
        }
        _ => {
            // %m/%d/%y
            num(buf, m, 2, b"/");
            num(buf, d, 2, b"/");
            num(buf, y % 100, 2, b"");
        }
    }
}

#[cfg(test)]
mod tests;
