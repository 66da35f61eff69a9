//! Transfer-window schedules: a five-field cron expression (minute hour
//! day-of-month month day-of-week) read in a time zone, with `L` (the last
//! day of the month) and `LW` (the last working day, Monday to Friday, of
//! the month) in the day-of-month field, as payroll calendars need.

use chrono::{DateTime, Datelike, Days, NaiveDate, TimeZone, Weekday};
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

/// A parsed window schedule.
#[derive(Debug, Clone)]
pub struct WindowCron {
    /// The expression without `LW`, if anything else is left.
    plain: Option<Cron>,
    /// Weekdays in the last days of the month, at the expression's times;
    /// the last of each month is the last working day.
    last_working_day: Option<Cron>,
}

fn parser(dom_and_dow: bool) -> CronParser {
    CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .dom_and_dow(dom_and_dow)
        .build()
}

fn invalid(expr: &str, problem: impl std::fmt::Display) -> String {
    format!(
        "'{expr}' is not a five-field cron expression (minute hour day-of-month month day-of-week, e.g. \"0 18 * * FRI\"): {problem}"
    )
}

/// Whether no Monday-to-Friday day follows `day` in its month.
fn is_last_working_day(day: NaiveDate) -> bool {
    if matches!(day.weekday(), Weekday::Sat | Weekday::Sun) {
        return false;
    }
    let mut next = day;
    while let Some(n) = next.checked_add_days(Days::new(1)) {
        if n.month() != day.month() {
            return true;
        }
        if !matches!(n.weekday(), Weekday::Sat | Weekday::Sun) {
            return false;
        }
        next = n;
    }
    true
}

impl WindowCron {
    pub fn parse(expr: &str) -> Result<Self, String> {
        let fields: Vec<&str> = expr.split_whitespace().collect();
        let [minute, hour, dom, month, dow] = fields.as_slice() else {
            return Err(invalid(expr, format!("it has {} fields", fields.len())));
        };
        let (lw, rest): (Vec<&str>, Vec<&str>) = dom
            .split(',')
            .partition(|item| item.eq_ignore_ascii_case("LW"));
        if lw.is_empty() {
            let plain = parser(false).parse(expr).map_err(|e| invalid(expr, e))?;
            return Ok(Self {
                plain: Some(plain),
                last_working_day: None,
            });
        }
        if !matches!(*dow, "*" | "?") {
            return Err(invalid(
                expr,
                "LW (the last working day) cannot be combined with a day of the week",
            ));
        }
        let last_working_day = parser(true)
            .parse(&format!("{minute} {hour} 26-31 {month} MON-FRI"))
            .map_err(|e| invalid(expr, e))?;
        let plain = if rest.is_empty() {
            None
        } else {
            let others = rest.join(",");
            Some(
                parser(false)
                    .parse(&format!("{minute} {hour} {others} {month} *"))
                    .map_err(|e| invalid(expr, e))?,
            )
        };
        Ok(Self {
            plain,
            last_working_day: Some(last_working_day),
        })
    }

    /// The first time the schedule fires strictly after `at`, in `at`'s zone.
    pub fn next_after<Tz: TimeZone>(&self, at: &DateTime<Tz>) -> Result<DateTime<Tz>, String> {
        let plain = match &self.plain {
            Some(cron) => Some(
                cron.find_next_occurrence(at, false)
                    .map_err(|e| e.to_string())?,
            ),
            None => None,
        };
        let last = match &self.last_working_day {
            Some(cron) => {
                let mut from = at.clone();
                let mut found = None;
                // At most five candidate weekdays a month; a few years' worth.
                for _ in 0..200 {
                    let candidate = cron
                        .find_next_occurrence(&from, false)
                        .map_err(|e| e.to_string())?;
                    if is_last_working_day(candidate.date_naive()) {
                        found = Some(candidate);
                        break;
                    }
                    from = candidate;
                }
                Some(found.ok_or("no last working day found in the schedule's months")?)
            }
            None => None,
        };
        match (plain, last) {
            (Some(a), Some(b)) => Ok(if a <= b { a } else { b }),
            (Some(a), None) | (None, Some(a)) => Ok(a),
            (None, None) => Err("the schedule is empty".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn next(expr: &str, at: &str) -> String {
        let at = DateTime::parse_from_rfc3339(at)
            .unwrap()
            .with_timezone(&Utc);
        WindowCron::parse(expr)
            .unwrap()
            .next_after(&at)
            .unwrap()
            .format("%Y-%m-%d %H:%M %a")
            .to_string()
    }

    #[test]
    fn the_last_working_day_skips_weekends() {
        // 31 January 2027 is a Sunday: the last working day is Friday the 29th.
        assert_eq!(
            next("0 17 LW * *", "2027-01-16T00:00:00Z"),
            "2027-01-29 17:00 Fri"
        );
        // 30 April 2027 is a Friday.
        assert_eq!(
            next("0 17 LW * *", "2027-04-01T00:00:00Z"),
            "2027-04-30 17:00 Fri"
        );
        // After the last working day's time: next month's (31 May 2027, a Monday).
        assert_eq!(
            next("0 17 LW * *", "2027-04-30T17:00:00Z"),
            "2027-05-31 17:00 Mon"
        );
        // February 2026 ends on a Saturday: Friday the 27th.
        assert_eq!(
            next("30 9 LW * *", "2026-02-01T00:00:00Z"),
            "2026-02-27 09:30 Fri"
        );
    }

    #[test]
    fn payroll_the_15th_and_the_last_working_day() {
        assert_eq!(
            next("0 17 15,LW * *", "2027-01-02T00:00:00Z"),
            "2027-01-15 17:00 Fri"
        );
        assert_eq!(
            next("0 17 15,LW * *", "2027-01-15T18:00:00Z"),
            "2027-01-29 17:00 Fri"
        );
        assert_eq!(
            next("0 17 15,LW * *", "2027-01-29T18:00:00Z"),
            "2027-02-15 17:00 Mon"
        );
    }

    #[test]
    fn plain_expressions_and_mistakes() {
        assert_eq!(
            next("0 18 * * FRI", "2026-11-27T10:00:00Z"),
            "2026-11-27 18:00 Fri"
        );
        assert!(
            WindowCron::parse("0 17 LW * FRI")
                .unwrap_err()
                .contains("day of the week")
        );
        assert!(
            WindowCron::parse("0 0 17 * * *")
                .unwrap_err()
                .contains("6 fields")
        );
        assert!(WindowCron::parse("every friday").is_err());
    }
}
