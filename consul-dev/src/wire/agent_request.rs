//! Agent request shapes: the service and check definitions a client registers with the
//! agent and its check updates, decoded with Go's rules and texts, and Consul's validation
//! of them. Uses the decoder and `state`'s model.

use std::collections::BTreeMap;

use serde_json::Value;

use super::decode::{DecodeError, FieldSpec, Fields};
use crate::state::{CheckSpec, TaggedAddr, Weights};

/// A health check definition as registered: what it probes ([`CheckSpec`], kept with the
/// stored check) and the rest, which registration copies into the check or only validates.
#[derive(Debug, Clone, Default)]
pub(crate) struct CheckDef {
    pub(crate) check_id: String,
    pub(crate) name: String,
    pub(crate) status: String,
    pub(crate) notes: String,
    pub(crate) service_id: String,
    pub(crate) script_args: Vec<String>,
    pub(crate) alias_service: String,
    pub(crate) alias_node: String,
    pub(crate) docker_container_id: String,
    pub(crate) os_service: String,
    pub(crate) success_before_passing: i64,
    pub(crate) failures_before_warning: i64,
    pub(crate) failures_before_critical: i64,
    pub(crate) spec: CheckSpec,
}

/// The check-type keys Consul's `CheckType` and `CheckDefinition` share, with the
/// snake_case aliases their decoders translate; any other alias is an unknown field there.
const CHECK_TYPE_KEYS: &[FieldSpec] = &[
    ("Name", &[]),
    ("Status", &[]),
    ("Notes", &[]),
    ("ServiceID", &["service_id"]),
    ("ScriptArgs", &["script_args", "args"]),
    ("HTTP", &[]),
    ("Header", &[]),
    ("Method", &[]),
    ("Body", &[]),
    ("TCP", &[]),
    // Consul 1.19+; its alias is not confirmed from the source (kept rather than refuse
    // what Consul may accept).
    ("TCPUseTLS", &["tcp_use_tls"]),
    ("UDP", &[]),
    ("GRPC", &[]),
    ("GRPCUseTLS", &["grpc_use_tls"]),
    ("H2PING", &[]),
    ("H2PingUseTLS", &["h2ping_use_tls"]),
    ("OSService", &[]),
    ("AliasNode", &[]),
    ("AliasService", &[]),
    ("DockerContainerID", &["docker_container_id"]),
    ("Shell", &[]),
    ("TLSServerName", &["tls_server_name"]),
    ("TLSSkipVerify", &["tls_skip_verify"]),
    ("Interval", &[]),
    ("Timeout", &[]),
    ("TTL", &[]),
    ("SuccessBeforePassing", &[]),
    ("FailuresBeforeWarning", &[]),
    ("FailuresBeforeCritical", &[]),
    (
        "DeregisterCriticalServiceAfter",
        &["deregister_critical_service_after"],
    ),
    ("OutputMaxSize", &[]),
];

/// Keys only a service's check (`CheckType`) has: its ID is `CheckID`.
const CHECK_TYPE_ONLY: &[FieldSpec] = &[
    ("CheckID", &[]),
    ("DisableRedirects", &[]),
    ("ProxyHTTP", &[]),
    ("ProxyGRPC", &[]),
];

/// Keys only `check/register`'s body (`CheckDefinition`) has: its ID is `ID`, never
/// `CheckID` (which Go's `api.AgentServiceCheck` serializes, and Consul refuses here).
const CHECK_DEFINITION_ONLY: &[FieldSpec] = &[
    ("ID", &[]),
    ("Token", &[]),
    ("DisableRedirects", &["disable_redirects"]),
];

/// The accepted keys of the Go struct `strct` names.
fn check_fields(strct: &str) -> Vec<FieldSpec> {
    let only = if strct == "CheckDefinition" {
        CHECK_DEFINITION_ONLY
    } else {
        CHECK_TYPE_ONLY
    };
    CHECK_TYPE_KEYS.iter().chain(only).copied().collect()
}

impl CheckDef {
    /// Decodes one check object; `Ok(None)` for an all-empty object.
    pub(crate) fn decode(v: &Value, strct: &'static str) -> Result<Option<Self>, DecodeError> {
        let fields = check_fields(strct);
        let f = Fields::new(v, strct, &fields)?;
        if f.is_empty() {
            return Ok(None);
        }
        let id_key = if strct == "CheckDefinition" {
            "ID"
        } else {
            "CheckID"
        };
        // Read first, so that the first bad field named is the one it always was.
        let tls_server_name = f.string("TLSServerName")?;
        // Read in this order so that the first bad field named is the one it always was.
        let check_id = f.string(id_key)?;
        let name = f.string("Name")?;
        let status = f.string("Status")?;
        let notes = f.string("Notes")?;
        let service_id = f.string("ServiceID")?;
        let script_args = f.strings("ScriptArgs")?;
        let http = f.string("HTTP")?;
        let header = f.string_list_map("Header")?;
        let method = f.string("Method")?;
        let body = f.string("Body")?;
        let disable_redirects = f.boolean("DisableRedirects")?;
        let tcp = f.string("TCP")?;
        let udp = f.string("UDP")?;
        let grpc = f.string("GRPC")?;
        let grpc_use_tls = f.boolean("GRPCUseTLS")?;
        let h2ping = f.string("H2PING")?;
        let alias_service = f.string("AliasService")?;
        let alias_node = f.string("AliasNode")?;
        let docker_container_id = f.string("DockerContainerID")?;
        let os_service = f.string("OSService")?;
        let tls_skip_verify = f.boolean("TLSSkipVerify")?;
        let interval = f.duration("Interval")?;
        let timeout = f.duration("Timeout")?;
        let ttl = f.duration("TTL")?;
        let success_before_passing = f.int("SuccessBeforePassing")?;
        let failures_before_warning = f.int("FailuresBeforeWarning")?;
        let failures_before_critical = f.int("FailuresBeforeCritical")?;
        let deregister_critical_service_after = f.duration("DeregisterCriticalServiceAfter")?;
        let output_max_size = f.int("OutputMaxSize")?;
        Ok(Some(CheckDef {
            check_id,
            name,
            status,
            notes,
            service_id,
            script_args,
            alias_service,
            alias_node,
            docker_container_id,
            os_service,
            success_before_passing,
            failures_before_warning,
            failures_before_critical,
            spec: CheckSpec {
                http,
                header,
                method,
                body,
                disable_redirects,
                tls_skip_verify,
                tcp,
                udp,
                grpc,
                grpc_use_tls,
                tls_server_name,
                h2ping,
                interval,
                timeout,
                ttl,
                deregister_critical_service_after,
                output_max_size,
            },
        }))
    }

    /// The check's type name as Consul reports it.
    pub(crate) fn type_name(&self) -> &'static str {
        if !self.script_args.is_empty() {
            "script"
        } else if !self.spec.http.is_empty() {
            "http"
        } else if !self.spec.tcp.is_empty() {
            "tcp"
        } else if !self.spec.udp.is_empty() {
            "udp"
        } else if !self.spec.grpc.is_empty() {
            "grpc"
        } else if !self.spec.h2ping.is_empty() {
            "h2ping"
        } else if !self.alias_service.is_empty() || !self.alias_node.is_empty() {
            "alias"
        } else if !self.docker_container_id.is_empty() {
            "docker"
        } else if !self.os_service.is_empty() {
            "os_service"
        } else if self.spec.ttl > 0 {
            "ttl"
        } else {
            ""
        }
    }

    /// Consul's check-type validation; the reason follows `Invalid check: `.
    pub(crate) fn validate(&self) -> Result<(), String> {
        // Consul's `CheckType.Validate`, in its order. A Docker container alone is not an
        // interval check there (its script is).
        let intervalled = !self.script_args.is_empty()
            || !self.spec.http.is_empty()
            || !self.spec.tcp.is_empty()
            || !self.spec.udp.is_empty()
            || !self.spec.grpc.is_empty()
            || !self.spec.h2ping.is_empty()
            || !self.os_service.is_empty();
        let alias = !self.alias_service.is_empty() || !self.alias_node.is_empty();
        if self.spec.interval > 0 && self.spec.ttl > 0 {
            return Err("Interval and TTL cannot both be specified".to_owned());
        }
        if intervalled && self.spec.interval <= 0 {
            return Err(
                "Interval must be > 0 for Script, HTTP, H2PING, TCP, UDP or OSService checks"
                    .to_owned(),
            );
        }
        if intervalled && alias {
            return Err("Interval cannot be set for Alias checks".to_owned());
        }
        if alias && self.spec.ttl > 0 {
            return Err("TTL must be not be set for Alias checks".to_owned());
        }
        if !intervalled && !alias && self.spec.ttl <= 0 {
            return Err("TTL must be > 0 for TTL checks".to_owned());
        }
        if self.spec.output_max_size < 0 {
            return Err("MaxOutputMaxSize must be positive".to_owned());
        }
        if self.failures_before_warning > self.failures_before_critical {
            return Err(
                "FailuresBeforeWarning can't be higher than FailuresBeforeCritical".to_owned(),
            );
        }
        Ok(())
    }
}

/// A service definition as registered with the agent.
#[derive(Debug, Clone, Default)]
pub(crate) struct ServiceDef {
    pub(crate) kind: String,
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) tags: Vec<String>,
    pub(crate) address: String,
    pub(crate) tagged_addresses: BTreeMap<String, TaggedAddr>,
    pub(crate) meta: BTreeMap<String, String>,
    pub(crate) port: i64,
    pub(crate) socket_path: String,
    pub(crate) checks: Vec<CheckDef>,
    pub(crate) weights: Option<Weights>,
    pub(crate) enable_tag_override: bool,
    pub(crate) locality: Option<Value>,
    /// `Connect.SidecarService` was given (unsupported).
    pub(crate) sidecar: bool,
}

const SERVICE_FIELDS: &[FieldSpec] = &[
    ("Kind", &[]),
    ("ID", &[]),
    ("Name", &[]),
    ("Tags", &[]),
    ("Address", &[]),
    ("TaggedAddresses", &["tagged_addresses"]),
    ("Meta", &[]),
    ("Port", &[]),
    ("SocketPath", &[]),
    ("Check", &[]),
    ("Checks", &[]),
    ("Weights", &[]),
    ("Token", &[]),
    ("EnableTagOverride", &["enable_tag_override"]),
    ("Proxy", &[]),
    ("Connect", &[]),
    ("Locality", &[]),
];

/// Decodes `Weights`.
pub(super) fn decode_weights(v: &Value) -> Result<Weights, DecodeError> {
    let f = Fields::new(v, "Weights", &[("Passing", &[]), ("Warning", &[])])?;
    Ok(Weights {
        passing: f.int("Passing")?,
        warning: f.int("Warning")?,
    })
}

/// What a null entry of `TaggedAddresses` is taken for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Nulls {
    /// No address (the agent's registration).
    Skip,
    /// A type error (the catalog's registration).
    Refuse,
}

/// Decodes `TaggedAddresses`; `go_type` names the map in a type error.
pub(super) fn decode_tagged(
    f: &Fields<'_>,
    go_type: &str,
    nulls: Nulls,
) -> Result<BTreeMap<String, TaggedAddr>, DecodeError> {
    let mut out = BTreeMap::new();
    if let Some(Value::Object(map)) = f.object("TaggedAddresses", go_type)? {
        for (k, v) in map {
            if v.is_null() && nulls == Nulls::Skip {
                continue;
            }
            let a = Fields::new(v, "ServiceAddress", &[("Address", &[]), ("Port", &[])])?;
            out.insert(
                k.clone(),
                TaggedAddr {
                    address: a.string("Address")?,
                    port: a.int("Port")?,
                },
            );
        }
    }
    Ok(out)
}

impl ServiceDef {
    /// Decodes an agent service registration body.
    pub(crate) fn decode(v: &Value) -> Result<Self, DecodeError> {
        let f = Fields::new(v, "ServiceDefinition", SERVICE_FIELDS)?;
        let mut checks = Vec::new();
        if let Some(c) = f.object("Check", "structs.CheckType")?
            && let Some(def) = CheckDef::decode(c, "CheckType")?
        {
            checks.push(def);
        }
        for c in f.array("Checks", "structs.CheckTypes")? {
            if c.is_null() {
                continue;
            }
            if let Some(def) = CheckDef::decode(c, "CheckType")? {
                checks.push(def);
            }
        }
        let weights = match f.object("Weights", "structs.Weights")? {
            Some(w) => Some(decode_weights(w)?),
            None => None,
        };
        // Proxy and Connect are accepted (clients send them empty); a sidecar request is
        // remembered so the handler can refuse it clearly: there is no service mesh here.
        f.object("Proxy", "structs.ConnectProxyConfig")?;
        let sidecar = f
            .object("Connect", "structs.ServiceConnect")?
            .and_then(Value::as_object)
            .is_some_and(|c| {
                c.iter()
                    .any(|(k, v)| k.eq_ignore_ascii_case("SidecarService") && !v.is_null())
            });
        // The registration's own token is only used by Consul's anti-entropy; unused here.
        f.string("Token")?;
        Ok(ServiceDef {
            kind: f.string("Kind")?,
            id: f.string("ID")?,
            name: f.string("Name")?,
            tags: f.strings("Tags")?,
            address: f.string("Address")?,
            tagged_addresses: decode_tagged(&f, "map[string]structs.ServiceAddress", Nulls::Skip)?,
            meta: f.string_map("Meta")?,
            port: f.int("Port")?,
            socket_path: f.string("SocketPath")?,
            checks,
            weights,
            enable_tag_override: f.boolean("EnableTagOverride")?,
            locality: f.object("Locality", "structs.Locality")?.cloned(),
            sidecar,
        })
    }
}

/// Validates service metadata like Consul does; the reason follows `Invalid Service Meta: `.
pub(crate) fn validate_meta(meta: &BTreeMap<String, String>) -> Result<(), String> {
    if meta.len() > 64 {
        return Err("Node metadata cannot contain more than 64 key/value pairs".to_string());
    }
    for (k, v) in meta {
        if let Err(e) = validate_meta_pair(k, v) {
            return Err(format!("Couldn't load metadata pair ('{k}', '{v}'): {e}"));
        }
    }
    Ok(())
}

/// Consul's `validateMetaPair`.
fn validate_meta_pair(k: &str, v: &str) -> Result<(), &'static str> {
    if k.is_empty() {
        return Err("Key cannot be blank");
    }
    if !k
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err("Key contains invalid characters");
    }
    if k.len() > 128 {
        return Err("Key is too long (limit: 128 characters)");
    }
    if k.starts_with("consul-") {
        return Err("Key prefix 'consul-' is reserved for internal use");
    }
    if v.len() > 512 {
        return Err("Value is too long (limit: 512 characters)");
    }
    Ok(())
}

/// Check status update body for `PUT /v1/agent/check/update/:id`.
#[derive(Debug)]
pub(crate) struct CheckUpdate {
    pub(crate) status: String,
    pub(crate) output: String,
}

impl CheckUpdate {
    /// Decodes `{"Status", "Output"}`.
    pub(crate) fn decode(v: &Value) -> Result<Self, DecodeError> {
        let f = Fields::new(v, "checkUpdate", &[("Status", &[]), ("Output", &[])])?;
        Ok(CheckUpdate {
            status: f.string("Status")?,
            output: f.string("Output")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_field_is_rejected_with_go_text() {
        let v: Value = serde_json::from_str(r#"{"Name":"a","Bogus":1}"#).expect("valid json");
        let err = ServiceDef::decode(&v).expect_err("unknown field must fail");
        assert_eq!(err.0, "json: unknown field \"Bogus\"");
    }

    #[test]
    fn keys_are_case_insensitive() {
        let v: Value = serde_json::from_str(r#"{"name":"a","enable_tag_override":true,"port":1}"#)
            .expect("json");
        let def = ServiceDef::decode(&v).expect("decodes");
        assert_eq!(def.name, "a");
        assert!(def.enable_tag_override);
        assert_eq!(def.port, 1);
    }
}
