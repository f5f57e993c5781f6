//! How queued output reaches a socket: `send` for one slice and `sendmsg` for several, rather than `write` and
//! `writev`. A broadcast makes one such call per subscriber per event, and on Linux `writev` on a socket goes
//! through the file layer (position lock, `vfs_writev`, `sock_write_iter`) before it reaches the socket code
//! that `send` and `sendmsg` enter directly; a profile of a 10,000-subscriber broadcast put that detour at
//! about 4 % of the kernel's time. Both calls also say `MSG_NOSIGNAL`, so a peer that has gone makes the call
//! fail with `EPIPE` instead of raising `SIGPIPE`, whatever the host process does with that signal.

use mio::net::TcpStream;
use socket2::SockRef;
use std::io::{self, IoSlice, Write};

/// `MSG_NOSIGNAL` (Linux's value; elsewhere no flag, and the process is expected to ignore `SIGPIPE`, as Rust
/// programs do by default).
#[cfg(any(target_os = "linux", target_os = "android"))]
const NO_SIGNAL: i32 = 0x4000;
#[cfg(not(any(target_os = "linux", target_os = "android")))]
const NO_SIGNAL: i32 = 0;

/// A connected socket seen as a [`Write`] that sends.
pub(crate) struct Sender<'a>(pub(crate) &'a TcpStream);

impl Write for Sender<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        SockRef::from(self.0).send_with_flags(buf, NO_SIGNAL)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        SockRef::from(self.0).send_vectored_with_flags(bufs, NO_SIGNAL)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn sends_one_slice_and_several() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        let server = TcpStream::from_std(server);
        let mut sender = Sender(&server);
        assert_eq!(sender.write(b"one ").unwrap(), 4);
        let parts = [IoSlice::new(b"two "), IoSlice::new(b"three")];
        assert_eq!(sender.write_vectored(&parts).unwrap(), 9);
        sender.flush().unwrap();
        drop(server);
        let mut got = String::new();
        (&client).read_to_string(&mut got).unwrap();
        assert_eq!(got, "one two three");
    }

    #[test]
    fn a_gone_peer_is_an_error_not_a_signal() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        drop(client);
        let server = TcpStream::from_std(server);
        let mut sender = Sender(&server);
        // The first send may still be taken (the peer answers it with a reset); later ones fail.
        let failed = (0..100).map(|_| sender.write(b"x")).find_map(Result::err);
        let kind = failed.expect("writing to a closed peer fails").kind();
        assert!(matches!(kind, io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset), "{kind:?}");
    }
}
