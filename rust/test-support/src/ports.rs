//! Loopback ports a test keeps for itself between servers: a service stopped and started
//! again "on the same address", or a dead endpoint that must refuse connections, without
//! binding a port, closing it and hoping nobody takes it before the next bind.
//!
//! [`Reserved`] holds a socket bound with `SO_REUSEPORT` that never listens, so connections to
//! the port are refused, and nothing else can bind it; [`Reserved::listener`] makes another
//! socket on the same port that does listen, for a server to serve on. Dropping that listener
//! leaves the port refused and still reserved.

use std::net::SocketAddr;

use tokio::net::TcpSocket;

/// A loopback port reserved for the test (see the module documentation).
pub struct Reserved {
    _socket: TcpSocket,
    addr: SocketAddr,
}

impl Reserved {
    /// Reserves a free loopback port.
    pub fn new() -> Self {
        let socket = reusable();
        socket.bind(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
        let addr = socket.local_addr().unwrap();
        Self {
            _socket: socket,
            addr,
        }
    }

    /// The reserved address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A listening socket on the reserved port, for a server to serve on (inside a runtime).
    pub fn listener(&self) -> tokio::net::TcpListener {
        let socket = reusable();
        socket.bind(self.addr).unwrap();
        socket.listen(1024).unwrap()
    }
}

impl Default for Reserved {
    fn default() -> Self {
        Self::new()
    }
}

fn reusable() -> TcpSocket {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_reuseport(true).unwrap();
    socket
}

#[cfg(test)]
mod tests {
    use super::Reserved;

    #[tokio::test]
    async fn a_reserved_port_refuses_until_it_listens_and_again_after() {
        let port = Reserved::new();
        assert!(tokio::net::TcpStream::connect(port.addr()).await.is_err());
        let listener = port.listener();
        assert!(tokio::net::TcpStream::connect(port.addr()).await.is_ok());
        drop(listener);
        assert!(tokio::net::TcpStream::connect(port.addr()).await.is_err());
        assert!(
            std::net::TcpListener::bind(port.addr()).is_err(),
            "the port is still reserved"
        );
    }
}
