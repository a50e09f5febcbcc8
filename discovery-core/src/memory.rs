//! An in-memory backend for tests and single-process applications. Implements both traits
//! on the model; uses the error type and [`Update`](crate::Update).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use tokio::sync::watch;

use crate::{
    Error, HealthStatus, Query, Registration, Registry, Resolver, ServiceInstance, Update,
    UpdateStream,
};

/// A registry and resolver that keeps everything in process.
///
/// It runs no health checks: instances registered with a TTL check start critical until
/// [`Registry::report`] says otherwise, as in Consul; every other instance starts passing.
/// [`MemoryRegistry::set_status`] changes an instance's health, standing in for a failing
/// check. Clones share the same state.
#[derive(Debug, Clone, Default)]
pub struct MemoryRegistry {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Instance id → instance (with its current status).
    instances: Mutex<BTreeMap<String, ServiceInstance>>,
    /// Bumped on every change; watches wake on it and recompute their query.
    version: watch::Sender<u64>,
}

// === impl MemoryRegistry ===

impl MemoryRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the health of a registered instance, as a failing or recovering check would.
    /// Returns whether the instance exists.
    pub fn set_status(&self, instance_id: &str, status: HealthStatus) -> bool {
        let found = match self.lock().get_mut(instance_id) {
            Some(instance) => {
                instance.status = status;
                true
            }
            None => false,
        };
        if found {
            self.changed();
        }
        found
    }

    /// Every instance, registered order aside (sorted by id).
    pub fn instances(&self) -> Vec<ServiceInstance> {
        self.lock().values().cloned().collect()
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, ServiceInstance>> {
        // A panic while holding the lock leaves a map that is still consistent (every
        // mutation is a single insert/remove), so a poisoned lock is safe to reuse.
        self.inner
            .instances
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn changed(&self) {
        self.inner.version.send_modify(|v| *v += 1);
    }

    fn snapshot(&self, query: &Query) -> Option<Vec<ServiceInstance>> {
        snapshot(&self.lock(), query)
    }
}

fn snapshot(
    instances: &BTreeMap<String, ServiceInstance>,
    query: &Query,
) -> Option<Vec<ServiceInstance>> {
    let mut known = false;
    let matching = instances
        .values()
        .filter(|i| {
            known |= i.service == query.service;
            query.matches(i)
        })
        .cloned()
        .collect();
    known.then_some(matching)
}

#[async_trait]
impl Registry for MemoryRegistry {
    async fn register(&self, registration: &Registration) -> Result<(), Error> {
        let mut instance = registration.instance.clone();
        if instance.service.is_empty() {
            return Err(Error::Rejected {
                message: "missing service name".into(),
            });
        }
        if instance.id.is_empty() {
            instance.id = instance.service.clone();
        }
        let ttl = registration.check.as_ref().is_some_and(|c| c.is_ttl());
        {
            let mut instances = self.lock();
            // Like Consul: a re-registration keeps the status its check already has.
            instance.status = match (instances.get(&instance.id), registration.initial_status) {
                (Some(existing), _) => existing.status,
                (None, Some(initial)) => initial,
                (None, None) if ttl => HealthStatus::Critical,
                (None, None) => HealthStatus::Passing,
            };
            instances.insert(instance.id.clone(), instance);
        }
        self.changed();
        Ok(())
    }

    async fn deregister(&self, instance_id: &str) -> Result<(), Error> {
        if self.lock().remove(instance_id).is_none() {
            return Err(Error::NotFound {
                what: format!("instance {instance_id:?}"),
            });
        }
        self.changed();
        Ok(())
    }

    async fn is_registered(&self, instance_id: &str) -> Result<bool, Error> {
        Ok(self.lock().contains_key(instance_id))
    }

    async fn report(
        &self,
        instance_id: &str,
        status: HealthStatus,
        _output: &str,
    ) -> Result<(), Error> {
        if self.set_status(instance_id, status) {
            Ok(())
        } else {
            Err(Error::NotFound {
                what: format!("check of instance {instance_id:?}"),
            })
        }
    }
}

#[async_trait]
impl Resolver for MemoryRegistry {
    async fn resolve(&self, query: &Query) -> Result<Vec<ServiceInstance>, Error> {
        Ok(self.snapshot(query).unwrap_or_default())
    }

    fn watch(&self, query: &Query) -> UpdateStream {
        let registry = self.clone();
        let mut version = self.inner.version.subscribe();
        // The first poll reports the current state.
        version.mark_changed();
        let state = (registry, version, query.clone(), None);
        Box::pin(futures_util::stream::unfold(
            state,
            |(registry, mut version, query, mut last)| async move {
                loop {
                    // The sender lives in `registry`, which this stream owns: it never
                    // closes, so the stream never ends.
                    version.changed().await.ok()?;
                    let now = registry.snapshot(&query);
                    if last.as_ref() != Some(&now) {
                        last = Some(now.clone());
                        let update = match now {
                            Some(instances) => Update::Snapshot(instances),
                            None => Update::DoesNotExist,
                        };
                        return Some((update, (registry, version, query, last)));
                    }
                }
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures_util::StreamExt;

    use super::*;
    use crate::CheckSpec;

    fn instance(id: &str, service: &str) -> ServiceInstance {
        ServiceInstance::new(id, service, "127.0.0.1", 1000)
    }

    async fn next_snapshot(updates: &mut UpdateStream) -> Vec<String> {
        match updates.next().await.expect("watch streams never end") {
            Update::Snapshot(instances) => instances.into_iter().map(|i| i.id).collect(),
            other => panic!("expected a snapshot, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn watch_follows_register_health_and_deregister() {
        let registry = MemoryRegistry::new();
        let mut updates = registry.watch(&Query::new("web"));
        assert!(matches!(updates.next().await, Some(Update::DoesNotExist)));

        registry
            .register(&Registration::new(instance("web-1", "web")))
            .await
            .unwrap();
        assert_eq!(next_snapshot(&mut updates).await, ["web-1"]);

        registry
            .register(&Registration::new(instance("web-2", "web")))
            .await
            .unwrap();
        assert_eq!(next_snapshot(&mut updates).await, ["web-1", "web-2"]);

        assert!(registry.set_status("web-1", HealthStatus::Critical));
        assert_eq!(next_snapshot(&mut updates).await, ["web-2"]);

        assert!(registry.is_registered("web-2").await.unwrap());
        registry.deregister("web-2").await.unwrap();
        assert!(!registry.is_registered("web-2").await.unwrap());
        assert_eq!(next_snapshot(&mut updates).await, Vec::<String>::new());
    }

    #[tokio::test(start_paused = true)]
    async fn unrelated_changes_emit_nothing() {
        let registry = MemoryRegistry::new();
        let mut updates = registry.watch(&Query::new("web"));
        assert!(matches!(updates.next().await, Some(Update::DoesNotExist)));
        registry
            .register(&Registration::new(instance("db-1", "db")))
            .await
            .unwrap();
        let quiet = tokio::time::timeout(Duration::from_secs(60), updates.next()).await;
        assert!(
            quiet.is_err(),
            "a change to db must not emit on a web watch"
        );
    }

    #[tokio::test]
    async fn ttl_instances_start_critical_until_reported() {
        let registry = MemoryRegistry::new();
        let reg =
            Registration::new(instance("t-1", "t")).check(CheckSpec::ttl(Duration::from_secs(10)));
        registry.register(&reg).await.unwrap();
        assert!(registry.resolve(&Query::new("t")).await.unwrap().is_empty());
        registry
            .report("t-1", HealthStatus::Passing, "ok")
            .await
            .unwrap();
        assert_eq!(registry.resolve(&Query::new("t")).await.unwrap().len(), 1);
        // Re-registering keeps the reported status, as Consul keeps a check's status.
        registry.register(&reg).await.unwrap();
        assert_eq!(registry.resolve(&Query::new("t")).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn an_initial_status_applies_to_a_new_instance_only() {
        let registry = MemoryRegistry::new();
        let ttl = Registration::new(instance("t-1", "t"))
            .check(CheckSpec::ttl(Duration::from_secs(10)))
            .initial_status(HealthStatus::Passing);
        registry.register(&ttl).await.unwrap();
        assert_eq!(
            registry.resolve(&Query::new("t")).await.unwrap().len(),
            1,
            "a TTL instance registered passing is listed before any report"
        );
        registry
            .report("t-1", HealthStatus::Critical, "down")
            .await
            .unwrap();
        registry.register(&ttl).await.unwrap();
        assert!(
            registry.resolve(&Query::new("t")).await.unwrap().is_empty(),
            "re-registering a known instance keeps its status, whatever the initial one"
        );
        let warn = Registration::new(instance("w-1", "w")).initial_status(HealthStatus::Warning);
        registry.register(&warn).await.unwrap();
        let w = registry.instances().into_iter().find(|i| i.id == "w-1");
        assert_eq!(
            w.map(|i| i.status),
            Some(HealthStatus::Warning),
            "the initial status replaces the no-check default of passing"
        );
    }

    #[tokio::test]
    async fn unknown_ids_are_not_found() {
        let registry = MemoryRegistry::new();
        let err = registry.deregister("nope").await.unwrap_err();
        assert!(err.is_not_found(), "expected NotFound, got {err:?}");
        let err = registry
            .report("nope", HealthStatus::Passing, "")
            .await
            .unwrap_err();
        assert!(err.is_not_found(), "expected NotFound, got {err:?}");
    }

    #[tokio::test]
    async fn empty_id_defaults_to_service_name_and_empty_name_is_rejected() {
        let registry = MemoryRegistry::new();
        registry
            .register(&Registration::new(instance("", "web")))
            .await
            .unwrap();
        assert_eq!(registry.instances()[0].id, "web");
        let err = registry
            .register(&Registration::new(instance("x", "")))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Rejected { .. }), "got {err:?}");
    }
}
