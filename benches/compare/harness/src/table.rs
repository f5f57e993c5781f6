//! Plain-text tables with a label column and one column per server, and the number formats they use.

pub struct Table {
    pub title: String,
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
    pub notes: Vec<String>,
}

impl Table {
    pub fn new(title: impl Into<String>, servers: &[&str]) -> Table {
        let mut header = vec![String::new()];
        header.extend(servers.iter().map(|s| (*s).to_owned()));
        Table { title: title.into(), header, rows: Vec::new(), notes: Vec::new() }
    }

    pub fn row(&mut self, label: impl Into<String>, cells: Vec<String>) {
        let mut row = vec![label.into()];
        row.extend(cells);
        self.rows.push(row);
    }

    pub fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }

    pub fn render(&self) -> String {
        let columns = self.header.len();
        let mut widths = vec![0; columns];
        for row in std::iter::once(&self.header).chain(&self.rows) {
            for (i, cell) in row.iter().enumerate().take(columns) {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let mut out = format!("{}\n", self.title);
        if self.header.len() < 2 && self.rows.is_empty() {
            for note in &self.notes {
                out.push_str(&format!("  {note}\n"));
            }
            return out;
        }
        for (r, row) in std::iter::once(&self.header).chain(&self.rows).enumerate() {
            let mut line = String::new();
            for (i, width) in widths.iter().enumerate() {
                let cell = row.get(i).map(String::as_str).unwrap_or("");
                let fill = width - cell.chars().count();
                if i == 0 {
                    line.push_str("  ");
                    line.push_str(cell);
                    line.push_str(&" ".repeat(fill));
                } else {
                    line.push_str("   ");
                    line.push_str(&" ".repeat(fill));
                    line.push_str(cell);
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
            if r == 0 {
                let total: usize = widths.iter().sum::<usize>() + 2 + 3 * (columns - 1);
                out.push_str(&format!("  {}\n", "-".repeat(total - 2)));
            }
        }
        for note in &self.notes {
            out.push_str(&format!("  {note}\n"));
        }
        out
    }
}

/// Seconds as µs, ms or s with three significant-ish digits.
pub fn secs(s: f64) -> String {
    if !s.is_finite() {
        "-".to_owned()
    } else if s < 1e-5 {
        format!("{:.2} µs", s * 1e6)
    } else if s < 1e-3 {
        format!("{:.0} µs", s * 1e6)
    } else if s < 1e-2 {
        format!("{:.2} ms", s * 1e3)
    } else if s < 1.0 {
        format!("{:.1} ms", s * 1e3)
    } else {
        format!("{s:.2} s")
    }
}

pub fn rate(per_sec: f64) -> String {
    if !per_sec.is_finite() {
        "-".to_owned()
    } else if per_sec >= 1e6 {
        format!("{:.2} M/s", per_sec / 1e6)
    } else if per_sec >= 1e3 {
        format!("{:.0} k/s", per_sec / 1e3)
    } else {
        format!("{per_sec:.0} /s")
    }
}

pub fn ratio(r: Option<f64>) -> String {
    match r {
        Some(r) if r.is_finite() => format!("{r:.2}x"),
        _ => "-".to_owned(),
    }
}

pub fn bytes(b: f64) -> String {
    if !b.is_finite() {
        "-".to_owned()
    } else if b.abs() >= 1024.0 * 1024.0 {
        format!("{:.1} MiB", b / (1024.0 * 1024.0))
    } else if b.abs() >= 1024.0 {
        format!("{:.1} KiB", b / 1024.0)
    } else {
        format!("{b:.0} B")
    }
}

/// The median of the values (the mean of the middle two for an even count); NaN when empty.
pub fn median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 { v[mid] } else { (v[mid - 1] + v[mid]) / 2.0 }
}

pub fn min_max(values: &[f64]) -> (f64, f64) {
    values.iter().filter(|x| x.is_finite()).fold((f64::NAN, f64::NAN), |(lo, hi), &x| {
        (if lo.is_nan() { x } else { lo.min(x) }, if hi.is_nan() { x } else { hi.max(x) })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
        assert_eq!(min_max(&[2.0, f64::NAN, 1.0, 3.0]), (1.0, 3.0));
    }

    #[test]
    fn renders_aligned() {
        let mut t = Table::new("T", &["a", "longer"]);
        t.row("median", vec!["1 ms".into(), "22 ms".into()]);
        let text = t.render();
        assert!(text.contains("  median   1 ms    22 ms\n"), "{text}");
    }
}
