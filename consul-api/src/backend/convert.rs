//! Conversions between discovery-core's model and Consul's wire types: a `Registration`
//! to a service definition, a health entry to a `ServiceInstance`, a `Query` to read
//! options. Pure functions; uses the wire types of the client and its families, no I/O.

use discovery_core::{CheckSpec, Query, Registration, ServiceInstance};

use crate::agent::{CheckDefinition, Locality, ServiceRegistration};
use crate::client::QueryOptions;
use crate::health::ServiceEntry;
use crate::options::Consistency;
use crate::types::Weights;

/// Maps a registration onto Consul's service definition.
pub fn to_service_registration(registration: &Registration) -> ServiceRegistration {
    let instance = &registration.instance;
    let check = registration.check.as_ref().map(|spec| {
        let mut check = CheckDefinition {
            deregister_critical_service_after: registration.deregister_after,
            status: registration.initial_status.map(Into::into),
            ..Default::default()
        };
        match spec {
            CheckSpec::Grpc {
                target,
                use_tls,
                interval,
                timeout,
            } => {
                check.grpc = Some(target.clone());
                check.grpc_use_tls = *use_tls;
                check.interval = Some(*interval);
                check.timeout = Some(*timeout);
            }
            CheckSpec::Http {
                url,
                interval,
                timeout,
            } => {
                check.http = Some(url.clone());
                check.interval = Some(*interval);
                check.timeout = Some(*timeout);
            }
            CheckSpec::Tcp {
                address,
                interval,
                timeout,
            } => {
                check.tcp = Some(address.clone());
                check.interval = Some(*interval);
                check.timeout = Some(*timeout);
            }
            CheckSpec::Ttl { ttl } => check.ttl = Some(*ttl),
            // A spec this version cannot express: register without a check rather than
            // guess (CheckSpec is non_exhaustive).
            _ => {}
        }
        check
    });
    let mut out = ServiceRegistration::new(instance.service.clone());
    out.id = (!instance.id.is_empty()).then(|| instance.id.clone());
    out.tags = instance.tags.clone();
    out.address = (!instance.host.is_empty()).then(|| instance.host.clone());
    out.port = Some(instance.port);
    out.meta = instance.meta.clone();
    out.weights = Some(Weights {
        passing: instance.weights.passing,
        warning: instance.weights.warning,
    });
    out.locality = instance.locality.as_ref().map(|zone| Locality {
        region: String::new(),
        zone: zone.clone(),
    });
    out.check = check;
    out
}

/// Maps a health entry onto an instance: dial address is the service's, else the node's.
pub fn to_instance(entry: &ServiceEntry) -> ServiceInstance {
    let mut instance = ServiceInstance::new(
        entry.service.id.clone(),
        entry.service.service.clone(),
        entry.dial_address().to_owned(),
        entry.service.port,
    )
    .tags(entry.service.tags.iter().cloned())
    .weights(discovery_core::Weights {
        passing: entry.service.weights.passing,
        warning: entry.service.weights.warning,
    })
    .status(entry.aggregated_status().into());
    instance.meta = entry.service.meta.clone();
    instance.node = Some(entry.node.node.clone());
    instance.locality = locality(entry);
    instance
}

/// The instance's zone: the service's `Locality.Zone` (Consul 1.17+), else a `zone` entry in
/// the service's or its node's metadata, the common convention before that field existed.
fn locality(entry: &ServiceEntry) -> Option<String> {
    let from_field = entry
        .service
        .locality
        .as_ref()
        .map(|l| l.zone.clone())
        .filter(|z| !z.is_empty());
    from_field
        .or_else(|| entry.service.meta.get("zone").cloned())
        .or_else(|| entry.node.meta.get("zone").cloned())
        .filter(|z| !z.is_empty())
}

/// The read options that ask Consul what `query` asks.
pub(crate) fn query_options(query: &Query) -> QueryOptions {
    let (consistency, max_stale) = match query.consistency {
        discovery_core::Consistency::Stale { max_stale } => (Consistency::Stale, max_stale),
        discovery_core::Consistency::Consistent => (Consistency::Consistent, None),
        _ => (Consistency::Default, None),
    };
    QueryOptions {
        datacenter: query.datacenter.clone(),
        tags: query.tags.clone(),
        passing: query.passing_only,
        filter: query.filter.clone(),
        consistency,
        max_stale,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use discovery_core::HealthStatus;

    use super::*;
    use crate::types::CheckStatus;

    #[test]
    fn an_initial_status_becomes_the_checks_status() {
        let instance = ServiceInstance::new("web-1", "web", "10.0.0.5", 8080);
        let registration = Registration::new(instance)
            .check(CheckSpec::grpc("10.0.0.5:8080"))
            .initial_status(HealthStatus::Passing);
        let check = to_service_registration(&registration).check;
        assert_eq!(
            check.and_then(|c| c.status),
            Some(CheckStatus::Passing),
            "the check definition starts passing"
        );
        let json = serde_json::to_value(to_service_registration(&registration)).unwrap();
        assert_eq!(
            json["Check"]["Status"], "passing",
            "sent as the check's Status: {json}"
        );
    }

    #[test]
    fn without_an_initial_status_the_agent_decides() {
        let instance = ServiceInstance::new("web-1", "web", "10.0.0.5", 8080);
        let registration =
            Registration::new(instance).check(CheckSpec::ttl(Duration::from_secs(10)));
        let json = serde_json::to_value(to_service_registration(&registration)).unwrap();
        assert!(
            json["Check"].get("Status").is_none(),
            "no Status field, so Consul starts the check critical: {json}"
        );
    }
}
