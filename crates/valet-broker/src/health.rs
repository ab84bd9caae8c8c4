//! What the admin port's `/healthz` and `/readyz` say about the controller.
//!
//! Liveness fails when the controller is wedged, so the kubelet restarts
//! it: a reconcile in flight for longer than the stall bound (a hung call
//! that no timeout ends), or an election loop that stopped iterating.
//! Readiness says whether this replica does its job: it reaches the Lease
//! API, and, when it leads, its caches are synced. A follower that reaches
//! the Lease API is ready: it is a warm standby.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Default stall bound: longer than any healthy reconcile (the kube client
/// gives up on a request after 295 s, the AWS SDK retries within seconds).
pub const DEFAULT_STALL: Duration = Duration::from_secs(300);

#[derive(Debug)]
pub struct Health {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    stall_after: Duration,
    /// How long the election loop may take between two iterations.
    election_period: Duration,
    last_beat: Instant,
    lease_reachable: bool,
    leading: bool,
    synced: bool,
    in_flight: HashMap<u64, (Instant, String)>,
    next_id: u64,
}

impl Default for Health {
    fn default() -> Health {
        Health {
            state: Mutex::new(State {
                stall_after: DEFAULT_STALL,
                election_period: Duration::ZERO,
                last_beat: Instant::now(),
                lease_reachable: false,
                leading: false,
                synced: false,
                in_flight: HashMap::new(),
                next_id: 0,
            }),
        }
    }
}

/// A reconcile in flight; dropping it (done, or cancelled when the
/// replica steps down) ends it.
pub struct InFlight<'a> {
    health: &'a Health,
    id: u64,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.health.state().in_flight.remove(&self.id);
    }
}

impl Health {
    fn state(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere must not make the probes panic too.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `--reconcile-stall-seconds`.
    pub fn set_stall_after(&self, bound: Duration) {
        self.state().stall_after = bound;
    }

    /// The Lease duration: the election loop iterates at least this often
    /// (a renewal, or an attempt bounded by the renew deadline).
    pub fn set_election_period(&self, period: Duration) {
        self.state().election_period = period;
    }

    /// One iteration of the election loop; `reachable`: its Lease call got
    /// an answer from the API server.
    pub fn beat(&self, reachable: bool) {
        let mut s = self.state();
        s.last_beat = Instant::now();
        s.lease_reachable = reachable;
    }

    pub fn set_leading(&self, leading: bool) {
        let mut s = self.state();
        s.leading = leading;
        s.synced = false;
    }

    /// The leader's caches hold the whole cluster.
    pub fn set_synced(&self) {
        let mut s = self.state();
        s.synced = s.leading;
    }

    pub fn reconcile_started(&self, what: String) -> InFlight<'_> {
        let mut s = self.state();
        let id = s.next_id;
        s.next_id += 1;
        s.in_flight.insert(id, (Instant::now(), what));
        InFlight { health: self, id }
    }

    /// `Err(why)` when the controller is wedged.
    pub fn liveness(&self) -> Result<(), String> {
        let s = self.state();
        let loop_bound = s.stall_after.max(s.election_period * 2);
        let since_beat = s.last_beat.elapsed();
        if since_beat > loop_bound {
            return Err(format!(
                "the election loop has not run for {}s (bound {}s)",
                since_beat.as_secs(),
                loop_bound.as_secs()
            ));
        }
        if let Some((started, what)) = s.in_flight.values().min_by_key(|(t, _)| *t) {
            let running = started.elapsed();
            if running > s.stall_after {
                return Err(format!(
                    "the reconcile of {what} has run for {}s (bound {}s, --reconcile-stall-seconds)",
                    running.as_secs(),
                    s.stall_after.as_secs()
                ));
            }
        }
        Ok(())
    }

    /// `Err(why)` when this replica cannot do its job yet.
    pub fn readiness(&self) -> Result<(), String> {
        let s = self.state();
        if !s.lease_reachable {
            return Err("the Lease API has not answered the last election attempt".into());
        }
        if s.leading && !s.synced {
            return Err("leading, but the caches are not synced yet".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reconcile_past_the_bound_fails_liveness_until_it_ends() {
        let h = Health::default();
        h.set_stall_after(Duration::from_millis(20));
        assert_eq!(h.liveness(), Ok(()));
        let guard = h.reconcile_started("ns/a".into());
        std::thread::sleep(Duration::from_millis(60));
        h.beat(true);
        let why = h.liveness().expect_err("wedged");
        assert!(why.contains("ns/a"), "{why}");
        drop(guard);
        assert_eq!(h.liveness(), Ok(()));
    }

    #[test]
    fn readiness_needs_the_lease_api_and_a_synced_leader() {
        let h = Health::default();
        assert!(h.readiness().is_err(), "no election attempt yet");
        h.beat(true);
        assert_eq!(h.readiness(), Ok(()), "a reachable follower is ready");
        h.set_leading(true);
        assert!(h.readiness().is_err(), "leading, not synced");
        h.set_synced();
        assert_eq!(h.readiness(), Ok(()));
        h.beat(false);
        assert!(h.readiness().is_err());
    }
}
