//! Money amounts: a decimal value and an ISO 4217 currency. Never a float.

use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::values::ParseError;

/// A three-letter ISO 4217 currency code, upper case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Currency([u8; 3]);

impl Currency {
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        let bytes = raw.as_bytes();
        match bytes {
            [a, b, c] if bytes.iter().all(u8::is_ascii_uppercase) => Ok(Self([*a, *b, *c])),
            _ => Err(ParseError::new(
                "currency",
                "must be a three-letter ISO 4217 code in upper case, e.g. USD",
            )),
        }
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII upper-case letters are ever stored.
        std::str::from_utf8(&self.0).unwrap_or("???")
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Currency {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// Largest amount accepted: a trillion in any currency is already a typo.
const MAX_AMOUNT: Decimal = Decimal::from_parts(3_567_587_328, 232, 0, false, 0); // 1e12

/// A non-negative amount of money in one currency, at most 4 decimal places.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Money {
    #[serde(rename = "value", with = "rust_decimal::serde::str")]
    amount: Decimal,
    currency: Currency,
}

impl<'de> Deserialize<'de> for Money {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            value: String,
            currency: Currency,
        }
        let raw = Raw::deserialize(d)?;
        Money::parse(&raw.value, raw.currency).map_err(serde::de::Error::custom)
    }
}

impl Money {
    /// Parses the decimal text of an amount (`"12500.00"`), refusing
    /// exponents, negatives, more than 4 decimals and absurd sizes.
    pub fn parse(amount: &str, currency: Currency) -> Result<Self, ParseError> {
        if amount.contains(['e', 'E']) {
            return Err(ParseError::new(
                "amount",
                "must be a plain decimal number, without an exponent",
            ));
        }
        let value = Decimal::from_str(amount).map_err(|_| {
            ParseError::new("amount", "must be a decimal number, e.g. \"12500.00\"")
        })?;
        Self::new(value, currency)
    }

    pub fn new(amount: Decimal, currency: Currency) -> Result<Self, ParseError> {
        if amount.is_sign_negative() && !amount.is_zero() {
            return Err(ParseError::new("amount", "must not be negative"));
        }
        if amount.scale() > 4 && amount.normalize().scale() > 4 {
            return Err(ParseError::new(
                "amount",
                "must have at most 4 decimal places",
            ));
        }
        if amount > MAX_AMOUNT {
            return Err(ParseError::new("amount", "must be at most 1000000000000"));
        }
        Ok(Self {
            amount: amount.normalize(),
            currency,
        })
    }

    pub fn amount(&self) -> Decimal {
        self.amount
    }

    pub fn currency(&self) -> Currency {
        self.currency
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.amount, self.currency)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usd() -> Currency {
        Currency::parse("USD").unwrap()
    }

    #[test]
    fn currencies_are_three_upper_case_letters() {
        assert!(Currency::parse("EUR").is_ok());
        for bad in ["eur", "EURO", "E1R", ""] {
            assert!(Currency::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn amounts_parse_exactly() {
        let m = Money::parse("12500.50", usd()).unwrap();
        assert_eq!(m.amount(), Decimal::new(1250050, 2));
        assert_eq!(
            Money::parse("0.1", usd()).unwrap().amount(),
            Decimal::new(1, 1)
        );
        assert_eq!(MAX_AMOUNT, Decimal::from(1_000_000_000_000u64));
    }

    #[test]
    fn bad_amounts_are_refused() {
        for bad in ["-1", "1e5", "abc", "1.00001", "1000000000000.01", ""] {
            assert!(Money::parse(bad, usd()).is_err(), "{bad}");
        }
        assert!(
            Money::parse("1.10000", usd()).is_ok(),
            "trailing zeros are not precision"
        );
    }
}
