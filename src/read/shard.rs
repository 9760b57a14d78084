//! Splitting an extract's body into record-aligned shards.
//!
//! A newline inside a quoted field is not a record boundary, so naive
//! newline splitting is wrong for CSV. We count quote bytes and newlines
//! per chunk in parallel, derive from the prefix sums whether each
//! candidate split point lies inside quotes, and move it forward to the
//! next newline outside quotes. For well-formed CSV that is exact (a
//! doubled quote `""` counts twice and keeps the parity).
//!
//! A quote inside an unquoted field (`ab"c`) is data to the parser but
//! flips our parity, so a plan can be wrong for odd inputs. It is never
//! trusted blindly: each shard's reader also reports where the first
//! record after its end starts ([`crate::read::source::ShardReader::next_start`]),
//! and the engine accepts the next shard only if its first record starts
//! exactly there, otherwise it re-reads the rest of the file as one shard.
//! Either way the records are exactly those of a sequential parse.
//!
//! Without `multiline` columns no record spans a line break (one that
//! would is rejected at its first line and reading resumes on the next),
//! so every line start is a record start or a blank line: the extract
//! then plans with `quote = None`, splitting on line breaks alone, and
//! stray quotes cannot mislead the plan.

use rayon::prelude::*;

use crate::read::source::{count_breaks, Shard};

/// Splits `whole` (a shard covering an extract's body) into shards of
/// about `target` bytes. Returns `whole` alone when it is small.
pub fn plan(data: &[u8], whole: Shard, quote: Option<u8>, target: usize) -> Vec<Shard> {
    let target = target.max(1);
    let len = whole.end.saturating_sub(whole.start);
    if len <= target {
        return vec![whole];
    }
    // Candidate points every `target` bytes; counts of the chunk before
    // each, computed in parallel.
    let points: Vec<usize> = (1..)
        .map(|k| whole.start + k * target)
        .take_while(|&p| p < whole.end)
        .collect();
    let counts: Vec<(u64, u64)> = points
        .par_iter()
        .map(|&p| {
            let chunk = &data[p - target..p];
            let quotes = quote.map_or(0, |q| chunk.iter().filter(|&&c| c == q).count() as u64);
            (quotes, count_breaks(data, p - target, p))
        })
        .collect();
    let mut shards = Vec::with_capacity(points.len() + 1);
    let mut start = whole.start;
    let mut start_newlines = whole.newlines_before;
    let (mut quotes, mut newlines) = (0u64, whole.newlines_before);
    for (&p, &(q, n)) in points.iter().zip(&counts) {
        quotes += q;
        newlines += n;
        // Walk from p to the first newline outside quotes.
        let mut inside = quotes % 2 == 1;
        let mut extra_nl = 0u64;
        let mut boundary = None;
        for (i, &c) in data[p..whole.end].iter().enumerate() {
            if Some(c) == quote {
                inside = !inside;
            } else if c == b'\n' {
                extra_nl += 1;
                if !inside {
                    boundary = Some(p + i + 1);
                    break;
                }
            } else if c == b'\r' && data.get(p + i + 1) != Some(&b'\n') {
                // A lone CR is a line break (it only counts lines here).
                extra_nl += 1;
            }
        }
        let Some(b) = boundary else { break };
        if b <= start || b >= whole.end {
            continue;
        }
        shards.push(Shard {
            start,
            end: b,
            newlines_before: start_newlines,
        });
        start = b;
        start_newlines = newlines + extra_nl;
    }
    shards.push(Shard {
        start,
        end: whole.end,
        newlines_before: start_newlines,
    });
    shards
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole(data: &[u8]) -> Shard {
        Shard {
            start: 0,
            end: data.len(),
            newlines_before: 0,
        }
    }

    #[test]
    fn shards_cover_the_body_and_avoid_quoted_newlines() {
        let data = b"a,\"x\ny\"\nb,c\nd,\"e\n\n\"\nf,g\n";
        for target in 1..data.len() + 2 {
            let shards = plan(data, whole(data), Some(b'"'), target);
            assert_eq!(shards[0].start, 0);
            assert_eq!(shards.last().unwrap().end, data.len());
            for w in shards.windows(2) {
                assert_eq!(w[0].end, w[1].start);
                // Every boundary follows a record-ending newline.
                assert!(
                    [8, 12, 20].contains(&w[1].start),
                    "target {target}: {shards:?}"
                );
            }
            for s in &shards {
                assert_eq!(s.newlines_before, count_breaks(data, 0, s.start));
            }
        }
    }

    #[test]
    fn without_quoting_every_newline_is_a_boundary() {
        let data = b"a\"\nb\nc\n";
        let shards = plan(data, whole(data), None, 1);
        let starts: Vec<usize> = shards.iter().map(|s| s.start).collect();
        assert_eq!(starts, [0, 3, 5]);
    }
}
