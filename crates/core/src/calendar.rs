//! The release calendar: when each monthly train's patch day falls in a tenant's time zone,
//! and whether an update may be approved yet.
//!
//! Patch day is "the Nth (or last) weekday of the month at a local time", by default the
//! second Tuesday at 10:00 UTC. Emergency-lane updates skip the wait entirely.

use jiff::civil::{Date, DateTime, Time, Weekday};
use jiff::tz::TimeZone;
use jiff::{Timestamp, Unit, Zoned};
use patchday_types::{Release, YearMonth};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

const WEEKS_ACCEPTED: &str = "first, second, third, fourth, last";
const WEEKDAYS_ACCEPTED: &str =
    "monday, tuesday, wednesday, thursday, friday, saturday, sunday (or mon, tue, ...)";
const TIME_ACCEPTED: &str = "24-hour HH:MM or HH:MM:SS, for example 10:00";
const TIME_ZONES_ACCEPTED: &str =
    "an IANA time zone name such as UTC, Europe/Berlin or America/New_York";

/// Why a schedule could not be parsed or a patch day could not be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CalendarError {
    /// The week of the month is not one of the accepted words.
    #[error("unknown week of month {given:?}: expected one of {WEEKS_ACCEPTED}")]
    UnknownWeek {
        /// What was given.
        given: String,
    },
    /// The weekday is not a day name.
    #[error("unknown weekday {given:?}: expected one of {WEEKDAYS_ACCEPTED}")]
    UnknownWeekday {
        /// What was given.
        given: String,
    },
    /// The time of day is not a valid 24-hour time.
    #[error("invalid time of day {given:?}: expected {TIME_ACCEPTED}")]
    InvalidTime {
        /// What was given.
        given: String,
    },
    /// The time zone is not in the time zone database.
    #[error("unknown time zone {given:?} ({reason}): expected {TIME_ZONES_ACCEPTED}")]
    UnknownTimeZone {
        /// What was given.
        given: String,
        /// What the time zone database said.
        reason: String,
    },
    /// The release month or the patch day in it is outside the calendar's range.
    #[error("cannot compute the patch day of release month {month}: {reason}")]
    OutOfRange {
        /// The release month.
        month: YearMonth,
        /// What went wrong.
        reason: String,
    },
}

/// Which occurrence of the weekday in a month is patch day.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WeekOfMonth {
    /// The first occurrence.
    First,
    /// The second occurrence (the classic patch Tuesday).
    Second,
    /// The third occurrence.
    Third,
    /// The fourth occurrence (every month has one).
    Fourth,
    /// The last occurrence (the fourth or fifth).
    Last,
}

impl WeekOfMonth {
    /// The configuration word: `first`, ..., `last`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::First => "first",
            Self::Second => "second",
            Self::Third => "third",
            Self::Fourth => "fourth",
            Self::Last => "last",
        }
    }

    /// The `nth` argument of jiff's `nth_weekday_of_month` (negative counts from the end).
    fn nth(self) -> i8 {
        match self {
            Self::First => 1,
            Self::Second => 2,
            Self::Third => 3,
            Self::Fourth => 4,
            Self::Last => -1,
        }
    }
}

impl fmt::Display for WeekOfMonth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for WeekOfMonth {
    type Err = CalendarError;
    fn from_str(s: &str) -> Result<Self, CalendarError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "first" | "1st" | "1" => Ok(Self::First),
            "second" | "2nd" | "2" => Ok(Self::Second),
            "third" | "3rd" | "3" => Ok(Self::Third),
            "fourth" | "4th" | "4" => Ok(Self::Fourth),
            "last" => Ok(Self::Last),
            _ => Err(CalendarError::UnknownWeek {
                given: s.to_string(),
            }),
        }
    }
}

/// When a tenant's monthly patch day falls: the Nth weekday of the month at a local time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "ScheduleRepr", into = "ScheduleRepr")]
pub struct PatchDaySchedule {
    /// Which occurrence of the weekday.
    pub week: WeekOfMonth,
    /// The weekday.
    pub weekday: Weekday,
    /// Local time of day in `time_zone`.
    pub time: Time,
    /// IANA time zone name, for example `Europe/Berlin`.
    pub time_zone: String,
}

impl Default for PatchDaySchedule {
    fn default() -> Self {
        Self {
            week: WeekOfMonth::Second,
            weekday: Weekday::Tuesday,
            time: Time::constant(10, 0, 0, 0),
            time_zone: "UTC".to_string(),
        }
    }
}

impl fmt::Display for PatchDaySchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} of the month at {} {}",
            self.week,
            weekday_name(self.weekday),
            format_time(self.time),
            self.time_zone
        )
    }
}

/// The wire form: four strings, each optional (missing ones take the default).
#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct ScheduleRepr {
    week: String,
    weekday: String,
    time: String,
    time_zone: String,
}

impl Default for ScheduleRepr {
    fn default() -> Self {
        PatchDaySchedule::default().into()
    }
}

impl From<PatchDaySchedule> for ScheduleRepr {
    fn from(s: PatchDaySchedule) -> Self {
        Self {
            week: s.week.as_str().to_string(),
            weekday: weekday_name(s.weekday).to_string(),
            time: format_time(s.time),
            time_zone: s.time_zone,
        }
    }
}

impl TryFrom<ScheduleRepr> for PatchDaySchedule {
    type Error = CalendarError;
    fn try_from(r: ScheduleRepr) -> Result<Self, CalendarError> {
        parse_schedule(&r.week, &r.weekday, &r.time, &r.time_zone)
    }
}

/// Parses a schedule from its four configuration strings, checking the time zone exists.
pub fn parse_schedule(
    week: &str,
    weekday: &str,
    time: &str,
    tz: &str,
) -> Result<PatchDaySchedule, CalendarError> {
    let week = week.parse()?;
    let weekday = parse_weekday(weekday)?;
    let time = parse_time(time)?;
    let time_zone = tz.trim().to_string();
    lookup_time_zone(&time_zone)?;
    Ok(PatchDaySchedule {
        week,
        weekday,
        time,
        time_zone,
    })
}

impl PatchDaySchedule {
    /// The instant of `month`'s patch day in this schedule's time zone.
    ///
    /// When the local time does not exist (spring-forward gap) or occurs twice (fall-back
    /// fold), jiff's "compatible" disambiguation applies, as in RFC 5545 and Temporal: in
    /// a gap the clock reading moves forward by the gap's length (02:30 becomes 03:30),
    /// in a fold the earlier of the two instants is chosen.
    pub fn patch_day(&self, month: YearMonth) -> Result<Zoned, CalendarError> {
        let tz = lookup_time_zone(&self.time_zone)?;
        let out_of_range = |e: jiff::Error| CalendarError::OutOfRange {
            month,
            reason: e.to_string(),
        };
        let date = Date::new(month.year, month.month, 1)
            .and_then(|first| first.nth_weekday_of_month(self.week.nth(), self.weekday))
            .map_err(out_of_range)?;
        tz.to_ambiguous_zoned(DateTime::from_parts(date, self.time))
            .compatible()
            .map_err(out_of_range)
    }

    /// The first patch day at or after `now`.
    pub fn next_patch_day(&self, now: Timestamp) -> Result<Zoned, CalendarError> {
        self.next_train(now).map(|(_, day)| day)
    }

    /// Whether a patch day fell in `(from, to]` (a server that looks now and then asks
    /// whether one came since it last looked).
    pub fn came_between(&self, from: Timestamp, to: Timestamp) -> bool {
        from < to
            && self
                .next_patch_day(from)
                .is_ok_and(|d| d.timestamp() > from && d.timestamp() <= to)
    }

    /// When an update in `release` becomes approvable; `None` for the emergency lane.
    pub fn approvable_at(&self, release: &Release) -> Result<Option<Zoned>, CalendarError> {
        match release {
            Release::Train { month } => self.patch_day(*month).map(Some),
            Release::Emergency { .. } => Ok(None),
        }
    }

    /// Whether an update in `release` may be approved at `now` (patch day itself included).
    pub fn is_approvable(&self, release: &Release, now: Timestamp) -> Result<bool, CalendarError> {
        Ok(match self.approvable_at(release)? {
            Some(at) => at.timestamp() <= now,
            None => true,
        })
    }

    /// The train a non-emergency update published at `now` joins: the month of the next patch day.
    ///
    /// That is this month's train while its patch day is still ahead (or is exactly
    /// `now`), else next month's. Fails only when the time zone is unknown.
    pub fn train_for(&self, now: Timestamp) -> Result<YearMonth, CalendarError> {
        self.next_train(now).map(|(month, _)| month)
    }

    /// The first train whose patch day is at or after `now`, with that patch day.
    fn next_train(&self, now: Timestamp) -> Result<(YearMonth, Zoned), CalendarError> {
        let tz = lookup_time_zone(&self.time_zone)?;
        let local = now.to_zoned(tz);
        let this = YearMonth {
            year: local.year(),
            month: local.month(),
        };
        // The month before is checked too: a gap at the very end of a month can push its
        // patch day into the next one. Two months ahead always contains one.
        let mut month = shift_month(this, -1)?;
        for _ in 0..4 {
            let day = self.patch_day(month)?;
            if day.timestamp() >= now {
                return Ok((month, day));
            }
            month = shift_month(month, 1)?;
        }
        Err(CalendarError::OutOfRange {
            month: this,
            reason: "no patch day found in the following months".to_string(),
        })
    }
}

/// A sentence telling a person when a waiting update becomes approvable; `None` when it already is.
///
/// If the patch day cannot be computed (unknown time zone), the sentence says so:
/// such an update is not approvable either.
pub fn wait_message(
    schedule: &PatchDaySchedule,
    release: &Release,
    now: Timestamp,
) -> Option<String> {
    let Release::Train { month } = release else {
        return None;
    };
    let at = match schedule.patch_day(*month) {
        Ok(at) => at,
        Err(e) => {
            return Some(format!(
                "update is on the {month} train, but its patch day cannot be computed: {e}; \
                 fix the tenant's patch-day schedule or use the emergency lane"
            ))
        }
    };
    if at.timestamp() <= now {
        return None;
    }
    let when = match describe_wait(&at, now) {
        Some(wait) => format!(" ({wait})"),
        None => String::new(),
    };
    Some(format!(
        "update is on the {month} train: approvable from {} {} {}{when}; \
         use the emergency lane to skip the wait",
        at.date(),
        format_time(at.time()),
        schedule.time_zone,
    ))
}

/// "in 11 days", "in 1 day 3 hours", "in 5 hours 20 minutes", "in 7 minutes", counted in
/// the zone's calendar days so that a DST change does not make 11 days read as 10.
pub(crate) fn describe_wait(at: &Zoned, now: Timestamp) -> Option<String> {
    let from = now.to_zoned(at.time_zone().clone());
    let span = from.until((Unit::Day, at)).ok()?;
    let (days, hours, minutes) = (span.get_days(), span.get_hours(), span.get_minutes());
    let unit = |n: i64, one: &str| {
        if n == 1 {
            format!("1 {one}")
        } else {
            format!("{n} {one}s")
        }
    };
    Some(if days >= 2 {
        format!("in {}", unit(days.into(), "day"))
    } else if days == 1 {
        if hours == 0 {
            "in 1 day".to_string()
        } else {
            format!("in 1 day {}", unit(hours.into(), "hour"))
        }
    } else if hours >= 1 {
        if minutes == 0 {
            format!("in {}", unit(hours.into(), "hour"))
        } else {
            format!(
                "in {} {}",
                unit(hours.into(), "hour"),
                unit(minutes, "minute")
            )
        }
    } else if minutes >= 1 {
        format!("in {}", unit(minutes, "minute"))
    } else {
        "in less than a minute".to_string()
    })
}

pub(crate) fn lookup_time_zone(name: &str) -> Result<TimeZone, CalendarError> {
    TimeZone::get(name).map_err(|e| {
        let reason = if jiff::tz::db().is_definitively_empty() {
            format!("{e}; the time zone database is empty: install tzdata or set TZDIR")
        } else {
            e.to_string()
        };
        CalendarError::UnknownTimeZone {
            given: name.to_string(),
            reason,
        }
    })
}

fn shift_month(month: YearMonth, by: i8) -> Result<YearMonth, CalendarError> {
    let index = i32::from(month.year) * 12 + i32::from(month.month) - 1 + i32::from(by);
    let year = i16::try_from(index.div_euclid(12)).ok();
    let m = i8::try_from(index.rem_euclid(12) + 1).ok();
    match (year, m) {
        (Some(year), Some(m)) if (1..=9999).contains(&year) => Ok(YearMonth { year, month: m }),
        _ => Err(CalendarError::OutOfRange {
            month,
            reason: "the calendar ends at 9999-12".to_string(),
        }),
    }
}

pub(crate) fn parse_weekday(s: &str) -> Result<Weekday, CalendarError> {
    let day = match s.trim().to_ascii_lowercase().as_str() {
        "monday" | "mon" => Weekday::Monday,
        "tuesday" | "tue" | "tues" => Weekday::Tuesday,
        "wednesday" | "wed" => Weekday::Wednesday,
        "thursday" | "thu" | "thurs" => Weekday::Thursday,
        "friday" | "fri" => Weekday::Friday,
        "saturday" | "sat" => Weekday::Saturday,
        "sunday" | "sun" => Weekday::Sunday,
        _ => {
            return Err(CalendarError::UnknownWeekday {
                given: s.to_string(),
            })
        }
    };
    Ok(day)
}

fn weekday_name(day: Weekday) -> &'static str {
    match day {
        Weekday::Monday => "monday",
        Weekday::Tuesday => "tuesday",
        Weekday::Wednesday => "wednesday",
        Weekday::Thursday => "thursday",
        Weekday::Friday => "friday",
        Weekday::Saturday => "saturday",
        Weekday::Sunday => "sunday",
    }
}

/// Accepts `H:MM`, `HH:MM` and `HH:MM:SS` on a 24-hour clock.
pub(crate) fn parse_time(s: &str) -> Result<Time, CalendarError> {
    let bad = || CalendarError::InvalidTime {
        given: s.to_string(),
    };
    let field = |part: &str, min_len: usize| -> Result<i8, CalendarError> {
        if !(min_len..=2).contains(&part.len()) || !part.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        part.parse().map_err(|_| bad())
    };
    let parts: Vec<&str> = s.trim().split(':').collect();
    let (h, m, sec) = match parts.as_slice() {
        [h, m] => (field(h, 1)?, field(m, 2)?, 0),
        [h, m, sec] => (field(h, 1)?, field(m, 2)?, field(sec, 2)?),
        _ => return Err(bad()),
    };
    Time::new(h, m, sec, 0).map_err(|_| bad())
}

/// `10:00`, or `10:00:30` when the seconds matter.
pub(crate) fn format_time(t: Time) -> String {
    if t.second() == 0 {
        format!("{:02}:{:02}", t.hour(), t.minute())
    } else {
        format!("{:02}:{:02}:{:02}", t.hour(), t.minute(), t.second())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;
    use serde::de::value::{Error as ValueError, MapDeserializer};
    use serde::de::IntoDeserializer;

    fn ym(year: i16, month: i8) -> YearMonth {
        YearMonth { year, month }
    }

    fn train(year: i16, month: i8) -> Release {
        Release::Train {
            month: ym(year, month),
        }
    }

    fn emergency() -> Release {
        Release::Emergency {
            reason: "wormable".to_string(),
        }
    }

    fn sched(week: &str, weekday: &str, time: &str, tz: &str) -> PatchDaySchedule {
        parse_schedule(week, weekday, time, tz).unwrap()
    }

    /// A local wall-clock reading in `tz` as an instant (compatible disambiguation).
    fn at(tz: &str, y: i16, mo: i8, d: i8, h: i8, mi: i8) -> Timestamp {
        date(y, mo, d)
            .at(h, mi, 0, 0)
            .in_tz(tz)
            .unwrap()
            .timestamp()
    }

    fn berlin_10() -> PatchDaySchedule {
        sched("second", "tuesday", "10:00", "Europe/Berlin")
    }

    #[test]
    fn calendar_time_zone_database_is_available() {
        for name in [
            "UTC",
            "Europe/Berlin",
            "Asia/Kolkata",
            "Australia/Sydney",
            "America/New_York",
        ] {
            TimeZone::get(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }

    #[test]
    fn calendar_a_patch_day_came_between_two_looks_exactly_once() {
        let s = berlin_10();
        // December 2026's patch day: Tuesday 8 December, 10:00 in Berlin (09:00 UTC).
        let day = at("Europe/Berlin", 2026, 12, 8, 10, 0);
        let before = at("Europe/Berlin", 2026, 12, 8, 9, 59);
        let after = at("Europe/Berlin", 2026, 12, 8, 10, 1);
        assert!(
            s.came_between(before, day),
            "the look at the instant itself"
        );
        assert!(s.came_between(before, after));
        assert!(!s.came_between(day, after), "seen by the look before");
        assert!(!s.came_between(after, at("Europe/Berlin", 2027, 1, 12, 9, 59)));
        assert!(s.came_between(after, at("Europe/Berlin", 2027, 1, 12, 10, 0)));
        assert!(
            !s.came_between(after, before),
            "time going back wakes nobody"
        );
    }

    #[test]
    fn calendar_default_is_second_tuesday_10_utc() {
        let s = PatchDaySchedule::default();
        assert_eq!(s, sched("second", "tuesday", "10:00", "UTC"));
        assert_eq!(s.to_string(), "second tuesday of the month at 10:00 UTC");
        let day = s.patch_day(ym(2026, 1)).unwrap();
        assert_eq!(day.timestamp(), "2026-01-13T10:00:00Z".parse().unwrap());
    }

    #[test]
    fn calendar_second_tuesday_2026_and_2027() {
        // Computed independently (Python's calendar module), and by hand for a few:
        // 2026-01-01 is a Thursday, so Tuesdays are the 6th and 13th.
        let expected: [(i16, [i8; 12]); 2] = [
            (2026, [13, 10, 10, 14, 12, 9, 14, 11, 8, 13, 10, 8]),
            (2027, [12, 9, 9, 13, 11, 8, 13, 10, 14, 12, 9, 14]),
        ];
        let s = PatchDaySchedule::default();
        for (year, days) in expected {
            for (i, day) in days.into_iter().enumerate() {
                let month = i8::try_from(i + 1).unwrap();
                let pd = s.patch_day(ym(year, month)).unwrap();
                assert_eq!(pd.date(), date(year, month, day), "{year}-{month}");
                assert_eq!(pd.weekday(), Weekday::Tuesday);
                assert_eq!(pd.time(), Time::constant(10, 0, 0, 0));
            }
        }
    }

    #[test]
    fn calendar_last_friday() {
        let s = sched("last", "friday", "18:00", "UTC");
        // January 2026 ends on a Saturday; July 2026 ends on a Friday (the 31st);
        // May 2026 has five Fridays (1st..29th).
        assert_eq!(s.patch_day(ym(2026, 1)).unwrap().date(), date(2026, 1, 30));
        assert_eq!(s.patch_day(ym(2026, 7)).unwrap().date(), date(2026, 7, 31));
        assert_eq!(s.patch_day(ym(2026, 5)).unwrap().date(), date(2026, 5, 29));
        assert_eq!(s.patch_day(ym(2026, 2)).unwrap().date(), date(2026, 2, 27));
        let fourth = sched("fourth", "friday", "18:00", "UTC");
        assert_eq!(
            fourth.patch_day(ym(2026, 5)).unwrap().date(),
            date(2026, 5, 22)
        );
    }

    #[test]
    fn calendar_month_starting_on_the_weekday() {
        // 2026-09-01 and 2026-12-01 are Tuesdays.
        let first = sched("first", "tuesday", "10:00", "UTC");
        assert_eq!(
            first.patch_day(ym(2026, 9)).unwrap().date(),
            date(2026, 9, 1)
        );
        assert_eq!(
            first.patch_day(ym(2026, 12)).unwrap().date(),
            date(2026, 12, 1)
        );
        let second = PatchDaySchedule::default();
        assert_eq!(
            second.patch_day(ym(2026, 9)).unwrap().date(),
            date(2026, 9, 8)
        );
        let third = sched("third", "tuesday", "10:00", "UTC");
        assert_eq!(
            third.patch_day(ym(2026, 9)).unwrap().date(),
            date(2026, 9, 15)
        );
    }

    #[test]
    fn calendar_next_patch_day_and_year_rollover() {
        let s = berlin_10();
        let next = s
            .next_patch_day(at("Europe/Berlin", 2026, 12, 20, 12, 0))
            .unwrap();
        assert_eq!(next.date(), date(2027, 1, 12));
        assert_eq!(next.time(), Time::constant(10, 0, 0, 0));
        assert_eq!(next.time_zone().iana_name(), Some("Europe/Berlin"));

        // Before, exactly at, and just after this month's patch day.
        let pd = s.patch_day(ym(2026, 12)).unwrap().timestamp();
        assert_eq!(
            s.next_patch_day(at("Europe/Berlin", 2026, 12, 1, 0, 0))
                .unwrap()
                .timestamp(),
            pd
        );
        assert_eq!(s.next_patch_day(pd).unwrap().timestamp(), pd);
        let after = pd.checked_add(jiff::SignedDuration::from_secs(1)).unwrap();
        assert_eq!(s.next_patch_day(after).unwrap().date(), date(2027, 1, 12));
    }

    #[test]
    fn calendar_next_patch_day_uses_the_tenant_month() {
        // 2026-12-31 23:30 UTC is already 2027-01-01 in Sydney; the next Sydney patch day
        // is January's, not a December one.
        let s = sched("second", "tuesday", "10:00", "Australia/Sydney");
        let now: Timestamp = "2026-12-31T23:30:00Z".parse().unwrap();
        assert_eq!(s.next_patch_day(now).unwrap().date(), date(2027, 1, 12));
        assert_eq!(s.train_for(now).unwrap(), ym(2027, 1));
    }

    #[test]
    fn calendar_train_for() {
        let s = berlin_10();
        assert_eq!(
            s.train_for(at("Europe/Berlin", 2026, 12, 1, 9, 0)).unwrap(),
            ym(2026, 12)
        );
        assert_eq!(
            s.train_for(at("Europe/Berlin", 2026, 12, 8, 9, 59))
                .unwrap(),
            ym(2026, 12)
        );
        assert_eq!(
            s.train_for(at("Europe/Berlin", 2026, 12, 8, 10, 0))
                .unwrap(),
            ym(2026, 12)
        );
        assert_eq!(
            s.train_for(at("Europe/Berlin", 2026, 12, 8, 10, 1))
                .unwrap(),
            ym(2027, 1)
        );
        assert_eq!(
            s.train_for(at("Europe/Berlin", 2026, 12, 31, 23, 0))
                .unwrap(),
            ym(2027, 1)
        );
    }

    #[test]
    fn calendar_dst_spring_forward_gap() {
        // Europe/Berlin jumps from 02:00 CET to 03:00 CEST on 2026-03-29, the last Sunday
        // of March; 02:30 does not exist, and "compatible" moves it to 03:30 CEST.
        let s = sched("last", "sunday", "02:30", "Europe/Berlin");
        let pd = s.patch_day(ym(2026, 3)).unwrap();
        assert_eq!(pd.date(), date(2026, 3, 29));
        assert_eq!(pd.time(), Time::constant(3, 30, 0, 0));
        assert_eq!(pd.offset().seconds(), 2 * 3600);
        assert_eq!(pd.timestamp(), "2026-03-29T01:30:00Z".parse().unwrap());
        // In a month without the change the same schedule is 02:30 local.
        let april = s.patch_day(ym(2026, 4)).unwrap();
        assert_eq!(april.time(), Time::constant(2, 30, 0, 0));
    }

    #[test]
    fn calendar_dst_fall_back_fold() {
        // On 2026-10-25 Berlin goes from 03:00 CEST back to 02:00 CET; 02:30 happens
        // twice and "compatible" picks the first, 02:30 CEST (00:30 UTC).
        let s = sched("last", "sunday", "02:30", "Europe/Berlin");
        let pd = s.patch_day(ym(2026, 10)).unwrap();
        assert_eq!(pd.date(), date(2026, 10, 25));
        assert_eq!(pd.time(), Time::constant(2, 30, 0, 0));
        assert_eq!(pd.offset().seconds(), 2 * 3600);
        assert_eq!(pd.timestamp(), "2026-10-25T00:30:00Z".parse().unwrap());
        // Between the two 02:30s the patch day has passed.
        let between: Timestamp = "2026-10-25T01:00:00Z".parse().unwrap();
        assert!(s.is_approvable(&train(2026, 10), between).unwrap());
        assert_eq!(s.train_for(between).unwrap(), ym(2026, 11));
    }

    #[test]
    fn calendar_half_hour_offset_kolkata() {
        // Asia/Kolkata is UTC+05:30 all year.
        let s = sched("second", "tuesday", "10:00", "Asia/Kolkata");
        let pd = s.patch_day(ym(2026, 12)).unwrap();
        assert_eq!(pd.date(), date(2026, 12, 8));
        assert_eq!(pd.offset().seconds(), 5 * 3600 + 1800);
        assert_eq!(pd.timestamp(), "2026-12-08T04:30:00Z".parse().unwrap());
        let just_before: Timestamp = "2026-12-08T04:29:59Z".parse().unwrap();
        assert!(!s.is_approvable(&train(2026, 12), just_before).unwrap());
    }

    #[test]
    fn calendar_southern_hemisphere_sydney() {
        // Sydney observes daylight time in the southern summer: +11:00 in January,
        // +10:00 in July.
        let s = sched("second", "tuesday", "10:00", "Australia/Sydney");
        let jan = s.patch_day(ym(2026, 1)).unwrap();
        assert_eq!(jan.date(), date(2026, 1, 13));
        assert_eq!(jan.timestamp(), "2026-01-12T23:00:00Z".parse().unwrap());
        let jul = s.patch_day(ym(2026, 7)).unwrap();
        assert_eq!(jul.date(), date(2026, 7, 14));
        assert_eq!(jul.timestamp(), "2026-07-14T00:00:00Z".parse().unwrap());
    }

    #[test]
    fn calendar_approvable_before_at_after() {
        let s = berlin_10();
        let r = train(2026, 12);
        let pd = s.approvable_at(&r).unwrap().unwrap();
        assert_eq!(pd.date(), date(2026, 12, 8));
        let instant = pd.timestamp();
        let one = jiff::SignedDuration::from_secs(1);
        assert!(!s
            .is_approvable(&r, instant.checked_sub(one).unwrap())
            .unwrap());
        assert!(s.is_approvable(&r, instant).unwrap());
        assert!(s
            .is_approvable(&r, instant.checked_add(one).unwrap())
            .unwrap());
        // The same wall-clock time in UTC is an hour later than in Berlin.
        assert_eq!(instant, "2026-12-08T09:00:00Z".parse().unwrap());
        // An older train stays approvable.
        assert!(s.is_approvable(&train(2026, 1), instant).unwrap());
    }

    #[test]
    fn calendar_emergency_is_always_approvable() {
        let s = berlin_10();
        assert_eq!(s.approvable_at(&emergency()).unwrap(), None);
        for now in [
            Timestamp::UNIX_EPOCH,
            at("Europe/Berlin", 2026, 12, 7, 0, 0),
            at("Europe/Berlin", 2027, 6, 1, 0, 0),
        ] {
            assert!(s.is_approvable(&emergency(), now).unwrap());
            assert_eq!(wait_message(&s, &emergency(), now), None);
        }
        // Even with a broken schedule.
        let broken = PatchDaySchedule {
            time_zone: "Mars/Olympus_Mons".to_string(),
            ..PatchDaySchedule::default()
        };
        assert!(broken
            .is_approvable(&emergency(), Timestamp::UNIX_EPOCH)
            .unwrap());
    }

    #[test]
    fn calendar_wait_message() {
        let s = berlin_10();
        let r = train(2026, 12);
        let msg = wait_message(&s, &r, at("Europe/Berlin", 2026, 11, 27, 10, 0)).unwrap();
        assert_eq!(
            msg,
            "update is on the 2026-12 train: approvable from 2026-12-08 10:00 Europe/Berlin \
             (in 11 days); use the emergency lane to skip the wait"
        );
        let soon = wait_message(&s, &r, at("Europe/Berlin", 2026, 12, 8, 7, 15)).unwrap();
        assert!(soon.contains("(in 2 hours 45 minutes)"), "{soon}");
        let tomorrow = wait_message(&s, &r, at("Europe/Berlin", 2026, 12, 7, 7, 0)).unwrap();
        assert!(tomorrow.contains("(in 1 day 3 hours)"), "{tomorrow}");
        let minutes = wait_message(&s, &r, at("Europe/Berlin", 2026, 12, 8, 9, 59)).unwrap();
        assert!(minutes.contains("(in 1 minute)"), "{minutes}");
        assert_eq!(
            wait_message(&s, &r, at("Europe/Berlin", 2026, 12, 8, 10, 0)),
            None
        );
        // Across the spring-forward change the count is in calendar days: 11, not 10.
        let spring =
            wait_message(&s, &train(2026, 4), at("Europe/Berlin", 2026, 3, 28, 10, 0)).unwrap();
        assert!(
            spring.contains("approvable from 2026-04-14 10:00"),
            "{spring}"
        );
        assert!(spring.contains("(in 17 days)"), "{spring}");
        let broken = PatchDaySchedule {
            time_zone: "Mars/Olympus_Mons".to_string(),
            ..PatchDaySchedule::default()
        };
        let msg = wait_message(&broken, &r, Timestamp::UNIX_EPOCH).unwrap();
        assert!(msg.contains("Mars/Olympus_Mons"), "{msg}");
    }

    #[test]
    fn calendar_parse_accepts_variants() {
        let s = sched(" Last ", "FRI", "9:05", "America/New_York");
        assert_eq!(s.week, WeekOfMonth::Last);
        assert_eq!(s.weekday, Weekday::Friday);
        assert_eq!(s.time, Time::constant(9, 5, 0, 0));
        assert_eq!(s.time_zone, "America/New_York");
        assert_eq!(
            sched("2nd", "tuesday", "23:59:30", "UTC").time,
            Time::constant(23, 59, 30, 0)
        );
        assert_eq!(sched("3", "sun", "00:00", "UTC").week, WeekOfMonth::Third);
    }

    #[test]
    fn calendar_parse_errors_say_what_is_accepted() {
        let e = parse_schedule("fifth", "tuesday", "10:00", "UTC").unwrap_err();
        assert!(matches!(e, CalendarError::UnknownWeek { .. }));
        assert!(
            e.to_string().contains("first, second, third, fourth, last"),
            "{e}"
        );

        let e = parse_schedule("second", "tuseday", "10:00", "UTC").unwrap_err();
        assert!(matches!(e, CalendarError::UnknownWeekday { .. }));
        assert!(e.to_string().contains("\"tuseday\""), "{e}");
        assert!(e.to_string().contains("tuesday"), "{e}");

        for bad in [
            "25:00",
            "10",
            "10:0",
            "10:00:00:00",
            "10.00",
            "10am",
            "",
            "-1:00",
            "10:60",
        ] {
            let e = parse_schedule("second", "tuesday", bad, "UTC").unwrap_err();
            assert!(matches!(e, CalendarError::InvalidTime { .. }), "{bad}: {e}");
            assert!(e.to_string().contains("HH:MM"), "{e}");
        }

        for bad in ["Europe/Berln", "CEST+1", ""] {
            let e = parse_schedule("second", "tuesday", "10:00", bad).unwrap_err();
            assert!(
                matches!(e, CalendarError::UnknownTimeZone { .. }),
                "{bad}: {e}"
            );
            assert!(e.to_string().contains("IANA"), "{e}");
        }
    }

    #[test]
    fn calendar_invalid_schedule_fields_fail_at_use() {
        let broken = PatchDaySchedule {
            time_zone: "Nowhere/Special".to_string(),
            ..PatchDaySchedule::default()
        };
        let now = Timestamp::UNIX_EPOCH;
        assert!(matches!(
            broken.patch_day(ym(2026, 1)),
            Err(CalendarError::UnknownTimeZone { .. })
        ));
        assert!(broken.next_patch_day(now).is_err());
        assert!(broken.train_for(now).is_err());
        assert!(broken.is_approvable(&train(2026, 1), now).is_err());
        let e = PatchDaySchedule::default()
            .patch_day(ym(2026, 13))
            .unwrap_err();
        assert!(matches!(e, CalendarError::OutOfRange { .. }), "{e}");
    }

    #[test]
    fn calendar_serde_strings() {
        let s = sched("last", "friday", "18:30", "Europe/Berlin");
        let repr = ScheduleRepr::from(s.clone());
        assert_eq!(
            (
                repr.week.as_str(),
                repr.weekday.as_str(),
                repr.time.as_str(),
                repr.time_zone.as_str()
            ),
            ("last", "friday", "18:30", "Europe/Berlin")
        );

        let de = |pairs: &[(&'static str, &'static str)]| {
            let map = MapDeserializer::<_, ValueError>::new(pairs.iter().copied());
            PatchDaySchedule::deserialize(map)
        };
        let back = de(&[
            ("week", "last"),
            ("weekday", "friday"),
            ("time", "18:30"),
            ("time_zone", "Europe/Berlin"),
        ])
        .unwrap();
        assert_eq!(back, s);
        // Missing fields take the default; unknown ones and bad values are rejected.
        let partial = de(&[("time_zone", "Asia/Kolkata")]).unwrap();
        assert_eq!(
            partial,
            PatchDaySchedule {
                time_zone: "Asia/Kolkata".to_string(),
                ..PatchDaySchedule::default()
            }
        );
        assert!(de(&[("tz", "UTC")]).is_err());
        let e = de(&[("weekday", "someday")]).unwrap_err();
        assert!(e.to_string().contains("someday"), "{e}");

        let week: WeekOfMonth = WeekOfMonth::deserialize("fourth".into_deserializer())
            .map_err(|e: ValueError| e)
            .unwrap();
        assert_eq!(week, WeekOfMonth::Fourth);
    }
}
