//! `-c`: strace's summary table, from the per-call counters the kernel program kept
//! (`stats[nr] = {calls, errors, ns}`, per CPU, summed here).

use std::io::Write;

use bpfkit::maps::Map;

/// One row: (nr, calls, errors, ns).
type Row = (u32, u64, u64, u64);

/// The rows with calls, by time spent (most first; ties by syscall number, as strace sorts).
pub fn rows(stats: &Map) -> Result<Vec<Row>, Box<dyn std::error::Error + Send + Sync>> {
    let mut rows = Vec::new();
    for nr in 0..crate::kernel::NR_MAX {
        let per_cpu = stats.lookup_percpu(&nr.to_ne_bytes())?.unwrap_or_default();
        let (mut calls, mut errors, mut ns) = (0, 0, 0);
        for v in &per_cpu {
            let word = |i: usize| u64::from_ne_bytes(v[8 * i..8 * i + 8].try_into().unwrap_or_default());
            calls += word(0);
            errors += word(1);
            ns += word(2);
        }
        if calls > 0 {
            rows.push((nr, calls, errors, ns));
        }
    }
    rows.sort_by(|a, b| b.3.cmp(&a.3).then(a.0.cmp(&b.0)));
    Ok(rows)
}

/// The table as strace prints it.
pub fn format(rows: &[Row]) -> String {
    let total_ns: u64 = rows.iter().map(|r| r.3).sum();
    let (total_calls, total_errors): (u64, u64) = rows.iter().fold((0, 0), |(c, e), r| (c + r.1, e + r.2));
    let line = "------ ----------- ----------- --------- --------- ----------------";
    let mut out = String::from("% time     seconds  usecs/call     calls    errors syscall\n");
    out.push_str(line);
    out.push('\n');
    let row = |pct: f64, ns: u64, calls: u64, errors: u64, name: &str| {
        let errors = if errors == 0 { String::new() } else { errors.to_string() };
        let usecs = if calls == 0 { 0 } else { ns / 1000 / calls };
        format!("{pct:>6.2} {:>11.6} {usecs:>11} {calls:>9} {errors:>9} {name}\n", ns as f64 / 1e9)
    };
    for &(nr, calls, errors, ns) in rows {
        let pct = if total_ns == 0 { 0.0 } else { 100.0 * ns as f64 / total_ns as f64 };
        out.push_str(&row(pct, ns, calls, errors, &crate::decode::name(nr)));
    }
    out.push_str(line);
    out.push('\n');
    out.push_str(&row(100.0, total_ns, total_calls, total_errors, "total"));
    out
}

pub fn print(stats: &Map, sink: &mut dyn Write) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    sink.write_all(format(&rows(stats)?).as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_table_has_straces_columns() {
        let t = super::format(&[(0, 3, 0, 40_000), (257, 6, 1, 8_000)]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "% time     seconds  usecs/call     calls    errors syscall");
        assert_eq!(lines[2], " 83.33    0.000040          13         3           read");
        assert_eq!(lines[3], " 16.67    0.000008           1         6         1 openat");
        assert_eq!(lines[5], "100.00    0.000048           5         9         1 total");
    }
}
