//! The merchant's report, by partner: clicks, conversions, gross, adjustments and net per
//! currency, a row per partner (and one for no partner), totals, and the same per day. Pure:
//! the date range is read from its parameters, and the clicks and conversions are given
//! (already attributed and settled by the read API's code), so the rules are tested as tables.
//! Money is added with [`Money`], never floats.
//!
//! Days are calendar days at a fixed offset from UTC (`offset` minutes east, 0 by default): a
//! day is 24 hours from local midnight, with no daylight-saving changes inside the range.

use serde::Serialize;
use time::{Date, Month};

use crate::money::Money;

/// One day in ms.
pub const DAY_MS: u64 = 86_400_000;

/// The longest range, in days.
pub const MAX_DAYS: i32 = 366;

/// The default range: this many days up to today.
pub const DEFAULT_DAYS: i32 = 30;

/// The largest offset from UTC, in minutes (UTC-14:00 to UTC+14:00, as time zones are).
pub const MAX_OFFSET_MINUTES: i32 = 14 * 60;

/// The Julian day number of 1970-01-01.
const UNIX_EPOCH_JULIAN: i32 = 2_440_588;

/// A range of whole days at a fixed offset from UTC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Range {
    /// The first day.
    pub first: Date,
    /// How many days (1 to [`MAX_DAYS`]).
    pub days: i32,
    /// Minutes east of UTC.
    pub offset_minutes: i32,
}

/// Why a range parameter was refused: the parameter and the reason.
pub type Refused = (&'static str, String);

fn day(field: &'static str, text: &str) -> Result<Date, Refused> {
    let bad = || (field, "must be a day as YYYY-MM-DD".to_string());
    let b = text.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return Err(bad());
    }
    let num = |s: &str| -> Result<u16, Refused> {
        if s.bytes().all(|c| c.is_ascii_digit()) {
            s.parse().map_err(|_| bad())
        } else {
            Err(bad())
        }
    };
    let (y, m, d) = (num(&text[..4])?, num(&text[5..7])?, num(&text[8..])?);
    let month = Month::try_from(u8::try_from(m).map_err(|_| bad())?).map_err(|_| bad())?;
    let date = Date::from_calendar_date(i32::from(y), month, u8::try_from(d).map_err(|_| bad())?)
        .map_err(|_| (field, format!("{text} is not a day of the calendar")))?;
    if !(1971..=9998).contains(&y) {
        return Err((field, "must be a day of the years 1971 to 9998".to_string()));
    }
    Ok(date)
}

impl Range {
    /// Reads `from` and `to` (days, both included, `YYYY-MM-DD`) and `offset` (minutes east of
    /// UTC). Without `to` it is today at that offset (by `now`, ms); without `from`, the
    /// [`DEFAULT_DAYS`] days up to `to`.
    pub fn parse(from: Option<&str>, to: Option<&str>, offset: Option<&str>, now: u64) -> Result<Range, Refused> {
        let offset_minutes = match offset {
            None => 0,
            Some(t) => t.parse::<i32>().ok().filter(|m| m.abs() <= MAX_OFFSET_MINUTES).ok_or((
                "offset",
                format!("must be minutes east of UTC, -{MAX_OFFSET_MINUTES} to {MAX_OFFSET_MINUTES}"),
            ))?,
        };
        let last = match to {
            Some(t) => day("to", t)?,
            None => {
                let local = now as i64 + i64::from(offset_minutes) * 60_000;
                let julian = local.div_euclid(DAY_MS as i64) + i64::from(UNIX_EPOCH_JULIAN);
                Date::from_julian_day(julian as i32).map_err(|_| ("to", "today is out of range".to_string()))?
            }
        };
        let first = match from {
            Some(f) => day("from", f)?,
            None => Date::from_julian_day(last.to_julian_day() - (DEFAULT_DAYS - 1))
                .map_err(|_| ("from", "out of range".to_string()))?,
        };
        let days = last.to_julian_day() - first.to_julian_day() + 1;
        if days < 1 {
            return Err(("to", "must not be before from".to_string()));
        }
        if days > MAX_DAYS {
            return Err(("from", format!("the range must be at most {MAX_DAYS} days")));
        }
        Ok(Range {
            first,
            days,
            offset_minutes,
        })
    }

    /// The first moment of day `i` of the range (ms).
    fn start_of(&self, i: i32) -> u64 {
        let julian = i64::from(self.first.to_julian_day() + i - UNIX_EPOCH_JULIAN);
        // The years are bounded by `parse`, so this is positive.
        (julian * DAY_MS as i64 - i64::from(self.offset_minutes) * 60_000) as u64
    }

    /// The range's first moment (ms, included).
    pub fn from_ms(&self) -> u64 {
        self.start_of(0)
    }

    /// The moment after its last day (ms, excluded).
    pub fn to_ms(&self) -> u64 {
        self.start_of(self.days)
    }

    /// Which day of the range `at` (ms) falls on, if any.
    pub fn day_of(&self, at: u64) -> Option<usize> {
        (at >= self.from_ms() && at < self.to_ms()).then(|| ((at - self.from_ms()) / DAY_MS) as usize)
    }

    /// Day `i` as `YYYY-MM-DD`.
    pub fn label(&self, i: i32) -> String {
        label(Date::from_julian_day(self.first.to_julian_day() + i).unwrap_or(self.first))
    }
}

fn label(d: Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

/// The partner a click or conversion is credited to: its ID (`None`: no partner) and display
/// name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Credited {
    /// The partner's ID.
    pub id: Option<String>,
    /// Its display name, if configured.
    pub name: Option<String>,
}

/// A click that landed in the range.
#[derive(Clone, Debug)]
pub struct Click {
    /// When (ms).
    pub at: u64,
    /// The partner its landing names.
    pub partner: Credited,
}

/// A conversion of the range, attributed and settled.
#[derive(Clone, Debug)]
pub struct Sale {
    /// When (ms).
    pub at: u64,
    /// The partner credited.
    pub partner: Credited,
    /// Its currency, if it has an amount.
    pub currency: Option<String>,
    /// The amount before adjustments.
    pub gross: Money,
    /// What its adjustments changed (negative for refunds).
    pub adjustments: Money,
    /// Gross plus adjustments.
    pub net: Money,
}

/// Money of one currency.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Amounts {
    /// The currency (`null` for conversions without an amount).
    pub currency: Option<String>,
    /// Conversions in that currency.
    pub conversions: u64,
    /// Their gross amount.
    pub gross: String,
    /// Their adjustments.
    pub adjustments: String,
    /// Their net amount.
    pub net: String,
}

/// Counts and money: a partner's row, the totals, or a partner's day.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    /// The partner's ID (`null`: no partner, or the totals).
    pub partner: Option<String>,
    /// Its display name.
    pub partner_name: Option<String>,
    /// Clicks that landed.
    pub clicks: u64,
    /// Conversions credited.
    pub conversions: u64,
    /// Per currency, by currency code (`null` last).
    pub money: Vec<Amounts>,
}

/// One partner's day.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Point {
    /// `YYYY-MM-DD`.
    pub day: String,
    /// The row of that partner and day.
    #[serde(flatten)]
    pub row: Row,
}

/// The report of a range.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// The first day, `YYYY-MM-DD`.
    pub from: String,
    /// The last day, included.
    pub to: String,
    /// Minutes east of UTC the days are counted at.
    pub offset_minutes: i32,
    /// The range's first moment (ms).
    pub from_ms: u64,
    /// The moment after its last day (ms).
    pub to_ms: u64,
    /// Every day of the range, `YYYY-MM-DD`.
    pub days: Vec<String>,
    /// A row per partner with a click or a conversion: most conversions first, then most
    /// clicks, then by ID; the row of no partner last.
    pub partners: Vec<Row>,
    /// All partners' sums (`partner` is `null`).
    pub totals: Row,
    /// A point per day and partner that had a click or a conversion that day: by day, then
    /// in the order of `partners`.
    pub series: Vec<Point>,
}

/// A row being summed.
#[derive(Default)]
struct Sum {
    name: Option<String>,
    clicks: u64,
    // currency → (conversions, gross, adjustments, net)
    money: Vec<(Option<String>, u64, Money, Money, Money)>,
}

impl Sum {
    fn name(&mut self, c: &Credited) {
        if self.name.is_none() {
            self.name.clone_from(&c.name);
        }
    }

    fn sale(&mut self, s: &Sale) {
        match self.money.iter_mut().find(|m| m.0 == s.currency) {
            Some(m) => {
                m.1 += 1;
                m.2 = m.2.plus(s.gross);
                m.3 = m.3.plus(s.adjustments);
                m.4 = m.4.plus(s.net);
            }
            None => self.money.push((s.currency.clone(), 1, s.gross, s.adjustments, s.net)),
        }
    }

    fn conversions(&self) -> u64 {
        self.money.iter().map(|m| m.1).sum()
    }

    fn row(mut self, partner: Option<String>) -> Row {
        // By currency code, conversions without one last.
        self.money
            .sort_by(|a, b| (a.0.is_none(), &a.0).cmp(&(b.0.is_none(), &b.0)));
        Row {
            partner,
            partner_name: self.name,
            clicks: self.clicks,
            conversions: self.money.iter().map(|m| m.1).sum(),
            money: self
                .money
                .into_iter()
                .map(|(currency, conversions, gross, adjustments, net)| Amounts {
                    currency,
                    conversions,
                    gross: gross.text(),
                    adjustments: adjustments.text(),
                    net: net.text(),
                })
                .collect(),
        }
    }
}

/// Sums keyed by partner ID, in first-seen order (few partners: a list is enough).
#[derive(Default)]
struct Sums(Vec<(Option<String>, Sum)>);

impl Sums {
    fn get(&mut self, id: &Option<String>) -> &mut Sum {
        let i = match self.0.iter().position(|(k, _)| k == id) {
            Some(i) => i,
            None => {
                self.0.push((id.clone(), Sum::default()));
                self.0.len() - 1
            }
        };
        &mut self.0[i].1
    }
}

/// The report of `range` over the clicks and conversions given; those outside the range are
/// left out.
pub fn build(range: &Range, clicks: &[Click], sales: &[Sale]) -> Report {
    let days = range.days as usize;
    let mut partners = Sums::default();
    let mut totals = Sum::default();
    let mut per_day: Vec<Sums> = (0..days).map(|_| Sums::default()).collect();
    for c in clicks {
        let Some(d) = range.day_of(c.at) else { continue };
        partners.get(&c.partner.id).name(&c.partner);
        for sum in [partners.get(&c.partner.id), per_day[d].get(&c.partner.id), &mut totals] {
            sum.clicks += 1;
        }
    }
    for s in sales {
        let Some(d) = range.day_of(s.at) else { continue };
        partners.get(&s.partner.id).name(&s.partner);
        for sum in [partners.get(&s.partner.id), per_day[d].get(&s.partner.id), &mut totals] {
            sum.sale(s);
        }
    }
    // Most conversions, then most clicks, then by ID; no partner last.
    partners.0.sort_by(|(a, x), (b, y)| {
        (
            a.is_none(),
            std::cmp::Reverse(x.conversions()),
            std::cmp::Reverse(x.clicks),
            a,
        )
            .cmp(&(
                b.is_none(),
                std::cmp::Reverse(y.conversions()),
                std::cmp::Reverse(y.clicks),
                b,
            ))
    });
    let order: Vec<Option<String>> = partners.0.iter().map(|(k, _)| k.clone()).collect();
    let mut series = Vec::new();
    for (d, mut sums) in per_day.into_iter().enumerate() {
        sums.0.sort_by_key(|(k, _)| order.iter().position(|o| o == k));
        for (id, sum) in sums.0 {
            series.push(Point {
                day: range.label(d as i32),
                row: sum.row(id),
            });
        }
    }
    let partners: Vec<Row> = partners.0.into_iter().map(|(id, sum)| sum.row(id)).collect();
    // A day's name is the partner's, also when only that day's conversions did not carry it.
    for p in &mut series {
        p.row.partner_name = partners
            .iter()
            .find(|r| r.partner == p.row.partner)
            .and_then(|r| r.partner_name.clone());
    }
    Report {
        from: label(range.first),
        to: range.label(range.days - 1),
        offset_minutes: range.offset_minutes,
        from_ms: range.from_ms(),
        to_ms: range.to_ms(),
        days: (0..range.days).map(|i| range.label(i)).collect(),
        partners,
        totals: totals.row(None),
        series,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2026-12-01T00:00:00Z
    const DEC1: u64 = 1_796_083_200_000;
    const HOUR: u64 = 3_600_000;

    fn range(from: &str, to: &str, offset: Option<&str>) -> Range {
        Range::parse(Some(from), Some(to), offset, 0).unwrap()
    }

    fn who(id: Option<&str>, name: Option<&str>) -> Credited {
        Credited {
            id: id.map(Into::into),
            name: name.map(Into::into),
        }
    }

    fn sale(at: u64, id: Option<&str>, currency: Option<&str>, gross: &str, adj: &str, net: &str) -> Sale {
        let m = |t: &str| Money::parse_signed(t).unwrap();
        Sale {
            at,
            partner: who(id, None),
            currency: currency.map(Into::into),
            gross: m(gross),
            adjustments: m(adj),
            net: m(net),
        }
    }

    fn click(at: u64, id: Option<&str>, name: Option<&str>) -> Click {
        Click {
            at,
            partner: who(id, name),
        }
    }

    #[test]
    fn ranges_are_whole_days_at_an_offset() {
        let r = range("2026-12-01", "2026-12-03", None);
        assert_eq!((r.from_ms(), r.to_ms(), r.days), (DEC1, DEC1 + 3 * DAY_MS, 3));
        assert_eq!(r.day_of(DEC1 - 1), None);
        assert_eq!(r.day_of(DEC1), Some(0));
        assert_eq!(r.day_of(DEC1 + DAY_MS - 1), Some(0));
        assert_eq!(r.day_of(DEC1 + 2 * DAY_MS + 5), Some(2));
        assert_eq!(r.day_of(DEC1 + 3 * DAY_MS), None);
        assert_eq!(r.label(2), "2026-12-03");
        // UTC+01:00: the local day starts at 23:00 UTC the day before; UTC-05:00 at 05:00.
        let cet = range("2026-12-01", "2026-12-01", Some("60"));
        assert_eq!((cet.from_ms(), cet.to_ms()), (DEC1 - HOUR, DEC1 + 23 * HOUR));
        let est = range("2026-12-01", "2026-12-01", Some("-300"));
        assert_eq!(est.from_ms(), DEC1 + 5 * HOUR);
        // Across a month and a leap day.
        let r = range("2028-02-28", "2028-03-01", None);
        assert_eq!(r.days, 3);
        assert_eq!(r.label(1), "2028-02-29");
        // Defaults: the 30 days up to today, today by the offset.
        let r = Range::parse(None, None, None, DEC1 + 10 * HOUR).unwrap();
        assert_eq!(
            (label(r.first), r.label(r.days - 1), r.days),
            ("2026-11-02".into(), "2026-12-01".into(), 30)
        );
        let r = Range::parse(None, None, Some("-720"), DEC1 + 10 * HOUR).unwrap();
        assert_eq!(r.label(r.days - 1), "2026-11-30");
        let r = Range::parse(Some("2026-11-30"), None, None, DEC1).unwrap();
        assert_eq!(r.days, 2);
    }

    #[test]
    fn bad_ranges_are_refused_with_their_parameter() {
        let refused = |from: Option<&str>, to: Option<&str>, offset: Option<&str>| {
            Range::parse(from, to, offset, DEC1).unwrap_err().0
        };
        for bad in [
            "2026-13-01",
            "2026-02-30",
            "26-12-01",
            "2026/12/01",
            "2026-12-1",
            "+026-12-01",
            "2026-é-01",
            "",
            "x",
        ] {
            assert_eq!(refused(Some(bad), Some("2026-12-31"), None), "from", "{bad}");
            assert_eq!(refused(Some("2026-01-01"), Some(bad), None), "to", "{bad}");
        }
        assert_eq!(refused(Some("1970-12-31"), Some("1971-01-01"), None), "from");
        assert_eq!(refused(Some("9998-12-31"), Some("9999-01-01"), None), "to");
        assert_eq!(refused(Some("2026-12-02"), Some("2026-12-01"), None), "to");
        assert_eq!(refused(Some("2025-01-01"), Some("2026-01-02"), None), "from");
        assert!(Range::parse(Some("2025-01-01"), Some("2026-01-01"), None, 0).is_ok());
        for bad in ["841", "-841", "1.5", "60m", ""] {
            assert_eq!(refused(None, None, Some(bad)), "offset", "{bad}");
        }
    }

    #[test]
    fn partners_days_and_totals() {
        let r = range("2026-12-01", "2026-12-02", None);
        let clicks = [
            click(DEC1 + HOUR, Some("anna"), Some("Anna")),
            click(DEC1 + 2 * HOUR, Some("anna"), Some("Anna")),
            click(DEC1 + DAY_MS, Some("bob"), None),
            click(DEC1 + DAY_MS + 1, None, None),
            // Outside the range: left out.
            click(DEC1 - 1, Some("anna"), None),
            click(DEC1 + 2 * DAY_MS, Some("carl"), None),
        ];
        let sales = [
            sale(DEC1 + 3 * HOUR, Some("anna"), Some("EUR"), "45.00", "-10.00", "35.00"),
            sale(DEC1 + DAY_MS + HOUR, Some("anna"), Some("USD"), "20", "0", "20"),
            sale(
                DEC1 + DAY_MS + 2 * HOUR,
                Some("promo-p"),
                Some("EUR"),
                "0.10",
                "0",
                "0.10",
            ),
            sale(
                DEC1 + DAY_MS + 3 * HOUR,
                Some("promo-p"),
                Some("EUR"),
                "0.2",
                "-0.3",
                "-0.1",
            ),
            sale(DEC1 + 4 * HOUR, None, Some("EUR"), "5.5", "0", "5.5"),
            sale(DEC1 + 5 * HOUR, None, None, "0", "0", "0"),
            sale(DEC1 + 2 * DAY_MS, Some("anna"), Some("EUR"), "1000", "0", "1000"),
        ];
        let mut sales = sales.to_vec();
        sales[1].partner.name = Some("Anna".into());
        let rep = build(&r, &clicks, &sales);
        assert_eq!(rep.days, ["2026-12-01", "2026-12-02"]);
        assert_eq!((rep.from.as_str(), rep.to.as_str()), ("2026-12-01", "2026-12-02"));
        let rows: Vec<String> = rep.partners.iter().map(render).collect();
        assert_eq!(
            rows,
            [
                // Two conversions each: anna has more clicks.
                "anna (Anna) 2 clicks 2 conv: EUR 1 45.00 -10.00 35.00 | USD 1 20 0 20",
                "promo-p (-) 0 clicks 2 conv: EUR 2 0.30 -0.3 0.00",
                "bob (-) 1 clicks 0 conv:",
                "- (-) 1 clicks 2 conv: EUR 1 5.5 0 5.5 | - 1 0 0 0",
            ]
        );
        assert_eq!(
            render(&rep.totals),
            "- (-) 4 clicks 6 conv: EUR 4 50.80 -10.30 40.50 | USD 1 20 0 20 | - 1 0 0 0"
        );
        let series: Vec<String> = rep
            .series
            .iter()
            .map(|p| format!("{} {}", p.day, render(&p.row)))
            .collect();
        assert_eq!(
            series,
            [
                "2026-12-01 anna (Anna) 2 clicks 1 conv: EUR 1 45.00 -10.00 35.00",
                "2026-12-01 - (-) 0 clicks 2 conv: EUR 1 5.5 0 5.5 | - 1 0 0 0",
                "2026-12-02 anna (Anna) 0 clicks 1 conv: USD 1 20 0 20",
                "2026-12-02 promo-p (-) 0 clicks 2 conv: EUR 2 0.30 -0.3 0.00",
                "2026-12-02 bob (-) 1 clicks 0 conv:",
                "2026-12-02 - (-) 1 clicks 0 conv:",
            ]
        );
        // Nothing in the range: no rows, zero totals.
        let empty = build(&r, &[], &[]);
        assert!(empty.partners.is_empty() && empty.series.is_empty());
        assert_eq!(render(&empty.totals), "- (-) 0 clicks 0 conv:");
    }

    fn render(r: &Row) -> String {
        let money: Vec<String> = r
            .money
            .iter()
            .map(|m| {
                format!(
                    "{} {} {} {} {}",
                    m.currency.as_deref().unwrap_or("-"),
                    m.conversions,
                    m.gross,
                    m.adjustments,
                    m.net
                )
            })
            .collect();
        format!(
            "{} ({}) {} clicks {} conv: {}",
            r.partner.as_deref().unwrap_or("-"),
            r.partner_name.as_deref().unwrap_or("-"),
            r.clicks,
            r.conversions,
            money.join(" | ")
        )
        .trim_end()
        .to_string()
    }
}
