//! EVS auto-snapshot policies and their schedule arithmetic.
//!
//! A schedule is whole hours (`time_points`, 0–23) on chosen weekdays (`repeat_weekdays`, 1 =
//! Monday … 7 = Sunday) or every N days (`repeat_interval_days`, counted from the policy's
//! creation day), in a time zone given as a fixed offset from UTC. Times are unix seconds of
//! the policy clock (see `config::SnapshotPoliciesConfig`).

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};

/// One policy (`GetSnapshotPolicy` of the SDK).
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotPolicy {
    /// UUID.
    pub id: String,
    /// Owning project.
    pub project_id: String,
    /// Name (unique in the project).
    pub name: String,
    /// Weekdays 1–7 (empty when `repeat_interval_days` is set).
    pub repeat_weekdays: Vec<u32>,
    /// Every N days (1–30), counted from the creation day.
    pub repeat_interval_days: Option<i64>,
    /// Hours 0–23.
    pub time_points: Vec<u32>,
    /// Days a taken snapshot is kept; -1 keeps it.
    pub retention_days: i64,
    /// Tags.
    pub tags: BTreeMap<String, String>,
    /// Enterprise project, stored.
    pub enterprise_project_id: Option<String>,
    /// Schedule time of the last run taken (or of the creation, before any run).
    pub last_due: i64,
    /// Creation time.
    pub created_at: String,
    /// Last change.
    pub updated_at: Option<String>,
}

impl SnapshotPolicy {
    /// The creation day in the policy's zone (the origin of `repeat_interval_days`).
    fn origin_day(&self, offset_secs: i64) -> Option<NaiveDate> {
        let created = chrono::NaiveDateTime::parse_from_str(&self.created_at, "%Y-%m-%dT%H:%M:%S%.f").ok()?;
        Some((created + Duration::seconds(offset_secs)).date())
    }

    fn runs_on(&self, day: NaiveDate, origin: Option<NaiveDate>) -> bool {
        match (self.repeat_interval_days, origin) {
            (Some(n), Some(o)) if n > 0 => (day - o).num_days().rem_euclid(n) == 0,
            (Some(_), _) => false,
            (None, _) => self.repeat_weekdays.contains(&day.weekday().number_from_monday()),
        }
    }

    /// The latest schedule time at or before `t` (policy clock, unix seconds), looking back at
    /// most 400 days; `None` when there is none.
    pub fn latest_due(&self, t: i64, offset_secs: i64) -> Option<i64> {
        let local: DateTime<Utc> = Utc.timestamp_opt(t + offset_secs, 0).single()?;
        let origin = self.origin_day(offset_secs);
        let mut hours: Vec<u32> = self.time_points.clone();
        hours.sort_unstable_by(|a, b| b.cmp(a));
        for back in 0..400 {
            let day = local.date_naive() - Duration::days(back);
            if !self.runs_on(day, origin) {
                continue;
            }
            for h in &hours {
                let at = day.and_hms_opt(*h, 0, 0)?.and_utc().timestamp() - offset_secs;
                if at <= t {
                    return Some(at);
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(weekdays: Vec<u32>, every: Option<i64>, hours: Vec<u32>) -> SnapshotPolicy {
        SnapshotPolicy {
            id: String::new(),
            project_id: String::new(),
            name: String::new(),
            repeat_weekdays: weekdays,
            repeat_interval_days: every,
            time_points: hours,
            retention_days: -1,
            tags: BTreeMap::new(),
            enterprise_project_id: None,
            last_due: 0,
            created_at: "2026-12-01T10:30:00.000000".into(),
            updated_at: None,
        }
    }

    fn at(s: &str) -> i64 {
        chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap().and_utc().timestamp()
    }

    #[test]
    fn weekdays_hours_and_offsets() {
        // 2026-12-04 is a Friday (5).
        let p = policy(vec![1, 5], None, vec![2, 14]);
        assert_eq!(p.latest_due(at("2026-12-04 15:00"), 0), Some(at("2026-12-04 14:00")));
        assert_eq!(p.latest_due(at("2026-12-04 14:00"), 0), Some(at("2026-12-04 14:00")));
        assert_eq!(p.latest_due(at("2026-12-04 13:59"), 0), Some(at("2026-12-04 02:00")));
        assert_eq!(p.latest_due(at("2026-12-04 01:00"), 0), Some(at("2026-11-30 14:00")));
        // UTC+8: 14:00 local is 06:00 UTC.
        assert_eq!(p.latest_due(at("2026-12-04 07:00"), 8 * 3600), Some(at("2026-12-04 06:00")));
    }

    #[test]
    fn every_n_days_from_the_creation_day() {
        let p = policy(vec![], Some(3), vec![0]);
        assert_eq!(p.latest_due(at("2026-12-05 12:00"), 0), Some(at("2026-12-04 00:00")));
        assert_eq!(p.latest_due(at("2026-12-03 12:00"), 0), Some(at("2026-12-01 00:00")));
        assert_eq!(policy(vec![], None, vec![1]).latest_due(at("2026-12-05 12:00"), 0), None);
    }
}
