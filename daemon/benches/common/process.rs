//! Servers a bench starts (idsync and the reference it is compared with):
//! each is stopped when dropped, and a watchdog kills what still runs
//! after a time limit, so a hung peer cannot keep a bench going.

use std::process::{Child, Command};
use std::sync::Mutex;
use std::time::Duration;

/// The ids of the servers running now (for the watchdog).
static RUNNING: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// A server process: SIGTERM (`graceful`, idsync) or SIGKILL when dropped.
pub struct Server {
    child: Option<Child>,
    graceful: bool,
}

impl Server {
    pub fn new(child: Child, graceful: bool) -> Self {
        RUNNING.lock().unwrap().push(child.id());
        Server {
            child: Some(child),
            graceful,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Exited already: its status.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            RUNNING.lock().unwrap().retain(|p| *p != child.id());
            if self.graceful {
                super::stop(child);
            } else {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// Kill what is still running and leave after `limit`; `bench` names the
/// bench in the message.
pub fn watchdog(bench: &'static str, limit: Duration) {
    std::thread::spawn(move || {
        std::thread::sleep(limit);
        eprintln!(
            "{bench} bench: still running after {limit:?}; stopping its servers and giving up"
        );
        for pid in RUNNING.lock().unwrap().iter() {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
        std::process::exit(2);
    });
}

/// CPU seconds (user + system, all threads) of process `pid`, or of this
/// one (the client and the http-01 responder) when `None`.
pub fn cpu_seconds(pid: Option<u32>) -> f64 {
    let path = pid.map_or("/proc/self/stat".to_owned(), |p| format!("/proc/{p}/stat"));
    let Ok(stat) = std::fs::read_to_string(path) else {
        return f64::NAN;
    };
    // After `pid (comm) `: state, ppid, … utime and stime are the 12th
    // and 13th fields.
    let fields: Vec<&str> = stat[stat.rfind(')').map_or(0, |i| i + 2)..]
        .split(' ')
        .collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    match (ticks(11), ticks(12)) {
        (Some(u), Some(s)) if hz > 0.0 => (u + s) / hz,
        _ => f64::NAN,
    }
}

/// The end of a timed run: wait until `deadline` (or until `stop` is set
/// early), set `stop`, and let each task finish its request within
/// `grace`; one that does not is aborted. Whether any had to be (a hung
/// server).
pub async fn finish_run(
    tasks: Vec<tokio::task::JoinHandle<()>>,
    stop: &std::sync::atomic::AtomicBool,
    deadline: std::time::Instant,
    tick: Duration,
    grace: Duration,
) -> bool {
    use std::sync::atomic::Ordering;
    while std::time::Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(tick).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut hung = false;
    for t in tasks {
        let abort = t.abort_handle();
        if tokio::time::timeout(grace, t).await.is_err() {
            abort.abort();
            hung = true;
        }
    }
    hung
}
