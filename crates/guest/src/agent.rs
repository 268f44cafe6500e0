//! The host's side of the job protocol the guest's init speaks on its
//! second serial port (guest/init.sh describes it): a script goes in with
//! a length header; stdout and stderr come back with a status line giving
//! their lengths, so any bytes at all survive the trip.

use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

/// Scripts travel through the guest's tty buffers; past 64 KiB the tty
/// layer may drop input that the job reader has not taken yet.
pub const MAX_SCRIPT_BYTES: usize = 32 << 10;
/// What a job may print, stdout and stderr together. The serial port
/// moves some hundreds of KiB/s under emulation: large data is for files.
pub const MAX_OUTPUT_BYTES: u64 = 16 << 20;
/// A status or ready line is short; anything longer is not one.
const MAX_LINE_BYTES: usize = 4096;

/// What a job printed and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub stdout: String,
    pub stderr: String,
    /// The shell's exit status: 0 is success, 137 a job killed at its
    /// timeout.
    pub status: i32,
}

impl Output {
    pub fn success(&self) -> bool {
        self.status == 0
    }
}

/// A byte stream whose reads can be given a timeout.
pub trait TimedRead: Read {
    fn set_read_timeout(&mut self, timeout: Duration) -> io::Result<()>;
}

impl TimedRead for std::os::unix::net::UnixStream {
    fn set_read_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        std::os::unix::net::UnixStream::set_read_timeout(self, Some(timeout))
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum ReadError {
    /// The deadline passed first.
    Timeout,
    /// The guest went away (QEMU exited) or the stream failed.
    Closed(String),
    /// Bytes that are not the protocol.
    Protocol(String),
}

/// The request for one job.
pub fn request(tag: &str, timeout: Duration, script: &str) -> Result<Vec<u8>, String> {
    if script.len() > MAX_SCRIPT_BYTES {
        return Err(format!(
            "script of {} bytes, over the {MAX_SCRIPT_BYTES}-byte limit",
            script.len()
        ));
    }
    if tag.is_empty() || tag.contains(char::is_whitespace) {
        return Err(format!("bad tag {tag:?}"));
    }
    // Whole seconds in the guest, at least one.
    let secs = timeout.as_millis().div_ceil(1000).max(1);
    let mut req = format!("{tag} {secs} {}\n", script.len()).into_bytes();
    req.extend_from_slice(script.as_bytes());
    Ok(req)
}

/// Reads the guest's replies, with a deadline for each.
pub struct Replies<S> {
    stream: S,
    buf: Vec<u8>,
}

impl<S: TimedRead> Replies<S> {
    pub fn new(stream: S) -> Self {
        Replies {
            stream,
            buf: Vec::new(),
        }
    }

    /// Waits for the line the init prints once its job loop listens;
    /// returns the guest's uptime then (seconds, as the guest says it).
    pub fn ready(&mut self, deadline: Instant) -> Result<String, ReadError> {
        loop {
            let line = self.line(deadline)?;
            if let Some(uptime) = line.strip_prefix("@@ready ") {
                return Ok(uptime.to_string());
            }
        }
    }

    /// Waits for the reply to job `tag`. Lines before it that are not a
    /// status line are skipped (a guest's stray output); another job's
    /// status line is an error.
    pub fn reply(&mut self, tag: &str, deadline: Instant) -> Result<Output, ReadError> {
        let (status, out_len, err_len) = loop {
            let line = self.line(deadline)?;
            let Some(rest) = line.strip_prefix("@@") else {
                continue;
            };
            let f: Vec<&str> = rest.split(' ').collect();
            match f.as_slice() {
                [t, status, out, err] if *t == tag => {
                    let parse = |s: &str| {
                        s.parse::<u64>()
                            .map_err(|_| ReadError::Protocol(format!("bad status line {line:?}")))
                    };
                    let status = status
                        .parse::<i32>()
                        .map_err(|_| ReadError::Protocol(format!("bad status line {line:?}")))?;
                    break (status, parse(out)?, parse(err)?);
                }
                ["ready", ..] => {
                    return Err(ReadError::Protocol(
                        "the guest restarted its job loop (rebooted?)".into(),
                    ))
                }
                _ => {
                    return Err(ReadError::Protocol(format!(
                        "expected the reply to {tag}, got {line:?}"
                    )))
                }
            }
        };
        if out_len.saturating_add(err_len) > MAX_OUTPUT_BYTES {
            return Err(ReadError::Protocol(format!(
                "job {tag} printed {} bytes, over the {MAX_OUTPUT_BYTES}-byte limit",
                out_len.saturating_add(err_len)
            )));
        }
        let stdout = self.exact(out_len as usize, deadline)?;
        let stderr = self.exact(err_len as usize, deadline)?;
        Ok(Output {
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
            status,
        })
    }

    fn line(&mut self, deadline: Instant) -> Result<String, ReadError> {
        loop {
            if let Some(end) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=end).collect();
                let text = String::from_utf8_lossy(&line[..end]);
                return Ok(text.trim_end_matches('\r').to_string());
            }
            if self.buf.len() > MAX_LINE_BYTES {
                // Not a line of ours: drop it and look on.
                self.buf.clear();
            }
            self.fill(deadline)?;
        }
    }

    fn exact(&mut self, len: usize, deadline: Instant) -> Result<Vec<u8>, ReadError> {
        while self.buf.len() < len {
            self.fill(deadline)?;
        }
        Ok(self.buf.drain(..len).collect())
    }

    fn fill(&mut self, deadline: Instant) -> Result<(), ReadError> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ReadError::Timeout);
        }
        self.stream
            .set_read_timeout(left)
            .map_err(|e| ReadError::Closed(e.to_string()))?;
        let mut chunk = [0u8; 16 << 10];
        match self.stream.read(&mut chunk) {
            Ok(0) => Err(ReadError::Closed("the guest closed its job channel".into())),
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(())
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(ReadError::Closed(e.to_string())),
        }
    }
}

impl<S: Write> Replies<S> {
    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)?;
        self.stream.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Replays fixed bytes, a few at a time, like a serial port.
    struct Replay {
        data: Vec<u8>,
        at: usize,
    }

    impl Read for Replay {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.at == self.data.len() {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = buf.len().min(3).min(self.data.len() - self.at);
            buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
            self.at += n;
            Ok(n)
        }
    }

    impl TimedRead for Replay {
        fn set_read_timeout(&mut self, _: Duration) -> io::Result<()> {
            Ok(())
        }
    }

    fn replies(data: &[u8]) -> Replies<Replay> {
        Replies::new(Replay {
            data: data.to_vec(),
            at: 0,
        })
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(2)
    }

    #[test]
    fn request_has_header_and_script() {
        let r = request("j1", Duration::from_millis(1500), "echo hi\n").unwrap();
        assert_eq!(r, b"j1 2 8\necho hi\n");
        let r = request("j2", Duration::ZERO, "").unwrap();
        assert_eq!(r, b"j2 1 0\n");
    }

    #[test]
    fn request_limits() {
        let big = "x".repeat(MAX_SCRIPT_BYTES + 1);
        assert!(request("j1", Duration::from_secs(1), &big).is_err());
        assert!(request("j 1", Duration::from_secs(1), "").is_err());
        assert!(request("", Duration::from_secs(1), "").is_err());
    }

    #[test]
    fn ready_then_reply_with_binary_output() {
        let mut r = replies(b"junk\n@@ready 4.51\n@@j1 3 5 4\na\nb\0cerr\n@@j2 0 0 0\n");
        assert_eq!(r.ready(soon()).unwrap(), "4.51");
        let out = r.reply("j1", soon()).unwrap();
        assert_eq!(out.stdout, "a\nb\0c");
        assert_eq!(out.stderr, "err\n");
        assert_eq!(out.status, 3);
        assert!(!out.success());
        assert!(r.reply("j2", soon()).unwrap().success());
    }

    #[test]
    fn output_may_look_like_protocol() {
        let mut r = replies(b"@@j1 0 12 0\n@@j9 0 0 0\n\n");
        let out = r.reply("j1", soon()).unwrap();
        assert_eq!(out.stdout, "@@j9 0 0 0\n\n");
    }

    #[test]
    fn another_jobs_reply_is_an_error() {
        let mut r = replies(b"@@j2 0 0 0\n");
        assert!(matches!(r.reply("j1", soon()), Err(ReadError::Protocol(_))));
    }

    #[test]
    fn a_restarted_guest_is_an_error() {
        let mut r = replies(b"@@ready 3.0\n");
        assert!(matches!(r.reply("j1", soon()), Err(ReadError::Protocol(_))));
    }

    #[test]
    fn bad_status_lines_are_errors() {
        for bad in [
            &b"@@j1 x 0 0\n"[..],
            b"@@j1 0 -1 0\n",
            b"@@j1 0 99999999999 0\n",
        ] {
            let mut r = replies(bad);
            assert!(
                matches!(r.reply("j1", soon()), Err(ReadError::Protocol(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn a_silent_guest_times_out() {
        let mut r = replies(b"@@j1 0 10 0\nshort");
        let deadline = Instant::now() + Duration::from_millis(50);
        assert_eq!(r.reply("j1", deadline), Err(ReadError::Timeout));
    }

    #[test]
    fn an_endless_line_is_dropped() {
        let mut data = vec![b'x'; MAX_LINE_BYTES * 3];
        data.extend_from_slice(b"\n@@ready 1.0\n");
        let mut r = replies(&data);
        assert_eq!(r.ready(soon()).unwrap(), "1.0");
    }
}
