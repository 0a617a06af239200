//! Well-known types whose JSON form pbjson-types gets wrong.
//!
//! pbjson-types encodes `google.protobuf.FieldMask` as `{"paths": [...]}`, which canonical
//! clients (`buf curl`, protobuf-es, Python's `json_format`) reject, and writes timestamps as
//! `…+00:00` where the mapping asks for `…Z`. The codegen maps both types here instead: the
//! same wire format, and the canonical JSON (`"displayName,email"`,
//! `"2026-01-02T03:04:05.123Z"`).

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, SecondsFormat, Utc};

/// `google.protobuf.Timestamp`: a point in time, with the canonical JSON mapping (RFC 3339,
/// UTC with `Z`, 0, 3, 6 or 9 fractional digits).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, ::prost::Message)]
pub struct Timestamp {
    /// Seconds since the Unix epoch.
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    /// Nanoseconds within the second, 0 to 999,999,999.
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

impl ::prost::Name for Timestamp {
    const NAME: &'static str = "Timestamp";
    const PACKAGE: &'static str = "google.protobuf";

    fn full_name() -> String {
        "google.protobuf.Timestamp".to_owned()
    }

    fn type_url() -> String {
        "type.googleapis.com/google.protobuf.Timestamp".to_owned()
    }
}

/// The smallest and largest instants the JSON mapping allows: 0001-01-01T00:00:00Z and
/// 9999-12-31T23:59:59.999999999Z.
const MIN_SECONDS: i64 = -62_135_596_800;
const MAX_SECONDS: i64 = 253_402_300_799;

impl Timestamp {
    fn to_datetime(self) -> Option<DateTime<Utc>> {
        if !(MIN_SECONDS..=MAX_SECONDS).contains(&self.seconds) {
            return None;
        }
        let nanos = u32::try_from(self.nanos)
            .ok()
            .filter(|n| *n < 1_000_000_000)?;
        DateTime::from_timestamp(self.seconds, nanos)
    }
}

impl From<SystemTime> for Timestamp {
    fn from(time: SystemTime) -> Self {
        let (seconds, nanos) = match time.duration_since(UNIX_EPOCH) {
            Ok(after) => (after.as_secs() as i64, after.subsec_nanos() as i32),
            Err(before) => {
                let before = before.duration();
                let mut seconds = -(before.as_secs() as i64);
                let mut nanos = before.subsec_nanos() as i32;
                if nanos > 0 {
                    seconds -= 1;
                    nanos = 1_000_000_000 - nanos;
                }
                (seconds, nanos)
            }
        };
        Self { seconds, nanos }
    }
}

impl From<DateTime<Utc>> for Timestamp {
    fn from(time: DateTime<Utc>) -> Self {
        Self {
            seconds: time.timestamp(),
            nanos: time.timestamp_subsec_nanos() as i32,
        }
    }
}

impl TryFrom<Timestamp> for SystemTime {
    type Error = TimestampError;

    fn try_from(ts: Timestamp) -> Result<Self, TimestampError> {
        let nanos = u32::try_from(ts.nanos)
            .ok()
            .filter(|n| *n < 1_000_000_000)
            .ok_or(TimestampError("timestamp nanos out of range"))?;
        let offset = Duration::new(ts.seconds.unsigned_abs(), 0);
        let whole = if ts.seconds >= 0 {
            UNIX_EPOCH.checked_add(offset)
        } else {
            UNIX_EPOCH.checked_sub(offset)
        };
        whole
            .and_then(|t| t.checked_add(Duration::from_nanos(u64::from(nanos))))
            .ok_or(TimestampError("timestamp out of range"))
    }
}

/// A timestamp outside what the type or the platform can represent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimestampError(&'static str);

impl fmt::Display for TimestampError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for TimestampError {}

impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let time = self.to_datetime().ok_or_else(|| {
            serde::ser::Error::custom("timestamp outside 0001-01-01 to 9999-12-31")
        })?;
        serializer.serialize_str(&time.to_rfc3339_opts(SecondsFormat::AutoSi, true))
    }
}

impl<'de> serde::Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Timestamp;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an RFC 3339 timestamp such as \"2026-01-02T03:04:05Z\"")
            }

            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Timestamp, E> {
                let time = DateTime::parse_from_rfc3339(s).map_err(E::custom)?;
                let ts = Timestamp::from(time.with_timezone(&Utc));
                ts.to_datetime()
                    .map(|_| ts)
                    .ok_or_else(|| E::custom("timestamp outside 0001-01-01 to 9999-12-31"))
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

/// `google.protobuf.FieldMask`: a set of field paths, with the canonical JSON mapping.
#[derive(Clone, PartialEq, Eq, Hash, ::prost::Message)]
pub struct FieldMask {
    /// The field paths, in proto (snake_case) form, for example `display_name`.
    #[prost(string, repeated, tag = "1")]
    pub paths: Vec<String>,
}

impl ::prost::Name for FieldMask {
    const NAME: &'static str = "FieldMask";
    const PACKAGE: &'static str = "google.protobuf";

    fn full_name() -> String {
        "google.protobuf.FieldMask".to_owned()
    }

    fn type_url() -> String {
        "type.googleapis.com/google.protobuf.FieldMask".to_owned()
    }
}

impl FieldMask {
    /// A mask of the given proto (snake_case) paths.
    pub fn new<I, S>(paths: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            paths: paths.into_iter().map(Into::into).collect(),
        }
    }

    /// Parses the canonical JSON form: lowerCamelCase paths separated by commas. The empty
    /// string is the empty mask.
    pub fn from_json_str(s: &str) -> Result<Self, FieldMaskError> {
        if s.is_empty() {
            return Ok(Self::default());
        }
        s.split(',')
            .map(camel_to_snake)
            .collect::<Result<Vec<_>, _>>()
            .map(|paths| Self { paths })
    }

    /// The canonical JSON form, or an error for a path with no lowerCamelCase spelling.
    pub fn to_json_string(&self) -> Result<String, FieldMaskError> {
        let paths = self
            .paths
            .iter()
            .map(|p| snake_to_camel(p))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(paths.join(","))
    }
}

/// A field mask path that has no canonical JSON spelling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldMaskError(String);

impl fmt::Display for FieldMaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FieldMaskError {}

/// `displayName` → `display_name`; `foo.barBaz` → `foo.bar_baz`. Underscores and empty
/// segments have no place in the JSON form and are rejected, as protobuf's own parsers do.
fn camel_to_snake(path: &str) -> Result<String, FieldMaskError> {
    if path.is_empty() || path.split('.').any(str::is_empty) {
        return Err(FieldMaskError(format!("empty field mask path in {path:?}")));
    }
    let mut out = String::with_capacity(path.len() + 4);
    for c in path.chars() {
        if c == '_' {
            return Err(FieldMaskError(format!(
                "field mask path {path:?} must be lowerCamelCase, without underscores"
            )));
        }
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

/// `display_name` → `displayName`. A path with an upper-case letter, or an underscore not
/// followed by a lower-case letter, would not survive the round trip and is rejected; so is
/// one that would read back as something else (empty, with an empty segment, or a comma).
fn snake_to_camel(path: &str) -> Result<String, FieldMaskError> {
    if path.is_empty() || path.split('.').any(str::is_empty) || path.contains(',') {
        return Err(FieldMaskError(format!(
            "field mask path {path:?} is empty, has an empty segment or a comma"
        )));
    }
    let mut out = String::with_capacity(path.len());
    let mut chars = path.chars();
    while let Some(c) = chars.next() {
        match c {
            '_' => match chars.next() {
                Some(next) if next.is_ascii_lowercase() => out.push(next.to_ascii_uppercase()),
                _ => {
                    return Err(FieldMaskError(format!(
                        "field mask path {path:?} has no lowerCamelCase form"
                    )));
                }
            },
            c if c.is_ascii_uppercase() => {
                return Err(FieldMaskError(format!(
                    "field mask path {path:?} must be snake_case"
                )));
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

impl serde::Serialize for FieldMask {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let s = self.to_json_string().map_err(serde::ser::Error::custom)?;
        serializer.serialize_str(&s)
    }
}

impl<'de> serde::Deserialize<'de> for FieldMask {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = FieldMask;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a comma-separated string of lowerCamelCase field paths")
            }

            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<FieldMask, E> {
                FieldMask::from_json_str(s).map_err(E::custom)
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_json_is_utc_with_z_and_round_trips() {
        let ts = Timestamp {
            seconds: 1_700_000_000,
            nanos: 123_000_000,
        };
        let json = serde_json::to_string(&ts).unwrap();
        assert_eq!(json, r#""2023-11-14T22:13:20.123Z""#);
        assert_eq!(serde_json::from_str::<Timestamp>(&json).unwrap(), ts);
        let whole = Timestamp {
            seconds: 0,
            nanos: 0,
        };
        assert_eq!(
            serde_json::to_string(&whole).unwrap(),
            r#""1970-01-01T00:00:00Z""#
        );
    }

    #[test]
    fn timestamp_accepts_offsets_and_rejects_garbage() {
        let ts: Timestamp = serde_json::from_str(r#""1970-01-01T01:00:01+01:00""#).unwrap();
        assert_eq!((ts.seconds, ts.nanos), (1, 0));
        assert!(serde_json::from_str::<Timestamp>(r#""yesterday""#).is_err());
        assert!(serde_json::from_str::<Timestamp>("12").is_err());
        let out_of_range = Timestamp {
            seconds: MAX_SECONDS + 1,
            nanos: 0,
        };
        assert!(serde_json::to_string(&out_of_range).is_err());
    }

    #[test]
    fn timestamp_converts_from_and_to_system_time() {
        let before_epoch = UNIX_EPOCH - Duration::from_millis(1500);
        let ts = Timestamp::from(before_epoch);
        assert_eq!((ts.seconds, ts.nanos), (-2, 500_000_000));
        assert_eq!(SystemTime::try_from(ts).unwrap(), before_epoch);
    }

    #[test]
    fn json_form_is_a_comma_separated_camel_case_string() {
        let mask = FieldMask::new(["display_name", "user.create_time"]);
        let json = serde_json::to_string(&mask).unwrap();
        assert_eq!(json, r#""displayName,user.createTime""#);
        let back: FieldMask = serde_json::from_str(&json).unwrap();
        assert_eq!(back, mask);
    }

    #[test]
    fn empty_string_is_the_empty_mask() {
        let mask: FieldMask = serde_json::from_str(r#""""#).unwrap();
        assert!(mask.paths.is_empty());
        assert_eq!(serde_json::to_string(&mask).unwrap(), r#""""#);
    }

    #[test]
    fn object_form_and_non_canonical_paths_are_rejected() {
        assert!(serde_json::from_str::<FieldMask>(r#"{"paths":["a"]}"#).is_err());
        assert!(serde_json::from_str::<FieldMask>(r#""display_name""#).is_err());
        assert!(serde_json::from_str::<FieldMask>(r#""a,,b""#).is_err());
        assert!(serde_json::to_string(&FieldMask::new(["Bad"])).is_err());
        assert!(serde_json::to_string(&FieldMask::new(["a__b"])).is_err());
    }

    #[test]
    fn paths_that_would_read_back_differently_are_not_written() {
        for path in ["", "a,b", "a..b", ".a", "a."] {
            assert!(
                FieldMask::new([path]).to_json_string().is_err(),
                "{path:?} was written"
            );
        }
        assert!(FieldMask::new(["a", ""]).to_json_string().is_err());
    }
}
