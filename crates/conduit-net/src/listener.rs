//! The listening socket, set up with socket2 so the backlog and address reuse are ours to choose.

use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::{SocketAddr, TcpListener};

/// Binds a non-blocking TCP listener with `SO_REUSEADDR` and the given accept backlog.
///
/// `SO_REUSEADDR` lets a restarted server bind while old connections sit in `TIME_WAIT`; with `reuse_port`
/// set, `SO_REUSEPORT` lets several event loops share the port, the kernel spreading connections across them.
///
/// # Errors
/// Any error from creating, configuring, binding or listening on the socket.
pub fn bind(addr: SocketAddr, backlog: u32, reuse_port: bool) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    #[cfg(unix)]
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    #[cfg(not(unix))]
    let _ = reuse_port;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
    Ok(socket.into())
}
