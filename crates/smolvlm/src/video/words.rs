//! English number words, as Python's `num2words(n)` (language `en`, version 0.5.14) writes them.

/// Words for 0 to 19.
const LOW: [&str; 20] = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
];

/// Words for the multiples of ten from 20 to 90.
const TENS: [&str; 8] = [
    "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety",
];

/// Words for the powers of a thousand (short scale) and for a hundred, largest first.
const SCALES: [(u64, &str); 7] = [
    (1_000_000_000_000_000_000, "quintillion"),
    (1_000_000_000_000_000, "quadrillion"),
    (1_000_000_000_000, "trillion"),
    (1_000_000_000, "billion"),
    (1_000_000, "million"),
    (1_000, "thousand"),
    (100, "hundred"),
];

/// Writes `n` as an English cardinal exactly as `num2words(n)` does: "zero", "twenty-one",
/// "one hundred and one", "one thousand, two hundred and thirty-four",
/// "one hundred and one thousand".
pub fn number_words(n: u64) -> String {
    words(n).0
}

/// Port of num2words' `splitnum` + `clean`: the number as `div * card + rest`, merged left to right.
fn words(n: u64) -> (String, u64) {
    if n < 20 {
        return (LOW[n as usize].to_string(), n);
    }
    let (card, name) = match SCALES.iter().find(|(value, _)| *value <= n) {
        Some(&(value, name)) => (value, name),
        // 20..=99: the tens word is the card.
        None => (n / 10 * 10, TENS[(n / 10 - 2) as usize]),
    };
    let (div, rest) = (n / card, n % card);
    let left = if div == 1 {
        ("one".to_string(), 1)
    } else {
        words(div)
    };
    let mut out = merge(left, (name.to_string(), card));
    if rest != 0 {
        out = merge(out, words(rest));
    }
    out
}

/// num2words' `Num2Word_EN.merge`.
fn merge((ltext, lnum): (String, u64), (rtext, rnum): (String, u64)) -> (String, u64) {
    if lnum == 1 && rnum < 100 {
        (rtext, rnum)
    } else if 100 > lnum && lnum > rnum {
        (format!("{ltext}-{rtext}"), lnum + rnum)
    } else if lnum >= 100 && 100 > rnum {
        (format!("{ltext} and {rtext}"), lnum + rnum)
    } else if rnum > lnum {
        (format!("{ltext} {rtext}"), lnum.saturating_mul(rnum))
    } else {
        (format!("{ltext}, {rtext}"), lnum + rnum)
    }
}

#[cfg(test)]
mod tests {
    use super::number_words;

    #[test]
    fn known_words() {
        for (n, w) in [
            (0, "zero"),
            (10, "ten"),
            (21, "twenty-one"),
            (64, "sixty-four"),
            (100, "one hundred"),
            (101, "one hundred and one"),
            (1000, "one thousand"),
            (1001, "one thousand and one"),
            (1100, "one thousand, one hundred"),
            (1234, "one thousand, two hundred and thirty-four"),
            (101_000, "one hundred and one thousand"),
            (2_000_000, "two million"),
        ] {
            assert_eq!(number_words(n), w, "{n}");
        }
    }
}
