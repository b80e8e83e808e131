//! Listening TCP sockets through netlink sock_diag (what `ss -ltn` shows), with the process
//! that holds each one.
//!
//! Owns the netlink dump (IPv4 and IPv6, state LISTEN: `recv_queue` is the accept queue now,
//! `send_queue` the effective backlog) and filling in owners from an inode-to-process map
//! (doctor's process walk reads it from /proc/PID/fd links).
//! /proc/net/tcp cannot replace it: for a listener it shows 0 where the backlog should be.
//! It must never change a socket.

use std::collections::HashMap;

use netlink_packet_core::{NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload};
use netlink_packet_sock_diag::SockDiagMessage;
use netlink_packet_sock_diag::constants::{AF_INET, AF_INET6, IPPROTO_TCP};
use netlink_packet_sock_diag::inet::{ExtensionFlags, InetRequest, SocketId, StateFlags};
use netlink_sys::protocols::NETLINK_SOCK_DIAG;
use netlink_sys::{Socket, SocketAddr};
use thrashguard_core::doctor::Fact;
use thrashguard_core::doctor::net::Listener;

fn dump(family: u8) -> Result<Vec<Listener>, String> {
    let mut socket = Socket::new(NETLINK_SOCK_DIAG).map_err(|e| format!("sock_diag: {e}"))?;
    socket.bind_auto().map_err(|e| format!("sock_diag: bind: {e}"))?;
    socket.connect(&SocketAddr::new(0, 0)).map_err(|e| format!("sock_diag: connect: {e}"))?;
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    let socket_id = if family == AF_INET { SocketId::new_v4() } else { SocketId::new_v6() };
    let mut packet = NetlinkMessage::new(
        header,
        SockDiagMessage::InetRequest(InetRequest {
            family,
            protocol: IPPROTO_TCP,
            extensions: ExtensionFlags::empty(),
            states: StateFlags::LISTEN,
            socket_id,
        })
        .into(),
    );
    packet.finalize();
    let mut buf = vec![0; packet.buffer_len()];
    packet.serialize(&mut buf[..]);
    socket.send(&buf[..], 0).map_err(|e| format!("sock_diag: send: {e}"))?;
    let mut out = vec![];
    let mut recv = vec![0u8; 64 * 1024];
    // A dump ends with NLMSG_DONE; bound the loop anyway.
    for _ in 0..10_000 {
        let size = socket.recv(&mut &mut recv[..], 0).map_err(|e| format!("sock_diag: recv: {e}"))?;
        if size == 0 {
            return Ok(out);
        }
        let mut offset = 0;
        while offset < size {
            let msg = <NetlinkMessage<SockDiagMessage>>::deserialize(&recv[offset..size]).map_err(|e| format!("sock_diag: {e}"))?;
            let len = msg.header.length as usize;
            match msg.payload {
                NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(r)) => {
                    let h = &r.header;
                    let ip = h.socket_id.source_address;
                    let local = if ip.is_ipv6() {
                        format!("[{ip}]:{}", h.socket_id.source_port)
                    } else {
                        format!("{ip}:{}", h.socket_id.source_port)
                    };
                    out.push(Listener {
                        local,
                        port: h.socket_id.source_port,
                        accept_queue: h.recv_queue,
                        backlog: h.send_queue,
                        inode: u64::from(h.inode),
                        owner: None,
                    });
                }
                NetlinkPayload::Done(_) => return Ok(out),
                NetlinkPayload::Error(e) => return Err(format!("sock_diag: {e:?}")),
                _ => {}
            }
            if len == 0 {
                break;
            }
            offset += len;
        }
    }
    Ok(out)
}

/// Every listening TCP socket of this network namespace (IPv4, then IPv6).
pub fn listeners() -> Fact<Vec<Listener>> {
    let mut all = dump(AF_INET)?;
    // A kernel without IPv6 refuses the second dump: the IPv4 list stands.
    if let Ok(v6) = dump(AF_INET6) {
        all.extend(v6);
    }
    Ok(all)
}

/// Fill in each listener's owner from a map already read (inode -> (pid, comm)).
pub fn with_owner_map(mut ls: Vec<Listener>, owners: &HashMap<u64, (u32, String)>) -> Vec<Listener> {
    for l in &mut ls {
        l.owner = owners.get(&l.inode).cloned();
    }
    ls
}
