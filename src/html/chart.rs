//! Inline SVG charts for the report: geometry computed here, drawn by the
//! template (which escapes every label).

use super::{num, TrendPoint};

/// Width of the label column, px.
const LABEL_W: u32 = 260;
/// Longest bar, px.
const BAR_W: u32 = 340;
/// Height of one row, px.
const ROW_H: u32 = 22;

/// One bar: label, value shown, geometry.
pub(super) struct Bar {
    pub(super) label: String,
    pub(super) value: String,
    pub(super) y: u32,
    pub(super) text_y: u32,
    pub(super) width: u32,
    pub(super) value_x: u32,
}

/// A horizontal bar chart.
pub(super) struct BarChart {
    pub(super) width: u32,
    pub(super) height: u32,
    pub(super) label_w: u32,
    pub(super) bars: Vec<Bar>,
}

impl BarChart {
    /// Bars for `(label, count)`, largest first; past `max` bars the rest
    /// are added up in one. `None` when there is nothing to draw.
    pub(super) fn new(mut items: Vec<(String, u64)>, max: usize) -> Option<BarChart> {
        items.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        if items.len() > max {
            let rest: Vec<_> = items.split_off(max.saturating_sub(1));
            let n = rest.len();
            let sum = rest.iter().map(|r| r.1).sum();
            items.push((format!("{} others", num(n as u64)), sum));
        }
        BarChart::with_values(items.into_iter().map(|(l, n)| (l, n, num(n))).collect())
    }

    /// Bars in the given order, each with the text shown for its value.
    pub(super) fn with_values(items: Vec<(String, u64, String)>) -> Option<BarChart> {
        if items.is_empty() {
            return None;
        }
        let top = items.iter().map(|i| i.1).max().unwrap_or(0).max(1);
        let bars = items
            .into_iter()
            .enumerate()
            .map(|(i, (label, n, value))| {
                // A non-zero value always shows at least a sliver.
                let width =
                    ((n as u128 * BAR_W as u128 / top as u128) as u32).max(u32::from(n > 0));
                let y = i as u32 * ROW_H;
                Bar {
                    label: crate::error::excerpt(&label, 60),
                    value,
                    y: y + 3,
                    text_y: y + 15,
                    width,
                    value_x: LABEL_W + width + 6,
                }
            })
            .collect::<Vec<_>>();
        Some(BarChart {
            width: LABEL_W + BAR_W + 110,
            height: bars.len() as u32 * ROW_H + 4,
            label_w: LABEL_W,
            bars,
        })
    }
}

/// Two lines (users, rejects) over the last runs.
pub(super) struct TrendChart {
    pub(super) width: u32,
    pub(super) height: u32,
    pub(super) users: String,
    pub(super) rejects: String,
    pub(super) max_users: String,
    pub(super) max_rejects: String,
    pub(super) first: String,
    pub(super) last: String,
    pub(super) runs: usize,
}

impl TrendChart {
    /// The last `max` points; `None` when there are none.
    pub(super) fn new(points: &[TrendPoint], max: usize) -> Option<TrendChart> {
        let pts = &points[points.len().saturating_sub(max)..];
        if pts.is_empty() {
            return None;
        }
        let (w, h, pad) = (600u32, 160u32, 10u32);
        let step = if pts.len() > 1 {
            (w - 2 * pad) as f64 / (pts.len() - 1) as f64
        } else {
            0.0
        };
        // Each line on its own scale: rejects are a few percent of users.
        let line = |get: &dyn Fn(&TrendPoint) -> u64| {
            let top = pts.iter().map(get).max().unwrap_or(0).max(1) as f64;
            pts.iter()
                .enumerate()
                .map(|(i, p)| {
                    let x = pad as f64 + step * i as f64;
                    let y = (h - pad) as f64 - (get(p) as f64 / top) * (h - 2 * pad) as f64;
                    format!("{x:.1},{y:.1}")
                })
                .collect::<Vec<_>>()
                .join(" ")
        };
        Some(TrendChart {
            width: w,
            height: h,
            users: line(&|p| p.users),
            rejects: line(&|p| p.rejects),
            max_users: num(pts.iter().map(|p| p.users).max().unwrap_or(0)),
            max_rejects: num(pts.iter().map(|p| p.rejects).max().unwrap_or(0)),
            first: pts[0].label.clone(),
            last: pts[pts.len() - 1].label.clone(),
            runs: pts.len(),
        })
    }
}
