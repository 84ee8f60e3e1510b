//! What the benchmarks that start processes or a runtime share: a child process whose stdout
//! lines are read as they come, and `main`'s runtime. Included with `#[path]` by each bench
//! (a file directly under `benches/` would be a bench target of its own); each uses a part.
#![allow(dead_code)]

use std::future::Future;
use std::io::BufRead;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long a child may take to print an awaited line.
pub const START_LIMIT: Duration = Duration::from_secs(60);

/// A child process, killed when dropped.
pub struct Process {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Process {
    /// Starts `program` with `args`, stdin and stderr closed, logging errors only.
    pub fn spawn(program: &str, args: &[&str]) -> Result<Process, String> {
        let mut child = Command::new(program)
            .args(args)
            .env_remove("CHATSTATS_CONFIG")
            .env("RUST_LOG", "error")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {program} {args:?}: {e}"))?;
        let stdout = child.stdout.take().ok_or("no stdout pipe")?;
        let (send, lines) = mpsc::channel();
        // Drained continuously, so the child never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Process { child, lines })
    }

    /// Starts the `chatstats` binary with `args`.
    pub fn chatstats(args: &[&str]) -> Result<Process, String> {
        Process::spawn(env!("CARGO_BIN_EXE_chatstats"), args)
    }

    /// The rest of the first stdout line that starts with `prefix` (within [`START_LIMIT`]).
    pub fn wait_for_line(&self, prefix: &str) -> Result<String, String> {
        let deadline = Instant::now() + START_LIMIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .map_err(|_| format!("no line starting with {prefix:?}"))?;
            if let Some(rest) = line.strip_prefix(prefix) {
                return Ok(rest.trim().to_string());
            }
        }
    }

    /// A `kB` field of `/proc/PID/status`, in MiB.
    pub fn memory_mib(&self, field: &str) -> Result<f64, String> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .map_err(|e| format!("cannot read /proc status: {e}"))?;
        status
            .lines()
            .find_map(|line| line.strip_prefix(field))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<f64>()
                    .ok()
            })
            .map(|kib| kib / 1024.0)
            .ok_or_else(|| format!("no {field} in /proc status"))
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `bench` on a multi-thread runtime: success, or its error printed after `name`.
pub fn run(name: &str, bench: impl Future<Output = Result<(), String>>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("{name}: cannot start the Tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(bench) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name} failed: {e}");
            ExitCode::FAILURE
        }
    }
}
