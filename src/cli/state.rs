//! The state flags of `convert` (`--state` and its options) and what a
//! run with a state prints: changes, guards.

use std::path::Path;
use std::process::ExitCode;

use patronload::report::StateReport;
use patronload::state::{Departed, PackageKind, StateOptions};

use super::args::{DepartedArg, PackageArg, StateArgs};

/// The state options: the job file's `[state]` (if any) with every flag
/// given on the command line winning; `None` without a state file.
pub(crate) fn options(a: &StateArgs, job: Option<StateOptions>) -> Option<StateOptions> {
    let mut o = match (&a.state, job) {
        (Some(p), Some(j)) => StateOptions {
            path: p.clone(),
            ..j
        },
        (Some(p), None) => StateOptions::new(p.clone()),
        (None, Some(j)) => j,
        (None, None) => return None,
    };
    if let Some(p) = a.package {
        o.package = match p {
            PackageArg::Full => PackageKind::Full,
            PackageArg::Delta => PackageKind::Delta,
        };
    }
    if let Some(d) = a.departed {
        o.departed = match d {
            DepartedArg::Ignore => Departed::Ignore,
            DepartedArg::Expire => Departed::Expire,
        };
    }
    if let Some(n) = a.departed_grace_days {
        o.grace_days = n;
    }
    if let Some(t) = &a.departed_note_type {
        o.note_type = t.clone();
    }
    o.accept_changes = a.accept_changes;
    let g = &mut o.guards;
    for (v, slot) in [
        (a.guard_population_drop, &mut g.population_drop_percent),
        (a.guard_departed, &mut g.departed_percent),
        (a.guard_group_changed, &mut g.group_changed_percent),
        (a.guard_field_changed, &mut g.field_changed_percent),
    ] {
        if let Some(v) = v {
            *slot = v;
        }
    }
    Some(o)
}

/// A tripped guard: the guards with their numbers on stderr, exit 4.
pub(crate) fn guard_tripped(message: &str, guards_json: &str, out: &Path) -> ExitCode {
    eprintln!("patronload: guard tripped: {message}");
    eprintln!("{guards_json}");
    eprintln!(
        "patronload: nothing was published in {} and the state file is as it was; check the \
         extract, then run again (with --accept-changes if the changes are real)",
        out.display()
    );
    ExitCode::from(4)
}

/// The change lines of a run with a state.
pub(crate) fn print_changes(st: &StateReport) {
    let c = &st.changes;
    eprintln!(
        "  changes since run {}: {} new, {} changed, {} unchanged, {} returned, {} departed \
         ({} expired); {} package of {} users (run {}); see {}",
        st.state
            .previous_run
            .map_or("(none)".to_string(), |r| r.to_string()),
        c.new,
        c.changed,
        c.unchanged,
        c.returned,
        c.departed,
        st.state.expired,
        st.state.package,
        st.state.users_sent,
        st.state.run,
        patronload::state::CHANGES_FILE
    );
    if st.state.users_sent == 0 {
        eprintln!("  nothing to send: no zip written");
    }
    for (f, n) in &st.changes_by_field {
        eprintln!("  changed {f}: {n}");
    }
    if st.state.accepted_changes {
        eprintln!(
            "patronload: guards tripped and let through (--accept-changes): {}",
            st.guards
                .iter()
                .filter(|g| g.tripped)
                .map(|g| g.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if !st.state.abandoned_runs.is_empty() {
        eprintln!(
            "patronload: run(s) {:?} were published but never committed (a crash or a failed \
             delivery); their users were compared with the last committed run and sent again",
            st.state.abandoned_runs
        );
    }
}
