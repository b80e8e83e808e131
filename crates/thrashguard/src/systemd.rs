//! systemd's notification protocol (sd_notify, not the `[notify]` hooks): READY=1 once the guard is set up, WATCHDOG=1 from the
//! guard loop itself, STATUS= with the policy's phase, STOPPING=1 on the way out.
//!
//! Owns the notification socket, read from `$NOTIFY_SOCKET` once and connected once, and
//! the watchdog interval (`sd_notify::watchdog_enabled`: `$WATCHDOG_USEC`, honouring
//! `$WATCHDOG_PID`). Messages are formatted into a fixed buffer and sent on the cached
//! socket, so a ping in the steady loop allocates nothing and makes one syscall (the
//! sd-notify crate's `notify` builds a String and opens a new socket per call). Never
//! blocks: the socket is non-blocking and a full queue drops the message. Without systemd
//! (no `$NOTIFY_SOCKET`) every call is a no-op.

use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use thrashguard_core::units::Micros;

/// The connection to the service manager, if any, and the watchdog's pace.
#[derive(Debug)]
pub struct SdNotify {
    socket: Option<UnixDatagram>,
    /// Half the watchdog interval: the longest the loop may go without a ping.
    ping_every: Option<Micros>,
    last_ping: Option<Micros>,
    /// The last STATUS= text sent (its bytes), so an unchanged status is not resent.
    status: [u8; 128],
    status_len: usize,
}

impl Default for SdNotify {
    fn default() -> Self {
        SdNotify { socket: None, ping_every: None, last_ping: None, status: [0; 128], status_len: 0 }
    }
}

impl SdNotify {
    /// Read `$NOTIFY_SOCKET` and the watchdog settings, connect, and remove the variables
    /// from the environment so that no child (a hook) can notify on the guard's behalf.
    ///
    /// # Safety
    /// Removes environment variables: call it before any other thread exists (first thing
    /// in `thrashguard daemon`).
    pub unsafe fn from_env() -> SdNotify {
        let mut n = SdNotify::default();
        let path = std::env::var_os("NOTIFY_SOCKET");
        let watchdog = sd_notify::watchdog_enabled();
        // SAFETY: the caller guarantees no other thread exists yet (see above).
        unsafe {
            std::env::remove_var("NOTIFY_SOCKET");
            std::env::remove_var("WATCHDOG_USEC");
            std::env::remove_var("WATCHDOG_PID");
        }
        let Some(path) = path else { return n };
        match SdNotify::connect(&path, watchdog) {
            Ok(c) => n = c,
            Err(e) => log::warn!("NOTIFY_SOCKET {}: {e}; systemd will not hear READY or watchdog pings", path.to_string_lossy()),
        }
        n
    }

    /// Connect to the notification socket at `path` (`@name`: an abstract socket), pinging
    /// at half of `watchdog` when given.
    pub fn connect(path: &std::ffi::OsStr, watchdog: Option<Duration>) -> std::io::Result<SdNotify> {
        let s = UnixDatagram::unbound()?;
        match path.as_encoded_bytes().strip_prefix(b"@") {
            Some(name) => {
                use std::os::linux::net::SocketAddrExt;
                s.connect_addr(&std::os::unix::net::SocketAddr::from_abstract_name(name)?)?;
            }
            None => s.connect(path)?,
        }
        s.set_nonblocking(true)?;
        Ok(SdNotify {
            socket: Some(s),
            ping_every: watchdog.filter(|d| !d.is_zero()).map(|d| Micros((d.as_micros() as u64 / 2).max(1))),
            ..SdNotify::default()
        })
    }

    /// Whether a service manager listens.
    pub fn enabled(&self) -> bool {
        self.socket.is_some()
    }

    /// The watchdog interval systemd set, if any.
    pub fn watchdog(&self) -> Option<Duration> {
        self.ping_every.map(|p| Duration::from_micros(p.0 * 2))
    }

    /// The longest the guard may wait before its next iteration so that its pings keep
    /// up: half the watchdog interval (`None`: no watchdog).
    pub fn max_wait(&self) -> Option<Duration> {
        self.ping_every.map(|p| Duration::from_micros(p.0))
    }

    fn send(&self, msg: &[u8]) {
        if let Some(s) = &self.socket {
            let _ = s.send(msg);
        }
    }

    /// READY=1 with a status line.
    pub fn ready(&mut self, status: &str, now: Micros) {
        let mut buf = [0u8; 256];
        let len = {
            let mut w = std::io::Cursor::new(&mut buf[..]);
            let _ = write!(w, "READY=1\nSTATUS={}\n", truncate(status, 200));
            w.position() as usize
        };
        self.send(&buf[..len]);
        if self.ping_every.is_some() {
            self.send(b"WATCHDOG=1\n");
            self.last_ping = Some(now);
        }
    }

    /// From the guard loop, every iteration: WATCHDOG=1 when half the interval has passed
    /// since the last one. Allocates nothing.
    pub fn tick(&mut self, now: Micros) {
        if let Some(every) = self.ping_every
            && self.last_ping.is_none_or(|t| now.saturating_sub(t) >= every)
        {
            self.send(b"WATCHDOG=1\n");
            self.last_ping = Some(now);
        }
    }

    /// STATUS=<args> when it differs from the last one sent. Allocates nothing.
    pub fn status(&mut self, args: std::fmt::Arguments<'_>) {
        if self.socket.is_none() {
            return;
        }
        let mut buf = [0u8; 136];
        let len = {
            let mut w = std::io::Cursor::new(&mut buf[..]);
            let _ = w.write_all(b"STATUS=");
            let _ = w.write_fmt(args);
            w.position() as usize
        };
        let text = &buf[7..len];
        if text == &self.status[..self.status_len] {
            return;
        }
        self.status_len = text.len().min(self.status.len());
        self.status[..self.status_len].copy_from_slice(&text[..self.status_len]);
        self.send(&buf[..len]);
    }

    /// STOPPING=1.
    pub fn stopping(&self) {
        self.send(b"STOPPING=1\n");
    }
}

/// At most `max` bytes of `s`, cut at a character boundary.
fn truncate(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
