//! The sd_notify protocol (sd_notify(3)), without libsystemd: under
//! `Type=notify` the service manager passes `NOTIFY_SOCKET`, and the daemon
//! sends it one datagram of `KEY=VALUE` lines per state change (`READY=1`,
//! `RELOADING=1`, `STOPPING=1`, `WATCHDOG=1`, `STATUS=…`).
//!
//! Written by hand because the protocol is one `sendto` and a dependency
//! would bring more than it saves. Every call is best effort for the caller:
//! without `NOTIFY_SOCKET` (a terminal, a test, a non-systemd init) there is
//! no [`Notifier`] and nothing to do.

use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// Largest datagram the service manager accepts: systemd reads the notify
/// socket into a `PIPE_BUF` (4096 bytes) buffer and drops longer messages
/// whole ("exceeded maximum size"), so sending one would be silently lost.
pub const MAX_MESSAGE: usize = 4096;

/// How long one send may block. PID 1 gives its socket a large receive
/// buffer, so this only matters if the manager is wedged; then a status
/// update must not stall the daemon's loop for good.
const SEND_TIMEOUT: Duration = Duration::from_secs(1);

/// Where to send notifications: the address from `NOTIFY_SOCKET`.
#[derive(Debug, Clone)]
pub struct Notifier {
    addr: SocketAddr,
}

impl Notifier {
    /// The notifier of this process, when the service manager asked for
    /// notifications (`NOTIFY_SOCKET` set and usable).
    ///
    /// The variable is left set, unlike `sd_notify(1, …)`: changing the
    /// environment of a multi-threaded process is unsound (`remove_var`
    /// races with every `getenv`, e.g. in libc's resolver), and idsync
    /// starts no children that could misuse it. A value idsync cannot use
    /// (a relative path, `vsock:`) gives `None` as if unset; [`Notifier::new`]
    /// tells why.
    pub fn from_env() -> Option<Notifier> {
        let value = std::env::var_os("NOTIFY_SOCKET")?;
        Notifier::new(value.to_str()?).ok()
    }

    /// A notifier for a `NOTIFY_SOCKET` value: an absolute path, or `@name`
    /// for a socket in the abstract namespace.
    pub fn new(socket: &str) -> io::Result<Notifier> {
        let addr = if let Some(name) = socket.strip_prefix('@') {
            if name.is_empty() {
                return Err(invalid("empty abstract socket name"));
            }
            SocketAddr::from_abstract_name(name.as_bytes())?
        } else if socket.starts_with('/') {
            // Fails for a path longer than sun_path (108 bytes).
            SocketAddr::from_pathname(socket)?
        } else {
            return Err(invalid(format!(
                "NOTIFY_SOCKET `{socket}` is neither an absolute path nor an @abstract name"
            )));
        };
        Ok(Notifier { addr })
    }

    /// Send `state` (newline-separated `KEY=VALUE` assignments) as one
    /// datagram.
    ///
    /// A fresh unbound socket per message, as libsystemd does: nothing is
    /// held open between the rare calls, and the kernel attaches our
    /// credentials (systemd sets `SO_PASSCRED`), which is how
    /// `NotifyAccess=main` recognises the main process.
    pub fn send(&self, state: &str) -> io::Result<()> {
        if state.len() > MAX_MESSAGE {
            return Err(invalid(format!(
                "notification of {} bytes exceeds the service manager's {MAX_MESSAGE}",
                state.len()
            )));
        }
        // systemd ignores a whole message that contains a NUL byte.
        if state.contains('\0') {
            return Err(invalid("notification contains a NUL byte"));
        }
        let socket = UnixDatagram::unbound()?;
        socket.set_write_timeout(Some(SEND_TIMEOUT))?;
        let sent = socket.send_to_addr(state.as_bytes(), &self.addr)?;
        if sent != state.len() {
            // Datagrams are all or nothing; this would be a kernel oddity.
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "notification datagram sent short",
            ));
        }
        Ok(())
    }

    /// Start-up (or a reload) is complete: `READY=1`.
    pub fn ready(&self) -> io::Result<()> {
        self.send("READY=1")
    }

    /// A configuration reload starts: `RELOADING=1` with `MONOTONIC_USEC=`.
    ///
    /// sd_notify(3) asks for `MONOTONIC_USEC` (CLOCK_MONOTONIC, µs, decimal)
    /// in the same message as `RELOADING=1`: since systemd 253
    /// (`Type=notify-reload`) the manager compares it with the time it sent
    /// the reload signal, to tell this reload's notification from a stale
    /// one; without it a `systemctl reload` may return before the reload is
    /// done, or the reload is taken as failed. Older managers ignore the
    /// field. Send [`Notifier::ready`] when the reload is done.
    pub fn reloading(&self) -> io::Result<()> {
        self.send(&format!("RELOADING=1\nMONOTONIC_USEC={}", monotonic_usec()))
    }

    /// Shutdown has begun: `STOPPING=1`.
    pub fn stopping(&self) -> io::Result<()> {
        self.send("STOPPING=1")
    }

    /// Keep-alive for `WatchdogSec=`: `WATCHDOG=1`.
    pub fn watchdog(&self) -> io::Result<()> {
        self.send("WATCHDOG=1")
    }

    /// A one-line status for `systemctl status`: `STATUS=…`.
    ///
    /// Line breaks become spaces, since a newline would start a new
    /// assignment (a file name could then send `STOPPING=1`), and the text is
    /// cut to fit [`MAX_MESSAGE`].
    pub fn status(&self, status: &str) -> io::Result<()> {
        let mut message = String::with_capacity(7 + status.len());
        message.push_str("STATUS=");
        for c in status.chars() {
            let c = match c {
                '\n' | '\r' => ' ',
                '\0' => continue,
                c => c,
            };
            if message.len() + c.len_utf8() > MAX_MESSAGE {
                break;
            }
            message.push(c);
        }
        self.send(&message)
    }
}

fn invalid(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message.into())
}

/// CLOCK_MONOTONIC in microseconds: the clock PID 1 uses for its own
/// timestamps (`std::time::Instant` is opaque, so it cannot give it).
fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always
    // exists on Linux, so the call cannot fail.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    debug_assert_eq!(rc, 0);
    (ts.tv_sec as u64) * 1_000_000 + (ts.tv_nsec as u64) / 1_000
}

/// How often to send [`Notifier::watchdog`], when the manager watches this
/// process (`WatchdogSec=` sets `WATCHDOG_USEC`): half the timeout, as
/// sd_watchdog_enabled(3) recommends, so one late ping is not fatal.
pub fn watchdog_interval() -> Option<Duration> {
    let usec = std::env::var("WATCHDOG_USEC").ok();
    let pid = std::env::var("WATCHDOG_PID").ok();
    watchdog_interval_from(usec.as_deref(), pid.as_deref(), std::process::id())
}

/// [`watchdog_interval`] for given variable values and our pid.
///
/// As in libsystemd: `WATCHDOG_USEC` must be a positive integer, and a set
/// `WATCHDOG_PID` must name this process, since the variables may have been
/// inherited from a parent that is the one being watched. Anything
/// malformed means no watchdog.
fn watchdog_interval_from(usec: Option<&str>, pid: Option<&str>, our_pid: u32) -> Option<Duration> {
    let usec: u64 = usec?.parse().ok()?;
    // u64::MAX is systemd's USEC_INFINITY: no timeout.
    if usec == 0 || usec == u64::MAX {
        return None;
    }
    if let Some(pid) = pid {
        if pid.parse::<u32>().ok()? != our_pid {
            return None;
        }
    }
    Some(Duration::from_micros(usec) / 2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A listener standing in for PID 1's notify socket.
    fn receive(listener: &UnixDatagram) -> String {
        listener
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut buf = vec![0u8; MAX_MESSAGE + 1];
        let n = listener.recv(&mut buf).expect("a datagram");
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    #[test]
    fn datagrams_to_a_path_socket_are_exact() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let listener = UnixDatagram::bind(&path).unwrap();
        let n = Notifier::new(path.to_str().unwrap()).unwrap();

        n.ready().unwrap();
        assert_eq!(receive(&listener), "READY=1");
        n.stopping().unwrap();
        assert_eq!(receive(&listener), "STOPPING=1");
        n.watchdog().unwrap();
        assert_eq!(receive(&listener), "WATCHDOG=1");
        n.status("watching; queue 0").unwrap();
        assert_eq!(receive(&listener), "STATUS=watching; queue 0");
        n.status("a\nSTOPPING=1\r\nb\0c").unwrap();
        assert_eq!(receive(&listener), "STATUS=a STOPPING=1  bc");
        n.send("READY=1\nSTATUS=x").unwrap();
        assert_eq!(receive(&listener), "READY=1\nSTATUS=x");
    }

    #[test]
    fn reloading_carries_the_monotonic_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let listener = UnixDatagram::bind(&path).unwrap();
        let n = Notifier::new(path.to_str().unwrap()).unwrap();

        let before = monotonic_usec();
        n.reloading().unwrap();
        let after = monotonic_usec();
        let msg = receive(&listener);
        let usec: u64 = msg
            .strip_prefix("RELOADING=1\nMONOTONIC_USEC=")
            .unwrap_or_else(|| panic!("unexpected message {msg:?}"))
            .parse()
            .unwrap();
        assert!(
            before <= usec && usec <= after,
            "{before} ≤ {usec} ≤ {after}"
        );
    }

    #[test]
    fn datagrams_to_an_abstract_socket_are_exact() {
        // Unique per process and test run: the abstract namespace is shared
        // by everything in the network namespace.
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "idsync-test-notify-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let listener =
            UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap())
                .unwrap();
        let n = Notifier::new(&format!("@{name}")).unwrap();
        n.ready().unwrap();
        assert_eq!(receive(&listener), "READY=1");
        n.status("ok").unwrap();
        assert_eq!(receive(&listener), "STATUS=ok");
    }

    #[test]
    fn long_statuses_are_cut_and_long_messages_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let listener = UnixDatagram::bind(&path).unwrap();
        let n = Notifier::new(path.to_str().unwrap()).unwrap();

        // Multi-byte characters: the cut must fall on a char boundary.
        n.status(&"é".repeat(MAX_MESSAGE)).unwrap();
        let msg = receive(&listener);
        assert!(msg.len() <= MAX_MESSAGE && msg.len() > MAX_MESSAGE - 2);
        assert!(msg.starts_with("STATUS=é"));

        let err = n.send(&"x".repeat(MAX_MESSAGE + 1)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        let err = n.send("READY=1\0").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn unusable_socket_values_are_refused() {
        for value in ["", "relative/notify", "@", "vsock:2:1234"] {
            assert!(Notifier::new(value).is_err(), "{value:?}");
        }
        let too_long = format!("/{}", "a".repeat(200));
        assert!(Notifier::new(&too_long).is_err());
        // A vanished socket is an error from send, not a panic.
        let dir = tempfile::tempdir().unwrap();
        let n = Notifier::new(dir.path().join("gone").to_str().unwrap()).unwrap();
        assert!(n.ready().is_err());
    }

    #[test]
    fn watchdog_interval_is_half_the_timeout_for_this_process_only() {
        let f = watchdog_interval_from;
        assert_eq!(f(None, None, 42), None);
        assert_eq!(f(Some("30000000"), None, 42), Some(Duration::from_secs(15)));
        assert_eq!(
            f(Some("30000000"), Some("42"), 42),
            Some(Duration::from_secs(15))
        );
        assert_eq!(f(Some("1"), None, 42), Some(Duration::from_nanos(500)));
        // Inherited from (or meant for) another process.
        assert_eq!(f(Some("30000000"), Some("41"), 42), None);
        // Malformed or disabled.
        assert_eq!(f(Some("30000000"), Some("x"), 42), None);
        assert_eq!(f(Some("0"), None, 42), None);
        assert_eq!(f(Some(""), None, 42), None);
        assert_eq!(f(Some("-5"), None, 42), None);
        assert_eq!(f(Some("30s"), None, 42), None);
        assert_eq!(f(Some(&u64::MAX.to_string()), None, 42), None);
    }
}
