//! Exact money arithmetic for adjustments and totals: amounts are the wire's decimal text (at
//! most 15 integer and 8 fraction digits, `utt::core::wire::is_decimal`), added and subtracted
//! as integers of 10^-8, and written back with as many fraction digits as their inputs had.
//! No float ever touches them.

/// Fraction digits kept.
const SCALE: u32 = 8;

/// An amount in units of 10^-8, and the fraction digits to write it with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Money {
    units: i128,
    digits: u32,
}

impl Money {
    /// Zero, written with no fraction digits unless added to something that has some.
    pub const ZERO: Money = Money { units: 0, digits: 0 };

    /// Reads a wire decimal (`129.90`); `None` for anything else.
    pub fn parse(text: &str) -> Option<Money> {
        if !utt::core::wire::is_decimal(text) {
            return None;
        }
        let (int, frac) = text.split_once('.').unwrap_or((text, ""));
        let mut units: i128 = int.parse().ok()?;
        let mut padded = String::from(frac);
        while padded.len() < SCALE as usize {
            padded.push('0');
        }
        units = units * 10i128.pow(SCALE) + padded.parse::<i128>().ok()?;
        Some(Money {
            units,
            digits: frac.len() as u32,
        })
    }

    /// Reads what [`Money::text`] writes: a wire decimal, or one with a leading `-` (a net
    /// amount or an adjustments total); `None` for anything else.
    pub fn parse_signed(text: &str) -> Option<Money> {
        match text.strip_prefix('-') {
            Some(abs) => Money::parse(abs).map(|m| Money::ZERO.minus(m)),
            None => Money::parse(text),
        }
    }

    /// The sum (written with the larger number of fraction digits).
    pub fn plus(self, other: Money) -> Money {
        Money {
            units: self.units + other.units,
            digits: self.digits.max(other.digits),
        }
    }

    /// The difference (written with the larger number of fraction digits).
    pub fn minus(self, other: Money) -> Money {
        self.plus(Money {
            units: -other.units,
            digits: other.digits,
        })
    }

    /// The decimal text, with a leading `-` when negative.
    pub fn text(self) -> String {
        let sign = if self.units < 0 { "-" } else { "" };
        let abs = self.units.unsigned_abs();
        let int = abs / 10u128.pow(SCALE);
        let frac = abs % 10u128.pow(SCALE);
        if self.digits == 0 {
            // Fraction digits beyond those shown are never lost: only inputs without any give 0.
            return format!("{sign}{int}");
        }
        let frac = format!("{frac:08}");
        format!("{sign}{int}.{}", &frac[..self.digits as usize])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_sums_and_differences() {
        let m = |s: &str| Money::parse(s).unwrap();
        assert_eq!(m("129.90").text(), "129.90");
        assert_eq!(m("129.90").minus(m("10")).text(), "119.90");
        assert_eq!(m("10").minus(m("129.9")).text(), "-119.9");
        assert_eq!(m("0.1").plus(m("0.2")).text(), "0.3");
        assert_eq!(
            m("999999999999999.99999999").plus(m("0.00000001")).text(),
            "1000000000000000.00000000"
        );
        assert_eq!(Money::ZERO.minus(m("5.00")).text(), "-5.00");
        assert_eq!(Money::ZERO.text(), "0");
        assert_eq!(Money::parse("-1"), None);
        assert_eq!(Money::parse("1e3"), None);
        assert_eq!(Money::parse("1."), None);
        // What `text` writes reads back, negative amounts included.
        for t in ["-119.9", "-5.00", "0", "129.90", "-0.00000001"] {
            assert_eq!(Money::parse_signed(t).unwrap().text(), t);
        }
        assert_eq!(Money::parse_signed("--1"), None);
        assert_eq!(Money::parse_signed("-"), None);
        assert_eq!(Money::parse_signed("+1"), None);
    }
}
