//! Writes a synthetic Alma "Export Users" zip (User XSD v2, the user API
//! object) for the users of a generated extract, for `scripts/bench
//! --alma`: every record's primary id and barcode, plus a `UNIV_ID` of
//! its own, so the pre-check holds three identifiers per Alma user. One
//! user in 50 is INTERNAL and one in 50 holds another record's barcode,
//! so the run rejects some users, as a real overlap would.
//!
//! usage: gen_alma_export EXTRACT.csv OUT.zip

use std::io::Write;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, extract, out] = &args[..] else {
        eprintln!("usage: gen_alma_export EXTRACT.csv OUT.zip");
        std::process::exit(2);
    };
    // The generated extract has broken rows on purpose: read leniently.
    let mut rdr = csv::ReaderBuilder::new()
        .flexible(true)
        .from_path(extract)?;
    let h = rdr.headers()?.clone();
    let col = |n: &str| {
        h.iter()
            .position(|c| c == n)
            .ok_or(format!("no {n} column"))
    };
    let (e, b) = (col("EMPLID")?, col("BARCODE")?);
    let mut w = zip::ZipWriter::new(std::fs::File::create(out)?);
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .compression_level(Some(1))
        .large_file(true);
    let per_file = 100_000;
    let mut rec = csv::StringRecord::new();
    let (mut n, mut users) = (0u64, 0u64);
    let mut prev_barcode = String::new();
    loop {
        let more = match rdr.read_record(&mut rec) {
            Ok(more) => more,
            Err(_) => continue,
        };
        if !more {
            if users > 0 {
                w.write_all(b"</users>\n")?;
            }
            break;
        }
        let (Some(p), Some(bc)) = (rec.get(e), rec.get(b)) else {
            continue;
        };
        let (p, bc) = (p.trim().to_uppercase(), bc.trim().to_string());
        if p.is_empty() || p.contains(['<', '&']) || bc.contains(['<', '&']) {
            continue;
        }
        if users % per_file == 0 {
            if users > 0 {
                w.write_all(b"</users>\n")?;
            }
            n += 1;
            w.start_file(format!("alma_users_{n:03}.xml"), opts)?;
            w.write_all(b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<users>\n")?;
        }
        let internal = users % 50 == 7;
        // One in 50 holds the previous record's barcode instead of its own.
        let barcode = if users % 50 == 13 {
            prev_barcode.clone()
        } else {
            bc.clone()
        };
        writeln!(
            w,
            "<user><primary_id>{p}</primary_id><user_group>UNDERGRAD</user_group>\
             <account_type>{}</account_type><status>ACTIVE</status><user_identifiers>\
             <user_identifier><id_type>BARCODE</id_type><value>{barcode}</value></user_identifier>\
             <user_identifier><id_type>UNIV_ID</id_type><value>U{users:09}</value></user_identifier>\
             </user_identifiers></user>",
            if internal { "INTERNAL" } else { "EXTERNAL" }
        )?;
        prev_barcode = bc;
        users += 1;
    }
    w.finish()?;
    eprintln!("gen_alma_export: {users} Alma users in {n} XML files");
    Ok(())
}
