//! The board: what the screen shows that the demo's parts report (the step and its
//! caption, the backends' processes, Consul's view, recent log lines), and the event lines
//! printed at once when there is no terminal. Uses nothing else of the demo.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use consul_api::CheckStatus;

/// Log lines kept for the screen.
const LOG_LINES: usize = 12;

/// A backend process as the demo knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Process {
    /// Running, healthy as far as it knows.
    Running,
    /// Stopped by SIGSTOP: the kernel still accepts connections, nothing answers.
    Hung,
    /// Told NOT_SERVING (SIGUSR1); it still answers calls.
    NotServing,
    /// SIGTERM sent: stopping gracefully.
    Stopping,
    /// Killed with SIGKILL.
    Killed,
    /// Exited by itself, with this code.
    Exited(Option<i32>),
}

impl Process {
    /// A short word for the screen.
    pub(crate) fn word(self) -> String {
        match self {
            Process::Running => "running".to_owned(),
            Process::Hung => "hung (SIGSTOP)".to_owned(),
            Process::NotServing => "NOT_SERVING".to_owned(),
            Process::Stopping => "stopping".to_owned(),
            Process::Killed => "killed".to_owned(),
            Process::Exited(Some(code)) => format!("exited {code}"),
            Process::Exited(None) => "exited".to_owned(),
        }
    }
}

/// A backend on the board.
#[derive(Debug, Clone)]
pub(crate) struct Backend {
    /// `n1`, `n2`, …
    pub(crate) name: String,
    /// Its registered instance id.
    pub(crate) id: String,
    pub(crate) pid: u32,
    pub(crate) process: Process,
}

/// What the last look at Consul showed.
#[derive(Debug, Clone, Default)]
pub(crate) enum ConsulView {
    /// Not asked yet.
    #[default]
    Unknown,
    /// The agent did not answer.
    Down,
    /// Each registered instance's worst check status.
    Up(BTreeMap<String, CheckStatus>),
}

#[derive(Debug, Default)]
struct State {
    /// `(number, title)` of the step running.
    step: Option<(usize, String)>,
    /// What the step is doing right now.
    caption: String,
    backends: Vec<Backend>,
    consul: ConsulView,
    log: VecDeque<String>,
    /// Finished steps: `(title, ok, failed)`.
    done: Vec<(String, u64, u64)>,
}

/// A snapshot of the board, for drawing.
#[derive(Debug, Clone)]
pub(crate) struct Snapshot {
    pub(crate) elapsed: Duration,
    pub(crate) step: Option<(usize, String)>,
    pub(crate) caption: String,
    pub(crate) backends: Vec<Backend>,
    pub(crate) consul: ConsulView,
    pub(crate) log: Vec<String>,
    pub(crate) done: Vec<(String, u64, u64)>,
}

/// The shared board; clones share it.
#[derive(Debug, Clone)]
pub(crate) struct Board {
    state: Arc<Mutex<State>>,
    started: Instant,
    /// No terminal: events are printed as lines at once.
    plain: bool,
}

// === impl Board ===

impl Board {
    /// An empty board; `plain` prints events as they happen instead of keeping them.
    pub(crate) fn new(plain: bool) -> Self {
        Board {
            state: Arc::default(),
            started: Instant::now(),
            plain,
        }
    }

    /// Whether there is no terminal to redraw.
    pub(crate) fn plain(&self) -> bool {
        self.plain
    }

    /// Time since the demo started.
    pub(crate) fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// A step starts.
    pub(crate) fn step(&self, number: usize, of: usize, title: &str) {
        {
            let mut state = self.lock();
            state.step = Some((number, title.to_owned()));
            state.caption.clear();
        }
        self.event(format!("step {number}/{of}: {title}"));
    }

    /// What the step does now; printed as an event too.
    pub(crate) fn caption(&self, text: impl Into<String>) {
        let text = text.into();
        self.lock().caption = text.clone();
        self.event(format!("  {text}"));
    }

    /// A step ended with these counts.
    pub(crate) fn step_done(&self, title: &str, ok: u64, failed: u64) {
        let mut state = self.lock();
        state.done.push((title.to_owned(), ok, failed));
        state.step = None;
        state.caption.clear();
    }

    /// Something happened: printed at once without a terminal, logged on the screen with one.
    pub(crate) fn event(&self, text: impl Into<String>) {
        let text = text.into();
        if self.plain {
            println!("[{:>5.1}s] {text}", self.elapsed().as_secs_f64());
        } else {
            self.push_log(format!(
                "{:>5.1}s {}",
                self.elapsed().as_secs_f64(),
                text.trim()
            ));
        }
    }

    /// A log line (a backend's output, the demo's own tracing): printed without a terminal,
    /// kept for the screen with one.
    pub(crate) fn log(&self, line: impl Into<String>) {
        let line = line.into();
        if self.plain {
            println!("[{:>5.1}s] {line}", self.elapsed().as_secs_f64());
        } else {
            self.push_log(line);
        }
    }

    fn push_log(&self, line: String) {
        let mut state = self.lock();
        if state.log.len() == LOG_LINES {
            state.log.pop_front();
        }
        state.log.push_back(line);
    }

    /// A new backend.
    pub(crate) fn add_server(&self, name: &str, id: &str, pid: u32, process: Process) {
        self.lock().backends.push(Backend {
            name: name.to_owned(),
            id: id.to_owned(),
            pid,
            process,
        });
    }

    /// A backend's process changed.
    pub(crate) fn set_process(&self, name: &str, process: Process) {
        if let Some(backend) = self.lock().backends.iter_mut().find(|b| b.name == name) {
            backend.process = process;
        }
    }

    /// What Consul shows now.
    pub(crate) fn set_consul(&self, view: ConsulView) {
        self.lock().consul = view;
    }

    /// The board as it is.
    pub(crate) fn snapshot(&self) -> Snapshot {
        let state = self.lock();
        Snapshot {
            elapsed: self.elapsed(),
            step: state.step.clone(),
            caption: state.caption.clone(),
            backends: state.backends.clone(),
            consul: state.consul.clone(),
            log: state.log.iter().cloned().collect(),
            done: state.done.clone(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A `tracing` writer that sends each formatted event to the board's log (with a terminal,
/// so log lines do not tear the screen).
#[derive(Debug)]
pub(crate) struct LogWriter {
    board: Board,
    buf: Vec<u8>,
}

impl LogWriter {
    pub(crate) fn new(board: Board) -> Self {
        LogWriter {
            board,
            buf: Vec::new(),
        }
    }
}

impl std::io::Write for LogWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LogWriter {
    fn drop(&mut self) {
        for line in String::from_utf8_lossy(&self.buf).lines() {
            if !line.trim().is_empty() {
                self.board.push_log(line.to_owned());
            }
        }
    }
}
