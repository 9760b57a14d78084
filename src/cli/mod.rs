//! The binary's side of each command: flags ([`args`], clap derive) →
//! library options, and what the user sees. The library returns reports;
//! only these modules print.

pub(crate) mod args;
pub(crate) mod check;
pub(crate) mod convert;

use patronload::outdir::OutputOptions;

use args::PublishArgs;

/// Library options from the publishing flags.
pub(crate) fn output_options(p: &PublishArgs) -> OutputOptions {
    OutputOptions {
        wait: p.wait,
        group_readable: p.group_readable,
    }
}

/// `n` and the noun, singular for one.
pub(crate) fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}
