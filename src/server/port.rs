//! Whether the configured `host:port` can be bound, asked before a server starts there (by
//! `claudegate doctor`): free (bound the way `serve` binds it, `host:port` through std's
//! `TcpListener`, and let go at once), in use (then the doctor asks `/health` there, with
//! [`crate::commands::health`]'s request), or not bindable at all (an address this host does
//! not have, a port below 1024 without the privilege).

use std::net::TcpListener;

/// What binding the address would do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bind {
    /// Nothing listens there; `serve` can bind it.
    Free,
    /// Something listens there already.
    InUse,
    /// The address cannot be bound, for a reason other than being in use.
    Unusable(String),
}

/// Binds `host:port` as `serve` does (see `server::run`) and lets go at once.
pub fn try_bind(host: &str, port: u16) -> Bind {
    let addr = format!("{host}:{port}");
    match TcpListener::bind(&addr) {
        Ok(listener) => {
            drop(listener);
            Bind::Free
        }
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Bind::InUse,
        Err(e) => Bind::Unusable(format!("cannot bind {addr}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_in_use_and_unusable() {
        let holder = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = holder.local_addr().unwrap().port();
        assert_eq!(try_bind("127.0.0.1", port), Bind::InUse);
        drop(holder);
        assert_eq!(try_bind("127.0.0.1", port), Bind::Free);
        // TEST-NET-1 (RFC 5737) is no address of this host.
        assert!(matches!(try_bind("192.0.2.1", port), Bind::Unusable(_)));
    }
}
