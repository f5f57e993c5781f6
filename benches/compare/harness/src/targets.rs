//! Conduit's targets: each scenario measures some of them, writes them beside its table (`targets-N.tsv`), and
//! `report` gathers them into one table with a verdict per row. A target is judged on Conduit's figure, taken
//! against the floor measured in the same run where the goal is relative to it.

use crate::json::Json;
use crate::table::Table;

/// The server whose figures are judged, and the one relative goals are taken against.
pub const JUDGED: &str = "conduit";

/// What a figure must satisfy.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Goal {
    /// At most this many times the floor's figure (time, CPU, latency: lower is better).
    FloorRatioAtMost(f64),
    /// At least this share (0 to 1) of the floor's figure (throughput: higher is better).
    FloorShareAtLeast(f64),
    /// At most this many bytes.
    BytesAtMost(f64),
}

impl Goal {
    fn describe(self) -> String {
        match self {
            Goal::FloorRatioAtMost(x) => format!("<= {x:.2}x floor"),
            Goal::FloorShareAtLeast(s) => format!(">= {:.0} % of floor", s * 100.0),
            Goal::BytesAtMost(b) => format!("<= {}", bytes_goal(b)),
        }
    }

    /// Conduit's figure in the goal's terms, as shown in the verdict column.
    fn figure(self, judged: f64) -> String {
        match self {
            Goal::FloorRatioAtMost(_) => format!("{judged:.2}x"),
            Goal::FloorShareAtLeast(_) => format!("{:.1} %", judged * 100.0),
            Goal::BytesAtMost(_) => crate::table::bytes(judged),
        }
    }

    fn met(self, judged: f64) -> bool {
        match self {
            Goal::FloorRatioAtMost(x) => judged <= x,
            Goal::FloorShareAtLeast(s) => judged >= s,
            Goal::BytesAtMost(b) => judged <= b,
        }
    }

    fn kind(self) -> (&'static str, f64) {
        match self {
            Goal::FloorRatioAtMost(x) => ("floor_ratio_at_most", x),
            Goal::FloorShareAtLeast(s) => ("floor_share_at_least", s),
            Goal::BytesAtMost(b) => ("bytes_at_most", b),
        }
    }
}

/// `768 B` reads better as `0.75 KiB` in a goal.
fn bytes_goal(b: f64) -> String {
    if (512.0..1024.0 * 1024.0).contains(&b) { format!("{:.2} KiB", b / 1024.0) } else { crate::table::bytes(b) }
}

/// One measured target.
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    pub label: String,
    pub goal: Goal,
    /// Per server, in column order: the figure as shown (with its ratio to the floor where there is one).
    pub cells: Vec<String>,
    /// Conduit's figure in the goal's terms (a ratio, a share or bytes); `None` when it or the floor is missing.
    pub judged: Option<f64>,
}

impl Target {
    pub fn verdict(&self) -> &'static str {
        match self.judged {
            Some(x) if x.is_finite() => {
                if self.goal.met(x) {
                    "PASS"
                } else {
                    "FAIL"
                }
            }
            _ => "n/a",
        }
    }

    pub fn json(&self) -> Json {
        let (kind, threshold) = self.goal.kind();
        Json::obj()
            .with("target", self.label.as_str())
            .with("goal", kind)
            .with("threshold", threshold)
            .with("conduit", self.judged)
            .with("verdict", self.verdict())
    }

    /// One tab-separated line: label, goal kind, threshold, judged (or `-`), then the cells.
    pub fn to_line(&self) -> String {
        let (kind, threshold) = self.goal.kind();
        let judged = self.judged.map_or("-".to_owned(), |x| format!("{x}"));
        let mut fields = vec![clean(&self.label), kind.to_owned(), format!("{threshold}"), judged];
        fields.extend(self.cells.iter().map(|c| clean(c)));
        fields.join("\t")
    }

    pub fn from_line(line: &str) -> Option<Target> {
        let mut fields = line.split('\t');
        let label = fields.next()?.to_owned();
        let kind = fields.next()?;
        let threshold: f64 = fields.next()?.parse().ok()?;
        let goal = match kind {
            "floor_ratio_at_most" => Goal::FloorRatioAtMost(threshold),
            "floor_share_at_least" => Goal::FloorShareAtLeast(threshold),
            "bytes_at_most" => Goal::BytesAtMost(threshold),
            _ => return None,
        };
        let judged = match fields.next()? {
            "-" => None,
            x => Some(x.parse().ok()?),
        };
        Some(Target { label, goal, cells: fields.map(str::to_owned).collect(), judged })
    }
}

fn clean(text: &str) -> String {
    text.replace(['\t', '\n'], " ")
}

/// The table `report` prints: one row per target, a column per server, Conduit's figure and the verdict.
pub fn table(servers: &[&str], targets: &[Target], quick: bool) -> Table {
    let mut header: Vec<&str> = vec!["goal"];
    header.extend(servers);
    header.extend(["conduit's figure", "verdict"]);
    let mut t = Table::new("Targets: Conduit against the floor measured in the same run", &header);
    for target in targets {
        let mut cells = vec![target.goal.describe()];
        cells.extend(target.cells.iter().cloned());
        cells.resize(1 + servers.len(), "-".into());
        cells.push(target.judged.map_or("-".into(), |x| target.goal.figure(x)));
        cells.push(target.verdict().into());
        t.row(target.label.as_str(), cells);
    }
    t.note("server cells: the figure, and in brackets its ratio to the floor's (or its share of the floor's events/s)");
    t.note("verdicts do not change run.sh's exit status: on a shared machine they are read, not enforced");
    if quick {
        t.note("--quick: tiny counts, so these verdicts say little; read a full run's");
    }
    t
}

/// The median over rounds of `value[floor] / value[server]`: the server's share of the floor's rate, when the
/// values are times for the same work.
pub fn floor_share(per_round: &[Vec<Option<f64>>], server: usize, floor: Option<usize>) -> Option<f64> {
    let floor = floor?;
    let shares: Vec<f64> = per_round.iter().filter_map(|round| Some(round[floor]? / round[server]?)).collect();
    (!shares.is_empty()).then(|| crate::table::median(&shares))
}

/// Conduit's position among `names`.
pub fn judged_index(names: &[&str]) -> Option<usize> {
    names.iter().position(|n| *n == JUDGED)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_follow_the_goal() {
        let t = |goal, judged| Target { label: "x".into(), goal, cells: vec![], judged };
        assert_eq!(t(Goal::FloorRatioAtMost(1.2), Some(1.2)).verdict(), "PASS");
        assert_eq!(t(Goal::FloorRatioAtMost(1.2), Some(1.21)).verdict(), "FAIL");
        assert_eq!(t(Goal::FloorShareAtLeast(0.8), Some(0.79)).verdict(), "FAIL");
        assert_eq!(t(Goal::FloorShareAtLeast(0.8), Some(0.85)).verdict(), "PASS");
        assert_eq!(t(Goal::BytesAtMost(768.0), Some(700.0)).verdict(), "PASS");
        assert_eq!(t(Goal::BytesAtMost(768.0), None).verdict(), "n/a");
        assert_eq!(t(Goal::FloorRatioAtMost(1.2), Some(f64::NAN)).verdict(), "n/a");
    }

    #[test]
    fn lines_round_trip() {
        let target = Target {
            label: "broadcast p99\tat 10000".into(),
            goal: Goal::FloorShareAtLeast(0.8),
            cells: vec!["1.00 M/s".into(), "-".into()],
            judged: Some(0.5),
        };
        let back = Target::from_line(&target.to_line()).unwrap();
        assert_eq!(back.label, "broadcast p99 at 10000");
        assert_eq!((back.goal, back.judged, &back.cells), (target.goal, target.judged, &target.cells));
        let none = Target { judged: None, ..back };
        assert_eq!(Target::from_line(&none.to_line()).unwrap().judged, None);
        assert!(Target::from_line("x\tunknown\t1\t-").is_none());
    }

    #[test]
    fn shares_pair_rounds() {
        let rounds = vec![vec![Some(1.0), Some(2.0)], vec![Some(2.0), Some(2.5)], vec![None, Some(1.0)]];
        assert_eq!(floor_share(&rounds, 1, Some(0)), Some(0.65));
        assert_eq!(floor_share(&rounds, 1, None), None);
    }

    #[test]
    fn goals_read_plainly() {
        assert_eq!(Goal::BytesAtMost(768.0).describe(), "<= 0.75 KiB");
        assert_eq!(Goal::FloorShareAtLeast(0.8).describe(), ">= 80 % of floor");
        assert_eq!(Goal::FloorRatioAtMost(1.15).describe(), "<= 1.15x floor");
    }
}
