//! The comparison harness's measuring client. `run.sh` starts the servers and calls it once per scenario; it
//! measures the servers it is given round by round (A B C ... A B C ...; scenario 2 rotates the order: A B C,
//! B C A, ...), writes the scenario's table and JSON to the output directory, and `report` prints the tables
//! and joins the JSON into `latest.json`.
//!
//! ```text
//! harness run --scenario 1 --server floor=127.0.0.1:18400@1234 --server conduit=127.0.0.1:18401@1235 [--quick]
//! harness report --dir results [--meta key=value ...]
//! ```
//!
//! Every loop here is bounded by a count and a deadline, and every socket read by a timeout.

mod broadcast;
mod client;
mod json;
mod procfs;
mod table;
mod targets;

use client::{Conn, Fetched};
use json::Json;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use table::Table;
use targets::{Goal, Target};

/// The server every ratio is taken against.
const FLOOR: &str = "floor";

#[derive(Clone, Debug)]
struct Server {
    name: String,
    addr: SocketAddr,
    pid: Option<u32>,
}

#[derive(Debug)]
struct Options {
    scenario: u32,
    servers: Vec<Server>,
    quick: bool,
    reps: Option<usize>,
    conns: Option<usize>,
    idle: Option<Vec<usize>>,
    events: u64,
    subscribers: Option<Vec<usize>>,
    rate: u64,
    broadcast_seconds: Option<u64>,
    sub_threads: usize,
    clk_tck: u64,
    nofile: Option<usize>,
    out: PathBuf,
    timeout: Duration,
    max_seconds: u64,
}

const USAGE: &str = "usage:
  harness run --scenario N --server NAME=HOST:PORT[@PID] ... [--quick] [--reps N] [--conns N]
              [--idle 1000,10000] [--events N] [--subscribers 1000,10000] [--rate N] [--broadcast-seconds N]
              [--sub-threads N] [--clk-tck HZ] [--nofile N] [--timeout SECS] [--max-seconds SECS] [--out DIR]
  harness report [--dir DIR] [--meta KEY=VALUE ...]";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("run") => parse_run(&args[1..]).and_then(|o| run(&o)),
        Some("report") => report(&args[1..]),
        Some("-h" | "--help") => {
            println!("{USAGE}");
            Ok(())
        }
        _ => Err(format!("unknown command\n{USAGE}")),
    };
    if let Err(e) = result {
        eprintln!("harness: {e}");
        std::process::exit(1);
    }
}

fn parse_run(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        scenario: 0,
        servers: Vec::new(),
        quick: false,
        reps: None,
        conns: None,
        idle: None,
        events: 1000,
        subscribers: None,
        rate: 10,
        broadcast_seconds: None,
        sub_threads: 2,
        clk_tck: 100,
        nofile: None,
        out: PathBuf::from("results"),
        timeout: Duration::from_secs(30),
        max_seconds: 1800,
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().cloned().ok_or_else(|| format!("{flag} needs a value"));
        let number = |v: String| v.parse::<u64>().map_err(|_| format!("{flag}: not a number: {v:?}"));
        match flag.as_str() {
            "--scenario" => o.scenario = number(value()?)? as u32,
            "--server" => o.servers.push(parse_server(&value()?)?),
            "--quick" => o.quick = true,
            "--reps" => o.reps = Some(number(value()?)?.max(1) as usize),
            "--conns" => o.conns = Some(number(value()?)?.max(1) as usize),
            "--idle" => o.idle = Some(parse_list(flag, &value()?)?),
            "--events" => o.events = number(value()?)?.max(1),
            "--subscribers" => o.subscribers = Some(parse_list(flag, &value()?)?),
            "--rate" => o.rate = number(value()?)?.clamp(1, 10_000),
            "--broadcast-seconds" => o.broadcast_seconds = Some(number(value()?)?.clamp(1, 3600)),
            "--sub-threads" => o.sub_threads = number(value()?)?.clamp(1, 64) as usize,
            "--clk-tck" => o.clk_tck = number(value()?)?.max(1),
            "--nofile" => o.nofile = Some(number(value()?)? as usize),
            "--timeout" => o.timeout = Duration::from_secs(number(value()?)?.max(1)),
            "--max-seconds" => o.max_seconds = number(value()?)?.max(1),
            "--out" => o.out = PathBuf::from(value()?),
            other => return Err(format!("unknown option {other:?}\n{USAGE}")),
        }
    }
    if !(1..=4).contains(&o.scenario) {
        return Err(format!("--scenario must be 1 to 4\n{USAGE}"));
    }
    for s in &o.servers {
        if !s.addr.ip().is_loopback() {
            return Err(format!(
                "{}: {} is not a loopback address; this harness only measures servers on this machine",
                s.name, s.addr
            ));
        }
    }
    Ok(o)
}

/// `1000,10000`: sizes, sorted, without duplicates or zeros.
fn parse_list(flag: &str, text: &str) -> Result<Vec<usize>, String> {
    let mut list = text
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse::<usize>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{flag}: {e}"))?;
    list.sort_unstable();
    list.dedup();
    list.retain(|&n| n > 0);
    if list.is_empty() {
        return Err(format!("{flag}: no sizes given"));
    }
    Ok(list)
}

/// What one scenario measured: its tables, its JSON, the servers that failed, and the targets it checks.
struct Measured {
    tables: Vec<Table>,
    json: Json,
    failed: Vec<String>,
    targets: Vec<Target>,
}

/// `NAME=HOST:PORT[@PID]`.
fn parse_server(spec: &str) -> Result<Server, String> {
    let (name, rest) =
        spec.split_once('=').ok_or_else(|| format!("--server {spec:?}: expected NAME=HOST:PORT[@PID]"))?;
    let (addr, pid) = match rest.split_once('@') {
        Some((addr, pid)) => (addr, Some(pid.parse().map_err(|_| format!("--server {spec:?}: bad pid"))?)),
        None => (rest, None),
    };
    Ok(Server { name: name.to_owned(), addr: addr.parse().map_err(|e| format!("--server {spec:?}: {e}"))?, pid })
}

fn run(o: &Options) -> Result<(), String> {
    std::fs::create_dir_all(&o.out).map_err(|e| format!("{}: {e}", o.out.display()))?;
    let deadline = Instant::now() + Duration::from_secs(o.max_seconds);
    let load_before = procfs::loadavg();
    let Measured { mut tables, json, failed, targets } = match o.scenario {
        1 => scenario_1(o, deadline),
        2 => scenario_2(o, deadline),
        3 => scenario_3(o, deadline),
        _ => scenario_4(o, deadline),
    };
    let load_after = procfs::loadavg();
    if let Some(last) = tables.last_mut() {
        last.note(format!(
            "load average (1, 5, 15 min) before {load_before}, after {load_after}: other work on the machine shows here"
        ));
    }
    let json = json
        .with("loadavg_before", load_before)
        .with("loadavg_after", load_after)
        .with("targets", Json::Arr(targets.iter().map(Target::json).collect()));
    let stem = o.out.join(format!("scenario-{}", o.scenario));
    let text: Vec<String> = tables.iter().map(Table::render).collect();
    write(&stem.with_extension("txt"), &text.join("\n"))?;
    write(&stem.with_extension("json"), &json.pretty())?;
    let lines: Vec<String> = std::iter::once(names(o).join("\t")).chain(targets.iter().map(Target::to_line)).collect();
    write(&o.out.join(format!("targets-{}.tsv", o.scenario)), &(lines.join("\n") + "\n"))?;
    eprintln!("  scenario {} written to {}", o.scenario, stem.with_extension("txt").display());
    if failed.is_empty() { Ok(()) } else { Err(format!("scenario {}: failed for {}", o.scenario, failed.join(", "))) }
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

fn stream_path(events: u64) -> String {
    format!("/stream?n={events}")
}

/// Checks that `body` is exactly `events` events of the agreed form, whatever the float in `time`.
fn verify_body(body: &[u8], events: u64) -> Result<(), String> {
    let text = std::str::from_utf8(body).map_err(|_| "body is not UTF-8".to_owned())?;
    let mut rest = text;
    for i in 0..events {
        let prefix = format!("event: update\nid: {i}\ndata: {{\"count\": {i}, \"time\": ");
        let after = rest.strip_prefix(prefix.as_str()).ok_or_else(|| {
            format!("event {i}: expected {prefix:?}..., got {:?}", rest.chars().take(80).collect::<String>())
        })?;
        let end = after.find("}\n\n").ok_or_else(|| format!("event {i}: no closing `}}\\n\\n`"))?;
        let time = &after[..end];
        if time.parse::<f64>().is_err() || time.contains(['\n', ' ']) {
            return Err(format!("event {i}: time {time:?} is not a number"));
        }
        rest = &after[end + 3..];
    }
    if !rest.is_empty() {
        return Err(format!(
            "{} unexpected bytes after the last event: {:?}",
            rest.len(),
            rest.chars().take(80).collect::<String>()
        ));
    }
    Ok(())
}

/// Waits for the server to answer, then checks its bytes. Returns an error message if it never does.
fn ready(o: &Options, s: &Server, deadline: Instant) -> Result<(), String> {
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        match client::fetch(s.addr, &stream_path(3), o.timeout) {
            Ok(f) => {
                return verify_body(&f.body, 3).map_err(|e| format!("wrong bytes: {e}"));
            }
            Err(e) => {
                if let Some(pid) = s.pid
                    && !procfs::alive(pid)
                {
                    return Err(format!("process {pid} is not running"));
                }
                if Instant::now() > until.min(deadline) {
                    return Err(format!("not answering on {}: {e}", s.addr));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// Readiness of every server; the failed ones are reported and left out.
fn ready_all<'a>(o: &'a Options, deadline: Instant, errors: &mut Vec<Option<String>>) -> Vec<&'a Server> {
    let mut ok = Vec::new();
    for s in &o.servers {
        match ready(o, s, deadline) {
            Ok(()) => {
                ok.push(s);
                errors.push(None);
            }
            Err(e) => {
                eprintln!("  {}: {e}", s.name);
                errors.push(Some(e));
            }
        }
    }
    ok
}

fn names(o: &Options) -> Vec<&str> {
    o.servers.iter().map(|s| s.name.as_str()).collect()
}

fn floor_index(o: &Options) -> Option<usize> {
    o.servers.iter().position(|s| s.name == FLOOR)
}

/// The median over rounds of `value[server] / value[floor]`, taking only rounds where both have a value.
fn floor_ratio(per_round: &[Vec<Option<f64>>], server: usize, floor: Option<usize>) -> Option<f64> {
    let floor = floor?;
    let ratios: Vec<f64> = per_round.iter().filter_map(|round| Some(round[server]? / round[floor]?)).collect();
    (!ratios.is_empty()).then(|| table::median(&ratios))
}

fn cpu_ms(
    o: &Options,
    before: &[procfs::Cpu],
    after: &[procfs::Cpu],
    k: usize,
    per: f64,
) -> (Option<f64>, Option<f64>) {
    let sched = match (before[k].sched_ns, after[k].sched_ns) {
        (Some(a), Some(b)) if per > 0.0 => Some(b.saturating_sub(a) as f64 / 1e6 / per),
        _ => None,
    };
    let stat = match (before[k].stat_ticks, after[k].stat_ticks) {
        (Some(a), Some(b)) if per > 0.0 => Some(b.saturating_sub(a) as f64 * 1000.0 / o.clk_tck as f64 / per),
        _ => None,
    };
    (sched, stat)
}

/// CPU time for the table: the precise per-thread clock, or the tick clock (marked `~`) where it is missing.
fn cpu_cell(sched_ms: Option<f64>, stat_ms: Option<f64>) -> String {
    match (sched_ms, stat_ms) {
        (Some(ms), _) => table::secs(ms / 1e3),
        (None, Some(ms)) => format!("~{}", table::secs(ms / 1e3)),
        (None, None) => "-".into(),
    }
}

fn cpu_all(o: &Options) -> Vec<procfs::Cpu> {
    o.servers.iter().map(|s| s.pid.map(procfs::cpu).unwrap_or_default()).collect()
}

fn error_cells(o: &Options, errors: &[Option<String>]) -> Vec<(String, String)> {
    o.servers.iter().zip(errors).filter_map(|(s, e)| Some((s.name.clone(), e.clone()?))).collect()
}

fn fetch_checked(o: &Options, s: &Server, path: &str) -> Result<Fetched, String> {
    let f = client::fetch(s.addr, path, o.timeout).map_err(|e| e.to_string())?;
    let events = f.events();
    if events != o.events {
        return Err(format!("received {events} events, expected {} ({:?} framing)", o.events, f.framing));
    }
    Ok(f)
}

// ---------------------------------------------------------------------------------------------------------
// Scenario 1: one stream at a time.

fn scenario_1(o: &Options, deadline: Instant) -> Measured {
    let reps = o.reps.unwrap_or(if o.quick { 5 } else { 100 });
    let warmup: u64 = if o.quick { 1 } else { 5 };
    let path = stream_path(o.events);
    eprintln!("scenario 1: one stream of {} events, {reps} rounds over {} servers", o.events, o.servers.len());
    let mut errors = Vec::new();
    let live = ready_all(o, deadline, &mut errors);
    for (k, s) in o.servers.iter().enumerate() {
        if errors[k].is_some() || !live.iter().any(|l| l.name == s.name) {
            continue;
        }
        for _ in 0..warmup {
            if let Err(e) = fetch_checked(o, s, &path) {
                errors[k] = Some(format!("warm-up: {e}"));
                break;
            }
        }
    }
    let cpu_before = cpu_all(o);
    let mut rounds: Vec<Vec<Option<f64>>> = Vec::new();
    let mut truncated = false;
    for round in 0..reps {
        if Instant::now() > deadline {
            truncated = true;
            break;
        }
        let mut times = vec![None; o.servers.len()];
        for (k, s) in o.servers.iter().enumerate() {
            if errors[k].is_some() {
                continue;
            }
            match fetch_checked(o, s, &path) {
                Ok(f) => times[k] = Some(f.elapsed.as_secs_f64()),
                Err(e) => errors[k] = Some(format!("round {round}: {e}")),
            }
        }
        rounds.push(times);
        if (round + 1) % 25 == 0 {
            eprintln!("  round {}/{reps}", round + 1);
        }
    }
    let cpu_after = cpu_all(o);

    let floor = floor_index(o);
    let mut t = Table::new(
        format!(
            "Scenario 1: one stream of {} events, connect to last byte ({} rounds, servers interleaved)",
            o.events,
            rounds.len()
        ),
        &names(o),
    );
    let mut servers_json = Vec::new();
    let mut rows: [Vec<String>; 5] = Default::default();
    let mut target = Target {
        label: format!("1 stream x {} events, median time", o.events),
        goal: Goal::FloorRatioAtMost(1.2),
        cells: Vec::new(),
        judged: None,
    };
    for (k, s) in o.servers.iter().enumerate() {
        let samples: Vec<f64> = rounds.iter().filter_map(|r| r[k]).collect();
        let med = table::median(&samples);
        let (lo, hi) = table::min_max(&samples);
        let ratio = floor_ratio(&rounds, k, floor);
        target.cells.push(format!("{} ({})", table::secs(med), table::ratio(ratio)));
        if s.name == targets::JUDGED {
            target.judged = ratio;
        }
        let (cpu_sched, cpu_stat) = cpu_ms(o, &cpu_before, &cpu_after, k, samples.len() as f64);
        rows[0].push(table::secs(med));
        rows[1].push(format!("{} – {}", table::secs(lo), table::secs(hi)));
        rows[2].push(table::rate(o.events as f64 / med));
        rows[3].push(table::ratio(ratio));
        rows[4].push(cpu_cell(cpu_sched, cpu_stat));
        servers_json.push(
            Json::obj()
                .with("name", s.name.as_str())
                .with("addr", s.addr.to_string())
                .with("error", errors[k].clone())
                .with("rounds", samples.len())
                .with("median_s", med)
                .with("min_s", lo)
                .with("max_s", hi)
                .with("events_per_s_at_median", o.events as f64 / med)
                .with("ratio_to_floor_median", ratio)
                .with("server_cpu_ms_per_stream_schedstat", cpu_sched)
                .with("server_cpu_ms_per_stream_stat", cpu_stat)
                .with("samples_s", samples),
        );
    }
    let labels =
        ["median", "min – max", "events/s at median", "x floor (median of per-round ratios)", "server CPU / stream"];
    for (label, cells) in labels.iter().zip(rows) {
        t.row(*label, cells);
    }
    if truncated {
        t.note(format!("stopped early at the time limit: {} of {reps} rounds", rounds.len()));
    }
    let failed = add_errors(&mut t, o, &errors);
    let json = Json::obj()
        .with("scenario", 1u64)
        .with("title", t.title.as_str())
        .with(
            "params",
            Json::obj()
                .with("events", o.events)
                .with("rounds_requested", reps)
                .with("warmup_per_server", warmup)
                .with("quick", o.quick),
        )
        .with("servers", Json::Arr(servers_json));
    Measured { tables: vec![t], json, failed, targets: vec![target] }
}

fn add_errors(t: &mut Table, o: &Options, errors: &[Option<String>]) -> Vec<String> {
    let cells = error_cells(o, errors);
    for (name, e) in &cells {
        t.note(format!("{name}: FAILED: {e}"));
    }
    cells.into_iter().map(|(name, _)| name).collect()
}

// ---------------------------------------------------------------------------------------------------------
// Scenario 2: many streams at once.

struct Concurrent {
    wall: Duration,
    events: u64,
}

fn concurrent(o: &Options, s: &Server, conns: usize, path: &str) -> Result<Concurrent, String> {
    let barrier = Arc::new(Barrier::new(conns + 1));
    let mut threads = Vec::with_capacity(conns);
    for _ in 0..conns {
        let barrier = Arc::clone(&barrier);
        let (addr, path, timeout) = (s.addr, path.to_owned(), o.timeout);
        let spawned = std::thread::Builder::new().stack_size(256 * 1024).spawn(move || {
            barrier.wait();
            let start = Instant::now();
            let result = client::fetch(addr, &path, timeout);
            (start, Instant::now(), result)
        });
        match spawned {
            Ok(handle) => threads.push(handle),
            Err(e) => {
                // Threads already waiting at the barrier would wait forever: this one cannot be recovered from.
                eprintln!("cannot spawn client thread: {e}");
                std::process::exit(1);
            }
        }
    }
    barrier.wait();
    let mut first = None::<Instant>;
    let mut last = None::<Instant>;
    let mut events = 0;
    let mut error = None;
    for handle in threads {
        let (start, end, result) = handle.join().map_err(|_| "client thread panicked".to_owned())?;
        first = Some(first.map_or(start, |f| f.min(start)));
        last = Some(last.map_or(end, |l| l.max(end)));
        match result {
            Ok(f) => {
                let got = f.events();
                if got != o.events && error.is_none() {
                    error = Some(format!("a stream had {got} events, expected {}", o.events));
                }
                events += got;
            }
            Err(e) => {
                if error.is_none() {
                    error = Some(e.to_string());
                }
            }
        }
    }
    if let Some(e) = error {
        return Err(e);
    }
    let (Some(first), Some(last)) = (first, last) else {
        return Err("no connections".into());
    };
    Ok(Concurrent { wall: last - first, events })
}

fn scenario_2(o: &Options, deadline: Instant) -> Measured {
    let conns = o.conns.unwrap_or(if o.quick { 10 } else { 100 });
    let rounds_wanted = match o.reps {
        Some(reps) => reps.div_ceil(10),
        None if o.quick => 2,
        None => 10,
    };
    let path = stream_path(o.events);
    eprintln!(
        "scenario 2: {conns} concurrent streams of {} events, {rounds_wanted} rounds over {} servers",
        o.events,
        o.servers.len()
    );
    let mut errors = Vec::new();
    let live = ready_all(o, deadline, &mut errors);
    // Warm up with a smaller concurrent burst so lazily started threads and pools exist before measuring.
    for (k, s) in o.servers.iter().enumerate() {
        if errors[k].is_none()
            && live.iter().any(|l| l.name == s.name)
            && let Err(e) = concurrent(o, s, conns.min(10), &path)
        {
            errors[k] = Some(format!("warm-up: {e}"));
        }
    }
    let cpu_before = cpu_all(o);
    let mut rounds: Vec<Vec<Option<f64>>> = Vec::new();
    let mut truncated = false;
    for round in 0..rounds_wanted {
        if Instant::now() > deadline {
            truncated = true;
            break;
        }
        let mut walls = vec![None; o.servers.len()];
        // Each round starts one server further along, so that every server takes every place in the round
        // equally often (two builds of one server compared side by side would otherwise differ by their place).
        let n = o.servers.len();
        let order = (0..n).map(|i| (i + round) % n);
        for k in order {
            let s = &o.servers[k];
            if errors[k].is_some() {
                continue;
            }
            match concurrent(o, s, conns, &path) {
                Ok(c) if c.events == conns as u64 * o.events => walls[k] = Some(c.wall.as_secs_f64()),
                Ok(c) => errors[k] = Some(format!("round {round}: {} events in all", c.events)),
                Err(e) => errors[k] = Some(format!("round {round}: {e}")),
            }
        }
        rounds.push(walls);
        eprintln!("  round {}/{rounds_wanted}", round + 1);
    }
    let cpu_after = cpu_all(o);

    let total_events = conns as f64 * o.events as f64;
    let floor = floor_index(o);
    let mut t = Table::new(
        format!(
            "Scenario 2: {conns} concurrent connections x {} events, all events delivered per second ({} rounds)",
            o.events,
            rounds.len()
        ),
        &names(o),
    );
    let mut servers_json = Vec::new();
    let mut rows: [Vec<String>; 7] = Default::default();
    let mut share_target = Target {
        label: format!("{conns} streams x {} events, events/s", o.events),
        goal: Goal::FloorShareAtLeast(0.8),
        cells: Vec::new(),
        judged: None,
    };
    let mut cpu_target = Target {
        label: "server CPU per event (concurrent)".into(),
        goal: Goal::FloorRatioAtMost(1.3),
        cells: Vec::new(),
        judged: None,
    };
    // CPU per event by the precise clock where there is one, else by ticks.
    let cpu_per_event: Vec<Option<f64>> = (0..o.servers.len())
        .map(|k| {
            let events = rounds.iter().filter(|r| r[k].is_some()).count() as f64 * total_events;
            let (sched, stat) = cpu_ms(o, &cpu_before, &cpu_after, k, events);
            sched.or(stat).map(|ms| ms / 1e3)
        })
        .collect();
    for (k, s) in o.servers.iter().enumerate() {
        let walls: Vec<f64> = rounds.iter().filter_map(|r| r[k]).collect();
        let rates: Vec<f64> = walls.iter().map(|w| total_events / w).collect();
        let med = table::median(&rates);
        let (lo, hi) = table::min_max(&rates);
        let ratio = floor_ratio(&rounds, k, floor);
        let share = targets::floor_share(&rounds, k, floor);
        let streams = (walls.len() * conns) as f64;
        let (cpu_sched, cpu_stat) = cpu_ms(o, &cpu_before, &cpu_after, k, streams);
        let (event_sched, event_stat) = cpu_ms(o, &cpu_before, &cpu_after, k, streams * o.events as f64);
        let cpu_ratio = floor.and_then(|f| Some(cpu_per_event[k]? / cpu_per_event[f]?));
        let share_cell = share.map_or("-".into(), |x| format!("{:.1} %", x * 100.0));
        share_target.cells.push(format!("{} ({share_cell})", table::rate(med)));
        cpu_target.cells.push(format!(
            "{} ({})",
            cpu_per_event[k].map_or("-".into(), table::secs),
            table::ratio(cpu_ratio)
        ));
        if s.name == targets::JUDGED {
            share_target.judged = share;
            cpu_target.judged = cpu_ratio;
        }
        rows[0].push(table::rate(med));
        rows[1].push(format!("{} – {}", table::rate(lo), table::rate(hi)));
        rows[2].push(table::secs(table::median(&walls)));
        rows[3].push(table::ratio(ratio));
        rows[4].push(share_cell);
        rows[5].push(cpu_cell(cpu_sched, cpu_stat));
        rows[6].push(cpu_cell(event_sched, event_stat));
        servers_json.push(
            Json::obj()
                .with("name", s.name.as_str())
                .with("addr", s.addr.to_string())
                .with("error", errors[k].clone())
                .with("rounds", walls.len())
                .with("events_per_s_median", med)
                .with("events_per_s_min", lo)
                .with("events_per_s_max", hi)
                .with("wall_s_median", table::median(&walls))
                .with("time_ratio_to_floor_median", ratio)
                .with("events_per_s_share_of_floor_median", share)
                .with("server_cpu_us_per_event", cpu_per_event[k].map(|s| s * 1e6))
                .with("server_cpu_ms_per_stream_schedstat", cpu_sched)
                .with("server_cpu_ms_per_stream_stat", cpu_stat)
                .with("wall_s", walls),
        );
    }
    let labels = [
        "events/s (median)",
        "min – max",
        "wall time per round (median)",
        "x floor time (median of per-round ratios)",
        "events/s as a share of the floor's (median of per-round ratios)",
        "server CPU / stream",
        "server CPU / event",
    ];
    for (label, cells) in labels.iter().zip(rows) {
        t.row(*label, cells);
    }
    t.note("the client's threads share the 2 cores with the server: a server that needs less CPU leaves more to them");
    if truncated {
        t.note(format!("stopped early at the time limit: {} of {rounds_wanted} rounds", rounds.len()));
    }
    let failed = add_errors(&mut t, o, &errors);
    let json = Json::obj()
        .with("scenario", 2u64)
        .with("title", t.title.as_str())
        .with(
            "params",
            Json::obj()
                .with("events", o.events)
                .with("connections", conns)
                .with("rounds_requested", rounds_wanted)
                .with("quick", o.quick),
        )
        .with("servers", Json::Arr(servers_json));
    Measured { tables: vec![t], json, failed, targets: vec![share_target, cpu_target] }
}

// ---------------------------------------------------------------------------------------------------------
// Scenario 3: idle streams held open.

/// Opens `count` streams to `/idle` from `threads` threads, each read up to its first event.
fn open_idle(
    o: &Options,
    s: &Server,
    count: usize,
    threads: usize,
    deadline: Instant,
) -> Result<Vec<TcpStream>, String> {
    let threads = threads.clamp(1, count.max(1));
    let mut handles = Vec::new();
    for t in 0..threads {
        let share = count / threads + usize::from(t < count % threads);
        let (addr, timeout) = (s.addr, o.timeout);
        let handle = std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || -> Result<Vec<TcpStream>, String> {
                let mut held = Vec::with_capacity(share);
                for _ in 0..share {
                    if Instant::now() > deadline {
                        return Err(format!("time limit reached after {} connections", held.len()));
                    }
                    let mut conn = Conn::open(addr, "/idle", timeout).map_err(|e| e.to_string())?;
                    if conn.status != 200 {
                        return Err(format!("status {}", conn.status));
                    }
                    let events = conn.read_events(1).map_err(|e| e.to_string())?;
                    if events < 1 {
                        return Err("the stream ended before its first event".into());
                    }
                    held.push(conn.into_stream());
                }
                Ok(held)
            })
            .map_err(|e| format!("cannot spawn opener thread: {e}"))?;
        handles.push(handle);
    }
    let mut all = Vec::with_capacity(count);
    let mut error = None;
    for h in handles {
        match h.join() {
            Ok(Ok(held)) => all.extend(held),
            Ok(Err(e)) => error = error.or(Some(e)),
            Err(_) => error = error.or(Some("opener thread panicked".into())),
        }
    }
    match error {
        Some(e) => Err(format!("after {} of {count} connections: {e}", all.len())),
        None => Ok(all),
    }
}

/// Opens one idle stream and checks that its first event has the agreed bytes.
fn check_idle(o: &Options, s: &Server) -> Result<(), String> {
    let mut conn = Conn::open(s.addr, "/idle", o.timeout).map_err(|e| format!("/idle: {e}"))?;
    if conn.status != 200 {
        return Err(format!("/idle: status {}", conn.status));
    }
    conn.read_events(1).map_err(|e| format!("/idle: {e}"))?;
    let end = client::find(&conn.body, b"\n\n").map_or(conn.body.len(), |i| i + 2);
    verify_body(&conn.body[..end], 1).map_err(|e| format!("/idle: wrong bytes: {e}"))
}

struct IdleSample {
    conns: usize,
    rss_kib: u64,
    fds: Option<usize>,
    threads: Option<usize>,
    open_s: f64,
}

fn scenario_3(o: &Options, deadline: Instant) -> Measured {
    let mut sizes = o.idle.clone().unwrap_or_else(|| if o.quick { vec![200] } else { vec![1000, 10_000] });
    let mut notes = Vec::new();
    if let Some(nofile) = o.nofile {
        // Both the harness and each server need a descriptor per connection, plus their own.
        let cap = nofile.saturating_sub(256);
        let dropped: Vec<String> = sizes.iter().filter(|&&n| n > cap).map(|n| n.to_string()).collect();
        if !dropped.is_empty() {
            notes.push(format!("skipped {} connections: the open-file limit is {nofile}", dropped.join(", ")));
            sizes.retain(|&n| n <= cap);
        }
    }
    eprintln!("scenario 3: idle streams held open: {sizes:?} on each of {} servers", o.servers.len());
    let mut errors = Vec::new();
    let live = ready_all(o, deadline, &mut errors);
    let mut results: Vec<(Option<u64>, Vec<IdleSample>, Option<f64>)> = Vec::new();
    for (k, s) in o.servers.iter().enumerate() {
        let mut samples = Vec::new();
        if errors[k].is_some() || !live.iter().any(|l| l.name == s.name) {
            results.push((None, samples, None));
            continue;
        }
        let Some(pid) = s.pid else {
            errors[k] = Some("no pid given: cannot read its memory".into());
            results.push((None, samples, None));
            continue;
        };
        // Warm up: a short stream and one idle stream opened and closed, then let the server settle.
        let warm = client::fetch(s.addr, &stream_path(10), o.timeout)
            .map_err(|e| e.to_string())
            .and_then(|_| check_idle(o, s));
        if let Err(e) = warm {
            errors[k] = Some(format!("warm-up: {e}"));
            results.push((None, samples, None));
            continue;
        }
        std::thread::sleep(Duration::from_millis(300));
        let rss_before = procfs::vm_rss_kib(pid);
        let fds_before = procfs::open_fds(pid);
        let mut held: Vec<TcpStream> = Vec::new();
        eprintln!("  {}: VmRSS before {} KiB", s.name, rss_before.unwrap_or(0));
        for &size in &sizes {
            let started = Instant::now();
            // Per server, at most three minutes to open them all, and never past the scenario's limit.
            let until = deadline.min(started + Duration::from_secs(180));
            match open_idle(o, s, size - held.len(), 8, until) {
                Ok(more) => held.extend(more),
                Err(e) => {
                    errors[k] = Some(format!("opening {size}: {e}"));
                    break;
                }
            }
            let open_s = started.elapsed().as_secs_f64();
            std::thread::sleep(Duration::from_millis(500));
            if !procfs::alive(pid) {
                errors[k] = Some(format!("the server died holding {size} connections"));
                break;
            }
            let rss = procfs::vm_rss_kib(pid).unwrap_or(0);
            eprintln!("  {}: {size} open in {open_s:.1} s, VmRSS {rss} KiB", s.name);
            samples.push(IdleSample {
                conns: size,
                rss_kib: rss,
                fds: procfs::open_fds(pid),
                threads: procfs::threads(pid),
                open_s,
            });
        }
        drop(held);
        // Let the server notice the closes before the next one is measured, so their clean-up is not
        // charged to someone else.
        let settle_start = Instant::now();
        let settle_until = settle_start + Duration::from_secs(60);
        while Instant::now() < settle_until {
            match (procfs::open_fds(pid), fds_before) {
                (Some(now), Some(before)) if now <= before + 16 => break,
                (None, _) => break,
                _ => std::thread::sleep(Duration::from_millis(100)),
            }
        }
        let settle = settle_start.elapsed().as_secs_f64();
        results.push((rss_before, samples, Some(settle)));
    }

    let floor = floor_index(o);
    let per_conn = |k: usize, size: usize| -> Option<f64> {
        let (before, samples, _) = &results[k];
        let sample = samples.iter().find(|x| x.conns == size)?;
        Some((sample.rss_kib as f64 - (*before)? as f64) * 1024.0 / size as f64)
    };
    let mut t = Table::new("Scenario 3: idle SSE streams held open, server VmRSS growth per connection", &names(o));
    for (step, &size) in sizes.iter().enumerate() {
        let opened = size - if step == 0 { 0 } else { sizes[step - 1] };
        let cells = (0..o.servers.len()).map(|k| per_conn(k, size).map_or("-".into(), table::bytes)).collect();
        t.row(format!("{size} open: memory / connection"), cells);
        let cells = (0..o.servers.len())
            .map(|k| {
                let ratio = floor.and_then(|f| Some(per_conn(k, size)? / per_conn(f, size)?));
                table::ratio(ratio)
            })
            .collect();
        t.row(format!("{size} open: x floor"), cells);
        let cells = (0..o.servers.len())
            .map(|k| results[k].1.iter().find(|x| x.conns == size).map_or("-".into(), |x| table::secs(x.open_s)))
            .collect();
        t.row(format!("{size} open: time to open the last {opened}"), cells);
    }
    let cells = results
        .iter()
        .map(|(before, _, _)| before.map_or("-".into(), |kib| table::bytes(kib as f64 * 1024.0)))
        .collect();
    t.row("VmRSS before", cells);
    let cells = results
        .iter()
        .map(|(_, samples, _)| samples.last().map_or("-".into(), |x| table::bytes(x.rss_kib as f64 * 1024.0)))
        .collect();
    t.row("VmRSS with the most open", cells);
    let mut targets = Vec::new();
    if let Some(&most) = sizes.last() {
        let per = |k: usize| per_conn(k, most);
        targets.push(Target {
            label: format!("idle stream memory at {most}"),
            goal: Goal::BytesAtMost(768.0),
            cells: (0..o.servers.len()).map(|k| per(k).map_or("-".into(), table::bytes)).collect(),
            judged: targets::judged_index(&names(o)).and_then(per),
        });
    }
    t.note("the sizes are cumulative steps on one fresh server: each figure is (VmRSS at N - VmRSS before) / N");
    t.note("floor holds each idle stream on its own thread (64 KiB stacks): it is a thread-per-connection reference, not a minimum");
    for n in notes {
        t.note(n);
    }
    let failed = add_errors(&mut t, o, &errors);
    let servers_json = o
        .servers
        .iter()
        .enumerate()
        .map(|(k, s)| {
            let (before, samples, settle) = &results[k];
            let steps = samples
                .iter()
                .map(|x| {
                    Json::obj()
                        .with("connections", x.conns)
                        .with("vm_rss_kib", x.rss_kib)
                        .with("open_fds", x.fds)
                        .with("threads", x.threads)
                        .with("bytes_per_connection", per_conn(k, x.conns))
                        .with("ratio_to_floor", floor.and_then(|f| Some(per_conn(k, x.conns)? / per_conn(f, x.conns)?)))
                        .with("open_s", x.open_s)
                })
                .collect();
            Json::obj()
                .with("name", s.name.as_str())
                .with("addr", s.addr.to_string())
                .with("error", errors[k].clone())
                .with("vm_rss_kib_before", *before)
                .with("steps", Json::Arr(steps))
                .with("close_settle_s", *settle)
        })
        .collect();
    let json = Json::obj()
        .with("scenario", 3u64)
        .with("title", t.title.as_str())
        .with(
            "params",
            Json::obj()
                .with("connections", sizes.iter().map(|&n| n as u64).collect::<Vec<u64>>())
                .with("quick", o.quick),
        )
        .with("servers", Json::Arr(servers_json));
    Measured { tables: vec![t], json, failed, targets }
}

// ---------------------------------------------------------------------------------------------------------
// Scenario 4: broadcast to many subscribers.

/// `"subscribers": N` (or `"subscribers":N`) in the start route's JSON answer.
fn reply_subscribers(reply: &str) -> Option<u64> {
    let rest = &reply[reply.find("\"subscribers\"")? + "\"subscribers\"".len()..];
    let digits: String = rest.trim_start_matches([':', ' ']).chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

fn scenario_4(o: &Options, deadline: Instant) -> Measured {
    let mut sizes = o.subscribers.clone().unwrap_or_else(|| if o.quick { vec![100, 300] } else { vec![1000, 10_000] });
    let mut notes = Vec::new();
    if let Some(nofile) = o.nofile {
        // The harness needs a descriptor per subscriber, and so does each server.
        let cap = nofile.saturating_sub(256).max(1);
        if sizes.iter().any(|&n| n > cap) {
            notes.push(format!("at most {cap} subscribers: the open-file limit is {nofile}"));
            sizes = sizes.into_iter().map(|n| n.min(cap)).collect();
            sizes.dedup();
        }
    }
    let mut tables = Vec::new();
    let mut runs = Vec::new();
    let mut failed: Vec<String> = Vec::new();
    let mut targets = Vec::new();
    let judged = targets::judged_index(&names(o));
    let floor = floor_index(o);
    let mut p99_target = None;
    for &size in &sizes {
        let run = broadcast_size(o, deadline, size, &notes);
        let cell = |values: &[Option<f64>], k: usize| {
            let ratio = floor.and_then(|f| Some(values[k]? / values[f]?));
            format!("{} ({})", values[k].map_or("-".into(), table::secs), table::ratio(ratio))
        };
        let judge = |values: &[Option<f64>]| Some(values[judged?]? / values[floor?]?);
        targets.push(Target {
            label: format!("broadcast, CPU per delivery, {size} subscribers"),
            goal: Goal::FloorRatioAtMost(1.15),
            cells: (0..o.servers.len()).map(|k| cell(&run.cpu_per_delivery, k)).collect(),
            judged: judge(&run.cpu_per_delivery),
        });
        p99_target = Some(Target {
            label: format!("broadcast p99, {size} subscribers"),
            goal: Goal::FloorRatioAtMost(1.2),
            cells: (0..o.servers.len()).map(|k| cell(&run.p99, k)).collect(),
            judged: judge(&run.p99),
        });
        for name in run.failed {
            if !failed.contains(&name) {
                failed.push(name);
            }
        }
        tables.push(run.table);
        runs.push(run.json);
    }
    targets.extend(p99_target);
    let json = Json::obj().with("scenario", 4u64).with("runs", Json::Arr(runs));
    Measured { tables, json, failed, targets }
}

/// One broadcast size measured on every server in turn.
struct BroadcastRun {
    table: Table,
    json: Json,
    failed: Vec<String>,
    /// Per server: server CPU seconds per delivered event, and the p99 latency in seconds.
    cpu_per_delivery: Vec<Option<f64>>,
    p99: Vec<Option<f64>>,
}

fn broadcast_size(o: &Options, deadline: Instant, subscribers: usize, notes: &[String]) -> BroadcastRun {
    let p = broadcast::Params {
        subscribers,
        rate: o.rate,
        seconds: o.broadcast_seconds.unwrap_or(if o.quick { 2 } else { 10 }),
        threads: o.sub_threads,
        open_limit: Duration::from_secs(if o.quick { 30 } else { 180 }),
        grace: Duration::from_secs(if o.quick { 15 } else { 60 }),
        settle: Duration::from_millis(if o.quick { 200 } else { 1000 }),
        io_timeout: o.timeout,
    };
    eprintln!(
        "scenario 4: {} subscribers, {} events ({}/s for {} s), on each of {} servers",
        p.subscribers,
        p.events(),
        p.rate,
        p.seconds,
        o.servers.len()
    );
    let mut errors: Vec<Option<String>> = vec![None; o.servers.len()];
    let mut outcomes: Vec<Option<broadcast::Outcome>> = Vec::new();
    let mut settles: Vec<Option<f64>> = Vec::new();
    for s in &o.servers {
        let k = outcomes.len();
        if let Err(e) = ready(o, s, deadline) {
            eprintln!("  {}: {e}", s.name);
            errors[k] = Some(e);
            outcomes.push(None);
            settles.push(None);
            continue;
        }
        let fds_before = s.pid.and_then(procfs::open_fds);
        let outcome = broadcast::run(s.addr, s.pid, &p, deadline);
        eprintln!(
            "  {}: {} of {} subscribers open in {:.1} s; {} of {} deliveries in {:.1} s",
            s.name,
            outcome.opened,
            p.subscribers,
            outcome.open_s,
            outcome.delivered,
            outcome.expected,
            outcome.window_s
        );
        if let Some(pid) = s.pid
            && !procfs::alive(pid)
        {
            errors[k] = Some(format!("the server died (process {pid})"));
        } else if !outcome.passed() {
            let mut why = format!("delivered {} of {} events", outcome.delivered, outcome.expected);
            for (kind, (count, example)) in &outcome.failures {
                let _ = std::fmt::Write::write_fmt(&mut why, format_args!("; {kind}: {count} ({example})"));
            }
            if let Some(Err(e)) = &outcome.start_reply {
                why.push_str(&format!("; the start request failed: {e}"));
            }
            errors[k] = Some(why);
        }
        // As in scenario 3: let the server see the closes before the next one is measured.
        let settle_start = Instant::now();
        if let Some(pid) = s.pid {
            let until = settle_start + Duration::from_secs(60);
            while Instant::now() < until {
                match (procfs::open_fds(pid), fds_before) {
                    (Some(now), Some(before)) if now <= before + 16 => break,
                    (None, _) => break,
                    _ => std::thread::sleep(Duration::from_millis(100)),
                }
            }
        }
        settles.push(Some(settle_start.elapsed().as_secs_f64()));
        outcomes.push(Some(outcome));
    }

    let mut t = Table::new(
        format!(
            "Scenario 4: broadcast, {} subscribers on one topic, {} events/s for {} s ({} events), publish to receive",
            p.subscribers,
            p.rate,
            p.seconds,
            p.events()
        ),
        &names(o),
    );
    let mut servers_json = Vec::new();
    let mut cpu_per_delivery = vec![None; o.servers.len()];
    let mut p99s = vec![None; o.servers.len()];
    let mut rows: Vec<(String, Vec<String>)> = [
        "subscribers open (response head received)",
        "time to open them",
        "subscribers the server counted at the start",
        "events delivered / expected",
        "every event to every subscriber, in order, once",
        "latency p50",
        "latency p99",
        "latency max",
        "publish span (first to last t_us)",
        "last delivery after the last publish",
        "server CPU from start to last delivery",
        "server CPU / delivered event",
        "harness CPU / delivered event",
        "VmRSS with the subscribers open",
    ]
    .iter()
    .map(|label| ((*label).to_owned(), Vec::new()))
    .collect();
    for (k, s) in o.servers.iter().enumerate() {
        let Some(out) = outcomes[k].as_mut() else {
            for (_, cells) in &mut rows {
                cells.push("-".into());
            }
            servers_json.push(
                Json::obj()
                    .with("name", s.name.as_str())
                    .with("addr", s.addr.to_string())
                    .with("error", errors[k].clone()),
            );
            continue;
        };
        out.latencies_us.sort_unstable();
        let q = |x: f64| broadcast::quantile(&out.latencies_us, x).map(|us| us as f64 / 1e6);
        let (p50, p99, max) = (q(0.5), q(0.99), q(1.0));
        let span = match (out.first_publish_us, out.last_publish_us) {
            (Some(a), Some(b)) => Some(b.saturating_sub(a) as f64 / 1e6),
            _ => None,
        };
        let drain = match (out.last_publish_us, out.last_receive_us) {
            (Some(a), Some(b)) => Some(b.saturating_sub(a) as f64 / 1e6),
            _ => None,
        };
        let before = [out.cpu_before];
        let after = [out.cpu_after];
        let (cpu_total_sched, cpu_total_stat) = cpu_ms(o, &before, &after, 0, 1.0);
        let (cpu_event_sched, cpu_event_stat) = cpu_ms(o, &before, &after, 0, out.delivered as f64);
        cpu_per_delivery[k] = cpu_event_sched.or(cpu_event_stat).map(|ms| ms / 1e3);
        p99s[k] = p99;
        let (client_sched, client_stat) =
            cpu_ms(o, &[out.client_cpu_before], &[out.client_cpu_after], 0, out.delivered as f64);
        let start_reply = match &out.start_reply {
            Some(Ok(body)) => Json::Str(body.clone()),
            Some(Err(e)) => Json::Str(format!("error: {e}")),
            None => Json::Null,
        };
        let counted = match &out.start_reply {
            Some(Ok(body)) => reply_subscribers(body),
            _ => None,
        };
        let secs_or_dash = |v: Option<f64>| v.map_or("-".into(), table::secs);
        let cells = [
            format!("{}/{}", out.opened, p.subscribers),
            table::secs(out.open_s),
            counted.map_or("-".into(), |n| n.to_string()),
            format!("{}/{}", out.delivered, out.expected),
            if out.passed() { "PASS".into() } else { "FAIL".into() },
            secs_or_dash(p50),
            secs_or_dash(p99),
            secs_or_dash(max),
            secs_or_dash(span),
            secs_or_dash(drain),
            cpu_cell(cpu_total_sched, cpu_total_stat),
            cpu_cell(cpu_event_sched, cpu_event_stat),
            cpu_cell(client_sched, client_stat),
            out.vm_rss_kib.map_or("-".into(), |kib| table::bytes(kib as f64 * 1024.0)),
        ];
        for ((_, column), cell) in rows.iter_mut().zip(cells) {
            column.push(cell);
        }
        let failures: Vec<Json> = out
            .failures
            .iter()
            .map(|(kind, (count, example))| {
                Json::obj().with("kind", *kind).with("subscribers", *count).with("example", example.as_str())
            })
            .collect();
        servers_json.push(
            Json::obj()
                .with("name", s.name.as_str())
                .with("addr", s.addr.to_string())
                .with("error", errors[k].clone())
                .with("passed", out.passed())
                .with("subscribers_open", out.opened)
                .with("open_s", out.open_s)
                .with("start_reply", start_reply)
                .with("subscribers_counted_by_server", counted)
                .with("delivered", out.delivered)
                .with("expected", out.expected)
                .with("subscribers_complete", out.complete)
                .with("timed_out", out.timed_out)
                .with("latency_p50_s", p50)
                .with("latency_p99_s", p99)
                .with("latency_max_s", max)
                .with("latency_max_by_seq_us", out.max_by_seq_us.clone())
                .with("publish_span_s", span)
                .with("last_delivery_after_last_publish_s", drain)
                .with("window_s", out.window_s)
                .with("server_cpu_ms_window_schedstat", cpu_total_sched)
                .with("server_cpu_ms_window_stat", cpu_total_stat)
                .with("server_cpu_us_per_delivery_schedstat", cpu_event_sched.map(|ms| ms * 1e3))
                .with("server_cpu_us_per_delivery_stat", cpu_event_stat.map(|ms| ms * 1e3))
                .with("harness_cpu_us_per_delivery_schedstat", client_sched.map(|ms| ms * 1e3))
                .with("vm_rss_kib_with_subscribers", out.vm_rss_kib)
                .with("close_settle_s", settles[k])
                .with("failures", Json::Arr(failures)),
        );
    }
    for (label, cells) in rows {
        t.row(label, cells);
    }
    t.note("latency: receive time (the read that brought the event) minus the t_us the server stamped at publish, both SystemTime on this machine, over every delivery");
    t.note("server CPU: schedstat of the server's threads from just before the start request to the last delivery (or the time limit)");
    t.note("servers are measured one after the other, each with its subscribers opened fresh; the harness reads with 2 threads on the same 2 cores");
    t.note(
        "floor: one thread writes each event to every subscriber's socket in turn, the kernel's cost and nothing else",
    );
    for n in notes {
        t.note(n.as_str());
    }
    let failed = add_errors(&mut t, o, &errors);
    let json = Json::obj()
        .with("title", t.title.as_str())
        .with(
            "params",
            Json::obj()
                .with("subscribers", p.subscribers)
                .with("rate_per_s", p.rate)
                .with("seconds", p.seconds)
                .with("events", p.events())
                .with("client_threads", p.threads)
                .with("grace_s", p.grace.as_secs())
                .with("quick", o.quick),
        )
        .with("servers", Json::Arr(servers_json));
    BroadcastRun { table: t, json, failed, cpu_per_delivery, p99: p99s }
}

// ---------------------------------------------------------------------------------------------------------
// Report.

fn report(args: &[String]) -> Result<(), String> {
    let mut dir = PathBuf::from("results");
    let mut meta = Json::obj();
    let mut quick = false;
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--dir" => dir = PathBuf::from(value),
            "--meta" => {
                let (k, v) = value.split_once('=').ok_or_else(|| format!("--meta {value:?}: expected KEY=VALUE"))?;
                quick |= k == "quick" && v == "1";
                meta = meta.with(k, v);
            }
            other => return Err(format!("unknown option {other:?}\n{USAGE}")),
        }
    }
    let mut scenarios = Vec::new();
    let mut tables = String::new();
    let mut servers: Vec<String> = Vec::new();
    let mut all_targets = Vec::new();
    for n in 1..=4 {
        if let Ok(text) = std::fs::read_to_string(dir.join(format!("targets-{n}.tsv"))) {
            let mut lines = text.lines();
            if let Some(header) = lines.next()
                && servers.is_empty()
            {
                servers = header.split('\t').map(str::to_owned).collect();
            }
            all_targets.extend(lines.filter_map(Target::from_line));
        }
        let stem = dir.join(format!("scenario-{n}"));
        let Ok(json) = std::fs::read_to_string(stem.with_extension("json")) else {
            continue;
        };
        scenarios.push(Json::Raw(json));
        if let Ok(text) = std::fs::read_to_string(stem.with_extension("txt")) {
            tables.push_str(&text);
            tables.push('\n');
        }
    }
    if scenarios.is_empty() {
        return Err(format!("no scenario results in {}", dir.display()));
    }
    let generated = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let all = Json::obj().with("generated_unix", generated).with("meta", meta).with("scenarios", Json::Arr(scenarios));
    let latest = dir.join("latest.json");
    write(&latest, &all.pretty())?;
    print!("{tables}");
    if !all_targets.is_empty() {
        let names: Vec<&str> = servers.iter().map(String::as_str).collect();
        println!("{}", targets::table(&names, &all_targets, quick).render());
    }
    println!("results: {}", latest.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(i: u64, time: &str) -> String {
        format!("event: update\nid: {i}\ndata: {{\"count\": {i}, \"time\": {time}}}\n\n")
    }

    #[test]
    fn verifies_bodies() {
        let body = event(0, "1763750000.1234567") + &event(1, "1763750000.5");
        assert_eq!(verify_body(body.as_bytes(), 2), Ok(()));
        assert!(verify_body(body.as_bytes(), 1).is_err());
        assert!(verify_body(body.as_bytes(), 3).is_err());
        let bad = event(0, "soon");
        assert!(verify_body(bad.as_bytes(), 1).is_err());
        let swapped = event(1, "1.0");
        assert!(verify_body(swapped.as_bytes(), 1).is_err());
    }

    #[test]
    fn parses_servers() {
        let s = parse_server("conduit=127.0.0.1:18401@42").unwrap();
        assert_eq!((s.name.as_str(), s.addr.port(), s.pid), ("conduit", 18401, Some(42)));
        assert_eq!(parse_server("floor=127.0.0.1:1").unwrap().pid, None);
        assert!(parse_server("floor").is_err());
    }

    #[test]
    fn ratios_pair_rounds() {
        let rounds = vec![vec![Some(1.0), Some(2.0)], vec![Some(2.0), Some(6.0)], vec![None, Some(1.0)]];
        assert_eq!(floor_ratio(&rounds, 1, Some(0)), Some(2.5));
        assert_eq!(floor_ratio(&rounds, 1, None), None);
    }
}
