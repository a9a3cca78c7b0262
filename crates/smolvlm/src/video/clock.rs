//! Time labels used in the SmolVLM video prompt.

/// Labels a frame's time as `MM:SS`, like transformers' `f"{int(s // 60):02d}:{int(s % 60):02d}"`
/// (Python float floor division and modulo; minutes are not capped, so 75 minutes is `"75:00"`).
///
/// Where Python would raise (NaN or infinite seconds) this returns `"00:00"`.
pub fn frame_timestamp(seconds: f64) -> String {
    if !seconds.is_finite() {
        return "00:00".to_string();
    }
    let (minutes, secs) = py_divmod(seconds, 60.0);
    // Python int() truncates toward zero; `as` does too (saturating on overflow).
    format!("{:02}:{:02}", minutes as i64, secs as i64)
}

/// Writes a whole number of seconds as Python's `str(datetime.timedelta(seconds=n))`:
/// `"0:00:10"`, `"1:02:03"`, `"1 day, 1:01:01"`, `"2 days, 0:00:00"`.
pub fn duration_text(seconds: u64) -> String {
    let (days, rest) = (seconds / 86_400, seconds % 86_400);
    let clock = format!("{}:{:02}:{:02}", rest / 3600, rest % 3600 / 60, rest % 60);
    match days {
        0 => clock,
        1 => format!("1 day, {clock}"),
        d => format!("{d} days, {clock}"),
    }
}

/// CPython's `float_divmod`: floor quotient and modulo with the divisor's sign.
fn py_divmod(vx: f64, wx: f64) -> (f64, f64) {
    let mut rem = vx % wx; // C fmod
    let mut div = (vx - rem) / wx;
    if rem != 0.0 {
        if (wx < 0.0) != (rem < 0.0) {
            rem += wx;
            div -= 1.0;
        }
    } else {
        rem = 0.0_f64.copysign(wx);
    }
    let floordiv = if div != 0.0 {
        let mut f = div.floor();
        if div - f > 0.5 {
            f += 1.0;
        }
        f
    } else {
        0.0_f64.copysign(vx / wx)
    };
    (floordiv, rem)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(frame_timestamp(0.0), "00:00");
        assert_eq!(frame_timestamp(1.1), "00:01");
        assert_eq!(frame_timestamp(59.999), "00:59");
        assert_eq!(frame_timestamp(61.0), "01:01");
        assert_eq!(frame_timestamp(4500.0), "75:00");
        assert_eq!(frame_timestamp(-1.0), "-1:59");
        assert_eq!(frame_timestamp(f64::NAN), "00:00");
    }

    #[test]
    fn durations() {
        assert_eq!(duration_text(0), "0:00:00");
        assert_eq!(duration_text(10), "0:00:10");
        assert_eq!(duration_text(66), "0:01:06");
        assert_eq!(duration_text(3723), "1:02:03");
        assert_eq!(duration_text(90_061), "1 day, 1:01:01");
        assert_eq!(duration_text(172_800), "2 days, 0:00:00");
    }
}
