//! Delivery rules as small pure functions: what an HTTP status means for a batch, how long to
//! wait before the next attempt, and what a `Retry-After` header asks for. The tag's queue
//! applies them; nothing here reads a clock or a random source.

/// What to do with a batch after the collector answered (or did not).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Disposition {
    /// The collector has it: remove it from the queue.
    Delivered,
    /// Try again later: the network, the collector or a proxy failed, or asked us to wait.
    Retry,
    /// Sending it again will not help: remove it and report why.
    Drop(&'static str),
}

/// The disposition of an HTTP status; `0` is a network error (no answer at all).
pub fn disposition(status: u16) -> Disposition {
    match status {
        200..=299 => Disposition::Delivered,
        // Timeouts and rate limits are the collector asking for patience, not refusing.
        408 | 429 => Disposition::Retry,
        400..=499 => Disposition::Drop(match status {
            400 => crate::debug_text!("rejected by the collector (400 Bad Request)"),
            401 => crate::debug_text!("rejected by the collector (401 Unauthorized): check the site's write key"),
            403 => crate::debug_text!("rejected by the collector (403 Forbidden): check the site's allowed origins"),
            404 => crate::debug_text!("collector endpoint not found (404): check the collector URL"),
            410 => crate::debug_text!("collector endpoint gone (410)"),
            413 => crate::debug_text!("batch too large for the collector (413)"),
            415 => crate::debug_text!("content type refused by the collector (415)"),
            422 => crate::debug_text!("events refused by the collector (422)"),
            _ => crate::debug_text!("rejected by the collector (4xx)"),
        }),
        // Network errors, 5xx, and the 1xx/3xx a fetch should never end with (a captive portal
        // or a misbehaving proxy) are all worth another attempt later.
        _ => Disposition::Retry,
    }
}

/// The first retry waits about this long, in milliseconds.
pub const BASE_MS: u64 = 1_000;

/// No backoff waits longer than this, in milliseconds.
pub const CAP_MS: u64 = 5 * 60_000;

/// No delay, even one a `Retry-After` asks for, is longer than a day, in milliseconds.
pub const MAX_DELAY_MS: u64 = 86_400_000;

/// The delay before retry number `attempt` (0 for the first retry), in milliseconds:
/// exponential from [`BASE_MS`], capped at [`CAP_MS`], with "equal jitter" (half the delay, plus
/// the other half scaled by the uniformly random `jitter`), so tabs and visitors that failed
/// together do not all come back at once when the collector recovers.
pub fn backoff(attempt: u32, jitter: u32) -> u64 {
    // BASE_MS << 31 still fits a u64; any attempt past that is far over the cap anyway.
    let delay = if attempt < 32 {
        (BASE_MS << attempt).min(CAP_MS)
    } else {
        CAP_MS
    };
    let half = delay / 2;
    // half < 2^18 and jitter < 2^32, so the product cannot overflow.
    delay - half + ((half * u64::from(jitter)) >> 32)
}

/// The delay in milliseconds a `Retry-After` header value asks for, at `now` (milliseconds since
/// the Unix epoch): delta-seconds (`120`) or an IMF-fixdate (`Wed, 21 Oct 2015 07:28:00 GMT`,
/// `0` once past). At most [`MAX_DELAY_MS`]; `None` for anything else.
pub fn parse_retry_after(value: &str, now: u64) -> Option<u64> {
    let blank = |b: &u8| *b == b' ' || *b == b'\t';
    let b = value.as_bytes();
    let start = b.iter().position(|b| !blank(b)).unwrap_or(b.len());
    let end = b.iter().rposition(|b| !blank(b)).map_or(start, |i| i + 1);
    let value = value.get(start..end).unwrap_or("");
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Saturating: a delay too large to count is simply "a long time", i.e. the cap.
        let secs = value
            .bytes()
            .fold(0u64, |n, b| n.saturating_mul(10).saturating_add(u64::from(b - b'0')));
        return Some(secs.saturating_mul(1_000).min(MAX_DELAY_MS));
    }
    let at = http_date_ms(value)?;
    // A date before the epoch is in the past whatever `now` is.
    let at = u64::try_from(at).unwrap_or(0);
    Some(at.saturating_sub(now).min(MAX_DELAY_MS))
}

/// The time of an IMF-fixdate, in milliseconds since the Unix epoch (negative before it).
fn http_date_ms(s: &str) -> Option<i64> {
    const DAYS: [&[u8]; 7] = [b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat", b"Sun"];
    const MONTHS: [&[u8]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
    ];
    let b = s.as_bytes();
    // "Wed, 21 Oct 2015 07:28:00 GMT": fixed positions, so every field is a fixed slice.
    if b.len() != 29 || b.get(3..5) != Some(b", ") || b.get(25..) != Some(b" GMT") {
        return None;
    }
    let sep = |i: usize, c: u8| b.get(i) == Some(&c);
    if !(sep(7, b' ') && sep(11, b' ') && sep(16, b' ') && sep(19, b':') && sep(22, b':')) {
        return None;
    }
    let num = |from: usize, len: usize| -> Option<i64> {
        let digits = b.get(from..from + len)?;
        digits
            .iter()
            .try_fold(0i64, |n, &d| d.is_ascii_digit().then(|| n * 10 + i64::from(d - b'0')))
    };
    if !DAYS.contains(&b.get(0..3)?) {
        return None;
    }
    let month = MONTHS.iter().position(|m| Some(*m) == b.get(8..11))? as i64 + 1;
    let (day, year) = (num(5, 2)?, num(12, 4)?);
    let (hour, min, sec) = (num(17, 2)?, num(20, 2)?, num(23, 2)?);
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    // A leap second (60) is allowed by the grammar; it lands on the next minute's first second.
    if day < 1 || day > month_days || hour > 23 || min > 59 || sec > 60 {
        return None;
    }
    let secs = days_from_civil(year, month, day) * 86_400 + hour * 3_600 + min * 60 + sec;
    Some(secs * 1_000)
}

/// Days from 1970-01-01 to the given proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The delay before the next attempt: the larger of the [`backoff`] and what `Retry-After`
/// asked for, at most [`MAX_DELAY_MS`].
pub fn next_delay(attempt: u32, jitter: u32, retry_after: Option<u64>) -> u64 {
    backoff(attempt, jitter).max(retry_after.unwrap_or(0)).min(MAX_DELAY_MS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dispositions() {
        use Disposition::*;
        let cases: &[(u16, Disposition)] = &[
            (0, Retry),
            (100, Retry),
            (199, Retry),
            (200, Delivered),
            (202, Delivered),
            (204, Delivered),
            (299, Delivered),
            (301, Retry),
            (304, Retry),
            (399, Retry),
            (400, Drop("rejected by the collector (400 Bad Request)")),
            (
                401,
                Drop("rejected by the collector (401 Unauthorized): check the site's write key"),
            ),
            (
                403,
                Drop("rejected by the collector (403 Forbidden): check the site's allowed origins"),
            ),
            (404, Drop("collector endpoint not found (404): check the collector URL")),
            (405, Drop("rejected by the collector (4xx)")),
            (408, Retry),
            (410, Drop("collector endpoint gone (410)")),
            (413, Drop("batch too large for the collector (413)")),
            (415, Drop("content type refused by the collector (415)")),
            (422, Drop("events refused by the collector (422)")),
            (429, Retry),
            (451, Drop("rejected by the collector (4xx)")),
            (499, Drop("rejected by the collector (4xx)")),
            (500, Retry),
            (502, Retry),
            (503, Retry),
            (504, Retry),
            (599, Retry),
            (600, Retry),
            (u16::MAX, Retry),
        ];
        for &(status, want) in cases {
            assert_eq!(disposition(status), want, "{status}");
        }
    }

    #[test]
    fn backoff_grows_then_caps() {
        // (attempt, jitter, delay): half the delay is fixed, the other half scales with jitter.
        let cases: &[(u32, u32, u64)] = &[
            (0, 0, 500),
            (0, u32::MAX, 999),
            (0, 1 << 31, 750),
            (1, 0, 1_000),
            (1, u32::MAX, 1_999),
            (2, 0, 2_000),
            (5, 0, 16_000),
            (8, 0, 128_000),
            (8, u32::MAX, 255_999),
            (9, 0, 150_000),
            (9, u32::MAX, 299_999),
            (31, 0, 150_000),
            (32, 0, 150_000),
            (64, u32::MAX, 299_999),
            (u32::MAX, u32::MAX, 299_999),
        ];
        for &(attempt, jitter, want) in cases {
            assert_eq!(backoff(attempt, jitter), want, "attempt {attempt}, jitter {jitter}");
        }
        let mut previous = 0;
        for attempt in 0..=40 {
            let (low, high) = (backoff(attempt, 0), backoff(attempt, u32::MAX));
            assert!(low <= high && high < CAP_MS && low >= BASE_MS / 2, "attempt {attempt}");
            assert!(low >= previous, "attempt {attempt} waits no less than the one before");
            previous = low;
        }
    }

    #[test]
    fn parses_retry_after() {
        let date_ms = 1_445_412_480_000; // Wed, 21 Oct 2015 07:28:00 GMT
        let cases: &[(&str, u64, Option<u64>)] = &[
            ("120", 0, Some(120_000)),
            ("0", 0, Some(0)),
            (" 5\t", 0, Some(5_000)),
            ("007", 0, Some(7_000)),
            ("86400", 0, Some(MAX_DELAY_MS)),
            ("86401", 0, Some(MAX_DELAY_MS)),
            ("99999999999999999999999999999", 0, Some(MAX_DELAY_MS)),
            ("18446744073709551616", 0, Some(MAX_DELAY_MS)),
            ("-1", 0, None),
            ("-120", 0, None),
            ("+5", 0, None),
            ("1.5", 0, None),
            ("1e3", 0, None),
            ("12 s", 0, None),
            ("", 0, None),
            ("   ", 0, None),
            ("soon", 0, None),
            ("<script>alert(1)</script>", 0, None),
            ("١٢", 0, None),
            ("Wed, 21 Oct 2015 07:28:00 GMT", date_ms - 60_000, Some(60_000)),
            ("Wed, 21 Oct 2015 07:28:00 GMT", date_ms, Some(0)),
            ("Wed, 21 Oct 2015 07:28:00 GMT", date_ms + 1, Some(0)),
            ("Wed, 21 Oct 2015 07:28:00 GMT", 0, Some(MAX_DELAY_MS)),
            (" Wed, 21 Oct 2015 07:28:00 GMT ", date_ms - 1_000, Some(1_000)),
            ("Thu, 01 Jan 1970 00:00:00 GMT", 0, Some(0)),
            ("Wed, 31 Dec 1969 23:59:59 GMT", 0, Some(0)),
            ("Mon, 01 Jan 0001 00:00:00 GMT", 5, Some(0)),
            ("Fri, 31 Dec 9999 23:59:59 GMT", u64::MAX, Some(0)),
            ("Wed, 21 Oct 2015 07:28:00 UTC", 0, None),
            ("Wed, 21 Oct 2015 07:28 GMT", 0, None),
            ("wed, 21 oct 2015 07:28:00 GMT", 0, None),
            ("Xyz, 21 Oct 2015 07:28:00 GMT", 0, None),
            ("Wed, 21 Foo 2015 07:28:00 GMT", 0, None),
            ("Wed, 32 Oct 2015 07:28:00 GMT", 0, None),
            ("Wed, 00 Oct 2015 07:28:00 GMT", 0, None),
            ("Wed, 29 Feb 2015 07:28:00 GMT", 0, None),
            ("Wed, 31 Apr 2015 07:28:00 GMT", 0, None),
            ("Wed, 21 Oct 2015 24:00:00 GMT", 0, None),
            ("Wed, 21 Oct 2015 07:60:00 GMT", 0, None),
            ("Wed, 21 Oct 2015 07:28:61 GMT", 0, None),
            ("Wed, 21 Oct -015 07:28:00 GMT", 0, None),
            ("Wed, 2x Oct 2015 07:28:00 GMT", 0, None),
            ("Wed; 21 Oct 2015 07:28:00 GMT", 0, None),
            ("Wed, 21-Oct-2015 07:28:00 GMT", 0, None),
            ("Wednesday, 21-Oct-15 07:28:00 GMT", 0, None),
            ("Wed Oct 21 07:28:00 2015", 0, None),
            ("Wed, 21 Oct 2015 07:28:00 GMT\u{e9}", 0, None),
            ("Wed, 21 Oct 2015 07:28:\u{e9} GMT", 0, None),
        ];
        for &(value, now, want) in cases {
            assert_eq!(parse_retry_after(value, now), want, "{value:?} at {now}");
        }
    }

    #[test]
    fn http_dates_match_the_calendar() {
        // Seconds since the epoch, checked against Python's calendar.timegm.
        let cases: &[(&str, i64)] = &[
            ("Thu, 01 Jan 1970 00:00:00 GMT", 0),
            ("Sun, 06 Nov 1994 08:49:37 GMT", 784_111_777),
            ("Wed, 21 Oct 2015 07:28:00 GMT", 1_445_412_480),
            ("Thu, 29 Feb 2024 12:00:00 GMT", 1_709_208_000),
            ("Mon, 01 Mar 2100 00:00:00 GMT", 4_107_542_400),
            ("Fri, 31 Dec 9999 23:59:59 GMT", 253_402_300_799),
            ("Wed, 31 Dec 1969 23:59:59 GMT", -1),
            ("Tue, 29 Feb 2000 00:00:00 GMT", 951_782_400),
        ];
        for &(date, secs) in cases {
            assert_eq!(http_date_ms(date), Some(secs * 1_000), "{date}");
        }
        assert_eq!(
            http_date_ms("Mon, 29 Feb 2100 00:00:00 GMT"),
            None,
            "2100 is not a leap year"
        );
    }

    #[test]
    fn next_delay_takes_the_longer_wait() {
        let cases: &[(u32, u32, Option<u64>, u64)] = &[
            (0, 0, None, 500),
            (0, 0, Some(0), 500),
            (0, 0, Some(120_000), 120_000),
            (9, 0, Some(1_000), 150_000),
            (40, u32::MAX, None, 299_999),
            (0, 0, Some(MAX_DELAY_MS), MAX_DELAY_MS),
            (0, 0, Some(u64::MAX), MAX_DELAY_MS),
        ];
        for &(attempt, jitter, retry_after, want) in cases {
            assert_eq!(
                next_delay(attempt, jitter, retry_after),
                want,
                "{attempt} {jitter} {retry_after:?}"
            );
        }
    }
}
