//! Regulatory notification clocks: for each regime that applies to an
//! incident, when each notice is due and which filing, if any, met it.
//!
//! Each regime is a table entry ([`REGIMES`]); a rule says where its clock
//! starts ([`Start`]), how long it runs ([`Within`]), which filing kind
//! closes it and where the rule is written down. [`evaluate`] is pure: it
//! reads the incident's times and filings and a `now`, and returns one
//! [`Clock`] per rule (one per additional fact for [`Start::EachFact`]).
//!
//! # Conventions
//!
//! A clock starts at the incident's awareness time (the discovery time, or
//! the declaration time when discovery was not given), at the SEC
//! materiality determination, at each additional fact learned, or at the
//! earliest filing of another kind (NIS2's final report runs from the
//! incident notification); a clock whose start is not recorded is shown as
//! not started. Its deadline is computed in the UTC offset its start was
//! written in: hours are exact elapsed hours; days and months are calendar
//! arithmetic on the wall clock at that offset (a month from 31 January is
//! the last day of February); business days are Monday to Friday at that
//! offset, and public holidays (US federal holidays for the SEC) are not
//! modelled, so the deadline shown is never later than the true one.
//! Every deadline keeps the start's time of day rather than running to the
//! end of the last day, which is again the earlier, safe reading. A clock is
//! closed by the earliest filing of its regime and kind filed at or after
//! its start; one filing can close several clocks of the same kind (a
//! supplementary report covering two facts closes both facts' clocks), and
//! a filing dated before a clock's start never closes it. A filing at or
//! before the deadline meets the clock, with the margin left; a filing
//! after it is late, by the delay, and where the rule requires reasons for
//! a late notice (GDPR Art. 33(1)) a late filing without a non-blank reason
//! is flagged. With no closing filing the clock is open (time left until
//! the deadline) or overdue (time since it), measured against `now`.
//! Under the Korean Network Act the initial report (kind `report`) runs
//! from awareness; each additional fact learned after it starts its own
//! 24-hour clock, closed by a filing of kind `fact_report`; an incident with
//! no additional facts has no fact clocks.

use jiff::civil::{DateTime, Weekday};
use jiff::fmt::temporal::Pieces;
use jiff::tz::Offset;
use jiff::{SignedDuration, Timestamp, ToSpan};
use serde::{Deserialize, Serialize, Serializer};

use crate::time::Time;

/// Where a clock starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Start {
    /// When the organisation became aware of the incident ("discovery").
    Awareness,
    /// Each additional fact learned starts its own clock.
    EachFact,
    /// When the incident was determined to be material (SEC).
    Materiality,
    /// When the earliest filing of this kind (same regime) was filed.
    AfterFiling(&'static str),
}

/// How long a clock runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Within {
    /// Elapsed hours.
    Hours(i64),
    /// Calendar days at the start's offset.
    Days(i64),
    /// Monday to Friday at the start's offset; holidays not modelled.
    BusinessDays(i64),
    /// Calendar months at the start's offset (clamped to the month's end).
    Months(i64),
}

/// One notification duty of a regime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Rule {
    /// Identifier within the regime, e.g. `early_warning`.
    pub id: &'static str,
    /// Human name, e.g. "NIS2 early warning".
    pub name: &'static str,
    /// Where the clock starts.
    pub start: Start,
    /// How long it runs.
    pub within: Within,
    /// The filing kind that closes it.
    pub filing: &'static str,
    /// Where the rule is written down.
    pub cite: &'static str,
    /// Whether a late filing must give reasons for the delay.
    pub late_reason: bool,
}

/// A notification regime: a law or rule with one or more clocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Regime {
    /// Identifier used in config and on the command line, e.g. `gdpr`.
    pub id: &'static str,
    /// Human name.
    pub name: &'static str,
    /// Its clocks, in the order they are shown.
    pub rules: &'static [Rule],
}

const KR_ACT: &str = "Network Act (KR) Art. 48-3(1), (4); Enforcement Decree Art. 58-2";

/// The built-in regimes.
pub const REGIMES: &[Regime] = &[
    Regime {
        id: "kr-network-act",
        name: "Korea Network Act",
        rules: &[
            Rule {
                id: "report",
                name: "Network Act initial report",
                start: Start::Awareness,
                within: Within::Hours(24),
                filing: "report",
                cite: KR_ACT,
                late_reason: false,
            },
            Rule {
                id: "fact_report",
                name: "Network Act report of fact",
                start: Start::EachFact,
                within: Within::Hours(24),
                filing: "fact_report",
                cite: KR_ACT,
                late_reason: false,
            },
        ],
    },
    Regime {
        id: "gdpr",
        name: "GDPR",
        rules: &[Rule {
            id: "notification",
            name: "GDPR Art. 33 notification",
            start: Start::Awareness,
            within: Within::Hours(72),
            filing: "notification",
            cite: "GDPR (EU) 2016/679 Art. 33(1)",
            late_reason: true,
        }],
    },
    Regime {
        id: "nis2",
        name: "NIS2",
        rules: &[
            Rule {
                id: "early_warning",
                name: "NIS2 early warning",
                start: Start::Awareness,
                within: Within::Hours(24),
                filing: "early_warning",
                cite: "NIS2 Directive (EU) 2022/2555 Art. 23(4)(a)",
                late_reason: false,
            },
            Rule {
                id: "notification",
                name: "NIS2 incident notification",
                start: Start::Awareness,
                within: Within::Hours(72),
                filing: "notification",
                cite: "NIS2 Directive (EU) 2022/2555 Art. 23(4)(b)",
                late_reason: false,
            },
            Rule {
                id: "final_report",
                name: "NIS2 final report",
                start: Start::AfterFiling("notification"),
                within: Within::Months(1),
                filing: "final_report",
                cite: "NIS2 Directive (EU) 2022/2555 Art. 23(4)(d)",
                late_reason: false,
            },
        ],
    },
    Regime {
        id: "sec-8k",
        name: "SEC Form 8-K",
        rules: &[Rule {
            id: "form_8k",
            name: "SEC Form 8-K Item 1.05",
            start: Start::Materiality,
            within: Within::BusinessDays(4),
            filing: "form_8k",
            cite: "Form 8-K Item 1.05 and General Instruction B.1 (17 CFR 249.308)",
            late_reason: false,
        }],
    },
    Regime {
        id: "hipaa",
        name: "HIPAA Breach Notification Rule",
        rules: &[Rule {
            id: "individual_notice",
            name: "HIPAA notice to individuals",
            start: Start::Awareness,
            within: Within::Days(60),
            filing: "individual_notice",
            cite: "45 CFR 164.404(b)",
            late_reason: false,
        }],
    },
];

/// The built-in regime with this id.
pub fn regime(id: &str) -> Option<&'static Regime> {
    REGIMES.iter().find(|r| r.id == id)
}

/// The filing kinds a regime accepts (those that close one of its clocks),
/// in table order; empty for an unknown regime.
pub fn kinds(regime_id: &str) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for rule in regime(regime_id).map_or(&[][..], |r| r.rules) {
        if !out.contains(&rule.filing) {
            out.push(rule.filing);
        }
    }
    out
}

fn known_ids() -> String {
    REGIMES.iter().map(|r| r.id).collect::<Vec<_>>().join(", ")
}

/// What the clocks are computed from.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    /// Regime ids that apply (duplicates are ignored).
    pub regimes: &'a [String],
    /// When the organisation became aware: discovered_at, or declared_at.
    pub aware_at: &'a Time,
    /// SEC materiality determination; `None` leaves that clock not started.
    pub materiality_at: Option<&'a Time>,
    /// Additional facts learned, in order.
    pub facts: &'a [Time],
    /// Filings made so far.
    pub filings: &'a [Filing],
}

/// A notice filed with a regulator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filing {
    /// Regime id, e.g. `nis2`.
    pub regime: String,
    /// Filing kind, one of [`kinds`] for the regime.
    pub kind: String,
    /// When it was filed.
    pub filed_at: Time,
    /// The regulator's reference or a note saying where the filing is.
    pub reference: String,
    /// Reasons given for a late filing.
    pub late_reason: Option<String>,
}

/// One clock's status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Clock {
    /// Regime id.
    pub regime: &'static str,
    /// Rule id within the regime.
    pub rule: &'static str,
    /// Human name, e.g. "Network Act report of fact #2".
    pub name: String,
    /// When the clock started; `None` if not started.
    pub started_at: Option<Time>,
    /// The deadline, in the start's offset; `None` if not started.
    pub deadline: Option<Time>,
    /// Where it stands.
    #[serde(flatten)]
    pub state: State,
    /// Where the rule is written down.
    pub cite: &'static str,
}

/// Where a clock stands. Serialised with a `"state"` tag; durations as
/// `{"seconds": n, "text": "29h35m"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum State {
    /// The event that starts the clock has not been recorded.
    NotStarted {
        /// What would start it.
        why: String,
    },
    /// No closing filing yet; the deadline is still ahead (or now).
    Open {
        /// Time left until the deadline.
        #[serde(serialize_with = "duration")]
        left: SignedDuration,
    },
    /// No closing filing and the deadline has passed.
    Overdue {
        /// Time since the deadline.
        #[serde(serialize_with = "duration")]
        by: SignedDuration,
    },
    /// Closed by a filing at or before the deadline.
    Met {
        /// Index into [`Inputs::filings`].
        filing: usize,
        /// Time between the filing and the deadline.
        #[serde(serialize_with = "duration")]
        margin: SignedDuration,
    },
    /// Closed by a filing after the deadline.
    Late {
        /// Index into [`Inputs::filings`].
        filing: usize,
        /// Time between the deadline and the filing.
        #[serde(serialize_with = "duration")]
        by: SignedDuration,
        /// The rule requires reasons for the delay and the filing gives none.
        reason_missing: bool,
    },
}

fn duration<S: Serializer>(d: &SignedDuration, s: S) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct Duration {
        seconds: i64,
        text: String,
    }
    Duration {
        seconds: d.as_secs(),
        text: format_duration(*d),
    }
    .serialize(s)
}

/// Why clocks could not be evaluated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClockError {
    /// A regime id (of the incident or of a filing) is not built in.
    #[error("unknown regime {id:?} (known: {known})")]
    UnknownRegime {
        /// The id given.
        id: String,
        /// The known ids, comma-separated.
        known: String,
    },
    /// A filing's kind is not one its regime accepts.
    #[error("unknown filing kind {kind:?} for {regime} (known: {known})")]
    UnknownKind {
        /// The filing's regime.
        regime: String,
        /// The kind given.
        kind: String,
        /// The regime's kinds, comma-separated.
        known: String,
    },
    /// A deadline falls outside the representable range of times.
    #[error("deadline of {rule} from {start} is out of range")]
    OutOfRange {
        /// The rule's name.
        rule: String,
        /// The clock's start.
        start: String,
    },
}

/// Every clock of the regimes in `inputs`, in the order the regimes are
/// named and the rules are listed; see the module documentation for the
/// conventions.
///
/// # Errors
/// An unknown regime id (of the incident or of a filing), a filing kind its
/// regime does not accept, or a deadline out of range.
pub fn evaluate(inputs: &Inputs<'_>, now: Timestamp) -> Result<Vec<Clock>, ClockError> {
    let unknown = |id: &str| ClockError::UnknownRegime {
        id: id.to_owned(),
        known: known_ids(),
    };
    let mut regimes: Vec<&'static Regime> = Vec::new();
    for id in inputs.regimes {
        let r = regime(id).ok_or_else(|| unknown(id))?;
        if !regimes.iter().any(|x| x.id == r.id) {
            regimes.push(r);
        }
    }
    for f in inputs.filings {
        let r = regime(&f.regime).ok_or_else(|| unknown(&f.regime))?;
        let known = kinds(r.id);
        if !known.contains(&f.kind.as_str()) {
            return Err(ClockError::UnknownKind {
                regime: r.id.to_owned(),
                kind: f.kind.clone(),
                known: known.join(", "),
            });
        }
    }

    let mut out = Vec::new();
    for r in regimes {
        for rule in r.rules {
            let not_started = |why: String| Clock {
                regime: r.id,
                rule: rule.id,
                name: rule.name.to_owned(),
                started_at: None,
                deadline: None,
                state: State::NotStarted { why },
                cite: rule.cite,
            };
            match rule.start {
                Start::Awareness => {
                    out.push(started(
                        r,
                        rule,
                        rule.name.into(),
                        inputs.aware_at,
                        inputs,
                        now,
                    )?);
                }
                Start::Materiality => match inputs.materiality_at {
                    Some(at) => out.push(started(r, rule, rule.name.into(), at, inputs, now)?),
                    None => out.push(not_started(
                        "starts at the materiality determination, not recorded".into(),
                    )),
                },
                Start::EachFact => {
                    for (k, fact) in inputs.facts.iter().enumerate() {
                        let name = format!("{} #{}", rule.name, k + 1);
                        out.push(started(r, rule, name, fact, inputs, now)?);
                    }
                }
                Start::AfterFiling(kind) => match closing(inputs.filings, r.id, kind, None) {
                    Some(i) => {
                        let at = &inputs.filings[i].filed_at;
                        out.push(started(r, rule, rule.name.into(), at, inputs, now)?);
                    }
                    None => {
                        let what = r
                            .rules
                            .iter()
                            .find(|x| x.filing == kind)
                            .map_or(kind, |x| x.name);
                        out.push(not_started(format!("starts when the {what} is filed")));
                    }
                },
            }
        }
    }
    Ok(out)
}

/// The earliest filing of `regime`/`kind` filed at or after `from` (ties:
/// the first listed).
fn closing(filings: &[Filing], regime: &str, kind: &str, from: Option<Timestamp>) -> Option<usize> {
    filings
        .iter()
        .enumerate()
        .filter(|(_, f)| f.regime == regime && f.kind == kind)
        .filter(|(_, f)| from.is_none_or(|from| f.filed_at.timestamp() >= from))
        .min_by_key(|(i, f)| (f.filed_at.timestamp(), *i))
        .map(|(i, _)| i)
}

fn started(
    regime: &'static Regime,
    rule: &'static Rule,
    name: String,
    start: &Time,
    inputs: &Inputs<'_>,
    now: Timestamp,
) -> Result<Clock, ClockError> {
    let deadline = deadline(start, rule.within).ok_or_else(|| ClockError::OutOfRange {
        rule: name.clone(),
        start: start.as_str().to_owned(),
    })?;
    let due = deadline.timestamp();
    let state = match closing(
        inputs.filings,
        regime.id,
        rule.filing,
        Some(start.timestamp()),
    ) {
        Some(i) => {
            let filing = &inputs.filings[i];
            let at = filing.filed_at.timestamp();
            if at <= due {
                State::Met {
                    filing: i,
                    margin: due.duration_since(at),
                }
            } else {
                let no_reason = filing
                    .late_reason
                    .as_deref()
                    .is_none_or(|r| r.trim().is_empty());
                State::Late {
                    filing: i,
                    by: at.duration_since(due),
                    reason_missing: rule.late_reason && no_reason,
                }
            }
        }
        None if now <= due => State::Open {
            left: due.duration_since(now),
        },
        None => State::Overdue {
            by: now.duration_since(due),
        },
    };
    Ok(Clock {
        regime: regime.id,
        rule: rule.id,
        name,
        started_at: Some(start.clone()),
        deadline: Some(deadline),
        state,
        cite: rule.cite,
    })
}

/// The UTC offset a time was written in (`Z` is UTC).
fn offset_of(t: &Time) -> Offset {
    Pieces::parse(t.as_str())
        .ok()
        .and_then(|p| p.to_numeric_offset())
        .unwrap_or(Offset::UTC)
}

/// `start` plus `within`, written in the start's offset.
fn deadline(start: &Time, within: Within) -> Option<Time> {
    let offset = offset_of(start);
    let ts = start.timestamp();
    let civil = |f: &dyn Fn(DateTime) -> Option<DateTime>| {
        f(offset.to_datetime(ts)).and_then(|dt| offset.to_timestamp(dt).ok())
    };
    let end = match within {
        Within::Hours(h) => ts.checked_add(SignedDuration::from_hours(h)).ok(),
        Within::Days(n) => civil(&|dt| dt.checked_add(n.days()).ok()),
        Within::Months(n) => civil(&|dt| dt.checked_add(n.months()).ok()),
        Within::BusinessDays(n) => civil(&|dt| add_business_days(dt, n)),
    }?;
    Time::parse(&end.display_with_offset(offset).to_string()).ok()
}

/// `n` Monday-to-Friday days after `dt`, at the same time of day. A start
/// on a weekend counts from the next Monday (Saturday + 1 = Monday).
fn add_business_days(dt: DateTime, n: i64) -> Option<DateTime> {
    let mut date = dt.date();
    let mut left = n;
    while left > 0 {
        date = date.tomorrow().ok()?;
        if !matches!(date.weekday(), Weekday::Saturday | Weekday::Sunday) {
            left -= 1;
        }
    }
    Some(date.to_datetime(dt.time()))
}

/// A duration for people: hours and minutes below 72 hours (`29h35m`,
/// `71h59m`, `0h05m`), days and hours from 72 hours on (`3d00h`,
/// `12d04h`); a negative duration gets a leading `-`. Smaller units are
/// dropped, not rounded (71h59m59s is `71h59m`).
pub fn format_duration(d: SignedDuration) -> String {
    let sign = if d.is_negative() { "-" } else { "" };
    let secs = d.as_secs().unsigned_abs();
    let (mins, hours) = ((secs / 60) % 60, secs / 3600);
    if hours < 72 {
        format!("{sign}{hours}h{mins:02}m")
    } else {
        format!("{sign}{}d{:02}h", hours / 24, hours % 24)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Time {
        Time::parse(s).unwrap()
    }

    fn ts(s: &str) -> Timestamp {
        t(s).timestamp()
    }

    fn filing(regime: &str, kind: &str, at: &str) -> Filing {
        Filing {
            regime: regime.into(),
            kind: kind.into(),
            filed_at: t(at),
            reference: "ref".into(),
            late_reason: None,
        }
    }

    fn hm(h: i64, m: i64) -> SignedDuration {
        SignedDuration::from_hours(h) + SignedDuration::from_mins(m)
    }

    /// Clocks for one regime.
    fn run(
        regime: &str,
        aware: &str,
        materiality: Option<&str>,
        facts: &[&str],
        filings: &[Filing],
        now: &str,
    ) -> Vec<Clock> {
        let regimes = vec![regime.to_owned()];
        let aware = t(aware);
        let materiality = materiality.map(t);
        let facts: Vec<Time> = facts.iter().map(|s| t(s)).collect();
        let inputs = Inputs {
            regimes: &regimes,
            aware_at: &aware,
            materiality_at: materiality.as_ref(),
            facts: &facts,
            filings,
        };
        evaluate(&inputs, ts(now)).unwrap()
    }

    #[test]
    fn worked_example_korea_late_by_29h35m() {
        let filings = [filing(
            "kr-network-act",
            "report",
            "2025-11-19T21:35:00+09:00",
        )];
        let clocks = run(
            "kr-network-act",
            "2025-11-17T16:00:00+09:00",
            None,
            &[],
            &filings,
            "2025-11-20T00:00:00+09:00",
        );
        assert_eq!(clocks.len(), 1, "no fact clocks without facts");
        let c = &clocks[0];
        assert_eq!(c.rule, "report");
        assert_eq!(
            c.deadline.as_ref().unwrap().as_str(),
            "2025-11-18T16:00:00+09:00"
        );
        assert_eq!(
            c.state,
            State::Late {
                filing: 0,
                by: hm(29, 35),
                reason_missing: false
            }
        );
        let State::Late { by, .. } = c.state else {
            unreachable!()
        };
        assert_eq!(format_duration(by), "29h35m");
    }

    #[test]
    fn gdpr_met_with_margin() {
        let filings = [filing("gdpr", "notification", "2025-03-05T10:30:00+01:00")];
        let clocks = run(
            "gdpr",
            "2025-03-03T09:00:00+01:00",
            None,
            &[],
            &filings,
            "2025-03-10T00:00:00Z",
        );
        assert_eq!(clocks.len(), 1);
        assert_eq!(clocks[0].name, "GDPR Art. 33 notification");
        assert_eq!(clocks[0].cite, "GDPR (EU) 2016/679 Art. 33(1)");
        assert_eq!(
            clocks[0].deadline.as_ref().unwrap().as_str(),
            "2025-03-06T09:00:00+01:00"
        );
        assert_eq!(
            clocks[0].state,
            State::Met {
                filing: 0,
                margin: hm(22, 30)
            }
        );
    }

    #[test]
    fn gdpr_late_needs_reason() {
        let aware = "2025-03-03T09:00:00+01:00";
        let mut f = filing("gdpr", "notification", "2025-03-06T09:00:01+01:00");
        let state = |f: &Filing| {
            run(
                "gdpr",
                aware,
                None,
                &[],
                std::slice::from_ref(f),
                "2025-04-01T00:00:00Z",
            )[0]
            .state
            .clone()
        };
        let late = |reason_missing| State::Late {
            filing: 0,
            by: SignedDuration::from_secs(1),
            reason_missing,
        };
        assert_eq!(state(&f), late(true));
        f.late_reason = Some("  ".into());
        assert_eq!(state(&f), late(true), "a blank reason is no reason");
        f.late_reason = Some("forensic scoping took until day 4".into());
        assert_eq!(state(&f), late(false));
        // Exactly at the deadline is on time.
        f.filed_at = t("2025-03-06T08:00:00Z");
        assert_eq!(
            state(&f),
            State::Met {
                filing: 0,
                margin: SignedDuration::ZERO
            }
        );
    }

    #[test]
    fn late_reason_only_flagged_where_required() {
        let filings = [filing("nis2", "early_warning", "2025-01-02T10:00:00Z")];
        let clocks = run(
            "nis2",
            "2025-01-01T00:00:00Z",
            None,
            &[],
            &filings,
            "2025-01-02T10:00:00Z",
        );
        assert_eq!(
            clocks[0].state,
            State::Late {
                filing: 0,
                by: hm(10, 0),
                reason_missing: false
            }
        );
    }

    #[test]
    fn nis2_final_report_runs_a_calendar_month_from_notification() {
        let aware = "2025-01-29T10:00:00+01:00";
        let now = "2025-01-30T10:00:00+01:00";
        let clocks = run("nis2", aware, None, &[], &[], now);
        let ids: Vec<_> = clocks.iter().map(|c| c.rule).collect();
        assert_eq!(ids, ["early_warning", "notification", "final_report"]);
        assert_eq!(
            clocks[0].state,
            State::Open {
                left: SignedDuration::ZERO
            }
        );
        assert_eq!(clocks[1].state, State::Open { left: hm(48, 0) });
        assert_eq!(clocks[2].started_at, None);
        assert_eq!(clocks[2].deadline, None);
        assert_eq!(
            clocks[2].state,
            State::NotStarted {
                why: "starts when the NIS2 incident notification is filed".into()
            }
        );

        // A final report alone does not start the clock.
        let early = [filing("nis2", "final_report", "2025-01-30T09:00:00+01:00")];
        let clocks = run("nis2", aware, None, &[], &early, now);
        assert!(matches!(clocks[2].state, State::NotStarted { .. }));

        // Notified on 31 January: due on the last day of February, same time.
        let filings = [
            filing("nis2", "early_warning", "2025-01-30T08:00:00+01:00"),
            filing("nis2", "notification", "2025-01-31T12:00:00+01:00"),
            filing("nis2", "final_report", "2025-02-20T12:00:00+01:00"),
        ];
        let clocks = run("nis2", aware, None, &[], &filings, "2025-03-01T00:00:00Z");
        let c = &clocks[2];
        assert_eq!(
            c.started_at.as_ref().unwrap().as_str(),
            "2025-01-31T12:00:00+01:00"
        );
        assert_eq!(
            c.deadline.as_ref().unwrap().as_str(),
            "2025-02-28T12:00:00+01:00"
        );
        assert_eq!(
            c.state,
            State::Met {
                filing: 2,
                margin: SignedDuration::from_hours(8 * 24)
            }
        );
        assert_eq!(
            clocks[1].state,
            State::Met {
                filing: 1,
                margin: hm(22, 0)
            }
        );

        // Mid-month: the same day next month, not 30 days (now is 3 February
        // 01:00 at +01:00, so 27 days 11 hours are left).
        let filings = [filing("nis2", "notification", "2025-02-02T12:00:00+01:00")];
        let clocks = run("nis2", aware, None, &[], &filings, "2025-02-03T00:00:00Z");
        assert_eq!(
            clocks[2].deadline.as_ref().unwrap().as_str(),
            "2025-03-02T12:00:00+01:00"
        );
        assert_eq!(
            clocks[2].state,
            State::Open {
                left: SignedDuration::from_hours(27 * 24 + 11)
            }
        );
    }

    #[test]
    fn sec_four_business_days_from_thursday_is_next_wednesday() {
        // 2025-11-13 is a Thursday.
        let clocks = run(
            "sec-8k",
            "2025-11-01T00:00:00Z",
            Some("2025-11-13T15:00:00-05:00"),
            &[],
            &[],
            "2025-11-14T15:00:00-05:00",
        );
        assert_eq!(clocks[0].name, "SEC Form 8-K Item 1.05");
        assert_eq!(
            clocks[0].deadline.as_ref().unwrap().as_str(),
            "2025-11-19T15:00:00-05:00"
        );
        assert_eq!(
            clocks[0].state,
            State::Open {
                left: SignedDuration::from_hours(5 * 24)
            }
        );

        // Business days are counted at the determination's offset: Thursday
        // 23:00 at -05:00 is already Friday in UTC, but the deadline is still
        // Wednesday.
        let clocks = run(
            "sec-8k",
            "2025-11-01T00:00:00Z",
            Some("2025-11-13T23:00:00-05:00"),
            &[],
            &[],
            "2025-11-14T00:00:00Z",
        );
        assert_eq!(
            clocks[0].deadline.as_ref().unwrap().as_str(),
            "2025-11-19T23:00:00-05:00"
        );

        // A Saturday determination counts from Monday: due Thursday.
        let clocks = run(
            "sec-8k",
            "2025-11-01T00:00:00Z",
            Some("2025-11-15T10:00:00-05:00"),
            &[],
            &[],
            "2025-11-14T00:00:00Z",
        );
        assert_eq!(
            clocks[0].deadline.as_ref().unwrap().as_str(),
            "2025-11-20T10:00:00-05:00"
        );
    }

    #[test]
    fn sec_not_started_without_materiality() {
        let filings = [filing("sec-8k", "form_8k", "2025-11-20T10:00:00-05:00")];
        let clocks = run(
            "sec-8k",
            "2025-11-01T00:00:00Z",
            None,
            &[],
            &filings,
            "2025-12-01T00:00:00Z",
        );
        assert_eq!(clocks.len(), 1);
        assert!(matches!(clocks[0].state, State::NotStarted { .. }));
        assert_eq!(clocks[0].deadline, None);
    }

    #[test]
    fn hipaa_sixty_days_from_discovery() {
        let filings = [filing(
            "hipaa",
            "individual_notice",
            "2025-03-11T08:30:00-08:00",
        )];
        let clocks = run(
            "hipaa",
            "2025-01-10T08:00:00-08:00",
            None,
            &[],
            &filings,
            "2025-04-01T00:00:00Z",
        );
        assert_eq!(clocks[0].cite, "45 CFR 164.404(b)");
        assert_eq!(
            clocks[0].deadline.as_ref().unwrap().as_str(),
            "2025-03-11T08:00:00-08:00"
        );
        assert_eq!(
            clocks[0].state,
            State::Late {
                filing: 0,
                by: hm(0, 30),
                reason_missing: false
            }
        );
    }

    #[test]
    fn open_and_overdue_against_now() {
        let aware = "2025-03-03T09:00:00+01:00";
        let open = run("gdpr", aware, None, &[], &[], "2025-03-05T09:00:00+01:00");
        assert_eq!(open[0].state, State::Open { left: hm(24, 0) });
        let at_deadline = run("gdpr", aware, None, &[], &[], "2025-03-06T08:00:00Z");
        assert_eq!(
            at_deadline[0].state,
            State::Open {
                left: SignedDuration::ZERO
            }
        );
        let overdue = run("gdpr", aware, None, &[], &[], "2025-03-06T10:15:00+01:00");
        assert_eq!(overdue[0].state, State::Overdue { by: hm(1, 15) });
        // A filing for another regime does not close it.
        let other = [filing("nis2", "notification", "2025-03-04T00:00:00Z")];
        let regimes = vec!["gdpr".to_owned()];
        let aware = t(aware);
        let inputs = Inputs {
            regimes: &regimes,
            aware_at: &aware,
            materiality_at: None,
            facts: &[],
            filings: &other,
        };
        let clocks = evaluate(&inputs, ts("2025-03-06T10:15:00+01:00")).unwrap();
        assert_eq!(clocks[0].state, State::Overdue { by: hm(1, 15) });
    }

    #[test]
    fn korean_fact_clocks() {
        let aware = "2025-11-17T16:00:00+09:00";
        let facts = ["2025-11-18T10:00:00+09:00", "2025-11-20T09:00:00+09:00"];
        let mut filings = vec![
            filing("kr-network-act", "report", "2025-11-18T09:00:00+09:00"),
            filing("kr-network-act", "fact_report", "2025-11-18T20:00:00+09:00"),
        ];
        let now = "2025-11-21T10:00:00+09:00";
        let clocks = run("kr-network-act", aware, None, &facts, &filings, now);
        let names: Vec<_> = clocks.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "Network Act initial report",
                "Network Act report of fact #1",
                "Network Act report of fact #2"
            ]
        );
        assert_eq!(
            clocks[0].state,
            State::Met {
                filing: 0,
                margin: hm(7, 0)
            }
        );
        assert_eq!(
            clocks[1].state,
            State::Met {
                filing: 1,
                margin: hm(14, 0)
            }
        );
        assert_eq!(
            clocks[2].deadline.as_ref().unwrap().as_str(),
            "2025-11-21T09:00:00+09:00"
        );
        // The fact report filed before fact #2 was learned does not close it.
        assert_eq!(clocks[2].state, State::Overdue { by: hm(1, 0) });

        filings.push(filing(
            "kr-network-act",
            "fact_report",
            "2025-11-20T18:00:00+09:00",
        ));
        let clocks = run("kr-network-act", aware, None, &facts, &filings, now);
        assert_eq!(
            clocks[1].state,
            State::Met {
                filing: 1,
                margin: hm(14, 0)
            }
        );
        assert_eq!(
            clocks[2].state,
            State::Met {
                filing: 2,
                margin: hm(15, 0)
            }
        );
    }

    #[test]
    fn one_filing_closes_every_fact_clock_it_follows() {
        let facts = ["2025-11-18T10:00:00+09:00", "2025-11-18T11:00:00+09:00"];
        let filings = [filing(
            "kr-network-act",
            "fact_report",
            "2025-11-18T12:00:00+09:00",
        )];
        let clocks = run(
            "kr-network-act",
            "2025-11-17T16:00:00+09:00",
            None,
            &facts,
            &filings,
            "2025-11-18T12:00:00+09:00",
        );
        assert_eq!(
            clocks[1].state,
            State::Met {
                filing: 0,
                margin: hm(22, 0)
            }
        );
        assert_eq!(
            clocks[2].state,
            State::Met {
                filing: 0,
                margin: hm(23, 0)
            }
        );
    }

    #[test]
    fn unknown_regime_and_kind_are_errors() {
        let aware = t("2025-01-01T00:00:00Z");
        let regimes = vec!["gdpr".to_owned(), "ccpa".to_owned()];
        let inputs = Inputs {
            regimes: &regimes,
            aware_at: &aware,
            materiality_at: None,
            facts: &[],
            filings: &[],
        };
        let err = evaluate(&inputs, aware.timestamp()).unwrap_err();
        assert!(matches!(&err, ClockError::UnknownRegime { id, .. } if id == "ccpa"));
        assert_eq!(
            err.to_string(),
            "unknown regime \"ccpa\" (known: kr-network-act, gdpr, nis2, sec-8k, hipaa)"
        );

        let regimes = vec!["gdpr".to_owned()];
        let filings = [filing("gdpr", "early_warning", "2025-01-01T01:00:00Z")];
        let inputs = Inputs {
            regimes: &regimes,
            filings: &filings,
            ..inputs
        };
        let err = evaluate(&inputs, aware.timestamp()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown filing kind \"early_warning\" for gdpr (known: notification)"
        );

        let filings = [filing("ccpa", "notice", "2025-01-01T01:00:00Z")];
        let inputs = Inputs {
            filings: &filings,
            ..inputs
        };
        assert!(matches!(
            evaluate(&inputs, aware.timestamp()),
            Err(ClockError::UnknownRegime { id, .. }) if id == "ccpa"
        ));
    }

    #[test]
    fn several_regimes_in_order_without_duplicates() {
        let regimes: Vec<String> = ["hipaa", "gdpr", "hipaa"].map(String::from).into();
        let aware = t("2025-01-01T00:00:00Z");
        let inputs = Inputs {
            regimes: &regimes,
            aware_at: &aware,
            materiality_at: None,
            facts: &[],
            filings: &[],
        };
        let clocks = evaluate(&inputs, aware.timestamp()).unwrap();
        let ids: Vec<_> = clocks.iter().map(|c| (c.regime, c.rule)).collect();
        assert_eq!(
            ids,
            [("hipaa", "individual_notice"), ("gdpr", "notification")]
        );
    }

    #[test]
    fn format_duration_rule() {
        assert_eq!(format_duration(SignedDuration::ZERO), "0h00m");
        assert_eq!(format_duration(hm(0, 5)), "0h05m");
        assert_eq!(format_duration(hm(29, 35)), "29h35m");
        assert_eq!(
            format_duration(hm(71, 59) + SignedDuration::from_secs(59)),
            "71h59m"
        );
        assert_eq!(format_duration(hm(72, 0)), "3d00h");
        assert_eq!(format_duration(hm(12 * 24 + 4, 30)), "12d04h");
        assert_eq!(format_duration(-hm(29, 35)), "-29h35m");
        assert_eq!(format_duration(-hm(12 * 24 + 4, 0)), "-12d04h");
    }

    #[test]
    fn json_shape() {
        let filings = [filing(
            "kr-network-act",
            "report",
            "2025-11-19T21:35:00+09:00",
        )];
        let clocks = run(
            "kr-network-act",
            "2025-11-17T16:00:00+09:00",
            None,
            &[],
            &filings,
            "2025-11-20T00:00:00+09:00",
        );
        let v = serde_json::to_value(&clocks[0]).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "regime": "kr-network-act",
                "rule": "report",
                "name": "Network Act initial report",
                "started_at": "2025-11-17T16:00:00+09:00",
                "deadline": "2025-11-18T16:00:00+09:00",
                "state": "late",
                "filing": 0,
                "by": {"seconds": 106_500, "text": "29h35m"},
                "reason_missing": false,
                "cite": KR_ACT,
            })
        );
        let not_started = run(
            "nis2",
            "2025-01-01T00:00:00Z",
            None,
            &[],
            &[],
            "2025-01-01T00:00:00Z",
        );
        let v = serde_json::to_value(&not_started[2]).unwrap();
        assert_eq!(v["state"], "not_started");
        assert_eq!(v["deadline"], serde_json::Value::Null);
    }

    #[test]
    fn table_is_consistent() {
        assert_eq!(
            kinds("nis2"),
            ["early_warning", "notification", "final_report"]
        );
        assert_eq!(kinds("kr-network-act"), ["report", "fact_report"]);
        assert!(kinds("nope").is_empty());
        for (i, r) in REGIMES.iter().enumerate() {
            assert!(REGIMES[..i].iter().all(|x| x.id != r.id), "{} twice", r.id);
            for (j, rule) in r.rules.iter().enumerate() {
                assert!(r.rules[..j].iter().all(|x| x.id != rule.id));
                assert!(!rule.cite.is_empty());
                if let Start::AfterFiling(kind) = rule.start {
                    assert!(kinds(r.id).contains(&kind), "{}/{}", r.id, rule.id);
                    assert_ne!(kind, rule.filing);
                }
            }
        }
        assert!(regime("gdpr").unwrap().rules[0].late_reason);
    }
}
