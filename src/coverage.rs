//! Record coverage of preserved logs: the time of the first and last record
//! of a text log, read from its head and tail, and for a source (a set of
//! artifacts, such as rotated files) the union of those intervals with its
//! gaps and the part of a preservation scope no record reaches, stated
//! explicitly.
//!
//! Pure: no I/O and no clock. The caller reads at most [`WINDOW`] bytes from
//! the start and from the end of each artifact and passes them here with what
//! it knows about the file ([`Hint`]).
//!
//! A line's time is read from its start (or, for JSON, from a named field),
//! first match wins:
//!
//! | `format`  | shape                                                                    |
//! |-----------|--------------------------------------------------------------------------|
//! | `json`    | a JSON object with `ts`, `time`, `timestamp`, `@timestamp` or `date`: RFC 3339 text, a CLF stamp, or epoch seconds, millis, micros or nanos (number or digits) |
//! | `journal` | `journalctl -o json`: `__REALTIME_TIMESTAMP` (epoch microseconds)        |
//! | `rfc5424` | `<pri>1 2025-11-17T16:00:00.003+09:00 host …`                            |
//! | `rfc3339` | `2025-11-17T16:00:00+09:00`, `2025-11-17 16:00:00.123Z`, `+0900`, ` UTC`, optionally inside `[`             |
//! | `local`   | the same without a zone (also `2025/11/17 16:00:00`, nginx error logs, and `,123` fractions): the hint's offset is assumed |
//! | `syslog`  | BSD syslog `Nov 17 16:00:00` (optionally after `<pri>`): year and offset from the hint |
//! | `ctime`   | `[Mon Nov 17 16:00:00.123456 2025]` (Apache error log): the hint's offset is assumed |
//! | `audit`   | Linux audit `type=… msg=audit(1763362800.123:42):` (epoch seconds)       |
//! | `epoch`   | Squid native `1763362800.123 …` (epoch seconds with millis at line start) |
//! | `clf`     | nginx/Apache `[17/Nov/2025:16:00:00 +0900]` anywhere in the line         |
//!
//! When the first and last record were read in different formats the
//! bounds say `mixed`.

use jiff::civil::DateTime;
use jiff::tz::Offset;
use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

use crate::time::Time;

/// Bytes looked at from each of head and tail; more is ignored.
pub const WINDOW: usize = 64 * 1024;

/// Lines looked at from each of head and tail; more are ignored.
pub const MAX_LINES: usize = 200;

/// Epoch stamps before this (1990-01-01T00:00:00Z) are taken for durations
/// or counters, not times.
const EPOCH_FLOOR: i64 = 631_152_000;

/// What the caller knows that helps read timestamps without a year or zone.
#[derive(Debug, Clone, Default)]
pub struct Hint {
    /// The file's mtime as recorded (RFC 3339 with offset). Gives the year of
    /// BSD syslog stamps (the latest year that puts the stamp no later than a
    /// day after the mtime) and the offset assumed for stamps without a zone
    /// (UTC without an mtime). Without it, syslog stamps are not read.
    pub mtime: Option<Time>,
}

/// First and last record time of one artifact.
#[derive(Debug, Clone, Serialize)]
pub struct Bounds {
    /// Time of the first record (first line of the head with a stamp).
    pub first: Time,
    /// Time of the last record (last line of the tail with a stamp). May be
    /// before `first` if the writer's clock went backwards.
    pub last: Time,
    /// How the stamps were read: `rfc3339`, `local`, `syslog`, `rfc5424`,
    /// `clf`, `json`, `journal`, `ctime`, `audit`, `epoch`, or `mixed` when
    /// the first and last were read differently. See the module docs.
    pub format: &'static str,
}

/// First and last record time of a text log given its head and tail bytes.
///
/// `head` is the start of the file, `tail` its end; `whole` says the whole
/// file is in `head` (then `tail` is ignored). Otherwise a partial last line
/// of `head` and a partial first line of `tail` are ignored. At most
/// [`WINDOW`] bytes and [`MAX_LINES`] lines of each are looked at. The first
/// record is the first line of the head with a recognisable stamp, the last
/// the last such line of the tail.
///
/// `None` when no line of the head (or of the tail) has a recognisable
/// timestamp. Never panics, whatever the bytes.
pub fn record_bounds(head: &[u8], tail: &[u8], whole: bool, hint: &Hint) -> Option<Bounds> {
    let ctx = Ctx::new(hint);
    let whole = whole && head.len() <= WINDOW;
    let head = &head[..head.len().min(WINDOW)];
    let head = head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(head);
    let (head, tail) = if whole {
        (head, head)
    } else {
        let tail = &tail[tail.len().saturating_sub(WINDOW)..];
        let head = match head.iter().rposition(|&b| b == b'\n') {
            Some(i) => &head[..i],
            None => &[],
        };
        let tail = match tail.iter().position(|&b| b == b'\n') {
            Some(i) => &tail[i + 1..],
            None => &[],
        };
        (head, tail)
    };
    if head.is_empty() || tail.is_empty() {
        return None;
    }
    let first = head
        .split(|&b| b == b'\n')
        .take(MAX_LINES)
        .find_map(|l| ctx.line(l))?;
    let last = tail
        .rsplit(|&b| b == b'\n')
        .take(MAX_LINES)
        .find_map(|l| ctx.line(l))?;
    let format = if first.format == last.format {
        first.format
    } else {
        "mixed"
    };
    Some(Bounds {
        first: first.time,
        last: last.time,
        format,
    })
}

/// One artifact of a source, with its bounds if they are known.
#[derive(Debug, Clone, Copy)]
pub struct Item<'a> {
    /// The artifact's name (its path, as the manifest names it).
    pub name: &'a str,
    /// Its record bounds; `None` when they could not be read.
    pub bounds: Option<&'a Bounds>,
}

/// A hole between the records of two artifacts of one source.
#[derive(Debug, Clone, Serialize)]
pub struct Gap {
    /// The artifact whose records reach furthest before the hole.
    pub after: String,
    /// The artifact whose records resume after the hole.
    pub before: String,
    /// The last record before the hole.
    pub from: Time,
    /// The first record after the hole.
    pub until: Time,
}

/// Record coverage of one source.
#[derive(Debug, Clone, Serialize)]
pub struct Coverage {
    /// The earliest record of any item.
    pub first: Option<Time>,
    /// The latest record of any item.
    pub last: Option<Time>,
    /// Holes longer than the minimum gap, in time order.
    pub gaps: Vec<Gap>,
    /// Items whose bounds are unknown, in the order given.
    pub unknown: Vec<String>,
    /// Scope start .. first record, when the records start after the scope
    /// starts.
    pub before_scope: Option<(Time, Time)>,
    /// Last record .. scope end, when the records end before the scope ends.
    pub after_scope: Option<(Time, Time)>,
}

/// Coverage of one source: the union of its items' `[first, last]`
/// intervals (an interval whose last is before its first is taken from the
/// earlier to the later). A gap is a hole of more than `min_gap` between
/// intervals sorted by first. The part of `scope` (a preservation order's
/// time range, either end open) before the first or after the last record is
/// stated, however short. Items without bounds are listed in `unknown`; when
/// no item has bounds nothing else is stated.
pub fn coverage(
    items: &[Item],
    scope: (Option<&Time>, Option<&Time>),
    min_gap: SignedDuration,
) -> Coverage {
    let mut unknown = Vec::new();
    let mut spans: Vec<(&Time, &Time, &str)> = Vec::new();
    for item in items {
        match item.bounds {
            None => unknown.push(item.name.to_owned()),
            Some(b) if b.last.timestamp() < b.first.timestamp() => {
                spans.push((&b.last, &b.first, item.name));
            }
            Some(b) => spans.push((&b.first, &b.last, item.name)),
        }
    }
    spans.sort_by(|a, b| {
        (a.0.timestamp(), a.1.timestamp()).cmp(&(b.0.timestamp(), b.1.timestamp()))
    });

    let mut gaps = Vec::new();
    let mut reach: Option<(&Time, &str)> = None;
    for &(lo, hi, name) in &spans {
        match reach {
            None => reach = Some((hi, name)),
            Some((end, after)) => {
                if lo.timestamp() > end.timestamp()
                    && lo.timestamp().duration_since(end.timestamp()) > min_gap
                {
                    gaps.push(Gap {
                        after: after.to_owned(),
                        before: name.to_owned(),
                        from: end.clone(),
                        until: lo.clone(),
                    });
                }
                if hi.timestamp() > end.timestamp() {
                    reach = Some((hi, name));
                }
            }
        }
    }
    let first = spans.first().map(|s| s.0.clone());
    let last = reach.map(|r| r.0.clone());
    let before_scope = match (scope.0, &first) {
        (Some(start), Some(first)) if first.timestamp() > start.timestamp() => {
            Some((start.clone(), first.clone()))
        }
        _ => None,
    };
    let after_scope = match (&last, scope.1) {
        (Some(last), Some(end)) if last.timestamp() < end.timestamp() => {
            Some((last.clone(), end.clone()))
        }
        _ => None,
    };
    Coverage {
        first,
        last,
        gaps,
        unknown,
        before_scope,
        after_scope,
    }
}

// ---------------------------------------------------------------------------
// Reading one line.

/// A stamp read from a line.
struct Stamp {
    time: Time,
    format: &'static str,
}

/// What the hint gives, worked out once.
struct Ctx {
    /// The zone of the mtime as written (`Utc` for `Z` or no mtime): assumed
    /// for stamps without one, and used to show epoch stamps.
    zone: Zone,
    /// mtime + 1 day: syslog stamps are not after this.
    not_after: Option<Timestamp>,
    /// The mtime's year in its own offset.
    year: i16,
}

/// A zone as written in a stamp.
#[derive(Clone, Copy)]
enum Zone {
    /// `Z`, `UTC` or `GMT`.
    Utc,
    /// `±hh:mm`, `±hhmm` or `±hh`.
    Fixed(Offset),
    /// No zone.
    Local,
}

impl Ctx {
    fn new(hint: &Hint) -> Self {
        let Some(mtime) = &hint.mtime else {
            return Self {
                zone: Zone::Utc,
                not_after: None,
                year: 0,
            };
        };
        let zone = zone_of(mtime.as_str());
        let ts = mtime.timestamp();
        Self {
            zone,
            not_after: ts.checked_add(SignedDuration::from_hours(24)).ok(),
            year: offset(zone).to_datetime(ts).year(),
        }
    }

    fn line(&self, line: &[u8]) -> Option<Stamp> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let trimmed = line.trim_ascii_start();
        if trimmed.first() == Some(&b'{') {
            if let Some(s) = self.json(trimmed) {
                return Some(s);
            }
        }
        self.pri(line)
            .or_else(|| self.iso_line(line))
            .or_else(|| self.syslog(line))
            .or_else(|| self.ctime(line))
            .or_else(|| self.audit(line))
            .or_else(|| self.squid(line))
            .or_else(|| self.clf(line))
    }

    /// A civil time in a zone as written; `Local` takes the hint's offset.
    fn zoned(&self, dt: DateTime, zone: Zone, format: &'static str) -> Option<Stamp> {
        let zone = match zone {
            Zone::Local => self.zone,
            z => z,
        };
        let ts = offset(zone).to_timestamp(dt).ok()?;
        Some(Stamp {
            time: make_time(ts, zone)?,
            format,
        })
    }

    /// An instant from an epoch count, shown in the hint's offset.
    fn instant(&self, ts: Timestamp, format: &'static str) -> Option<Stamp> {
        if ts.as_second() < EPOCH_FLOOR {
            return None;
        }
        Some(Stamp {
            time: make_time(ts, self.zone)?,
            format,
        })
    }

    /// `<pri>1 <rfc3339> …` (RFC 5424) or `<pri>Mmm dd hh:mm:ss …`.
    fn pri(&self, line: &[u8]) -> Option<Stamp> {
        let mut c = Cur::new(line);
        c.lit(b'<')?;
        c.num(1, 3)?;
        c.lit(b'>')?;
        let rest = &line[c.i..];
        if let Some(stamp) = rest.strip_prefix(b"1 ") {
            let (dt, zone, _) = iso(stamp)?;
            return self.zoned(dt, zone, "rfc5424");
        }
        self.syslog(rest)
    }

    /// An ISO 8601 date-time at the start of the line, optionally after `[`.
    fn iso_line(&self, line: &[u8]) -> Option<Stamp> {
        let b = line.strip_prefix(b"[").unwrap_or(line);
        let (dt, zone, _) = iso(b)?;
        let format = match zone {
            Zone::Local => "local",
            _ => "rfc3339",
        };
        self.zoned(dt, zone, format)
    }

    /// BSD syslog `Mmm dd hh:mm:ss` at the start of the line.
    fn syslog(&self, line: &[u8]) -> Option<Stamp> {
        let not_after = self.not_after?;
        let zone = self.zone;
        let mut c = Cur::new(line);
        let mo = c.month()?;
        c.lit(b' ')?;
        let d = c.day()?;
        c.lit(b' ')?;
        let (h, mi, s, ns) = c.clock()?;
        if !c.at_end() && c.peek() != Some(b' ') {
            return None;
        }
        // The latest year that puts the stamp no later than mtime + 1 day;
        // eight years back always include a 29 February.
        let ts = (self.year.saturating_sub(8)..=self.year.saturating_add(1))
            .rev()
            .filter_map(|y| civil(y, mo, d, h, mi, s, ns))
            .filter_map(|dt| offset(zone).to_timestamp(dt).ok())
            .find(|ts| *ts <= not_after)?;
        Some(Stamp {
            time: make_time(ts, zone)?,
            format: "syslog",
        })
    }

    /// `Www Mmm dd hh:mm:ss[.frac] yyyy`, optionally in `[`…`]` (Apache
    /// error log, asctime).
    fn ctime(&self, line: &[u8]) -> Option<Stamp> {
        let b = line.strip_prefix(b"[").unwrap_or(line);
        let mut c = Cur::new(b);
        let wd = c.take(3)?;
        if !WEEKDAYS.iter().any(|w| w.eq_ignore_ascii_case(wd)) {
            return None;
        }
        c.lit(b' ')?;
        let mo = c.month()?;
        c.lit(b' ')?;
        let d = c.day()?;
        c.lit(b' ')?;
        let (h, mi, s, ns) = c.clock()?;
        c.lit(b' ')?;
        let y = c.num(4, 4)?;
        if c.peek().is_some_and(|b| b.is_ascii_alphanumeric()) {
            return None;
        }
        let dt = civil(i16::try_from(y).ok()?, mo, d, h, mi, s, ns)?;
        self.zoned(dt, Zone::Local, "ctime")
    }

    /// Linux audit: `msg=audit(<secs>.<millis>:<serial>)` near the start.
    fn audit(&self, line: &[u8]) -> Option<Stamp> {
        const KEY: &[u8] = b"msg=audit(";
        let near = &line[..line.len().min(256)];
        let at = near.windows(KEY.len()).position(|w| w == KEY)?;
        let rest = &line[at + KEY.len()..];
        let end = rest.iter().position(|&b| b == b':')?;
        let ts = epoch_text(&rest[..end], Some(1))?;
        self.instant(ts, "audit")
    }

    /// Squid native log: `<secs>.<millis> ` at the start of the line.
    fn squid(&self, line: &[u8]) -> Option<Stamp> {
        let mut c = Cur::new(line);
        let secs = c.num(9, 10)?;
        c.lit(b'.')?;
        let ms = c.num(3, 3)?;
        if !c.at_end() && c.peek() != Some(b' ') {
            return None;
        }
        let ts = Timestamp::new(i64::from(secs), i32::try_from(ms).ok()? * 1_000_000).ok()?;
        self.instant(ts, "epoch")
    }

    /// `[dd/Mmm/yyyy:hh:mm:ss ±hhmm]` anywhere in the line.
    fn clf(&self, line: &[u8]) -> Option<Stamp> {
        line.iter()
            .enumerate()
            .filter(|&(_, &b)| b == b'[')
            .find_map(|(i, _)| {
                let (dt, zone, n) = clf_body(&line[i + 1..])?;
                (line.get(i + 1 + n) == Some(&b']')).then_some(())?;
                self.zoned(dt, zone, "clf")
            })
    }

    /// A JSON object line.
    fn json(&self, line: &[u8]) -> Option<Stamp> {
        let map: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(line).ok()?;
        if let Some(v) = map.get("__REALTIME_TIMESTAMP") {
            let ts = match v {
                serde_json::Value::String(s) => epoch_text(s.as_bytes(), Some(1_000_000)),
                serde_json::Value::Number(n) => n.as_i64().and_then(|n| epoch_int(n, 1_000_000)),
                _ => None,
            };
            if let Some(s) = ts.and_then(|ts| self.instant(ts, "journal")) {
                return Some(s);
            }
        }
        JSON_FIELDS
            .iter()
            .filter_map(|k| map.get(*k))
            .find_map(|v| self.json_value(v))
    }

    fn json_value(&self, v: &serde_json::Value) -> Option<Stamp> {
        match v {
            serde_json::Value::Number(n) => {
                let ts = match n.as_i64() {
                    Some(i) => epoch_int(i, unit_of(i.unsigned_abs() as f64))?,
                    None => epoch_float(n.as_f64()?)?,
                };
                self.instant(ts, "json")
            }
            serde_json::Value::String(s) => {
                let b = s.trim().as_bytes();
                if let Some((dt, zone, _)) = iso(b).or_else(|| clf_body(b)) {
                    return self.zoned(dt, zone, "json");
                }
                self.instant(epoch_text(b, None)?, "json")
            }
            _ => None,
        }
    }
}

const JSON_FIELDS: [&str; 5] = ["ts", "time", "timestamp", "@timestamp", "date"];
const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];
const WEEKDAYS: [&[u8; 3]; 7] = [b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat", b"Sun"];

/// The offset of a zone (UTC for `Local`, which callers resolve first).
fn offset(zone: Zone) -> Offset {
    match zone {
        Zone::Fixed(o) => o,
        Zone::Utc | Zone::Local => Offset::UTC,
    }
}

/// `Time` for `ts` shown in `zone` (`Z` for `Utc`); falls back to UTC when
/// the offset cannot be written as `±hh:mm`.
fn make_time(ts: Timestamp, zone: Zone) -> Option<Time> {
    if let Zone::Fixed(o) = zone {
        if let Ok(t) = Time::parse(&ts.display_with_offset(o).to_string()) {
            return Some(t);
        }
    }
    Time::parse(&ts.to_string()).ok()
}

/// The zone a recorded time was written in (`Z`, `±hh:mm`, `±hh:mm:ss`);
/// `Utc` when it cannot be read.
fn zone_of(s: &str) -> Zone {
    let b = s.as_bytes();
    let parse = |z: &[u8]| -> Option<Offset> {
        let sign = match z.first()? {
            b'+' => 1,
            b'-' => -1,
            _ => return None,
        };
        let mut c = Cur::new(&z[1..]);
        let h = c.num(2, 2)?;
        c.lit(b':')?;
        let m = c.num(2, 2)?;
        let sec = if c.lit(b':').is_some() {
            c.num(2, 2)?
        } else {
            0
        };
        if !c.at_end() {
            return None;
        }
        let total = i32::try_from(h * 3600 + m * 60 + sec).ok()?;
        Offset::from_seconds(sign * total).ok()
    };
    [6, 9]
        .iter()
        .find_map(|&n| b.len().checked_sub(n).and_then(|i| parse(&b[i..])))
        .map_or(Zone::Utc, Zone::Fixed)
}

fn civil(y: i16, mo: i8, d: i8, h: i8, mi: i8, s: i8, ns: i32) -> Option<DateTime> {
    // A leap second (:60) is read as :59.
    DateTime::new(y, mo, d, h, mi, s.min(59), ns).ok()
}

/// `YYYY-MM-DD[T ]hh:mm:ss[.frac][zone]` (or `/` between date fields):
/// the civil time, its zone and the bytes used.
fn iso(b: &[u8]) -> Option<(DateTime, Zone, usize)> {
    let mut c = Cur::new(b);
    let y = c.num(4, 4)?;
    let sep = c.peek().filter(|&s| s == b'-' || s == b'/')?;
    c.i += 1;
    let mo = c.num(2, 2)?;
    c.lit(sep)?;
    let d = c.num(2, 2)?;
    match c.peek() {
        Some(b'T' | b't' | b' ') => c.i += 1,
        _ => return None,
    }
    let (h, mi, s, ns) = c.clock()?;
    let zone = c.zone();
    if c.peek().is_some_and(|b| b.is_ascii_digit()) {
        return None;
    }
    let dt = civil(
        i16::try_from(y).ok()?,
        i8::try_from(mo).ok()?,
        i8::try_from(d).ok()?,
        h,
        mi,
        s,
        ns,
    )?;
    Some((dt, zone, c.i))
}

/// `dd/Mmm/yyyy:hh:mm:ss ±hhmm` (CLF without its brackets).
fn clf_body(b: &[u8]) -> Option<(DateTime, Zone, usize)> {
    let mut c = Cur::new(b);
    let d = c.num(2, 2)?;
    c.lit(b'/')?;
    let mo = c.month()?;
    c.lit(b'/')?;
    let y = c.num(4, 4)?;
    c.lit(b':')?;
    let (h, mi, s, ns) = c.clock()?;
    c.lit(b' ')?;
    let zone = c.zone();
    if !matches!(zone, Zone::Fixed(_) | Zone::Utc) {
        return None;
    }
    let dt = civil(
        i16::try_from(y).ok()?,
        mo,
        i8::try_from(d).ok()?,
        h,
        mi,
        s,
        ns,
    )?;
    Some((dt, zone, c.i))
}

/// Units per second of an epoch count of this size: seconds below 1e11
/// (year 5138), millis below 1e14, micros below 1e17, else nanos.
fn unit_of(abs: f64) -> i64 {
    if abs < 1e11 {
        1
    } else if abs < 1e14 {
        1_000
    } else if abs < 1e17 {
        1_000_000
    } else {
        1_000_000_000
    }
}

fn epoch_int(n: i64, per_sec: i64) -> Option<Timestamp> {
    let secs = n.div_euclid(per_sec);
    let sub = n.rem_euclid(per_sec) * (1_000_000_000 / per_sec);
    Timestamp::new(secs, i32::try_from(sub).ok()?).ok()
}

fn epoch_float(f: f64) -> Option<Timestamp> {
    if !f.is_finite() {
        return None;
    }
    let secs = f / unit_of(f.abs()) as f64;
    if secs.abs() > 1e12 {
        return None;
    }
    let whole = secs.floor();
    let nanos = (((secs - whole) * 1e9).round() as i32).clamp(0, 999_999_999);
    Timestamp::new(whole as i64, nanos).ok()
}

/// Digits, optionally with a `.` fraction, as an epoch count in `per_sec`
/// units (guessed from the size when `None`).
fn epoch_text(b: &[u8], per_sec: Option<i64>) -> Option<Timestamp> {
    if b.is_empty() || b.len() > 24 {
        return None;
    }
    let s = std::str::from_utf8(b).ok()?;
    let dot = s.bytes().filter(|&c| c == b'.').count();
    if dot > 1 || !s.bytes().all(|c| c.is_ascii_digit() || c == b'.') || s.starts_with('.') {
        return None;
    }
    if dot == 0 {
        let n: i64 = s.parse().ok()?;
        return epoch_int(n, per_sec.unwrap_or_else(|| unit_of(n as f64)));
    }
    let f: f64 = s.parse().ok()?;
    match per_sec {
        Some(1) => {
            let (int, frac) = s.split_once('.')?;
            let secs: i64 = int.parse().ok()?;
            let digits: String = frac.chars().chain(std::iter::repeat('0')).take(9).collect();
            Timestamp::new(secs, digits.parse().ok()?).ok()
        }
        Some(u) => epoch_float(f / u as f64),
        None => epoch_float(f),
    }
}

/// A cursor over bytes; every method either consumes and succeeds or fails
/// (callers drop the cursor on failure).
struct Cur<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Cur<'a> {
    fn new(b: &'a [u8]) -> Self {
        Self { b, i: 0 }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn at_end(&self) -> bool {
        self.i >= self.b.len()
    }

    fn lit(&mut self, c: u8) -> Option<()> {
        (self.peek()? == c).then(|| self.i += 1)
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.b.get(self.i..self.i.checked_add(n)?)?;
        self.i += n;
        Some(s)
    }

    /// Between `min` and `max` (≤ 10) ASCII digits.
    fn num(&mut self, min: usize, max: usize) -> Option<u32> {
        let start = self.i;
        let mut v: u64 = 0;
        while self.i - start < max {
            match self.peek() {
                Some(c @ b'0'..=b'9') => {
                    v = v * 10 + u64::from(c - b'0');
                    self.i += 1;
                }
                _ => break,
            }
        }
        if self.i - start < min {
            self.i = start;
            return None;
        }
        u32::try_from(v).ok()
    }

    fn month(&mut self) -> Option<i8> {
        let m = self.take(3)?;
        let i = MONTHS.iter().position(|x| x.eq_ignore_ascii_case(m))?;
        i8::try_from(i + 1).ok()
    }

    /// A day of month: `dd`, `d`, or ` d` (space-padded).
    fn day(&mut self) -> Option<i8> {
        if self.peek() == Some(b' ') {
            self.i += 1;
            return i8::try_from(self.num(1, 1)?).ok();
        }
        i8::try_from(self.num(1, 2)?).ok()
    }

    /// `hh:mm:ss` with an optional fraction (`.` any digits, or `,` three or
    /// more): hour, minute, second, nanoseconds.
    fn clock(&mut self) -> Option<(i8, i8, i8, i32)> {
        let h = i8::try_from(self.num(2, 2)?).ok()?;
        self.lit(b':')?;
        let mi = i8::try_from(self.num(2, 2)?).ok()?;
        self.lit(b':')?;
        let s = i8::try_from(self.num(2, 2)?).ok()?;
        let mut ns = 0i32;
        if let Some(sep @ (b'.' | b',')) = self.peek() {
            let start = self.i + 1;
            let mut j = start;
            while self.b.get(j).is_some_and(u8::is_ascii_digit) {
                j += 1;
            }
            let n = j - start;
            if n >= if sep == b'.' { 1 } else { 3 } {
                for k in 0..9 {
                    let d = if k < n { self.b[start + k] - b'0' } else { 0 };
                    ns = ns * 10 + i32::from(d);
                }
                self.i = j;
            }
        }
        Some((h, mi, s, ns))
    }

    /// An optional zone: `Z`, `UTC`/`GMT` (optionally after a space),
    /// `±hh:mm`, `±hhmm`, `±hh`, or ` ±hh:mm`/` ±hhmm`. Consumes nothing
    /// when there is none.
    fn zone(&mut self) -> Zone {
        let start = self.i;
        if let Some(b'Z' | b'z') = self.peek() {
            self.i += 1;
            return Zone::Utc;
        }
        let spaced = self.lit(b' ').is_some();
        for name in [b"UTC", b"GMT"] {
            if self
                .b
                .get(self.i..self.i + 3)
                .is_some_and(|w| w.eq_ignore_ascii_case(name))
                && !self
                    .b
                    .get(self.i + 3)
                    .is_some_and(|c| c.is_ascii_alphanumeric())
            {
                self.i += 3;
                return Zone::Utc;
            }
        }
        if let Some(o) = self.offset(spaced) {
            return Zone::Fixed(o);
        }
        self.i = start;
        Zone::Local
    }

    fn offset(&mut self, need_minutes: bool) -> Option<Offset> {
        let start = self.i;
        let r = (|| {
            let sign = match self.peek()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            self.i += 1;
            let h = self.num(2, 2)?;
            let colon = self.lit(b':').is_some();
            let m = match self.num(2, 2) {
                Some(m) => m,
                None if colon || need_minutes => return None,
                None => 0,
            };
            if h > 25 || m > 59 || self.peek().is_some_and(|c| c.is_ascii_digit()) {
                return None;
            }
            Offset::from_seconds(sign * i32::try_from(h * 3600 + m * 60).ok()?).ok()
        })();
        if r.is_none() {
            self.i = start;
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn t(s: &str) -> Time {
        Time::parse(s).unwrap()
    }

    fn hint(mtime: &str) -> Hint {
        Hint {
            mtime: Some(t(mtime)),
        }
    }

    /// Bounds of a whole file.
    fn whole(text: &str, hint: &Hint) -> Option<Bounds> {
        record_bounds(text.as_bytes(), b"", true, hint)
    }

    fn check(b: &Bounds, first: &str, last: &str, format: &str) {
        assert_eq!(b.first.as_str(), first, "first of {b:?}");
        assert_eq!(b.last.as_str(), last, "last of {b:?}");
        assert_eq!(b.format, format, "format of {b:?}");
    }

    #[test]
    fn rfc3339_lines() {
        let log = "2025-11-17T16:00:00+09:00 host sshd[1]: Accepted\n\
                   no stamp here\n\
                   2025-11-17 16:05:00.250Z host sshd[1]: space and fraction\n\
                   2025-11-17T16:10:00.123456789-0500 host: compact offset\n";
        let b = whole(log, &Hint::default()).unwrap();
        check(
            &b,
            "2025-11-17T16:00:00+09:00",
            "2025-11-17T16:10:00.123456789-05:00",
            "rfc3339",
        );
        assert_eq!(
            b.last.timestamp(),
            t("2025-11-17T21:10:00.123456789Z").timestamp()
        );

        let b = whole(
            "[2025-11-17 07:00:00 UTC] postgres LOG\n2025-11-17 08:00:00 +01:00 x\n",
            &Hint::default(),
        )
        .unwrap();
        check(
            &b,
            "2025-11-17T07:00:00Z",
            "2025-11-17T08:00:00+01:00",
            "rfc3339",
        );
    }

    #[test]
    fn zone_less_stamps_take_the_mtime_offset_else_utc() {
        let log =
            "2025-11-17 16:00:00,123 INFO app started\n2025/11/17 17:30:00 [error] 12#0: nginx\n";
        let b = whole(log, &hint("2025-11-18T00:00:00+09:00")).unwrap();
        check(
            &b,
            "2025-11-17T16:00:00.123+09:00",
            "2025-11-17T17:30:00+09:00",
            "local",
        );
        let b = whole(log, &Hint::default()).unwrap();
        assert_eq!(
            b.first.timestamp(),
            t("2025-11-17T16:00:00.123Z").timestamp()
        );
    }

    #[test]
    fn bsd_syslog_year_and_offset_from_mtime() {
        let log = "Nov  7 16:00:00 host sshd[1]: Accepted\nNov 17 09:15:02 host cron[2]: ran\n";
        let b = whole(log, &hint("2025-11-17T10:00:00+09:00")).unwrap();
        check(
            &b,
            "2025-11-07T16:00:00+09:00",
            "2025-11-17T09:15:02+09:00",
            "syslog",
        );
        // Up to a day after the mtime is still this year; more is last year.
        let b = whole("Nov 18 09:59:59 h x\n", &hint("2025-11-17T10:00:00+09:00")).unwrap();
        assert_eq!(b.first.as_str(), "2025-11-18T09:59:59+09:00");
        let b = whole("Nov 18 10:00:01 h x\n", &hint("2025-11-17T10:00:00+09:00")).unwrap();
        assert_eq!(b.first.as_str(), "2024-11-18T10:00:01+09:00");
        // No mtime: no year, so no time.
        assert!(whole(log, &Hint::default()).is_none());
    }

    #[test]
    fn bsd_syslog_across_new_year() {
        let log = "Dec 31 23:59:59 host a\nJan  1 00:00:01 host b\nJan  2 08:00:00 host c\n";
        let b = whole(log, &hint("2026-01-02T09:00:00Z")).unwrap();
        check(&b, "2025-12-31T23:59:59Z", "2026-01-02T08:00:00Z", "syslog");
        // 29 February goes back to the latest leap year.
        let b = whole("Feb 29 12:00:00 h x\n", &hint("2026-01-02T09:00:00Z")).unwrap();
        assert_eq!(b.first.as_str(), "2024-02-29T12:00:00Z");
    }

    #[test]
    fn rfc5424_and_pri_prefixed_bsd() {
        let log = "<34>1 2025-11-17T16:00:00.003+09:00 host app 1 ID47 - msg\n\
                   <165>1 2025-11-17T07:05:00Z host app - - - msg\n";
        let b = whole(log, &Hint::default()).unwrap();
        check(
            &b,
            "2025-11-17T16:00:00.003+09:00",
            "2025-11-17T07:05:00Z",
            "rfc5424",
        );
        let b = whole(
            "<13>Nov 17 16:00:00 host x\n",
            &hint("2025-11-18T00:00:00Z"),
        )
        .unwrap();
        check(&b, "2025-11-17T16:00:00Z", "2025-11-17T16:00:00Z", "syslog");
        // A nil timestamp is no time.
        assert!(whole("<34>1 - host app - - - msg\n", &Hint::default()).is_none());
    }

    #[test]
    fn clf_anywhere_in_the_line() {
        let log = "203.0.113.9 - - [17/Nov/2025:16:00:00 +0900] \"GET / HTTP/1.1\" 200 12 \"-\" \"curl\"\n\
                   203.0.113.9 - [x] [17/Nov/2025:18:30:05 -0000] \"GET /a HTTP/1.1\" 404 0\n";
        let b = whole(log, &Hint::default()).unwrap();
        check(
            &b,
            "2025-11-17T16:00:00+09:00",
            "2025-11-17T18:30:05+00:00",
            "clf",
        );
        assert!(
            whole(
                "1.2.3.4 - - [17/Nov/2025:16:00:00] no zone\n",
                &Hint::default()
            )
            .is_none()
        );
    }

    #[test]
    fn json_fields_and_epochs() {
        let h = hint("2025-11-18T00:00:00+09:00");
        // Epoch millis in `time`, shown in the mtime's offset.
        let log =
            "{\"time\":1763362800123,\"msg\":\"a\"}\n{\"level\":\"info\",\"ts\":1763366400.5}\n";
        let b = whole(log, &h).unwrap();
        check(
            &b,
            "2025-11-17T16:00:00.123+09:00",
            "2025-11-17T17:00:00.5+09:00",
            "json",
        );
        assert_eq!(
            b.first.timestamp(),
            Timestamp::from_millisecond(1_763_362_800_123).unwrap()
        );

        let log = "{\"@timestamp\":\"2025-11-17T07:00:00.000Z\",\"message\":\"x\"}\n\
                   {\"timestamp\":\"17/Nov/2025:16:30:00 +0900\"}\n\
                   {\"time\":\"fast\",\"date\":\"1763366400\"}\n";
        let b = whole(log, &Hint::default()).unwrap();
        check(&b, "2025-11-17T07:00:00Z", "2025-11-17T08:00:00Z", "json");
        let b = whole(log.lines().nth(1).unwrap(), &Hint::default()).unwrap();
        assert_eq!(b.first.as_str(), "2025-11-17T16:30:00+09:00");

        // Durations are not times; a line without a usable field has none.
        assert!(whole("{\"time\":12}\n{\"ts\":null}\n", &Hint::default()).is_none());
    }

    #[test]
    fn journal_export() {
        let log = "{\"__REALTIME_TIMESTAMP\":\"1763362800123456\",\"MESSAGE\":\"a\"}\n\
                   {\"__REALTIME_TIMESTAMP\":\"1763366400000001\",\"MESSAGE\":\"b\"}\n";
        let b = whole(log, &Hint::default()).unwrap();
        check(
            &b,
            "2025-11-17T07:00:00.123456Z",
            "2025-11-17T08:00:00.000001Z",
            "journal",
        );
    }

    #[test]
    fn apache_error_audit_and_squid() {
        let h = hint("2025-11-18T00:00:00+01:00");
        let log = "[Mon Nov 17 16:00:00.123456 2025] [core:error] [pid 1] x\n\
                   [Mon Nov 17 16:30:00 2025] [error] old style\n";
        let b = whole(log, &h).unwrap();
        check(
            &b,
            "2025-11-17T16:00:00.123456+01:00",
            "2025-11-17T16:30:00+01:00",
            "ctime",
        );
        let log = "type=SYSCALL msg=audit(1763362800.123:42): arch=c000003e\n\
                   node=h type=USER_LOGIN msg=audit(1763366400.000:43): pid=1\n";
        let b = whole(log, &Hint::default()).unwrap();
        check(
            &b,
            "2025-11-17T07:00:00.123Z",
            "2025-11-17T08:00:00Z",
            "audit",
        );
        let log = "1763362800.123    42 10.0.0.1 TCP_MISS/200 1 GET http://x/ - DIRECT/1.2.3.4 text/html\n";
        let b = whole(log, &Hint::default()).unwrap();
        check(
            &b,
            "2025-11-17T07:00:00.123Z",
            "2025-11-17T07:00:00.123Z",
            "epoch",
        );
    }

    #[test]
    fn partial_lines_at_the_cuts_are_ignored() {
        let h = Hint::default();
        // The head's last line is cut: its stamp is not read, the line before is.
        let head = b"no stamp\n2025-11-17T16:00:00Z first\n2025-11-17T1";
        // The tail's first line is cut mid-stamp; 2025-11-17T18:... is the
        // last complete line with a stamp.
        let tail = b"7T20:00:00Z cut\n2025-11-17T18:00:00Z last\nstack trace line\n";
        let b = record_bounds(head, tail, false, &h).unwrap();
        check(
            &b,
            "2025-11-17T16:00:00Z",
            "2025-11-17T18:00:00Z",
            "rfc3339",
        );

        // The only stamp is on a partial line: none.
        let head = b"2025-11-17T16:00:00Z cut before its newline";
        assert!(record_bounds(head, b"x\n2025-11-17T16:00:00Z ok\n", false, &h).is_none());
        let tail = b"2025-11-17T18:00:00Z partial first line\nno stamp\n";
        assert!(record_bounds(b"2025-11-17T16:00:00Z ok\n", tail, false, &h).is_none());
        // ... unless the whole file is in the head.
        let b = record_bounds(head, b"", true, &h).unwrap();
        check(
            &b,
            "2025-11-17T16:00:00Z",
            "2025-11-17T16:00:00Z",
            "rfc3339",
        );
        // CRLF and a byte order mark.
        let b = whole(
            "\u{feff}2025-11-17T16:00:00Z a\r\n2025-11-17T16:00:01Z b\r\n",
            &h,
        )
        .unwrap();
        check(
            &b,
            "2025-11-17T16:00:00Z",
            "2025-11-17T16:00:01Z",
            "rfc3339",
        );
    }

    #[test]
    fn clock_going_backwards_and_mixed_formats_are_reported_as_read() {
        let h = hint("2025-11-18T00:00:00Z");
        let b = whole("2025-11-17T16:00:00Z a\n2025-11-17T15:00:00Z b\n", &h).unwrap();
        check(
            &b,
            "2025-11-17T16:00:00Z",
            "2025-11-17T15:00:00Z",
            "rfc3339",
        );
        let b = whole("2025-11-17T16:00:00Z a\nNov 17 17:00:00 host b\n", &h).unwrap();
        check(&b, "2025-11-17T16:00:00Z", "2025-11-17T17:00:00Z", "mixed");
    }

    #[test]
    fn work_is_bounded() {
        let h = Hint::default();
        // The first stamp after MAX_LINES lines is not looked for.
        let mut log = "junk\n".repeat(MAX_LINES);
        log.push_str("2025-11-17T16:00:00Z late\n");
        assert!(whole(&log, &h).is_none());
        let mut log = "junk\n".repeat(MAX_LINES - 1);
        log.push_str("2025-11-17T16:00:00Z in time\n");
        assert!(whole(&log, &h).is_some());
        // Nor after WINDOW bytes of the head.
        let mut head = vec![b'x'; WINDOW];
        head.extend_from_slice(b"\n2025-11-17T16:00:00Z beyond\n");
        assert!(record_bounds(&head, b"\n2025-11-17T16:00:00Z\n", false, &h).is_none());
        // A head longer than WINDOW is not whole.
        let mut head = b"2025-11-17T16:00:00Z a\n".to_vec();
        head.resize(WINDOW + 10, b'y');
        head.extend_from_slice(b"\n2025-11-17T17:00:00Z b\n");
        assert!(record_bounds(&head, b"", true, &h).is_none());
        let b = record_bounds(&head, &head, true, &h).unwrap();
        assert_eq!(b.last.as_str(), "2025-11-17T17:00:00Z");
        // One huge line.
        let huge = vec![b'['; 4 * WINDOW];
        assert!(record_bounds(&huge, &huge, false, &h).is_none());
        assert!(record_bounds(&huge, &huge, true, &h).is_none());
    }

    fn bounds(first: &str, last: &str) -> Bounds {
        Bounds {
            first: t(first),
            last: t(last),
            format: "clf",
        }
    }

    #[test]
    fn gap_between_rotated_files() {
        let old = bounds("2025-11-17T08:00:00Z", "2025-11-17T10:00:00Z");
        let new = bounds("2025-11-17T14:00:00Z", "2025-11-17T16:00:00Z");
        let items = [
            Item {
                name: "access.log",
                bounds: Some(&new),
            },
            Item {
                name: "access.log.1",
                bounds: Some(&old),
            },
        ];
        let c = coverage(&items, (None, None), SignedDuration::from_hours(1));
        assert_eq!(c.first.unwrap().as_str(), "2025-11-17T08:00:00Z");
        assert_eq!(c.last.unwrap().as_str(), "2025-11-17T16:00:00Z");
        assert_eq!(c.gaps.len(), 1);
        let g = &c.gaps[0];
        assert_eq!(
            (g.after.as_str(), g.before.as_str()),
            ("access.log.1", "access.log")
        );
        assert_eq!(g.from.as_str(), "2025-11-17T10:00:00Z");
        assert_eq!(g.until.as_str(), "2025-11-17T14:00:00Z");
        assert!(c.unknown.is_empty() && c.before_scope.is_none() && c.after_scope.is_none());

        // A hole of exactly min_gap or less is not a gap.
        let c = coverage(&items, (None, None), SignedDuration::from_hours(4));
        assert!(c.gaps.is_empty());
    }

    #[test]
    fn overlapping_items_and_who_reaches_furthest() {
        let long = bounds("2025-11-17T08:00:00Z", "2025-11-17T12:00:00Z");
        let short = bounds("2025-11-17T09:00:00Z", "2025-11-17T10:00:00Z");
        // Clock went backwards: taken from the earlier to the later.
        let back = bounds("2025-11-17T15:00:00Z", "2025-11-17T14:00:00Z");
        let items = [
            Item {
                name: "short",
                bounds: Some(&short),
            },
            Item {
                name: "long",
                bounds: Some(&long),
            },
            Item {
                name: "back",
                bounds: Some(&back),
            },
        ];
        let c = coverage(&items, (None, None), SignedDuration::from_mins(30));
        assert_eq!(c.gaps.len(), 1, "{c:?}");
        assert_eq!(
            (c.gaps[0].after.as_str(), c.gaps[0].before.as_str()),
            ("long", "back")
        );
        assert_eq!(c.gaps[0].from.as_str(), "2025-11-17T12:00:00Z");
        assert_eq!(c.gaps[0].until.as_str(), "2025-11-17T14:00:00Z");
        assert_eq!(c.last.unwrap().as_str(), "2025-11-17T15:00:00Z");
    }

    #[test]
    fn scope_not_reached_is_stated() {
        let b = bounds("2025-11-17T08:00:00Z", "2025-11-17T10:00:00Z");
        let items = [Item {
            name: "auth.log",
            bounds: Some(&b),
        }];
        let start = t("2025-11-17T00:00:00+09:00");
        let end = t("2025-11-17T12:00:00Z");
        let c = coverage(
            &items,
            (Some(&start), Some(&end)),
            SignedDuration::from_hours(1),
        );
        let (from, until) = c.before_scope.clone().unwrap();
        assert_eq!(
            (from.as_str(), until.as_str()),
            ("2025-11-17T00:00:00+09:00", "2025-11-17T08:00:00Z")
        );
        let (from, until) = c.after_scope.clone().unwrap();
        assert_eq!(
            (from.as_str(), until.as_str()),
            ("2025-11-17T10:00:00Z", "2025-11-17T12:00:00Z")
        );

        // A scope inside the records, or open, states nothing.
        let inner = (t("2025-11-17T09:00:00Z"), t("2025-11-17T09:30:00Z"));
        let c = coverage(
            &items,
            (Some(&inner.0), Some(&inner.1)),
            SignedDuration::ZERO,
        );
        assert!(c.before_scope.is_none() && c.after_scope.is_none());
        let c = coverage(&items, (None, None), SignedDuration::ZERO);
        assert!(c.before_scope.is_none() && c.after_scope.is_none());

        let json =
            serde_json::to_value(coverage(&items, (Some(&start), None), SignedDuration::ZERO))
                .unwrap();
        assert_eq!(
            json["before_scope"],
            serde_json::json!(["2025-11-17T00:00:00+09:00", "2025-11-17T08:00:00Z"])
        );
        assert_eq!(json["after_scope"], serde_json::Value::Null);
    }

    #[test]
    fn unknown_items_are_listed() {
        let b = bounds("2025-11-17T08:00:00Z", "2025-11-17T10:00:00Z");
        let items = [
            Item {
                name: "wtmp",
                bounds: None,
            },
            Item {
                name: "auth.log",
                bounds: Some(&b),
            },
            Item {
                name: "core.gz",
                bounds: None,
            },
        ];
        let c = coverage(&items, (None, None), SignedDuration::from_hours(1));
        assert_eq!(c.unknown, ["wtmp", "core.gz"]);
        assert_eq!(c.first.unwrap().as_str(), "2025-11-17T08:00:00Z");

        // Nothing known: nothing but the unknown is stated.
        let start = t("2025-11-17T00:00:00Z");
        let c = coverage(
            &items[..1],
            (Some(&start), Some(&start)),
            SignedDuration::ZERO,
        );
        assert_eq!(c.unknown, ["wtmp"]);
        assert!(c.first.is_none() && c.last.is_none() && c.gaps.is_empty());
        assert!(c.before_scope.is_none() && c.after_scope.is_none());
    }

    #[test]
    fn zone_of_recorded_times() {
        for (s, secs) in [
            ("2025-11-17T00:00:00+00:00", Some(0)),
            ("2025-11-17T00:00:00+09:00", Some(9 * 3600)),
            ("2025-11-17T00:00:00.5-03:30", Some(-(3 * 3600 + 1800))),
            ("2025-11-17T00:00:00Z", None),
        ] {
            let got = match zone_of(s) {
                Zone::Fixed(o) => Some(o.seconds()),
                _ => None,
            };
            assert_eq!(got, secs, "{s}");
        }
    }

    fn stamp_line() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("2025-11-17T16:00:00+09:00 a".to_owned()),
            Just("Dec 31 23:59:59 host x".to_owned()),
            Just("<34>1 2025-11-17T16:00:00Z h".to_owned()),
            Just("1.2.3.4 - - [17/Nov/2025:16:00:00 +0900] \"GET\"".to_owned()),
            Just("{\"ts\":1763362800123}".to_owned()),
            Just("{\"__REALTIME_TIMESTAMP\":\"1763362800123456\"}".to_owned()),
            Just("[Mon Nov 17 16:00:00 2025] x".to_owned()),
            "[ -~]{0,60}",
            "[0-9:TZ .,+/\\-\\[\\]{}\"]{0,40}",
        ]
    }

    proptest! {
        #[test]
        fn never_panics_on_random_bytes(
            head in proptest::collection::vec(any::<u8>(), 0..2048),
            tail in proptest::collection::vec(any::<u8>(), 0..2048),
            whole in any::<bool>(),
            secs in proptest::option::of(-62_000_000_000i64..250_000_000_000),
        ) {
            let hint = Hint { mtime: secs.map(Time::from_unix) };
            if let Some(b) = record_bounds(&head, &tail, whole, &hint) {
                prop_assert!(Time::parse(b.first.as_str()).is_ok());
                prop_assert!(Time::parse(b.last.as_str()).is_ok());
            }
        }

        #[test]
        fn never_panics_on_near_miss_lines(
            lines in proptest::collection::vec(stamp_line(), 0..30),
            cut in 0usize..64,
            whole in any::<bool>(),
        ) {
            let text = lines.join("\n");
            let b = text.as_bytes();
            let head = &b[..b.len().saturating_sub(cut)];
            let tail = &b[cut.min(b.len())..];
            let hint = hint("2026-01-02T09:00:00+01:00");
            let _ = record_bounds(head, tail, whole, &hint);
        }

        #[test]
        fn rfc3339_lines_give_their_first_and_last(
            stamps in proptest::collection::vec(1_000_000_000i64..4_000_000_000, 1..50),
            junk in 0usize..3,
        ) {
            let mut text = String::new();
            for s in &stamps {
                text.push_str(&format!("{} msg\n", Time::from_unix(*s)));
                for _ in 0..junk { text.push_str("  continuation\n"); }
            }
            let b = record_bounds(text.as_bytes(), b"", true, &Hint::default()).unwrap();
            prop_assert_eq!(b.first.timestamp().as_second(), stamps[0]);
            prop_assert_eq!(b.last.timestamp().as_second(), *stamps.last().unwrap());
        }
    }
}
