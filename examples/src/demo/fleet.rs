//! The demo's backends: real `add-server` child processes, started, signalled and counted.
//! Uses the board (to show them and to log what they print).

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use anyhow::Context as _;
use tokio::io::{AsyncBufReadExt as _, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

use super::board::{Board, Process};
use crate::Served;

/// How long a new server may take to print its `serving` line.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a SIGTERM'd server may take to stop (its drain is 1 s).
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// The running and finished backends, in the order they started.
#[derive(Debug)]
pub(crate) struct Fleet {
    exe: PathBuf,
    /// Arguments before the server's flags.
    leading: Vec<String>,
    agent: String,
    service: String,
    dir: PathBuf,
    board: Board,
    /// Whether the children's logs go to the board (a terminal) or to stderr.
    capture_logs: bool,
    servers: Vec<Server>,
}

/// One `add-server` child.
#[derive(Debug)]
pub(crate) struct Server {
    /// `n1`, `n2`, … in start order.
    pub(crate) name: String,
    /// The registered instance id.
    pub(crate) id: String,
    pub(crate) pid: u32,
    served_file: PathBuf,
    child: Child,
    /// The task passing its stdout on; it ends with the process.
    output: Option<JoinHandle<()>>,
    /// Whether it still runs (or is stopped by SIGSTOP).
    pub(crate) alive: bool,
}

// === impl Fleet ===

impl Fleet {
    /// A fleet of `exe` children (run with `leading` arguments first) registering `service`
    /// with the agent at `agent`; their count files go in `dir`.
    pub(crate) fn new(
        exe: PathBuf,
        leading: Vec<String>,
        agent: String,
        service: String,
        dir: PathBuf,
        board: Board,
        capture_logs: bool,
    ) -> Self {
        Fleet {
            exe,
            leading,
            agent,
            service,
            dir,
            board,
            capture_logs,
            servers: Vec::new(),
        }
    }

    /// The servers, finished ones included.
    pub(crate) fn servers(&self) -> &[Server] {
        &self.servers
    }

    /// The indexes of the servers still alive.
    pub(crate) fn alive(&self) -> Vec<usize> {
        (0..self.servers.len())
            .filter(|&i| self.servers[i].alive)
            .collect()
    }

    /// Starts one more server and waits for its `serving <id> on <addr>` line. Returns its
    /// index.
    pub(crate) async fn spawn(&mut self) -> anyhow::Result<usize> {
        let name = format!("n{}", self.servers.len() + 1);
        let served_file = self.dir.join(format!("{name}.served"));
        let mut command = Command::new(&self.exe);
        command
            .args(&self.leading)
            .args(["--service", &self.service, "--listen", "127.0.0.1:0"])
            .arg("--served-file")
            .arg(&served_file)
            .env("CONSUL_HTTP_ADDR", &self.agent)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(if self.capture_logs {
                Stdio::piped()
            } else {
                Stdio::inherit()
            })
            .kill_on_drop(true);
        if std::env::var_os("RUST_LOG").is_none() {
            command.env("RUST_LOG", "warn");
        }
        let mut child = command
            .spawn()
            .with_context(|| format!("start {}", self.exe.display()))?;
        let pid = child.id().context("the new server has no pid")?;
        let mut stdout = BufReader::new(child.stdout.take().context("no stdout")?).lines();
        let first = tokio::time::timeout(START_TIMEOUT, stdout.next_line())
            .await
            .with_context(|| format!("{name} printed nothing within {START_TIMEOUT:?}"))?
            .with_context(|| format!("read {name}'s output"))?
            .with_context(|| format!("{name} exited before serving"))?;
        let id = parse_serving(&first)
            .with_context(|| format!("{name}'s first line is not `serving <id> on <addr>`"))?
            .to_owned();
        let output = relay(stdout, self.board.clone(), name.clone());
        if let Some(stderr) = child.stderr.take() {
            // Ends with the process, like the stdout relay; nothing waits for it.
            drop(relay(
                BufReader::new(stderr).lines(),
                self.board.clone(),
                name.clone(),
            ));
        }
        self.board.add_server(&name, &id, pid, Process::Running);
        self.servers.push(Server {
            name,
            id,
            pid,
            served_file,
            child,
            output: Some(output),
            alive: true,
        });
        Ok(self.servers.len() - 1)
    }

    /// Sends `signal` (`STOP`, `CONT`, `USR1`, `USR2`, `TERM`) with `kill(1)`, and marks the
    /// server `state` on the board.
    pub(crate) async fn signal(
        &mut self,
        index: usize,
        signal: &str,
        state: Process,
    ) -> anyhow::Result<()> {
        let server = &self.servers[index];
        let status = Command::new("kill")
            .args(["-s", signal, &server.pid.to_string()])
            .status()
            .await
            .context("run kill(1)")?;
        anyhow::ensure!(
            status.success(),
            "kill -s {signal} {} failed: {status}",
            server.pid
        );
        self.board.set_process(&server.name, state);
        Ok(())
    }

    /// SIGKILL, at once (no process is spawned in between), then reaps it.
    pub(crate) async fn kill(&mut self, index: usize) -> anyhow::Result<ExitStatus> {
        let server = &mut self.servers[index];
        server.child.start_kill().context("SIGKILL")?;
        let status = server
            .child
            .wait()
            .await
            .context("reap the killed server")?;
        server.alive = false;
        self.board.set_process(&server.name, Process::Killed);
        Ok(status)
    }

    /// SIGTERM (a graceful stop: NOT_SERVING, deregister, drain, close) and waits for the
    /// exit.
    pub(crate) async fn terminate(&mut self, index: usize) -> anyhow::Result<ExitStatus> {
        self.signal(index, "TERM", Process::Stopping).await?;
        let server = &mut self.servers[index];
        let status = tokio::time::timeout(STOP_TIMEOUT, server.child.wait())
            .await
            .with_context(|| format!("{} did not stop within {STOP_TIMEOUT:?}", server.name))?
            .context("reap the stopped server")?;
        server.alive = false;
        // Its last lines (what it served) are shown before anything that follows.
        if let Some(output) = server.output.take() {
            let _ = tokio::time::timeout(Duration::from_secs(2), output).await;
        }
        self.board
            .set_process(&server.name, Process::Exited(status.code()));
        Ok(status)
    }

    /// The `Add` calls server `index` answered so far, from its count file. Read while no
    /// call is in flight (the demo pauses its callers first).
    pub(crate) fn served(&self, index: usize) -> anyhow::Result<u64> {
        read_served(&self.servers[index].served_file)
    }
}

/// A count file can be caught mid-write only if its server answers a call at that moment;
/// the demo reads while its callers are paused, so one retry covers a late answer.
fn read_served(path: &Path) -> anyhow::Result<u64> {
    match Served::read_file(path) {
        Ok(n) => Ok(n),
        Err(_) => {
            std::thread::sleep(Duration::from_millis(20));
            Served::read_file(path).with_context(|| format!("read {}", path.display()))
        }
    }
}

/// The id in `serving <id> on <addr>`.
pub(crate) fn parse_serving(line: &str) -> Option<&str> {
    let rest = line.strip_prefix("serving ")?;
    let (id, addr) = rest.split_once(" on ")?;
    (!id.is_empty() && !addr.is_empty()).then_some(id)
}

/// Passes a child's output lines to the board's log, prefixed with its name.
fn relay<R>(mut lines: tokio::io::Lines<BufReader<R>>, board: Board, name: String) -> JoinHandle<()>
where
    R: AsyncRead + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            board.log(format!("{name}: {line}"));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_serving_line_gives_the_instance_id() {
        assert_eq!(
            parse_serving("serving adder-127.0.0.1-4000 on 127.0.0.1:4000"),
            Some("adder-127.0.0.1-4000"),
            "expected the id between `serving` and `on`"
        );
        assert_eq!(parse_serving("stopped"), None, "expected no id");
        assert_eq!(parse_serving("serving  on x"), None, "expected no empty id");
    }
}
