//! How many unauthenticated connections each address holds. Before it logs in
//! or registers, a connection costs the node a socket, a reader and a timer
//! and the client nothing, so one address may only hold a few at once
//! (`limits.pre_auth_connections_per_address`; an IPv6 /64 counts as one
//! address). A slot is given back when its stream authenticates or its
//! connection ends.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use crate::throttle::address_bucket;

pub struct PreAuthSlots {
    per_address: usize,
    held: Mutex<HashMap<IpAddr, usize>>,
}

/// One unauthenticated connection's place; dropping it frees the place.
pub struct PreAuthSlot {
    slots: Arc<PreAuthSlots>,
    key: IpAddr,
}

impl PreAuthSlots {
    pub fn new(per_address: usize) -> Arc<Self> {
        Arc::new(PreAuthSlots {
            per_address,
            held: Mutex::new(HashMap::new()),
        })
    }

    /// A slot for a new connection from `ip`, or `None` when its address
    /// holds all it may.
    pub fn take(self: &Arc<Self>, ip: IpAddr) -> Option<PreAuthSlot> {
        let key = address_bucket(ip);
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        let n = held.entry(key).or_insert(0);
        if *n >= self.per_address {
            return None;
        }
        *n += 1;
        Some(PreAuthSlot {
            slots: self.clone(),
            key,
        })
    }

    /// Slots held by `ip`'s address now.
    pub fn held_by(&self, ip: IpAddr) -> usize {
        let held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        held.get(&address_bucket(ip)).copied().unwrap_or(0)
    }
}

impl Drop for PreAuthSlot {
    fn drop(&mut self) {
        let mut held = self
            .slots
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = held.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            // Addresses without connections take no memory.
            if *n == 0 {
                held.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_address_holds_at_most_its_share_and_gets_it_back() {
        let slots = PreAuthSlots::new(2);
        let a = slots.take(ip("192.0.2.1")).unwrap();
        let _b = slots.take(ip("192.0.2.1")).unwrap();
        assert!(slots.take(ip("192.0.2.1")).is_none());
        assert!(slots.take(ip("192.0.2.2")).is_some(), "another address");
        drop(a);
        assert!(slots.take(ip("192.0.2.1")).is_some());
    }

    #[test]
    fn one_ipv6_64_is_one_address_and_mapped_v4_is_v4() {
        let slots = PreAuthSlots::new(1);
        let _a = slots.take(ip("2001:db8:1:2::1")).unwrap();
        assert!(slots.take(ip("2001:db8:1:2:ffff::9")).is_none());
        assert!(slots.take(ip("2001:db8:1:3::1")).is_some());
        let _v4 = slots.take(ip("192.0.2.7")).unwrap();
        assert!(slots.take(ip("::ffff:192.0.2.7")).is_none());
    }

    #[test]
    fn freed_addresses_leave_no_entry() {
        let slots = PreAuthSlots::new(3);
        let taken: Vec<_> = (0..100)
            .filter_map(|i| slots.take(IpAddr::from([10, 0, 0, i as u8])))
            .collect();
        assert_eq!(taken.len(), 100);
        drop(taken);
        assert!(slots.held.lock().unwrap().is_empty());
    }
}
