//! Maintenance windows, deadlines and reboot policies (issue 10, point 5).
//!
//! A window is weekly, in an IANA time zone: `Sat 02:00-05:00 Europe/Berlin`; an end at
//! or before the start crosses midnight (`Sun 23:00-01:00 UTC` ends Monday 01:00). A
//! group has any number of windows; none means "install any time". An update's deadline
//! overrides the windows: once it has passed, the agent installs now.
//!
//! Local times that do not exist or occur twice are resolved so that every weekly
//! window happens exactly once and keeps its wall-clock length:
//! - a start inside a spring-forward gap opens when the gap ends (02:30 opens at 03:00
//!   in Berlin); an end inside it moves forward by the gap's length (02:45 closes at
//!   03:45); a window lying wholly in the gap (02:00-03:00 in New York) opens when the
//!   gap ends for its wall-clock length, so none is lost;
//! - in a fall-back fold the start takes the earlier instant and the end the later one,
//!   so a window in the repeated hour opens once and covers both passes of it.
//!
//! Pure: `now` is always a parameter.

use crate::calendar::{
    describe_wait, format_time, lookup_time_zone, parse_time, parse_weekday, CalendarError,
};
use jiff::civil::{Date, DateTime, Time, Weekday};
use jiff::tz::{AmbiguousOffset, TimeZone};
use jiff::{Timestamp, ToSpan};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// What a window looks like, for error messages.
pub const WINDOW_ACCEPTED: &str =
    "\"DAY HH:MM-HH:MM ZONE\", e.g. \"Sat 02:00-05:00 Europe/Berlin\" (an end at or before the start crosses midnight)";

/// Why a window could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    /// Not four words, or no `-` between the times.
    #[error("maintenance window {given:?} is malformed: expected {WINDOW_ACCEPTED}")]
    Malformed {
        /// What was given.
        given: String,
    },
    /// A window that opens and closes at the same minute is empty.
    #[error("maintenance window {given:?} is empty: its start and end are equal; expected {WINDOW_ACCEPTED}")]
    Empty {
        /// What was given.
        given: String,
    },
    /// The weekday, a time or the time zone is invalid.
    #[error("maintenance window {given:?}: {source}")]
    Part {
        /// What was given.
        given: String,
        /// The part that failed.
        source: CalendarError,
    },
    /// A reboot policy other than the three known.
    #[error("unknown reboot policy {given:?}: expected in-window, now or never")]
    UnknownRebootPolicy {
        /// What was given.
        given: String,
    },
}

/// One weekly maintenance window in a time zone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MaintenanceWindow {
    weekday: Weekday,
    start: Time,
    end: Time,
    time_zone: String,
}

/// One occurrence of a window: `[opens, closes)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Opening {
    /// First instant inside the window.
    pub opens: Timestamp,
    /// First instant after it.
    pub closes: Timestamp,
    /// The window this is an occurrence of.
    pub window: MaintenanceWindow,
}

impl FromStr for MaintenanceWindow {
    type Err = WindowError;

    fn from_str(s: &str) -> Result<Self, WindowError> {
        let malformed = || WindowError::Malformed {
            given: s.to_string(),
        };
        let part = |source| WindowError::Part {
            given: s.to_string(),
            source,
        };
        let words: Vec<&str> = s.split_whitespace().collect();
        let [day, span, zone] = words.as_slice() else {
            return Err(malformed());
        };
        let (start, end) = span.split_once('-').ok_or_else(malformed)?;
        let weekday = parse_weekday(day).map_err(part)?;
        let start = parse_time(start).map_err(part)?;
        let end = parse_time(end).map_err(part)?;
        lookup_time_zone(zone).map_err(part)?;
        if start == end {
            return Err(WindowError::Empty {
                given: s.to_string(),
            });
        }
        Ok(MaintenanceWindow {
            weekday,
            start,
            end,
            time_zone: (*zone).to_string(),
        })
    }
}

impl TryFrom<String> for MaintenanceWindow {
    type Error = WindowError;
    fn try_from(s: String) -> Result<Self, WindowError> {
        s.parse()
    }
}

impl From<MaintenanceWindow> for String {
    fn from(w: MaintenanceWindow) -> String {
        w.to_string()
    }
}

impl fmt::Display for MaintenanceWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}-{} {}",
            short_day(self.weekday),
            format_time(self.start),
            format_time(self.end),
            self.time_zone
        )
    }
}

fn short_day(day: Weekday) -> &'static str {
    match day {
        Weekday::Monday => "Mon",
        Weekday::Tuesday => "Tue",
        Weekday::Wednesday => "Wed",
        Weekday::Thursday => "Thu",
        Weekday::Friday => "Fri",
        Weekday::Saturday => "Sat",
        Weekday::Sunday => "Sun",
    }
}

impl MaintenanceWindow {
    /// The window's time zone name.
    pub fn time_zone(&self) -> &str {
        &self.time_zone
    }

    /// `Sat 02:00 Europe/Berlin`: when it opens, for messages.
    pub fn opening_text(&self) -> String {
        format!(
            "{} {} {}",
            short_day(self.weekday),
            format_time(self.start),
            self.time_zone
        )
    }

    /// The occurrence starting on local date `day` (which must be the window's weekday).
    fn occurrence(&self, tz: &TimeZone, day: Date) -> Option<Opening> {
        let end_day = if self.end <= self.start {
            day.tomorrow().ok()?
        } else {
            day
        };
        let start = tz.to_ambiguous_timestamp(DateTime::from_parts(day, self.start));
        let opens = match start.offset() {
            // A start in a gap opens when the gap ends (the transition), so the part of
            // the window after the gap is kept whole.
            AmbiguousOffset::Gap { .. } => {
                let after = start.later().ok()?;
                tz.preceding(after.checked_add(1.second()).ok()?)
                    .next()
                    .map(|t| t.timestamp())?
            }
            _ => start.compatible().ok()?,
        };
        let closes = tz
            .to_ambiguous_timestamp(DateTime::from_parts(end_day, self.end))
            .later()
            .ok()?;
        // A window lying wholly in the skipped hour would be empty: keep it for its
        // wall-clock length after the gap.
        let closes = if closes <= opens {
            let length = DateTime::from_parts(day, self.start)
                .duration_until(DateTime::from_parts(end_day, self.end));
            opens.checked_add(length).ok()?
        } else {
            closes
        };
        Some(Opening {
            opens,
            closes,
            window: self.clone(),
        })
    }

    /// The occurrence open at `now`, else the next one to open.
    pub fn next_opening(&self, now: Timestamp) -> Option<Opening> {
        let tz = lookup_time_zone(&self.time_zone).ok()?;
        let today = now.to_zoned(tz.clone()).date();
        // From two days back (an occurrence that crossed midnight and is still open) to
        // eight ahead: one week plus the margin always holds the next occurrence.
        (-2i64..=8)
            .filter_map(|d| today.checked_add(d.days()).ok())
            .filter(|d| d.weekday() == self.weekday)
            .filter_map(|d| self.occurrence(&tz, d))
            .find(|o| o.closes > now)
    }

    /// Whether the window is open at `now`.
    pub fn is_open(&self, now: Timestamp) -> bool {
        self.next_opening(now).is_some_and(|o| o.opens <= now)
    }
}

/// A group's windows: open when any is; none at all means "any time".
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct WindowSchedule(pub Vec<MaintenanceWindow>);

impl WindowSchedule {
    /// Parses each `DAY HH:MM-HH:MM ZONE`.
    pub fn parse<S: AsRef<str>>(windows: &[S]) -> Result<WindowSchedule, WindowError> {
        windows
            .iter()
            .map(|w| w.as_ref().parse())
            .collect::<Result<Vec<_>, _>>()
            .map(WindowSchedule)
    }

    /// Whether installing is allowed at `now` by the windows alone (no windows: always).
    pub fn is_open(&self, now: Timestamp) -> bool {
        self.0.is_empty() || self.0.iter().any(|w| w.is_open(now))
    }

    /// The earliest occurrence that is open at `now` or opens after it.
    pub fn next_opening(&self, now: Timestamp) -> Option<Opening> {
        self.0
            .iter()
            .filter_map(|w| w.next_opening(now))
            .min_by_key(|o| o.opens.max(now))
    }

    /// When installing may start: `now` if open, the next opening otherwise.
    pub fn next_open(&self, now: Timestamp) -> Option<Timestamp> {
        if self.is_open(now) {
            return Some(now);
        }
        self.next_opening(now).map(|o| o.opens)
    }

    /// The windows as their texts.
    pub fn texts(&self) -> Vec<String> {
        self.0.iter().map(ToString::to_string).collect()
    }
}

/// Whether to install an assigned update now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InstallDecision {
    /// Install: the group has no windows.
    AnyTime,
    /// Install: a window is open.
    InWindow,
    /// Install: the deadline passed, whatever the windows say.
    DeadlinePassed,
    /// Wait until `until` (the next window, or the deadline if that comes first).
    Wait {
        /// When installing becomes allowed.
        until: Timestamp,
        /// Why, for people: "waiting for the maintenance window Sat 02:00 Europe/Berlin (in 2 days 3 hours)".
        message: String,
        /// The same without the relative time, so that it reads the same at every poll
        /// (for the server's state history): "... Europe/Berlin (opens 2026-12-05T01:00:00Z)".
        reason: String,
    },
}

impl InstallDecision {
    /// Whether the agent may install now.
    pub fn install(&self) -> bool {
        !matches!(self, InstallDecision::Wait { .. })
    }
}

/// The decision for one update: the deadline overrides the windows.
pub fn install_decision(
    windows: &WindowSchedule,
    deadline: Option<Timestamp>,
    now: Timestamp,
) -> InstallDecision {
    if windows.0.is_empty() {
        return InstallDecision::AnyTime;
    }
    if deadline.is_some_and(|d| d <= now) {
        return InstallDecision::DeadlinePassed;
    }
    if windows.is_open(now) {
        return InstallDecision::InWindow;
    }
    let next = windows.next_opening(now);
    let deadline_first = match (&next, deadline) {
        (Some(o), Some(d)) => d < o.opens,
        (None, Some(_)) => true,
        _ => false,
    };
    match (next, deadline) {
        (_, Some(d)) if deadline_first => InstallDecision::Wait {
            until: d,
            message: format!(
                "waiting for the deadline {d} (no maintenance window opens before it; {})",
                in_text(d, "UTC", now)
            ),
            reason: format!("waiting for the deadline {d} (no maintenance window opens before it)"),
        },
        (Some(o), _) => InstallDecision::Wait {
            until: o.opens,
            message: format!(
                "waiting for the maintenance window {} ({})",
                o.window.opening_text(),
                in_text(o.opens, o.window.time_zone(), now)
            ),
            reason: format!(
                "waiting for the maintenance window {} (opens {})",
                o.window.opening_text(),
                o.opens
            ),
        },
        // Unreachable in practice (a parsed window always has a next occurrence); stay closed.
        (None, _) => InstallDecision::Wait {
            until: now,
            message: "waiting: no maintenance window can be computed".to_string(),
            reason: "waiting: no maintenance window can be computed".to_string(),
        },
    }
}

fn in_text(at: Timestamp, zone: &str, now: Timestamp) -> String {
    lookup_time_zone(zone)
        .ok()
        .and_then(|tz| describe_wait(&at.to_zoned(tz), now))
        .unwrap_or_else(|| format!("at {at}"))
}

/// When the agent may reboot after an install that needs one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RebootPolicy {
    /// Only inside a maintenance window (at once if the group has none).
    InWindow,
    /// Right after the install.
    Now,
    /// Never: the admin reboots; the host reports pending reboot.
    #[default]
    Never,
}

impl RebootPolicy {
    /// `in-window`, `now` or `never`.
    pub fn as_str(self) -> &'static str {
        match self {
            RebootPolicy::InWindow => "in-window",
            RebootPolicy::Now => "now",
            RebootPolicy::Never => "never",
        }
    }

    /// The more careful of two policies (never before in-window before now): a host in
    /// several groups, or one dpkg run of several updates, reboots as the most careful says.
    pub fn most_careful(self, other: RebootPolicy) -> RebootPolicy {
        match (self, other) {
            (RebootPolicy::Never, _) | (_, RebootPolicy::Never) => RebootPolicy::Never,
            (RebootPolicy::InWindow, _) | (_, RebootPolicy::InWindow) => RebootPolicy::InWindow,
            _ => RebootPolicy::Now,
        }
    }

    /// Whether to reboot at `now` given the windows.
    pub fn reboot_now(self, windows: &WindowSchedule, now: Timestamp) -> bool {
        match self {
            RebootPolicy::Now => true,
            RebootPolicy::InWindow => windows.is_open(now),
            RebootPolicy::Never => false,
        }
    }
}

// ---- Issue 10, point 2: a ring's grace period ----

/// The end of a grace period: `deadline + grace`. Intune's meaning: at the deadline the
/// install happens whatever the windows say; a pending reboot may wait for a window for
/// `grace` longer, then it is forced, and a host not installed by then is overdue.
/// `None` without a deadline, or without a grace period (no ring governs the approval).
pub fn grace_end(deadline: Option<Timestamp>, grace_seconds: Option<i64>) -> Option<Timestamp> {
    let (d, g) = (deadline?, grace_seconds?);
    d.checked_add(jiff::SignedDuration::from_secs(g.max(0)))
        .ok()
}

/// Whether a pending reboot happens now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RebootDue {
    /// The policy allows it now (`now`, or `in-window` inside a window).
    ByPolicy,
    /// `in-window` outside a window, but the grace period after the deadline is over.
    GraceOver,
    /// Not yet (or never, by the policy `never`).
    NotYet,
}

/// The reboot decision at `now`: the policy, overridden once `grace_end` passed for an
/// `in-window` policy. `never` stays never: the admin chose to reboot by hand, and the
/// report shows the host overdue instead.
pub fn reboot_due(
    policy: RebootPolicy,
    windows: &WindowSchedule,
    grace_end: Option<Timestamp>,
    now: Timestamp,
) -> RebootDue {
    if policy.reboot_now(windows, now) {
        return RebootDue::ByPolicy;
    }
    match (policy, grace_end) {
        (RebootPolicy::InWindow, Some(end)) if end <= now => RebootDue::GraceOver,
        _ => RebootDue::NotYet,
    }
}

impl FromStr for RebootPolicy {
    type Err = WindowError;
    fn from_str(s: &str) -> Result<Self, WindowError> {
        match s.trim() {
            "in-window" => Ok(RebootPolicy::InWindow),
            "now" => Ok(RebootPolicy::Now),
            "never" => Ok(RebootPolicy::Never),
            _ => Err(WindowError::UnknownRebootPolicy {
                given: s.to_string(),
            }),
        }
    }
}

impl fmt::Display for RebootPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }
    fn w(s: &str) -> MaintenanceWindow {
        s.parse().unwrap()
    }
    fn sched(ws: &[&str]) -> WindowSchedule {
        WindowSchedule::parse(ws).unwrap()
    }

    #[test]
    fn parses_and_prints_a_window() {
        let win = w("saturday 2:00-05:00 Europe/Berlin");
        assert_eq!(win.to_string(), "Sat 02:00-05:00 Europe/Berlin");
        assert_eq!(win.opening_text(), "Sat 02:00 Europe/Berlin");
        let json = serde_json::to_string(&win).unwrap();
        assert_eq!(json, "\"Sat 02:00-05:00 Europe/Berlin\"");
        assert_eq!(
            serde_json::from_str::<MaintenanceWindow>(&json).unwrap(),
            win
        );
    }

    #[test]
    fn malformed_windows_are_refused_with_what_to_write() {
        assert!(matches!(
            "Sat 02:00 Europe/Berlin".parse::<MaintenanceWindow>(),
            Err(WindowError::Malformed { .. })
        ));
        assert!(matches!(
            "Sat 02:00-02:00 UTC".parse::<MaintenanceWindow>(),
            Err(WindowError::Empty { .. })
        ));
        assert!(matches!(
            "Sat 02:00-05:00 Mars/Olympus".parse::<MaintenanceWindow>(),
            Err(WindowError::Part {
                source: CalendarError::UnknownTimeZone { .. },
                ..
            })
        ));
        assert!(matches!(
            "Caturday 02:00-05:00 UTC".parse::<MaintenanceWindow>(),
            Err(WindowError::Part {
                source: CalendarError::UnknownWeekday { .. },
                ..
            })
        ));
        assert!(matches!(
            "Sat 25:00-05:00 UTC".parse::<MaintenanceWindow>(),
            Err(WindowError::Part {
                source: CalendarError::InvalidTime { .. },
                ..
            })
        ));
        assert!(matches!(
            "sometimes".parse::<RebootPolicy>(),
            Err(WindowError::UnknownRebootPolicy { .. })
        ));
    }

    #[test]
    fn open_inside_closed_at_the_end_and_next_open_is_next_week() {
        // 2026-12-05 is a Saturday; Berlin is UTC+1 in winter.
        let win = sched(&["Sat 02:00-05:00 Europe/Berlin"]);
        assert!(!win.is_open(ts("2026-12-05T00:59:59Z")));
        assert!(win.is_open(ts("2026-12-05T01:00:00Z")));
        assert!(win.is_open(ts("2026-12-05T03:59:59Z")));
        assert!(!win.is_open(ts("2026-12-05T04:00:00Z")));
        assert_eq!(
            win.next_open(ts("2026-12-05T04:00:00Z")),
            Some(ts("2026-12-12T01:00:00Z"))
        );
        assert_eq!(
            win.next_open(ts("2026-12-01T12:00:00Z")),
            Some(ts("2026-12-05T01:00:00Z"))
        );
        assert_eq!(
            win.next_open(ts("2026-12-05T02:00:00Z")),
            Some(ts("2026-12-05T02:00:00Z"))
        );
    }

    #[test]
    fn a_window_crossing_midnight_is_open_on_both_days() {
        // Sun 23:00 - Mon 01:00 New York (UTC-5 in winter); 2026-12-06 is a Sunday.
        let win = sched(&["Sun 23:00-01:00 America/New_York"]);
        assert!(win.is_open(ts("2026-12-07T04:30:00Z"))); // Sun 23:30
        assert!(win.is_open(ts("2026-12-07T05:30:00Z"))); // Mon 00:30
        assert!(!win.is_open(ts("2026-12-07T06:00:00Z"))); // Mon 01:00
        assert!(!win.is_open(ts("2026-12-06T05:30:00Z"))); // Sun 00:30: Sat's night has no window
        assert_eq!(
            win.next_open(ts("2026-12-07T06:00:00Z")),
            Some(ts("2026-12-14T04:00:00Z"))
        );
    }

    #[test]
    fn several_windows_the_earliest_wins() {
        let win = sched(&["Sat 02:00-05:00 Europe/Berlin", "Wed 22:00-23:00 UTC"]);
        // Tuesday 2026-12-01 noon: Wednesday's comes first.
        assert_eq!(
            win.next_open(ts("2026-12-01T12:00:00Z")),
            Some(ts("2026-12-02T22:00:00Z"))
        );
        assert!(win.is_open(ts("2026-12-02T22:30:00Z")));
        assert!(win.is_open(ts("2026-12-05T01:30:00Z")));
    }

    #[test]
    fn berlin_spring_gap_a_window_starting_in_the_skipped_hour_still_opens() {
        // 2026-03-29 (Sunday): 02:00 CET jumps to 03:00 CEST (01:00Z).
        let win = sched(&["Sun 02:30-04:00 Europe/Berlin"]);
        // 02:30 does not exist; the window opens when the gap ends: 03:00 CEST = 01:00Z.
        assert_eq!(
            win.next_open(ts("2026-03-28T12:00:00Z")),
            Some(ts("2026-03-29T01:00:00Z"))
        );
        assert!(!win.is_open(ts("2026-03-29T00:59:59Z")));
        assert!(win.is_open(ts("2026-03-29T01:00:00Z")));
        assert!(!win.is_open(ts("2026-03-29T02:00:00Z"))); // 04:00 CEST
                                                           // A window lying wholly inside the gap is not lost: it keeps its half hour.
        let inside = sched(&["Sun 02:00-02:30 Europe/Berlin"]);
        let o = inside.next_opening(ts("2026-03-28T12:00:00Z")).unwrap();
        assert_eq!(
            (o.opens, o.closes),
            (ts("2026-03-29T01:00:00Z"), ts("2026-03-29T01:30:00Z"))
        );
        // The week after is ordinary CEST.
        assert_eq!(
            inside.next_open(ts("2026-03-29T02:00:00Z")),
            Some(ts("2026-04-05T00:00:00Z"))
        );
    }

    #[test]
    fn berlin_autumn_fold_the_repeated_hour_gives_one_window_not_two() {
        // 2026-10-25 (Sunday): 03:00 CEST falls back to 02:00 CET (01:00Z); 02:00-03:00 happens twice.
        let win = sched(&["Sun 02:15-02:45 Europe/Berlin"]);
        let first = win.next_opening(ts("2026-10-24T12:00:00Z")).unwrap();
        // Opens at the first 02:15 (CEST, 00:15Z) and closes at the second 02:45 (CET, 01:45Z).
        assert_eq!(
            (first.opens, first.closes),
            (ts("2026-10-25T00:15:00Z"), ts("2026-10-25T01:45:00Z"))
        );
        // During the second pass (02:30 CET) it is still the same occurrence, not a new one.
        assert!(win.is_open(ts("2026-10-25T01:30:00Z")));
        assert_eq!(
            win.next_opening(ts("2026-10-25T01:30:00Z")).unwrap().opens,
            first.opens
        );
        // After it closes, the next is a week later: no second window that night.
        assert_eq!(
            win.next_open(ts("2026-10-25T01:45:00Z")),
            Some(ts("2026-11-01T01:15:00Z"))
        );
    }

    #[test]
    fn new_york_spring_gap_and_autumn_fold() {
        // 2026-03-08 (Sunday): 02:00 EST → 03:00 EDT (07:00Z).
        let spring = sched(&["Sun 02:00-03:00 America/New_York"]);
        let o = spring.next_opening(ts("2026-03-07T12:00:00Z")).unwrap();
        // Wholly in the gap: 03:00-04:00 EDT, one hour kept, once.
        assert_eq!(
            (o.opens, o.closes),
            (ts("2026-03-08T07:00:00Z"), ts("2026-03-08T08:00:00Z"))
        );
        // 2026-11-01 (Sunday): 02:00 EDT → 01:00 EST (06:00Z); 01:00-02:00 happens twice.
        let autumn = sched(&["Sun 01:00-02:00 America/New_York"]);
        let o = autumn.next_opening(ts("2026-10-31T12:00:00Z")).unwrap();
        // First 01:00 (EDT, 05:00Z) to 02:00 EST (07:00Z): both passes, one window.
        assert_eq!(
            (o.opens, o.closes),
            (ts("2026-11-01T05:00:00Z"), ts("2026-11-01T07:00:00Z"))
        );
        assert!(autumn.is_open(ts("2026-11-01T06:30:00Z")));
        assert_eq!(
            autumn.next_open(ts("2026-11-01T07:00:00Z")),
            Some(ts("2026-11-08T06:00:00Z"))
        );
        // A window crossing midnight into the fold night.
        let night = sched(&["Sat 23:00-01:30 America/New_York"]);
        let o = night.next_opening(ts("2026-10-31T12:00:00Z")).unwrap();
        assert_eq!(
            (o.opens, o.closes),
            (ts("2026-11-01T03:00:00Z"), ts("2026-11-01T06:30:00Z"))
        );
    }

    #[test]
    fn sydney_southern_hemisphere_transitions() {
        // 2026-04-05 (Sunday): 03:00 AEDT → 02:00 AEST (16:00Z on the 4th); 02:00-03:00 twice.
        let fold = sched(&["Sun 02:00-03:00 Australia/Sydney"]);
        let o = fold.next_opening(ts("2026-04-04T00:00:00Z")).unwrap();
        assert_eq!(
            (o.opens, o.closes),
            (ts("2026-04-04T15:00:00Z"), ts("2026-04-04T17:00:00Z"))
        );
        // 2026-10-04 (Sunday): 02:00 AEST → 03:00 AEDT (16:00Z on the 3rd).
        let gap = sched(&["Sun 02:30-03:30 Australia/Sydney"]);
        let o = gap.next_opening(ts("2026-10-03T00:00:00Z")).unwrap();
        // 02:30 does not exist: it opens at 03:00 AEDT (16:00Z) and closes at 03:30 AEDT;
        // moving the start by the gap's length would have left it empty.
        assert_eq!(
            (o.opens, o.closes),
            (ts("2026-10-03T16:00:00Z"), ts("2026-10-03T16:30:00Z"))
        );
        assert!(gap.is_open(ts("2026-10-03T16:15:00Z")));
    }

    #[test]
    fn the_deadline_overrides_the_window() {
        let win = sched(&["Sat 02:00-05:00 Europe/Berlin"]);
        let tue = ts("2026-12-01T12:00:00Z");
        match install_decision(&win, None, tue) {
            InstallDecision::Wait { until, message, .. } => {
                assert_eq!(until, ts("2026-12-05T01:00:00Z"));
                assert_eq!(
                    message,
                    "waiting for the maintenance window Sat 02:00 Europe/Berlin (in 3 days)"
                );
                let later = install_decision(&win, None, ts("2026-12-01T13:00:00Z"));
                assert!(
                    matches!(&later, InstallDecision::Wait { reason, .. }
                        if reason == "waiting for the maintenance window Sat 02:00 Europe/Berlin (opens 2026-12-05T01:00:00Z)"),
                    "the reason reads the same an hour later: {later:?}"
                );
            }
            other => panic!("expected a wait, got {other:?}"),
        }
        assert_eq!(
            install_decision(&win, Some(ts("2026-12-01T11:00:00Z")), tue),
            InstallDecision::DeadlinePassed
        );
        // A deadline before the next window: wait for the deadline, not the window.
        match install_decision(&win, Some(ts("2026-12-02T12:00:00Z")), tue) {
            InstallDecision::Wait { until, message, .. } => {
                assert_eq!(until, ts("2026-12-02T12:00:00Z"));
                assert!(message.starts_with("waiting for the deadline"), "{message}");
            }
            other => panic!("expected a wait, got {other:?}"),
        }
        assert_eq!(
            install_decision(&win, None, ts("2026-12-05T02:00:00Z")),
            InstallDecision::InWindow
        );
        assert_eq!(
            install_decision(&WindowSchedule::default(), None, tue),
            InstallDecision::AnyTime
        );
    }

    #[test]
    fn reboot_policies() {
        let win = sched(&["Sat 02:00-05:00 Europe/Berlin"]);
        let outside = ts("2026-12-01T12:00:00Z");
        let inside = ts("2026-12-05T02:00:00Z");
        assert!(RebootPolicy::Now.reboot_now(&win, outside));
        assert!(!RebootPolicy::InWindow.reboot_now(&win, outside));
        assert!(RebootPolicy::InWindow.reboot_now(&win, inside));
        assert!(!RebootPolicy::Never.reboot_now(&win, inside));
        assert_eq!(
            RebootPolicy::Now.most_careful(RebootPolicy::InWindow),
            RebootPolicy::InWindow
        );
        assert_eq!(
            RebootPolicy::Never.most_careful(RebootPolicy::Now),
            RebootPolicy::Never
        );
        assert_eq!(
            RebootPolicy::Now.most_careful(RebootPolicy::Now),
            RebootPolicy::Now
        );
        assert_eq!(
            "in-window".parse::<RebootPolicy>().unwrap(),
            RebootPolicy::InWindow
        );
        assert_eq!(RebootPolicy::InWindow.to_string(), "in-window");
    }

    // Issue 10, point 2: the grace period.
    #[test]
    fn a_pending_reboot_waits_for_its_window_until_the_grace_period_ends() {
        let berlin = sched(&["Sat 02:00-05:00 Europe/Berlin"]);
        let deadline = ts("2026-12-01T12:00:00Z"); // a Tuesday
        let end = grace_end(Some(deadline), Some(86_400)).unwrap();
        assert_eq!(end, ts("2026-12-02T12:00:00Z"));
        assert_eq!(grace_end(Some(deadline), None), None);
        assert_eq!(grace_end(None, Some(60)), None);
        // Negative grace counts as none.
        assert_eq!(grace_end(Some(deadline), Some(-5)), Some(deadline));
        let p = RebootPolicy::InWindow;
        // After the deadline, inside the grace period: waits for the window.
        let wed_morning = ts("2026-12-02T06:00:00Z");
        assert_eq!(
            reboot_due(p, &berlin, Some(end), wed_morning),
            RebootDue::NotYet
        );
        // The grace period is over: forced, window or not.
        let wed_noon = ts("2026-12-02T12:00:00Z");
        assert_eq!(
            reboot_due(p, &berlin, Some(end), wed_noon),
            RebootDue::GraceOver
        );
        // Inside the window the policy alone reboots.
        let sat = ts("2026-12-05T02:30:00Z");
        assert_eq!(reboot_due(p, &berlin, Some(end), sat), RebootDue::ByPolicy);
        // No grace period (no ring): waits for the window for ever.
        assert_eq!(reboot_due(p, &berlin, None, wed_noon), RebootDue::NotYet);
        // never stays never; now is now.
        assert_eq!(
            reboot_due(RebootPolicy::Never, &berlin, Some(end), wed_noon),
            RebootDue::NotYet
        );
        assert_eq!(
            reboot_due(RebootPolicy::Now, &berlin, None, wed_morning),
            RebootDue::ByPolicy
        );
    }

    #[test]
    fn the_grace_period_is_counted_in_seconds_across_a_dst_change() {
        // A day of grace from Saturday noon in Berlin ends 24 real hours later, though
        // the clocks went back in between (2026-10-25 03:00 CEST -> 02:00 CET).
        let deadline = ts("2026-10-24T10:00:00Z");
        assert_eq!(
            grace_end(Some(deadline), Some(86_400)),
            Some(ts("2026-10-25T10:00:00Z"))
        );
    }
}
