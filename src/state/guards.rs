//! Guards against a broken extract that is still well-formed: half the
//! population, the wrong term, every user group changed. Checked after
//! mapping and before anything is published or committed; a tripped
//! guard stops the run (exit status 4) unless `--accept-changes`.

use std::collections::BTreeMap;

use crate::report::GuardCheck;

/// The limits, in percent; a value above its limit trips the guard.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GuardLimits {
    /// Users written fewer than the last committed run's active users.
    pub population_drop_percent: f64,
    /// Departed users, of the last committed run's active users.
    pub departed_percent: f64,
    /// Users whose user group changed, of the users in both runs.
    pub group_changed_percent: f64,
    /// Users with any one field changed, of the users in both runs.
    pub field_changed_percent: f64,
}

impl Default for GuardLimits {
    fn default() -> Self {
        GuardLimits {
            population_drop_percent: 10.0,
            departed_percent: 5.0,
            group_changed_percent: 10.0,
            field_changed_percent: 20.0,
        }
    }
}

/// What the guards look at.
#[derive(Debug, Clone, Default)]
pub(crate) struct Counts {
    /// Active users of the last committed run (0: no such run).
    pub(crate) previous: u64,
    /// Users written by this run.
    pub(crate) written: u64,
    /// Departed this run.
    pub(crate) departed: u64,
    /// Users written that the last committed run had active.
    pub(crate) matched: u64,
    /// Of `matched`, those whose user group changed.
    pub(crate) group_changed: u64,
    /// Of `matched`, those with each field changed.
    pub(crate) by_field: BTreeMap<String, u64>,
}

fn check(name: &str, field: Option<&str>, count: u64, of: u64, limit: f64) -> GuardCheck {
    let percent = if of == 0 {
        0.0
    } else {
        count as f64 * 100.0 / of as f64
    };
    GuardCheck {
        name: name.into(),
        field: field.map(str::to_string),
        count,
        of,
        percent: (percent * 1000.0).round() / 1000.0,
        limit_percent: limit,
        tripped: percent > limit,
    }
}

/// Every guard, checked. The comparisons with the last run apply only
/// when there is one; `no_users_written` always does. Per-field checks
/// list only fields that changed at all.
pub(crate) fn check_all(l: &GuardLimits, c: &Counts) -> Vec<GuardCheck> {
    let mut out = vec![GuardCheck {
        name: "no_users_written".into(),
        field: None,
        count: c.written,
        of: c.written,
        percent: 0.0,
        limit_percent: 0.0,
        tripped: c.written == 0,
    }];
    if c.previous == 0 {
        return out;
    }
    let drop = c.previous.saturating_sub(c.written);
    out.push(check(
        "population_drop",
        None,
        drop,
        c.previous,
        l.population_drop_percent,
    ));
    out.push(check(
        "departed",
        None,
        c.departed,
        c.previous,
        l.departed_percent,
    ));
    out.push(check(
        "group_changed",
        None,
        c.group_changed,
        c.matched,
        l.group_changed_percent,
    ));
    for (f, &n) in &c.by_field {
        out.push(check(
            "field_changed",
            Some(f),
            n,
            c.matched,
            l.field_changed_percent,
        ));
    }
    out
}

/// One line per tripped guard, with its numbers.
pub(crate) fn describe(checks: &[GuardCheck]) -> String {
    checks
        .iter()
        .filter(|g| g.tripped)
        .map(|g| match (g.name.as_str(), &g.field) {
            ("no_users_written", _) => "no_users_written: the run wrote no users".to_string(),
            (name, field) => format!(
                "{name}{}: {} of {} users ({:.1} %), limit {} %",
                field
                    .as_ref()
                    .map(|f| format!(" ({f})"))
                    .unwrap_or_default(),
                g.count,
                g.of,
                g.percent,
                g.limit_percent
            ),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_guard_trips_just_above_its_limit() {
        let l = GuardLimits::default();
        let mut c = Counts {
            previous: 1000,
            written: 900,
            departed: 50,
            matched: 900,
            group_changed: 90,
            by_field: [("last_name".to_string(), 180)].into(),
        };
        assert!(check_all(&l, &c).iter().all(|g| !g.tripped));
        c.written = 899;
        c.departed = 51;
        c.group_changed = 91;
        c.by_field.insert("phones".into(), 181);
        let tripped: Vec<_> = check_all(&l, &c)
            .into_iter()
            .filter(|g| g.tripped)
            .map(|g| (g.name, g.field))
            .collect();
        assert_eq!(
            tripped,
            [
                ("population_drop".to_string(), None),
                ("departed".to_string(), None),
                ("group_changed".to_string(), None),
                ("field_changed".to_string(), Some("phones".to_string())),
            ]
        );
        let text = describe(&check_all(&l, &c));
        assert!(text.contains("population_drop: 101 of 1000 users (10.1 %), limit 10 %"));
    }

    #[test]
    fn without_a_previous_run_only_an_empty_run_trips() {
        let c = Counts::default();
        let g = check_all(&GuardLimits::default(), &c);
        assert_eq!(g.len(), 1);
        assert!(g[0].tripped);
    }
}
