//! Timestamps in entries: RFC 3339 with an explicit UTC offset (FORMAT.md
//! §3 (times)). The writer records the host's local offset so a reader sees the
//! wall clock the collector saw; readers compare instants.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An instant with the UTC offset it was written in.
#[derive(Clone, PartialEq, Eq)]
pub struct Time {
    text: String,
    ts: jiff::Timestamp,
}

impl Time {
    /// Now, in the host's local offset.
    pub fn now() -> Self {
        Self::at(jiff::Timestamp::now())
    }

    /// `ts` in the host's local offset.
    pub fn at(ts: jiff::Timestamp) -> Self {
        let offset = jiff::tz::TimeZone::system().to_offset(ts);
        let text = ts.display_with_offset(offset).to_string();
        Self { text, ts }
    }

    /// Seconds since the Unix epoch, in UTC: for tests and fixed clocks.
    pub fn from_unix(secs: i64) -> Self {
        // Clamped: a certificate's 9999-12-31T23:59:59Z is past jiff's range.
        let ts = jiff::Timestamp::from_second(secs).unwrap_or(if secs < 0 {
            jiff::Timestamp::MIN
        } else {
            jiff::Timestamp::MAX
        });
        Self {
            text: ts.to_string(),
            ts,
        }
    }

    /// Parses RFC 3339 with an offset (`Z` or `±hh:mm`).
    ///
    /// # Errors
    /// A message naming what is wrong.
    pub fn parse(s: &str) -> Result<Self, String> {
        if !is_rfc3339_shape(s) {
            return Err(format!(
                "{s:?} is not an RFC 3339 time with offset (like 2026-11-27T21:14:00Z or 2026-11-27T22:14:00+01:00)"
            ));
        }
        let ts: jiff::Timestamp = s
            .parse()
            .map_err(|e| format!("{s:?} is not an RFC 3339 time with offset: {e}"))?;
        Ok(Self {
            text: s.to_owned(),
            ts,
        })
    }

    /// The instant.
    pub fn timestamp(&self) -> jiff::Timestamp {
        self.ts
    }

    /// The text as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM)`, the RFC 3339 profile
/// custody writes; jiff alone would also accept other ISO 8601 forms.
fn is_rfc3339_shape(s: &str) -> bool {
    let b = s.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|x| x.iter().all(u8::is_ascii_digit));
    let head = b.len() >= 20
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19);
    if !head {
        return false;
    }
    let mut i = 19;
    if b[i] == b'.' {
        let start = i + 1;
        i = start;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start || i - start > 9 {
            return false;
        }
    }
    match &b[i..] {
        [b'Z'] => true,
        [b'+' | b'-', h1, h2, b':', m1, m2] => [h1, h2, m1, m2].iter().all(|c| c.is_ascii_digit()),
        _ => false,
    }
}

impl fmt::Display for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Time({})", self.text)
    }
}

impl Serialize for Time {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Time {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn display_parse_round_trip(secs in -62_000_000_000i64..250_000_000_000, nanos in 0i32..1_000_000_000, off_min in -1080i32..=1080) {
            let ts = jiff::Timestamp::new(secs, nanos).unwrap();
            let offset = jiff::tz::Offset::from_seconds(off_min * 60).unwrap();
            let text = ts.display_with_offset(offset).to_string();
            let t = Time::parse(&text).unwrap();
            prop_assert_eq!(t.timestamp(), ts);
            let json = serde_json::to_string(&t).unwrap();
            prop_assert_eq!(serde_json::from_str::<Time>(&json).unwrap(), t);
        }

        #[test]
        fn parser_never_panics(s in ".{0,40}") {
            let _ = Time::parse(&s);
        }
    }

    #[test]
    fn keeps_offset_and_compares_instants() {
        let a = Time::parse("2026-11-28T18:00:00+01:00").unwrap();
        let b = Time::parse("2026-11-28T17:00:00Z").unwrap();
        assert_eq!(a.timestamp(), b.timestamp());
        assert_eq!(a.to_string(), "2026-11-28T18:00:00+01:00");
        assert!(Time::parse("2026-11-28T18:00:00").is_err(), "no offset");
        assert!(Time::parse("yesterday").is_err());
        for loose in [
            "2026-11-28 18:00:00Z",
            "2026-11-28T18:00:00-04",
            "2026-11-28T18:00:00Z[UTC]",
            "2026-11-28T18:00Z",
        ] {
            assert!(Time::parse(loose).is_err(), "{loose}");
        }
        assert!(Time::parse("2026-11-28T18:00:00.123456789-04:30").is_ok());
        assert!(Time::parse(Time::now().as_str()).is_ok());
        assert!(Time::now().timestamp() > b.timestamp());
    }
}
