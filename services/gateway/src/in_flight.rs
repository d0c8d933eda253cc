//! Calls in flight per tenant: one tenant cannot take every slot of a
//! gateway replica, whatever its rate limit allows.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use uuid::Uuid;

pub struct InFlight {
    per_tenant: u32,
    tenants: Mutex<HashMap<Uuid, Arc<Semaphore>>>,
}

impl InFlight {
    pub fn new(per_tenant: u32) -> Self {
        Self {
            per_tenant,
            tenants: Mutex::new(HashMap::new()),
        }
    }

    /// A slot for one more call of `tenant`, held until the permit drops;
    /// `None` when all of the tenant's slots are taken.
    pub fn try_acquire(&self, tenant: Uuid) -> Option<OwnedSemaphorePermit> {
        let semaphore = {
            let mut tenants = self
                .tenants
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            tenants
                .entry(tenant)
                .or_insert_with(|| Arc::new(Semaphore::new(self.per_tenant as usize)))
                .clone()
        };
        semaphore.try_acquire_owned().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_gets_its_slots_and_no_more_and_others_are_unaffected() {
        let limit = InFlight::new(2);
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let first = limit.try_acquire(a).unwrap();
        let _second = limit.try_acquire(a).unwrap();
        assert!(limit.try_acquire(a).is_none());
        assert!(limit.try_acquire(b).is_some());
        drop(first);
        assert!(
            limit.try_acquire(a).is_some(),
            "a finished call frees its slot"
        );
    }
}
