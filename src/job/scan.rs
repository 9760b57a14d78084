//! The reading loop both passes of a job share: every source's inputs,
//! decoded and cut into batches of records, mapped in parallel chunks and
//! handed over in input order.

use rayon::prelude::*;

use super::JobOptions;
use crate::error::{Error, Result};
use crate::map::Mapper;
use crate::read::input::Input;
use crate::read::source::{decode_input, Dialect, Extract, RawRecord, ShardReader};
use crate::run::convert::{csv_err, ConvertOptions};

use super::stream::*;

/// What both passes share: the job, the flattened input list and the pool.
pub(super) struct Ctx<'a> {
    pub(super) opts: &'a JobOptions,
    pub(super) base: &'a ConvertOptions,
    pub(super) dialects: &'a [Dialect],
    pub(super) pool: rayon::ThreadPool,
}

/// What [`Ctx::scan`] hands over, in input order.
pub(super) enum Event<'b, C> {
    /// One batch of records of source `source`, and its chunks' results.
    Batch {
        source: usize,
        recs: &'b [RawRecord],
        chunks: Vec<C>,
    },
    /// The end of input `file`: the blank lines after its last record,
    /// and the records read so far in the run.
    EndFile {
        file: u32,
        trailing_blank: u64,
        records: u64,
        /// What the input looks like when declared UTF-8 but is not (see
        /// [`crate::run::convert::encoding_suspect`]).
        suspect: Option<&'static str>,
        /// `(total, header)` lines of the input (see
        /// [`Extract::line_totals`]).
        totals: (u64, u64),
    },
}

impl Ctx<'_> {
    /// Reads every record of every source in input order, `BATCH` at a
    /// time; maps each batch on the pool in chunks with `map_chunk` and
    /// hands the chunks, in order, to `take`, and the end of each input.
    pub(super) fn scan<C: Send>(
        &self,
        map_chunk: impl Fn(&Mapper, &[RawRecord]) -> C + Sync,
        mut take: impl FnMut(Event<'_, C>) -> Result<()>,
    ) -> Result<()> {
        let job = &self.opts.job;
        let mut file = 0u32;
        let mut number = 0u64;
        let (mut recs, mut ahead): (Vec<RawRecord>, Vec<RawRecord>) = (Vec::new(), Vec::new());
        let sizes = crate::run::progress::InputBytes::of(&self.base.inputs);
        let progress = &self.base.run.progress;
        for (si, src) in job.sources.iter().enumerate() {
            let mut mapper: Option<Mapper> = None;
            for path in &src.inputs {
                let input = Input::open(path, self.opts.run.mmap)?;
                let text = decode_input(path, input.bytes(), &self.dialects[si])?;
                let x = Extract::open_text(path, file, &text, &self.dialects[si])?;
                let m = match mapper.take() {
                    Some(m) if m.columns() != x.columns.as_slice() => {
                        return Err(Error::Input {
                            path: path.clone(),
                            line: Some(1),
                            message: format!(
                                "the columns differ from the first input of source `{}`",
                                src.name
                            ),
                        })
                    }
                    Some(m) => m,
                    None => Mapper::new(&src.profile, &x.columns, self.opts.run.as_of).map_err(
                        |message| Error::Profile {
                            path: src.profile_path.clone(),
                            message,
                        },
                    )?,
                };
                let mut rdr = x.reader(x.whole());
                let err = |e| csv_err(self.base, file as usize, e);
                let mut n = fill(&mut rdr, &mut recs, &mut number, err)?;
                while n > 0 {
                    // The next batch is parsed while this one is mapped.
                    let more = n == BATCH;
                    let batch = &recs[..n];
                    let (chunks, next) = self.pool.install(|| {
                        rayon::join(
                            || {
                                batch
                                    .par_chunks(CHUNK)
                                    .map(|c| map_chunk(&m, c))
                                    .collect::<Vec<C>>()
                            },
                            || {
                                if more {
                                    fill(&mut rdr, &mut ahead, &mut number, err)
                                } else {
                                    Ok(0)
                                }
                            },
                        )
                    });
                    let end = batch.last().map_or(0, |r| r.end);
                    take(Event::Batch {
                        source: si,
                        recs: batch,
                        chunks,
                    })?;
                    progress.set_bytes(sizes.at(file as usize, end, x.data().len()));
                    std::mem::swap(&mut recs, &mut ahead);
                    n = next?;
                }
                take(Event::EndFile {
                    file,
                    trailing_blank: rdr.trailing_blank(),
                    records: number,
                    suspect: crate::run::convert::encoding_suspect(&self.dialects[si], &text),
                    totals: x.line_totals(),
                })?;
                file += 1;
                mapper = Some(m);
            }
        }
        Ok(())
    }
}

/// Reads up to `BATCH` records into `recs`, numbering them on from
/// `number`; returns how many it read.
pub(super) fn fill(
    rdr: &mut ShardReader,
    recs: &mut Vec<RawRecord>,
    number: &mut u64,
    err: impl Fn(csv::Error) -> Error,
) -> Result<usize> {
    let mut n = 0;
    while n < BATCH {
        if n == recs.len() {
            recs.push(RawRecord::new());
        }
        if !rdr.next_record(*number + 1, &mut recs[n]).map_err(&err)? {
            break;
        }
        *number += 1;
        n += 1;
    }
    Ok(n)
}
