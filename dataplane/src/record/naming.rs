//! File names of a recorder: `NAME-<UTC start time>-<seq>.pcap`, written
//! as `.NAME-<UTC start time>-<seq>.pcap.part` and copied across
//! filesystems as `.NAME-<UTC start time>-<seq>.pcap.migrating`.
//!
//! The time is the wall clock when the file was opened, in UTC with
//! nanoseconds (`20261122T101502.123456789Z`), and `seq` counts the files of
//! one run from 1 (at least six digits): names of one recorder sort
//! chronologically, and two files never share a name. Only names that match
//! this pattern exactly, with this recorder's name, are ever touched by
//! retention, migration or recovery: recorder `a` never matches `a-b`'s
//! files, because after `a-` must come eight digits.

use std::time::{SystemTime, UNIX_EPOCH};

use time::{Date, Month, OffsetDateTime};

/// Suffix of a completed file.
pub(crate) const FINAL_SUFFIX: &str = ".pcap";
/// Suffix of the file being written (after [`FINAL_SUFFIX`]).
pub(crate) const PART_SUFFIX: &str = ".part";
/// Suffix of a copy in progress to the bulk directory.
pub(crate) const MIGRATING_SUFFIX: &str = ".migrating";

/// Digits of the sequence number (more when it grows past them).
const SEQ_DIGITS: usize = 6;
const NS_PER_SEC: u64 = 1_000_000_000;
const SECS_PER_DAY: u64 = 86_400;
/// `YYYYMMDDTHHMMSS.nnnnnnnnnZ`.
const STAMP_LEN: usize = 26;

/// Where a file of a recorder sorts: its open time, then its sequence
/// number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct FileKey {
    pub unix_ns: u64,
    pub seq: u64,
}

/// What a directory entry is to a recorder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `NAME-<time>-<seq>.pcap`.
    Final,
    /// `.NAME-<time>-<seq>.pcap.part`.
    Part,
    /// `.NAME-<time>-<seq>.pcap.migrating`.
    Migrating,
}

/// Now, in nanoseconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn now_unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// `YYYYMMDDTHHMMSS.nnnnnnnnnZ` of a Unix time in nanoseconds.
pub(crate) fn utc_stamp(unix_ns: u64) -> String {
    // u64 nanoseconds end in 2554, well inside `time`'s range (year 9999).
    let t = OffsetDateTime::from_unix_timestamp_nanos(i128::from(unix_ns))
        .expect("a u64 of nanoseconds is a representable time");
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}.{:09}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.nanosecond()
    )
}

/// Days since 1970-01-01 of day `d` of month `mo` of year `y`. A day past
/// the month's end counts on into the next month (`20260231` is March 3rd),
/// as the stamps were always read.
fn days_since_epoch(y: i32, mo: u8, d: u8) -> Option<i64> {
    let first = Date::from_calendar_date(y, Month::try_from(mo).ok()?, 1).ok()?;
    let epoch = OffsetDateTime::UNIX_EPOCH.date();
    Some(i64::from(first.to_julian_day() - epoch.to_julian_day()) + i64::from(d) - 1)
}

fn digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// The Unix time of a `YYYYMMDDTHHMMSS.nnnnnnnnnZ` stamp.
pub(crate) fn parse_utc_stamp(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() != STAMP_LEN || b[8] != b'T' || b[15] != b'.' || b[25] != b'Z' {
        return None;
    }
    let y = digits(&s[0..4])?;
    let mo = u32::try_from(digits(&s[4..6])?).ok()?;
    let d = u32::try_from(digits(&s[6..8])?).ok()?;
    let h = digits(&s[9..11])?;
    let mi = digits(&s[11..13])?;
    let se = digits(&s[13..15])?;
    let ns = digits(&s[16..25])?;
    if !(1970..=9999).contains(&y)
        || !(1..=12).contains(&mo)
        || !(1..=31).contains(&d)
        || h > 23
        || mi > 59
        || se > 60
    {
        return None;
    }
    // y >= 1970 and a valid date: days >= 0.
    let days = u64::try_from(days_since_epoch(y as i32, mo as u8, d as u8)?).ok()?;
    let secs = days * SECS_PER_DAY + h * 3600 + mi * 60 + se;
    secs.checked_mul(NS_PER_SEC)?.checked_add(ns)
}

/// The completed name of a recorder's file.
pub(crate) fn final_name(recorder: &str, key: FileKey) -> String {
    format!(
        "{recorder}-{}-{:0width$}{FINAL_SUFFIX}",
        utc_stamp(key.unix_ns),
        key.seq,
        width = SEQ_DIGITS
    )
}

/// The name of the same file while it is written.
pub(crate) fn part_name(final_name: &str) -> String {
    format!(".{final_name}{PART_SUFFIX}")
}

/// The name of the same file while it is copied to the bulk directory.
pub(crate) fn migrating_name(final_name: &str) -> String {
    format!(".{final_name}{MIGRATING_SUFFIX}")
}

/// What `file_name` is to `recorder`, with its key; `None` for anything
/// else (other recorders' files, foreign files).
pub(crate) fn classify(recorder: &str, file_name: &str) -> Option<(Kind, FileKey)> {
    let (kind, core) = if let Some(rest) = file_name.strip_prefix('.') {
        if let Some(c) = rest.strip_suffix(PART_SUFFIX) {
            (Kind::Part, c)
        } else {
            (Kind::Migrating, rest.strip_suffix(MIGRATING_SUFFIX)?)
        }
    } else {
        (Kind::Final, file_name)
    };
    let core = core.strip_suffix(FINAL_SUFFIX)?;
    let core = core.strip_prefix(recorder)?.strip_prefix('-')?;
    let stamp = core.get(..STAMP_LEN)?;
    let seq = core.get(STAMP_LEN..)?.strip_prefix('-')?;
    if seq.len() < SEQ_DIGITS {
        return None;
    }
    let key = FileKey {
        unix_ns: parse_utc_stamp(stamp)?,
        seq: digits(seq)?,
    };
    Some((kind, key))
}

/// The completed name of a `.part` or `.migrating` name of `recorder`.
pub(crate) fn final_of(recorder: &str, file_name: &str) -> Option<String> {
    let (_, key) = classify(recorder, file_name)?;
    Some(final_name(recorder, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-11-22T10:15:02.123456789Z (`date -u -d ... +%s`: 1795342502).
    const T: u64 = 1_795_342_502_123_456_789;

    #[test]
    fn stamps_are_utc_and_round_trip() {
        assert_eq!(utc_stamp(T), "20261122T101502.123456789Z");
        assert_eq!(utc_stamp(0), "19700101T000000.000000000Z");
        // A leap day and the last nanosecond of a year.
        assert_eq!(
            utc_stamp(951_782_400 * NS_PER_SEC),
            "20000229T000000.000000000Z"
        );
        assert_eq!(
            utc_stamp(1_704_067_199 * NS_PER_SEC + 999_999_999),
            "20231231T235959.999999999Z"
        );
        for t in [
            0,
            T,
            951_782_400 * NS_PER_SEC,
            4_102_444_800 * NS_PER_SEC + 7,
        ] {
            assert_eq!(parse_utc_stamp(&utc_stamp(t)), Some(t), "{t}");
        }
        for bad in [
            "20261322T101502.123456789Z",
            "20261122T251502.123456789Z",
            "20261122 101502.123456789Z",
            "20261122T101502.123456789",
            "2026112xT101502.123456789Z",
            "+0261122T101502.123456789Z",
        ] {
            assert_eq!(parse_utc_stamp(bad), None, "{bad}");
        }
    }

    /// Stamps are read as they always were: a day past the month's end
    /// counts on into the next month and second 60 (a leap second) is the
    /// next minute's first; a stamp round-trips every day of four centuries
    /// (leap years and 2100 included).
    #[test]
    fn stamp_edge_cases_read_as_before() {
        let p = |s: &str| parse_utc_stamp(s).unwrap();
        assert_eq!(
            p("20260231T000000.000000000Z"),
            p("20260303T000000.000000000Z")
        );
        assert_eq!(
            p("20241231T235960.000000005Z"),
            p("20250101T000000.000000005Z")
        );
        let mut days = 0u64;
        while days < 146_097 {
            let t = days * SECS_PER_DAY * NS_PER_SEC + 86_399_999_999_999;
            assert_eq!(parse_utc_stamp(&utc_stamp(t)), Some(t), "{}", utc_stamp(t));
            days += 1;
        }
        assert_eq!(
            utc_stamp(4_107_542_400 * NS_PER_SEC),
            "21000301T000000.000000000Z"
        );
    }

    #[test]
    fn names_sort_chronologically_and_classify() {
        let k = FileKey { unix_ns: T, seq: 1 };
        let f = final_name("cap", k);
        assert_eq!(f, "cap-20261122T101502.123456789Z-000001.pcap");
        assert_eq!(classify("cap", &f), Some((Kind::Final, k)));
        let p = part_name(&f);
        assert_eq!(p, ".cap-20261122T101502.123456789Z-000001.pcap.part");
        assert_eq!(classify("cap", &p), Some((Kind::Part, k)));
        assert_eq!(final_of("cap", &p).as_deref(), Some(f.as_str()));
        let m = migrating_name(&f);
        assert_eq!(classify("cap", &m), Some((Kind::Migrating, k)));
        assert_eq!(final_of("cap", &m).as_deref(), Some(f.as_str()));

        let later = final_name(
            "cap",
            FileKey {
                unix_ns: T + 1,
                seq: 2,
            },
        );
        let much_later = final_name(
            "cap",
            FileKey {
                unix_ns: T + NS_PER_SEC,
                seq: 1_234_567,
            },
        );
        assert!(f < later && later < much_later);
        assert_eq!(classify("cap", &much_later).unwrap().1.seq, 1_234_567);
    }

    #[test]
    fn other_recorders_and_foreign_files_do_not_match() {
        let k = FileKey { unix_ns: T, seq: 3 };
        let other = final_name("cap-b", k);
        assert_eq!(classify("cap", &other), None);
        assert_eq!(classify("cap-b", &other).map(|c| c.0), Some(Kind::Final));
        for name in [
            "cap.pcap",
            "cap-20261122T101502.123456789Z.pcap",
            "cap-20261122T101502.123456789Z-01.pcap",
            "cap-20261122T101502.123456789Z-000001.pcapng",
            "cap-20261122T101502.123456789Z-000001.pcap.part",
            ".cap-20261122T101502.123456789Z-000001.pcap",
            ".cap-20261122T101502.123456789Z-000001.pcap.tmp",
            "xcap-20261122T101502.123456789Z-000001.pcap",
            "cap-20261122T101502.123456789Z-00000x.pcap",
            "",
        ] {
            assert_eq!(classify("cap", name), None, "{name}");
        }
    }
}
