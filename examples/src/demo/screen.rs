//! Drawing: with a terminal, the whole board redrawn in place four times a second (plain
//! ANSI: cursor home, erase to the end of each line and of the screen, no alternate screen,
//! so the last picture stays); without one, a progress line a second and the rows at each
//! step's end. Uses the board, the rows and the traffic.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use grpc_resolve::DiscoveredChannel;
use tokio::task::JoinHandle;

use super::board::{Board, Snapshot};
use super::rows::{Row, rows};
use super::traffic::Traffic;

/// Time between two pictures.
const TICK: Duration = Duration::from_millis(250);
/// The window calls per second are measured over.
const RATE_WINDOW: Duration = Duration::from_secs(1);
/// Lines are cut to this many characters (the demo is drawn for 120 columns).
const WIDTH: usize = 120;

/// What the drawer reads; cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Sources {
    pub(crate) board: Board,
    pub(crate) channel: DiscoveredChannel,
    pub(crate) traffic: Arc<Traffic>,
    /// The first line: what runs where.
    pub(crate) header: String,
}

/// The drawing task.
#[derive(Debug)]
pub(crate) struct Screen {
    sources: Sources,
    rates: Arc<Mutex<BTreeMap<String, f64>>>,
    task: JoinHandle<()>,
}

// === impl Screen ===

impl Screen {
    /// Starts drawing.
    pub(crate) fn start(sources: Sources) -> Self {
        let rates = Arc::new(Mutex::new(BTreeMap::new()));
        if !sources.board.plain() {
            // Hide the cursor and start from a clean screen.
            print!("\x1b[?25l\x1b[2J");
        }
        let task = tokio::spawn(draw_loop(sources.clone(), rates.clone()));
        Screen {
            sources,
            rates,
            task,
        }
    }

    /// The rows as they are now.
    pub(crate) fn rows(&self) -> Vec<Row> {
        let rates = self.rates.lock().unwrap_or_else(PoisonError::into_inner);
        current_rows(&self.sources, &self.sources.board.snapshot(), &rates)
    }

    /// Without a terminal: prints the rows (with one they are on screen anyway).
    pub(crate) fn print_rows(&self) {
        if self.sources.board.plain() {
            for line in table(&self.rows()) {
                println!("    {line}");
            }
        }
    }

    /// Stops drawing, after one last picture, and gives the terminal its cursor back.
    pub(crate) fn stop(self) {
        self.task.abort();
        if !self.sources.board.plain() {
            let rates = self.rates.lock().unwrap_or_else(PoisonError::into_inner);
            draw(&self.sources, &rates);
            print!("\x1b[?25h");
            let _ = std::io::stdout().flush();
        }
    }
}

async fn draw_loop(sources: Sources, rates: Arc<Mutex<BTreeMap<String, f64>>>) {
    let mut samples: VecDeque<(Instant, BTreeMap<String, u64>)> = VecDeque::new();
    let mut ticks = 0u64;
    let mut interval = tokio::time::interval(TICK);
    loop {
        interval.tick().await;
        let now = Instant::now();
        samples.push_back((now, sources.traffic.totals()));
        while samples.len() > 2 && now - samples[1].0 >= RATE_WINDOW {
            samples.pop_front();
        }
        let current = per_second(&samples);
        *rates.lock().unwrap_or_else(PoisonError::into_inner) = current.clone();
        if sources.board.plain() {
            ticks += 1;
            if ticks.is_multiple_of(4) {
                progress(&sources, &current);
            }
        } else {
            draw(&sources, &current);
        }
    }
}

/// Calls per second per instance between the oldest and the newest sample.
fn per_second(samples: &VecDeque<(Instant, BTreeMap<String, u64>)>) -> BTreeMap<String, f64> {
    let (Some((t0, first)), Some((t1, last))) = (samples.front(), samples.back()) else {
        return BTreeMap::new();
    };
    let secs = (*t1 - *t0).as_secs_f64();
    if secs <= 0.0 {
        return BTreeMap::new();
    }
    last.iter()
        .map(|(id, n)| {
            let before = first.get(id).copied().unwrap_or(0);
            (id.clone(), n.saturating_sub(before) as f64 / secs)
        })
        .collect()
}

fn current_rows(sources: &Sources, snapshot: &Snapshot, rates: &BTreeMap<String, f64>) -> Vec<Row> {
    rows(
        &snapshot.backends,
        &snapshot.consul,
        &sources.channel.endpoints(),
        rates,
    )
}

/// The rows as a table (header first).
pub(crate) fn table(rows: &[Row]) -> Vec<String> {
    let mut lines = vec![format!(
        "{:<4} {:<28} {:>7}  {:<15} {:>8} {:>9}  {:<15} {}",
        "", "instance", "pid", "process", "calls/s", "in flight", "Consul", "channel"
    )];
    for r in rows {
        let pid = r.pid.map_or_else(|| "-".to_owned(), |p| p.to_string());
        let in_flight = r
            .in_flight
            .map_or_else(|| "-".to_owned(), |n| n.to_string());
        lines.push(format!(
            "{:<4} {:<28} {:>7}  {:<15} {:>8.0} {:>9}  {:<15} {}",
            r.name, r.id, pid, r.process, r.rate, in_flight, r.consul, r.channel
        ));
    }
    lines
}

/// One progress line (no terminal).
fn progress(sources: &Sources, rates: &BTreeMap<String, f64>) {
    let snapshot = sources.board.snapshot();
    let total: f64 = rates.values().sum();
    let mut per = String::new();
    for b in &snapshot.backends {
        if let Some(rate) = rates.get(&b.id).filter(|r| **r > 0.0) {
            let _ = write!(per, " {} {rate:.0}", b.name);
        }
    }
    let step = sources.traffic.peek();
    println!(
        "[{:>5.1}s] {total:.0} calls/s ({}), {} in flight; this step {} ok, {} failed",
        snapshot.elapsed.as_secs_f64(),
        per.trim(),
        sources.traffic.in_flight(),
        step.ok_total(),
        step.failed,
    );
}

const BOLD: &str = "\x1b[1m";
const RESET: &str = "\x1b[0m";

/// A row's colour: red once its process is gone, yellow while it is hung or NOT_SERVING
/// or the channel does not use it, none while all is well.
fn tint(row: &Row) -> &'static str {
    const RED: &str = "\x1b[31m";
    const YELLOW: &str = "\x1b[33m";
    const GREEN: &str = "\x1b[32m";
    if row.process == "killed" || row.process.starts_with("exited") {
        RED
    } else if row.process != "running" || !row.channel.starts_with("ready") {
        YELLOW
    } else if row.consul == "passing" {
        GREEN
    } else {
        YELLOW
    }
}

/// The whole picture, drawn over the last one.
fn draw(sources: &Sources, rates: &BTreeMap<String, f64>) {
    let snapshot = sources.board.snapshot();
    let lines = picture(sources, &snapshot, rates);
    let mut out = String::from("\x1b[H");
    for line in lines {
        let _ = write!(out, "{}\x1b[K\r\n", cut(&line, WIDTH));
    }
    out.push_str("\x1b[J");
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(out.as_bytes());
    let _ = stdout.flush();
}

fn picture(sources: &Sources, snapshot: &Snapshot, rates: &BTreeMap<String, f64>) -> Vec<String> {
    let mut lines = vec![format!("{BOLD}{}{RESET}", sources.header), String::new()];
    let step = match &snapshot.step {
        Some((n, title)) => format!("step {n}/{}: {title}", super::STEPS),
        None => "between steps".to_owned(),
    };
    lines.push(format!(
        "{BOLD}{step:<100}{RESET} {:>7.1} s",
        snapshot.elapsed.as_secs_f64()
    ));
    lines.push(format!("  {}", snapshot.caption));
    lines.push(String::new());
    let rows = current_rows(sources, snapshot, rates);
    let table = table(&rows);
    lines.push(format!("{BOLD}{}{RESET}", table[0]));
    for (line, row) in table[1..].iter().zip(&rows) {
        lines.push(format!("{}{line}{RESET}", tint(row)));
    }
    lines.push(String::new());
    let step = sources.traffic.peek();
    let total: f64 = rates.values().sum();
    lines.push(format!(
        "calls/s {total:.0}   in flight {}   this step: {} ok, {} failed, longest gap without a success {:.2} s",
        sources.traffic.in_flight(),
        step.ok_total(),
        step.failed,
        step.max_gap.as_secs_f64(),
    ));
    lines.push(String::new());
    lines.push("steps done:".to_owned());
    for (i, (title, ok, failed)) in snapshot.done.iter().enumerate() {
        lines.push(format!(
            "  {} {title:<50} {ok:>8} ok {failed:>6} failed",
            i + 1
        ));
    }
    lines.push(String::new());
    lines.push("log:".to_owned());
    for line in &snapshot.log {
        lines.push(format!("  {line}"));
    }
    lines
}

/// `line` cut to `width` visible characters (escape sequences take no room, and a cut
/// line still ends with a reset).
fn cut(line: &str, width: usize) -> String {
    let mut out = String::with_capacity(line.len());
    let mut visible = 0;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            out.push(c);
            for e in chars.by_ref() {
                out.push(e);
                if e.is_ascii_alphabetic() {
                    break;
                }
            }
        } else if visible < width {
            out.push(c);
            visible += 1;
        } else {
            out.push_str(RESET);
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cut_line_keeps_its_escape_sequences_and_counts_only_what_shows() {
        let line = format!("{BOLD}abcdef{RESET}");
        assert_eq!(
            cut(&line, 3),
            format!("{BOLD}abc{RESET}"),
            "expected 3 letters shown"
        );
        assert_eq!(cut(&line, 10), line, "expected a short line unchanged");
    }

    #[test]
    fn rates_are_the_calls_between_the_oldest_and_newest_sample_per_second() {
        let t0 = Instant::now();
        let samples = VecDeque::from([
            (t0, BTreeMap::from([("a".to_owned(), 100)])),
            (
                t0 + Duration::from_millis(500),
                BTreeMap::from([("a".to_owned(), 150), ("b".to_owned(), 20)]),
            ),
        ]);
        let rates = per_second(&samples);
        assert_eq!(rates["a"], 100.0, "expected 50 calls in half a second");
        assert_eq!(rates["b"], 40.0, "expected a new instance counted from 0");
    }
}
