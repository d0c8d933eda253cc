//! A tenant's share of something scarce (a gateway's calls in flight, a
//! service's database connections): one tenant cannot take all of it,
//! whatever its rate limit allows.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use uuid::Uuid;

/// Tenants whose shares are all free are forgotten once this many are known.
const FORGET_IDLE_ABOVE: usize = 10_000;

pub struct TenantShares {
    per_tenant: usize,
    tenants: Mutex<HashMap<Uuid, Arc<Semaphore>>>,
}

impl TenantShares {
    /// `per_tenant` units for each tenant.
    pub fn new(per_tenant: usize) -> Self {
        Self {
            per_tenant: per_tenant.max(1),
            tenants: Mutex::new(HashMap::new()),
        }
    }

    fn semaphore(&self, tenant: Uuid) -> Arc<Semaphore> {
        let mut tenants = self
            .tenants
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if tenants.len() > FORGET_IDLE_ABOVE {
            tenants.retain(|_, shares| shares.available_permits() < self.per_tenant);
        }
        tenants
            .entry(tenant)
            .or_insert_with(|| Arc::new(Semaphore::new(self.per_tenant)))
            .clone()
    }

    /// One unit of `tenant`'s share, held until the permit drops; `None`
    /// when all of them are taken.
    pub fn try_acquire(&self, tenant: Uuid) -> Option<OwnedSemaphorePermit> {
        self.semaphore(tenant).try_acquire_owned().ok()
    }

    /// One unit of `tenant`'s share, waiting at most `wait` for one to be
    /// given back.
    pub async fn acquire(&self, tenant: Uuid, wait: Duration) -> Option<OwnedSemaphorePermit> {
        let semaphore = self.semaphore(tenant);
        tokio::time::timeout(wait, semaphore.acquire_owned())
            .await
            .ok()
            .and_then(Result::ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_gets_its_slots_and_no_more_and_others_are_unaffected() {
        let limit = TenantShares::new(2);
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
