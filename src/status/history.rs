//! The last minutes of a few counters, sampled at a fixed period, and the
//! sparklines drawn from them.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::time::Duration;

/// How often the counters are sampled.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(10);

/// Samples kept: ten minutes.
pub(super) const KEPT: usize = 60;

/// The counters the page draws, as totals since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Totals {
    /// Requests answered (every route and endpoint).
    pub(super) requests: u64,
    /// Of those, answered 5xx.
    pub(super) server_errors: u64,
    /// Tokens refused (missing, expired, invalid, revoked, forbidden, error).
    pub(super) auth_refused: u64,
    /// Logins that issued a token.
    pub(super) logins: u64,
    /// Logins that did not.
    pub(super) logins_failed: u64,
    /// Calls to WeChat's APIs.
    pub(super) wechat_calls: u64,
    /// Of those, not `ok`.
    pub(super) wechat_errors: u64,
}

/// Reads one series of [`Totals`].
type Read = fn(&Totals) -> u64;

/// The series of [`Totals`], by name, in the order the page shows them.
pub(super) const SERIES: [(&str, Read); 7] = [
    ("requests", |t| t.requests),
    ("5xx answers", |t| t.server_errors),
    ("tokens refused", |t| t.auth_refused),
    ("logins", |t| t.logins),
    ("logins failed", |t| t.logins_failed),
    ("WeChat calls", |t| t.wechat_calls),
    ("WeChat errors", |t| t.wechat_errors),
];

/// One sample: when (milliseconds since start) and the totals then.
#[derive(Debug, Clone, Copy)]
struct Sample {
    at_ms: u64,
    totals: Totals,
}

/// The samples of the last [`KEPT`] periods, oldest first.
#[derive(Debug, Default)]
pub(super) struct History {
    samples: VecDeque<Sample>,
}

/// One series as the page draws it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Series {
    pub(super) name: &'static str,
    /// Counts per period, oldest first; the last is the period under way.
    pub(super) counts: Vec<u64>,
    /// The count over the last minute (or since start, if shorter).
    pub(super) last_minute: u64,
    /// The total since start.
    pub(super) total: u64,
}

impl History {
    /// Keep `totals`, read `at_ms` after start; the oldest goes past [`KEPT`].
    pub(super) fn push(&mut self, at_ms: u64, totals: Totals) {
        if self.samples.len() >= KEPT {
            self.samples.pop_front();
        }
        self.samples.push_back(Sample { at_ms, totals });
    }

    /// Every series, with `now` (read `now_ms` after start) as the period under way.
    pub(super) fn series(&self, now_ms: u64, now: &Totals) -> Vec<Series> {
        let minute_ago = now_ms.saturating_sub(60_000);
        // The baseline of the last minute: the newest sample at least a
        // minute old, else the oldest (a gateway up for less than a minute
        // counts since its first sample, taken at start).
        let base = self
            .samples
            .iter()
            .rev()
            .find(|s| s.at_ms <= minute_ago)
            .or_else(|| self.samples.front());
        SERIES
            .iter()
            .map(|(name, get)| {
                let mut counts: Vec<u64> = self
                    .samples
                    .iter()
                    .zip(self.samples.iter().skip(1))
                    .map(|(a, b)| get(&b.totals).saturating_sub(get(&a.totals)))
                    .collect();
                if let Some(last) = self.samples.back() {
                    counts.push(get(now).saturating_sub(get(&last.totals)));
                }
                Series {
                    name,
                    counts,
                    last_minute: get(now).saturating_sub(base.map_or(0, |b| get(&b.totals))),
                    total: get(now),
                }
            })
            .collect()
    }
}

/// An inline SVG sparkline of `counts` (`width` x `height` pixels): one bar
/// per period, scaled to the largest count, the newest at the right edge
/// (the time axis is the same on every page view); a period with nothing
/// counted is a hairline at the bottom.
pub(super) fn sparkline(counts: &[u64], width: u32, height: u32) -> String {
    let mut svg = format!(
        r#"<svg class="spark" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" aria-hidden="true"><rect class="base" x="0" y="{}" width="{width}" height="1"/>"#,
        height.saturating_sub(1)
    );
    let max = counts.iter().copied().max().unwrap_or(0).max(1);
    let slots = u32::try_from(KEPT).unwrap_or(1).max(1);
    let slot = f64::from(width) / f64::from(slots);
    let h = f64::from(height.saturating_sub(1));
    let skip = KEPT.saturating_sub(counts.len());
    for (i, c) in counts.iter().enumerate() {
        if *c == 0 {
            continue;
        }
        let x = slot * f64::from(u32::try_from(i.saturating_add(skip)).unwrap_or(slots));
        // Counts far past f64's integers lose precision only.
        #[allow(clippy::cast_precision_loss)]
        let bar = (h * (*c as f64) / (max as f64)).max(1.0);
        let _ = write!(
            svg,
            r#"<rect class="bar" x="{x:.1}" y="{:.1}" width="{:.1}" height="{bar:.1}"/>"#,
            h - bar,
            (slot - 1.0).max(1.0),
        );
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn totals(requests: u64, logins: u64) -> Totals {
        Totals {
            requests,
            logins,
            ..Totals::default()
        }
    }

    fn named<'a>(series: &'a [Series], name: &str) -> &'a Series {
        series.iter().find(|s| s.name == name).unwrap()
    }

    #[test]
    fn counts_are_per_period_with_the_current_one_last() {
        let mut h = History::default();
        h.push(0, totals(0, 0));
        h.push(10_000, totals(5, 1));
        h.push(20_000, totals(12, 1));
        let s = h.series(25_000, &totals(13, 4));
        let requests = named(&s, "requests");
        assert_eq!(requests.counts, vec![5, 7, 1]);
        assert_eq!(requests.total, 13);
        // Up for less than a minute: counted since the first sample.
        assert_eq!(requests.last_minute, 13);
        assert_eq!(named(&s, "logins").counts, vec![1, 0, 3]);
    }

    #[test]
    fn the_last_minute_starts_at_the_newest_sample_a_minute_old() {
        let mut h = History::default();
        for i in 0..10u64 {
            h.push(i * 10_000, totals(i * 100, 0));
        }
        // Now is 95 s after start: the baseline is the sample at 30 s (300).
        let s = h.series(95_000, &totals(1_000, 0));
        assert_eq!(named(&s, "requests").last_minute, 700);
    }

    #[test]
    fn history_keeps_ten_minutes_and_survives_a_counter_going_back() {
        let mut h = History::default();
        for i in 0..(KEPT as u64 + 5) {
            h.push(i * 10_000, totals(i, 0));
        }
        let s = h.series(u64::MAX, &totals(0, 0));
        let requests = named(&s, "requests");
        assert_eq!(requests.counts.len(), KEPT);
        assert_eq!(*requests.counts.last().unwrap(), 0, "no underflow");
    }

    #[test]
    fn a_sparkline_is_svg_scaled_to_its_largest_count() {
        let svg = sparkline(&[0, 5, 10], 120, 31);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert_eq!(svg.matches(r#"class="bar""#).count(), 2, "{svg}");
        // The newest period is the rightmost slot, full height.
        assert!(
            svg.contains(r#"x="118.0" y="0.0" width="1.0" height="30.0""#),
            "{svg}"
        );
        assert!(
            svg.contains(r#"x="116.0" y="15.0" width="1.0" height="15.0""#),
            "{svg}"
        );
        let empty = sparkline(&[], 120, 30);
        assert!(!empty.contains(r#"class="bar""#));
        let huge = sparkline(&[u64::MAX, 1], 120, 30);
        assert!(!huge.contains("NaN") && !huge.contains("inf"), "{huge}");
    }
}
