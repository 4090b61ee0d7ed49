//! The unit parsers every section shares: durations, sizes, status matches and
//! percentages, as the file writes them.

use std::time::Duration;

/// Parses `250ms`, `5s`, `1.5m`, `2h`, `30d`, `30 days`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| format!("missing unit in duration {s:?} (use ms, s, m, h or d)"))?;
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("invalid duration {s:?}"))?;
    let secs = match unit.trim() {
        "ms" => n / 1000.0,
        "s" | "sec" | "secs" | "second" | "seconds" => n,
        "m" | "min" | "mins" | "minute" | "minutes" => n * 60.0,
        "h" | "hour" | "hours" => n * 3600.0,
        "d" | "day" | "days" => n * 86400.0,
        _ => return Err(format!("invalid duration {s:?} (use ms, s, m, h or d)")),
    };
    if !secs.is_finite() || secs > 10.0 * 365.0 * 86400.0 {
        return Err(format!("duration {s:?} is out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Parses a size: `16384`, `16KiB`, `16 KiB`, `16k`, `1MiB`, `1m` (binary units).
pub fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: usize = num
        .parse()
        .map_err(|_| format!("invalid size {s:?} (write 16384, 16KiB or 1MiB)"))?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1024,
        "m" | "mb" | "mib" => 1024 * 1024,
        _ => return Err(format!("invalid size {s:?} (write 16384, 16KiB or 1MiB)")),
    };
    n.checked_mul(mult)
        .filter(|&b| b <= 1 << 30)
        .ok_or_else(|| format!("size {s:?} is out of range (at most 1GiB)"))
}

/// Parses a status code (`204`) or a class (`2xx`) into the inclusive range it covers.
pub fn parse_status_match(s: &str) -> Option<(u16, u16)> {
    let t = s.trim().to_ascii_lowercase();
    if let Some(d) = t.strip_suffix("xx") {
        let c: u16 = d.parse().ok().filter(|c| (1..=5).contains(c))?;
        return Some((c * 100, c * 100 + 99));
    }
    let code: u16 = t.parse().ok().filter(|c| (100..=599).contains(c))?;
    Some((code, code))
}

/// Parses `99.95%` or `99.95` into a percentage in `[0, 100]`.
pub fn parse_percent(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let t = t.strip_suffix('%').unwrap_or(t).trim();
    let n: f64 = t.parse().map_err(|_| format!("invalid percentage {s:?}"))?;
    if !(0.0..=100.0).contains(&n) {
        return Err(format!("must be between 0% and 100%, got {s}"));
    }
    Ok(n)
}

/// `text` with a `%` sign when it has none.
pub(super) fn percent_sign(text: &str) -> String {
    let t = text.trim();
    if t.ends_with('%') {
        t.to_owned()
    } else {
        format!("{t}%")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(
            parse_duration("30d").unwrap(),
            Duration::from_secs(30 * 86400)
        );
        assert_eq!(
            parse_duration("30 days").unwrap(),
            Duration::from_secs(30 * 86400)
        );
        assert_eq!(parse_duration("1.5m").unwrap(), Duration::from_secs(90));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("5y").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn status_matches() {
        assert_eq!(parse_status_match("204"), Some((204, 204)));
        assert_eq!(parse_status_match("2xx"), Some((200, 299)));
        assert_eq!(parse_status_match("5XX"), Some((500, 599)));
        assert_eq!(parse_status_match("6xx"), None);
        assert_eq!(parse_status_match("99"), None);
        assert_eq!(parse_status_match("abc"), None);
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("16384"), Ok(16384));
        assert_eq!(parse_size("16KiB"), Ok(16384));
        assert_eq!(parse_size(" 16 kib "), Ok(16384));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert!(parse_size("16 parsecs").is_err());
        assert!(parse_size("-1").is_err());
        assert!(parse_size("99999999999999999999k").is_err());
        assert!(parse_size("2048MiB").is_err());
    }

    #[test]
    fn percents() {
        assert_eq!(parse_percent("99.95%").unwrap(), 99.95);
        assert_eq!(parse_percent("99.95").unwrap(), 99.95);
        assert!(parse_percent("150%").is_err());
        assert!(parse_percent("x%").is_err());
    }
}
