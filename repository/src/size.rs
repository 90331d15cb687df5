//! Human sizes on the command line and in options.

/// Parses "1024", "10K", "5M", "2G", "1T" (binary units; case-insensitive;
/// an optional "B" or "iB" suffix). `None` for anything else or overflow.
pub fn parse_size(s: &str) -> Option<u64> {
    let lower = s.trim().to_ascii_lowercase();
    let lower = lower.trim_end_matches("ib").trim_end_matches('b');
    let (num, mult) = match lower.chars().last() {
        Some('k') => (&lower[..lower.len() - 1], 1u64 << 10),
        Some('m') => (&lower[..lower.len() - 1], 1 << 20),
        Some('g') => (&lower[..lower.len() - 1], 1 << 30),
        Some('t') => (&lower[..lower.len() - 1], 1 << 40),
        _ => (lower, 1),
    };
    num.trim().parse::<u64>().ok()?.checked_mul(mult)
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes() {
        assert_eq!(super::parse_size("1024"), Some(1024));
        assert_eq!(super::parse_size("10K"), Some(10240));
        assert_eq!(super::parse_size("5MiB"), Some(5 << 20));
        assert_eq!(super::parse_size("2g"), Some(2 << 30));
        assert_eq!(super::parse_size("x"), None);
        assert_eq!(super::parse_size("99999999999T"), None);
    }
}
