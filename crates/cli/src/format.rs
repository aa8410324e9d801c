//! Human-readable numbers and times for the text output.

use std::time::Duration;

use jiff::Timestamp;
use jiff::tz::TimeZone;

pub use blockvault_host::bytes;

/// `140 ms`, `2.31 s`, `4m 05s`, `2h 03m 10s`.
pub fn duration(d: Duration) -> String {
    let secs = d.as_secs();
    match secs {
        0 => format!("{:.0} ms", d.as_secs_f64() * 1000.0),
        1..60 => format!("{:.2} s", d.as_secs_f64()),
        60..3600 => format!("{}m {:02}s", secs / 60, secs % 60),
        _ => format!("{}h {:02}m {:02}s", secs / 3600, secs / 60 % 60, secs % 60),
    }
}

/// `bytes / elapsed` as `1.16 GiB/s`.
pub fn rate(n: u64, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64().max(1e-6);
    format!("{}/s", bytes((n as f64 / secs) as u64))
}

/// A point's time in the local time zone, to the second, with its offset.
pub fn time(t: Timestamp) -> String {
    t.to_zoned(TimeZone::system())
        .strftime("%Y-%m-%d %H:%M:%S %:z")
        .to_string()
}

/// A date in the local time zone (for retention: "kept until 2026-12-23").
pub fn date(t: Timestamp) -> String {
    t.to_zoned(TimeZone::system())
        .strftime("%Y-%m-%d")
        .to_string()
}

/// A table with a header: columns as wide as their widest cell, two spaces apart, no trailing
/// blanks.
pub fn table<const N: usize>(header: &[&str; N], rows: &[[String; N]]) -> String {
    let mut widths = header.map(str::len);
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        cells
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    let mut out = vec![line(&mut header.iter().copied())];
    out.extend(rows.iter().map(|r| line(&mut r.iter().map(String::as_str))));
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_rates() {
        assert_eq!(duration(Duration::from_millis(140)), "140 ms");
        assert_eq!(duration(Duration::from_millis(2310)), "2.31 s");
        assert_eq!(duration(Duration::from_secs(245)), "4m 05s");
        assert_eq!(duration(Duration::from_secs(7390)), "2h 03m 10s");
        assert_eq!(rate(2 << 30, Duration::from_secs(2)), "1.00 GiB/s");
    }

    #[test]
    fn tables_align_columns_and_trim_line_ends() {
        let rows = [
            ["1".to_owned(), "web01".to_owned(), "".to_owned()],
            ["12".to_owned(), "db".to_owned(), "x".to_owned()],
        ];
        assert_eq!(
            table(&["ID", "VM", "NOTE"], &rows),
            "ID  VM     NOTE\n1   web01\n12  db     x"
        );
    }
}
