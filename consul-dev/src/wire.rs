//! Wire formats: Go-compatible request decoding and the JSON shapes Consul answers with.
//!
//! Request bodies are decoded by hand from a [`serde_json::Value`] rather than with derived
//! `Deserialize` impls, because Consul's decoder matches keys case-insensitively, accepts
//! snake_case aliases, rejects unknown keys with Go's wording and accepts durations either
//! as Go duration strings or as integer nanoseconds. Reproducing all of that with serde
//! attributes is not possible; a small explicit decoder is clearer.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

// === Go durations ===

/// Parses a Go duration string (`"10s"`, `"1m30s"`, `"250ms"`, `"-1.5h"`) into signed
/// nanoseconds, with Go's error texts.
pub(crate) fn parse_go_duration(s: &str) -> Result<i64, String> {
    let invalid = || format!("time: invalid duration \"{s}\"");
    let mut rest = s;
    let mut neg = false;
    if let Some(r) = rest.strip_prefix('-') {
        neg = true;
        rest = r;
    } else if let Some(r) = rest.strip_prefix('+') {
        rest = r;
    }
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let num = &rest[..num_len];
        if num.is_empty() || num == "." || num.matches('.').count() > 1 {
            return Err(invalid());
        }
        let value: f64 = num.parse().map_err(|_| invalid())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let scale = match unit {
            "" => return Err(format!("time: missing unit in duration \"{s}\"")),
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            other => {
                return Err(format!(
                    "time: unknown unit \"{other}\" in duration \"{s}\""
                ));
            }
        };
        total += value * scale;
        if total > i64::MAX as f64 {
            return Err(invalid());
        }
    }
    let nanos = total.round() as i64;
    Ok(if neg { -nanos } else { nanos })
}

/// Formats a duration the way Go's `time.Duration.String` does (`"1m0s"`, `"250ms"`).
pub(crate) fn go_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".to_owned();
    }
    if nanos < 1_000 {
        return format!("{nanos}ns");
    }
    if nanos < 1_000_000 {
        return format!("{}µs", trim_frac(nanos, 1_000));
    }
    if nanos < 1_000_000_000 {
        return format!("{}ms", trim_frac(nanos, 1_000_000));
    }
    let hours = nanos / 3_600_000_000_000;
    let rem = nanos % 3_600_000_000_000;
    let mins = rem / 60_000_000_000;
    let secs_nanos = rem % 60_000_000_000;
    let secs = trim_frac(secs_nanos, 1_000_000_000);
    if hours > 0 {
        format!("{hours}h{mins}m{secs}s")
    } else if mins > 0 {
        format!("{mins}m{secs}s")
    } else {
        format!("{secs}s")
    }
}

/// `value / unit` with the fractional part printed without trailing zeros.
fn trim_frac(value: u128, unit: u128) -> String {
    let whole = value / unit;
    let frac = value % unit;
    if frac == 0 {
        return whole.to_string();
    }
    let width = unit.to_string().len() - 1;
    let digits = format!("{frac:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

/// Nanoseconds (possibly negative) to a duration, negatives clamp to zero.
pub(crate) fn nanos_to_duration(n: i64) -> Duration {
    Duration::from_nanos(u64::try_from(n).unwrap_or(0))
}

// === Decoder ===

/// A decode failure; the text follows `Request decode failed: `.
#[derive(Debug)]
pub(crate) struct DecodeError(pub(crate) String);

/// The JSON type names Go uses in `cannot unmarshal X into ...`.
fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Parses a request body, mapping the empty body to Go's `EOF`.
pub(crate) fn parse_body(body: &[u8]) -> Result<Value, DecodeError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(DecodeError("EOF".to_owned()));
    }
    serde_json::from_slice(body).map_err(|e| {
        if e.is_eof() {
            DecodeError("unexpected EOF".to_owned())
        } else {
            DecodeError(go_syntax_error(body, &e))
        }
    })
}

/// Rewords a serde syntax error the way Go's `encoding/json` words it
/// (`invalid character 'x' looking for beginning of value`).
fn go_syntax_error(body: &[u8], e: &serde_json::Error) -> String {
    let text = String::from_utf8_lossy(body);
    let found = text
        .lines()
        .nth(e.line().saturating_sub(1))
        .and_then(|l| l.chars().nth(e.column().saturating_sub(1)));
    let msg = e.to_string();
    let context = if msg.starts_with("key must be a string") {
        "looking for beginning of object key string"
    } else if msg.starts_with("expected `:`") {
        "after object key"
    } else if msg.starts_with("expected `,` or `}`") {
        "after object key:value pair"
    } else if msg.starts_with("expected `,` or `]`") {
        "after array element"
    } else if msg.starts_with("trailing characters") {
        "after top-level value"
    } else if msg.starts_with("expected value") || msg.starts_with("expected ident") {
        "looking for beginning of value"
    } else {
        return format!("invalid JSON: {msg}");
    };
    match found {
        Some('\'') => format!("invalid character '\\'' {context}"),
        Some(c) => format!("invalid character '{c}' {context}"),
        None => format!("invalid JSON: {msg}"),
    }
}

/// One known field: the canonical name and accepted aliases.
pub(crate) type FieldSpec = (&'static str, &'static [&'static str]);

/// The fields of one JSON object, matched case-insensitively against a known list.
#[derive(Debug)]
pub(crate) struct Fields<'a> {
    strct: &'static str,
    found: Vec<(&'static str, &'a Value)>,
}

impl<'a> Fields<'a> {
    /// Matches `v`'s keys against `known`; unknown keys are an error. Nulls count as absent.
    pub(crate) fn new(
        v: &'a Value,
        strct: &'static str,
        known: &[FieldSpec],
    ) -> Result<Self, DecodeError> {
        let Value::Object(map) = v else {
            return Err(DecodeError(format!(
                "json: cannot unmarshal {} into Go value of type structs.{strct}",
                json_kind(v)
            )));
        };
        let mut found: Vec<(&'static str, &'a Value)> = Vec::new();
        for (key, value) in map {
            let canon = known.iter().find_map(|(canon, aliases)| {
                (canon.eq_ignore_ascii_case(key)
                    || aliases.iter().any(|a| a.eq_ignore_ascii_case(key)))
                .then_some(*canon)
            });
            let Some(canon) = canon else {
                return Err(DecodeError(format!("json: unknown field \"{key}\"")));
            };
            if value.is_null() || found.iter().any(|(c, _)| *c == canon) {
                continue;
            }
            found.push((canon, value));
        }
        Ok(Fields { strct, found })
    }

    /// True when no non-null field was given.
    pub(crate) fn is_empty(&self) -> bool {
        self.found.is_empty()
    }

    /// The raw value of a field.
    pub(crate) fn raw(&self, name: &str) -> Option<&'a Value> {
        self.found.iter().find(|(c, _)| *c == name).map(|(_, v)| *v)
    }

    fn type_err(&self, name: &str, v: &Value, want: &str) -> DecodeError {
        DecodeError(format!(
            "json: cannot unmarshal {} into Go struct field {}.{name} of type {want}",
            json_kind(v),
            self.strct
        ))
    }

    /// A string field ("" when absent).
    pub(crate) fn string(&self, name: &str) -> Result<String, DecodeError> {
        match self.raw(name) {
            None => Ok(String::new()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(v) => Err(self.type_err(name, v, "string")),
        }
    }

    /// A boolean field (false when absent).
    pub(crate) fn boolean(&self, name: &str) -> Result<bool, DecodeError> {
        match self.raw(name) {
            None => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(v) => Err(self.type_err(name, v, "bool")),
        }
    }

    /// An integer field (0 when absent).
    pub(crate) fn int(&self, name: &str) -> Result<i64, DecodeError> {
        match self.raw(name) {
            None => Ok(0),
            Some(Value::Number(n)) => n.as_i64().ok_or_else(|| {
                DecodeError(format!(
                    "json: cannot unmarshal number {n} into Go struct field {}.{name} of type int",
                    self.strct
                ))
            }),
            Some(v) => Err(self.type_err(name, v, "int")),
        }
    }

    /// A duration field: Go duration string or integer nanoseconds (0 when absent).
    pub(crate) fn duration(&self, name: &str) -> Result<i64, DecodeError> {
        match self.raw(name) {
            None => Ok(0),
            Some(Value::String(s)) if s.is_empty() => Ok(0),
            Some(Value::String(s)) => parse_go_duration(s).map_err(DecodeError),
            Some(Value::Number(n)) => n
                .as_i64()
                .or_else(|| n.as_f64().map(|f| f as i64))
                .ok_or_else(|| DecodeError(format!("time: invalid duration \"{n}\""))),
            Some(v) => Err(self.type_err(name, v, "time.Duration")),
        }
    }

    /// A list of strings (empty when absent).
    pub(crate) fn strings(&self, name: &str) -> Result<Vec<String>, DecodeError> {
        match self.raw(name) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| match item {
                    Value::String(s) => Ok(s.clone()),
                    other => Err(self.type_err(name, other, "string")),
                })
                .collect(),
            Some(v) => Err(self.type_err(name, v, "[]string")),
        }
    }

    /// A map of strings (empty when absent).
    pub(crate) fn string_map(&self, name: &str) -> Result<BTreeMap<String, String>, DecodeError> {
        match self.raw(name) {
            None => Ok(BTreeMap::new()),
            Some(Value::Object(map)) => map
                .iter()
                .map(|(k, item)| match item {
                    Value::String(s) => Ok((k.clone(), s.clone())),
                    Value::Null => Ok((k.clone(), String::new())),
                    other => Err(self.type_err(name, other, "string")),
                })
                .collect(),
            Some(v) => Err(self.type_err(name, v, "map[string]string")),
        }
    }

    /// A map of string lists (HTTP check headers).
    pub(crate) fn string_list_map(
        &self,
        name: &str,
    ) -> Result<BTreeMap<String, Vec<String>>, DecodeError> {
        match self.raw(name) {
            None => Ok(BTreeMap::new()),
            Some(Value::Object(map)) => {
                let mut out = BTreeMap::new();
                for (k, item) in map {
                    let list = match item {
                        Value::Null => Vec::new(),
                        Value::Array(items) => items
                            .iter()
                            .map(|i| match i {
                                Value::String(s) => Ok(s.clone()),
                                other => Err(self.type_err(name, other, "string")),
                            })
                            .collect::<Result<_, _>>()?,
                        other => return Err(self.type_err(name, other, "[]string")),
                    };
                    out.insert(k.clone(), list);
                }
                Ok(out)
            }
            Some(v) => Err(self.type_err(name, v, "map[string][]string")),
        }
    }

    /// An object field, or an error if it is some other JSON type.
    pub(crate) fn object(
        &self,
        name: &str,
        go_type: &str,
    ) -> Result<Option<&'a Value>, DecodeError> {
        match self.raw(name) {
            None => Ok(None),
            Some(v @ Value::Object(_)) => Ok(Some(v)),
            Some(v) => Err(self.type_err(name, v, go_type)),
        }
    }

    /// An array field, or an error if it is some other JSON type.
    pub(crate) fn array(&self, name: &str, go_type: &str) -> Result<&'a [Value], DecodeError> {
        match self.raw(name) {
            None => Ok(&[]),
            Some(Value::Array(items)) => Ok(items),
            Some(v) => Err(self.type_err(name, v, go_type)),
        }
    }
}

// === Request definitions ===

/// A health check definition as registered.
#[derive(Debug, Clone, Default)]
pub(crate) struct CheckDef {
    pub(crate) check_id: String,
    pub(crate) name: String,
    pub(crate) status: String,
    pub(crate) notes: String,
    pub(crate) service_id: String,
    pub(crate) script_args: Vec<String>,
    pub(crate) http: String,
    pub(crate) header: BTreeMap<String, Vec<String>>,
    pub(crate) method: String,
    pub(crate) body: String,
    pub(crate) disable_redirects: bool,
    pub(crate) tcp: String,
    pub(crate) udp: String,
    pub(crate) grpc: String,
    pub(crate) grpc_use_tls: bool,
    pub(crate) h2ping: String,
    pub(crate) alias_service: String,
    pub(crate) alias_node: String,
    pub(crate) docker_container_id: String,
    pub(crate) os_service: String,
    pub(crate) tls_skip_verify: bool,
    /// Nanoseconds; may be negative as sent.
    pub(crate) interval: i64,
    pub(crate) timeout: i64,
    pub(crate) ttl: i64,
    pub(crate) success_before_passing: i64,
    pub(crate) failures_before_warning: i64,
    pub(crate) failures_before_critical: i64,
    pub(crate) deregister_critical_service_after: i64,
    pub(crate) output_max_size: i64,
}

const CHECK_FIELDS: &[FieldSpec] = &[
    ("CheckID", &["check_id", "ID"]),
    ("Name", &[]),
    ("Status", &[]),
    ("Notes", &[]),
    ("ServiceID", &["service_id"]),
    ("ScriptArgs", &["script_args", "args"]),
    ("HTTP", &[]),
    ("Header", &[]),
    ("Method", &[]),
    ("Body", &[]),
    ("DisableRedirects", &["disable_redirects"]),
    ("TCP", &[]),
    ("TCPUseTLS", &["tcp_use_tls"]),
    ("UDP", &[]),
    ("GRPC", &[]),
    ("GRPCUseTLS", &["grpc_use_tls"]),
    ("H2PING", &[]),
    ("H2PingUseTLS", &["h2ping_use_tls"]),
    ("OSService", &["os_service"]),
    ("AliasNode", &["alias_node"]),
    ("AliasService", &["alias_service"]),
    ("DockerContainerID", &["docker_container_id"]),
    ("Shell", &[]),
    ("TLSServerName", &["tls_server_name"]),
    ("TLSSkipVerify", &["tls_skip_verify"]),
    ("Interval", &[]),
    ("Timeout", &[]),
    ("TTL", &[]),
    ("SuccessBeforePassing", &["success_before_passing"]),
    ("FailuresBeforeWarning", &["failures_before_warning"]),
    ("FailuresBeforeCritical", &["failures_before_critical"]),
    (
        "DeregisterCriticalServiceAfter",
        &["deregister_critical_service_after"],
    ),
    ("OutputMaxSize", &["output_max_size"]),
    ("ProxyHTTP", &["proxy_http"]),
    ("ProxyGRPC", &["proxy_grpc"]),
];

impl CheckDef {
    /// Decodes one check object; `Ok(None)` for an all-empty object.
    pub(crate) fn decode(v: &Value, strct: &'static str) -> Result<Option<Self>, DecodeError> {
        let f = Fields::new(v, strct, CHECK_FIELDS)?;
        if f.is_empty() {
            return Ok(None);
        }
        // Accepted for compatibility; SNI overrides are not supported.
        f.string("TLSServerName")?;
        Ok(Some(CheckDef {
            check_id: f.string("CheckID")?,
            name: f.string("Name")?,
            status: f.string("Status")?,
            notes: f.string("Notes")?,
            service_id: f.string("ServiceID")?,
            script_args: f.strings("ScriptArgs")?,
            http: f.string("HTTP")?,
            header: f.string_list_map("Header")?,
            method: f.string("Method")?,
            body: f.string("Body")?,
            disable_redirects: f.boolean("DisableRedirects")?,
            tcp: f.string("TCP")?,
            udp: f.string("UDP")?,
            grpc: f.string("GRPC")?,
            grpc_use_tls: f.boolean("GRPCUseTLS")?,
            h2ping: f.string("H2PING")?,
            alias_service: f.string("AliasService")?,
            alias_node: f.string("AliasNode")?,
            docker_container_id: f.string("DockerContainerID")?,
            os_service: f.string("OSService")?,
            tls_skip_verify: f.boolean("TLSSkipVerify")?,
            interval: f.duration("Interval")?,
            timeout: f.duration("Timeout")?,
            ttl: f.duration("TTL")?,
            success_before_passing: f.int("SuccessBeforePassing")?,
            failures_before_warning: f.int("FailuresBeforeWarning")?,
            failures_before_critical: f.int("FailuresBeforeCritical")?,
            deregister_critical_service_after: f.duration("DeregisterCriticalServiceAfter")?,
            output_max_size: f.int("OutputMaxSize")?,
        }))
    }

    /// The check's type name as Consul reports it.
    pub(crate) fn type_name(&self) -> &'static str {
        if !self.script_args.is_empty() {
            "script"
        } else if !self.http.is_empty() {
            "http"
        } else if !self.tcp.is_empty() {
            "tcp"
        } else if !self.udp.is_empty() {
            "udp"
        } else if !self.grpc.is_empty() {
            "grpc"
        } else if !self.h2ping.is_empty() {
            "h2ping"
        } else if !self.alias_service.is_empty() || !self.alias_node.is_empty() {
            "alias"
        } else if !self.docker_container_id.is_empty() {
            "docker"
        } else if !self.os_service.is_empty() {
            "os_service"
        } else if self.ttl > 0 {
            "ttl"
        } else {
            ""
        }
    }

    /// Consul's check-type validation; the reason follows `Invalid check: `.
    pub(crate) fn validate(&self) -> Result<(), String> {
        let intervalled = !self.script_args.is_empty()
            || !self.http.is_empty()
            || !self.tcp.is_empty()
            || !self.udp.is_empty()
            || !self.grpc.is_empty()
            || !self.h2ping.is_empty()
            || !self.docker_container_id.is_empty()
            || !self.os_service.is_empty();
        let alias = !self.alias_service.is_empty() || !self.alias_node.is_empty();
        if self.interval != 0 && self.ttl != 0 {
            return Err("Interval and TTL cannot both be specified".to_owned());
        }
        if intervalled && self.interval <= 0 {
            return Err(
                "Interval must be > 0 for Script, HTTP, H2PING, TCP, UDP or OSService checks"
                    .to_owned(),
            );
        }
        if !intervalled && !alias && self.ttl <= 0 {
            return Err("TTL must be > 0 for TTL checks".to_owned());
        }
        if self.failures_before_warning > self.failures_before_critical {
            return Err(
                "FailuresBeforeWarning can't be higher than FailuresBeforeCritical".to_owned(),
            );
        }
        Ok(())
    }
}

/// A tagged address: `{Address, Port}`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct TaggedAddr {
    pub(crate) address: String,
    pub(crate) port: i64,
}

/// Service weights.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Weights {
    pub(crate) passing: i64,
    pub(crate) warning: i64,
}

impl Default for Weights {
    fn default() -> Self {
        Weights {
            passing: 1,
            warning: 1,
        }
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
    ("SocketPath", &["socket_path"]),
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
fn decode_weights(v: &Value) -> Result<Weights, DecodeError> {
    let f = Fields::new(v, "Weights", &[("Passing", &[]), ("Warning", &[])])?;
    Ok(Weights {
        passing: f.int("Passing")?,
        warning: f.int("Warning")?,
    })
}

/// Decodes `TaggedAddresses`.
fn decode_tagged(f: &Fields<'_>) -> Result<BTreeMap<String, TaggedAddr>, DecodeError> {
    let mut out = BTreeMap::new();
    if let Some(obj) = f.object("TaggedAddresses", "map[string]structs.ServiceAddress")?
        && let Value::Object(map) = obj
    {
        for (k, v) in map {
            if v.is_null() {
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
            tagged_addresses: decode_tagged(&f)?,
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
        if k.is_empty() {
            return Err("Key cannot be blank".to_owned());
        }
        if !k
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(format!("Key contains invalid characters: {k}"));
        }
        if k.len() > 128 {
            return Err(format!("Key is too long (limit: 128 characters): {k}"));
        }
        if k.starts_with("consul-") {
            return Err(format!(
                "Key prefix 'consul-' is reserved for internal use: {k}"
            ));
        }
        if v.len() > 512 {
            return Err(format!("Value is too long (limit: 512 characters): {k}"));
        }
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
    fn go_durations_round_trip() {
        assert_eq!(parse_go_duration("10s"), Ok(10_000_000_000));
        assert_eq!(parse_go_duration("1m30s"), Ok(90_000_000_000));
        assert_eq!(parse_go_duration("250ms"), Ok(250_000_000));
        assert_eq!(parse_go_duration("1.5h"), Ok(5_400_000_000_000));
        assert_eq!(parse_go_duration("0"), Ok(0));
        assert!(
            parse_go_duration("10")
                .unwrap_err()
                .contains("missing unit")
        );
        assert!(
            parse_go_duration("10x")
                .unwrap_err()
                .contains("unknown unit \"x\"")
        );
        assert!(
            parse_go_duration("abc")
                .unwrap_err()
                .contains("invalid duration")
        );
        assert!(parse_go_duration("").is_err());
        assert_eq!(go_duration(Duration::from_secs(60)), "1m0s");
        assert_eq!(go_duration(Duration::from_secs(10)), "10s");
        assert_eq!(go_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(go_duration(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(go_duration(Duration::ZERO), "0s");
    }

    #[test]
    fn syntax_errors_read_like_go() {
        let err = |b: &str| parse_body(b.as_bytes()).expect_err("invalid").0;
        assert_eq!(
            err("x"),
            "invalid character 'x' looking for beginning of value"
        );
        assert_eq!(err("{\"a\" 1}"), "invalid character '1' after object key");
        assert_eq!(
            err("{1:2}"),
            "invalid character '1' looking for beginning of object key string"
        );
        assert_eq!(err("[1 2]"), "invalid character '2' after array element");
        assert_eq!(err("{}x"), "invalid character 'x' after top-level value");
        assert_eq!(err("{"), "unexpected EOF");
        assert_eq!(err("  "), "EOF");
    }

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

// === Response shapes ===

/// Output of a check as `/v1/agent/checks` and the health endpoints show it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct CheckOut {
    pub(crate) node: String,
    #[serde(rename = "CheckID")]
    pub(crate) check_id: String,
    pub(crate) name: String,
    pub(crate) status: &'static str,
    pub(crate) notes: String,
    pub(crate) output: String,
    #[serde(rename = "ServiceID")]
    pub(crate) service_id: String,
    pub(crate) service_name: String,
    pub(crate) service_tags: Vec<String>,
    pub(crate) r#type: String,
    pub(crate) interval: String,
    pub(crate) timeout: String,
    pub(crate) exposed_port: u16,
    pub(crate) definition: Value,
    pub(crate) create_index: u64,
    pub(crate) modify_index: u64,
}

impl CheckOut {
    /// Renders a stored check.
    pub(crate) fn from_check(c: &crate::state::Check) -> CheckOut {
        let mut def = serde_json::Map::new();
        if let Some(d) = &c.def {
            let mut put = |k: &str, v: &str| {
                if !v.is_empty() {
                    def.insert(k.to_owned(), Value::String(v.to_owned()));
                }
            };
            put("HTTP", &d.http);
            put("Method", &d.method);
            put("TCP", &d.tcp);
            put("UDP", &d.udp);
            put("GRPC", &d.grpc);
            put("H2PING", &d.h2ping);
            for (k, n) in [
                ("Interval", d.interval),
                ("Timeout", d.timeout),
                ("TTL", d.ttl),
                (
                    "DeregisterCriticalServiceAfter",
                    d.deregister_critical_service_after,
                ),
            ] {
                if n > 0 {
                    def.insert(
                        k.to_owned(),
                        Value::String(go_duration(nanos_to_duration(n))),
                    );
                }
            }
        }
        let dur = |d: Option<Duration>| d.map(go_duration).unwrap_or_default();
        CheckOut {
            node: c.node.clone(),
            check_id: c.check_id.clone(),
            name: c.name.clone(),
            status: c.status.as_str(),
            notes: c.notes.clone(),
            output: c.output.clone(),
            service_id: c.service_id.clone(),
            service_name: c.service_name.clone(),
            service_tags: c.service_tags.clone(),
            r#type: c.kind.clone(),
            interval: dur(c.interval),
            timeout: dur(c.timeout),
            exposed_port: 0,
            definition: Value::Object(def),
            create_index: c.create_index,
            modify_index: c.modify_index,
        }
    }
}

/// A service as the agent endpoints show it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct AgentServiceOut {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(crate) kind: String,
    #[serde(rename = "ID")]
    pub(crate) id: String,
    pub(crate) service: String,
    pub(crate) tags: Vec<String>,
    pub(crate) meta: BTreeMap<String, String>,
    pub(crate) port: i64,
    pub(crate) address: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(crate) socket_path: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) tagged_addresses: BTreeMap<String, TaggedAddr>,
    pub(crate) weights: Weights,
    pub(crate) enable_tag_override: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) locality: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) content_hash: Option<String>,
    pub(crate) datacenter: String,
}

impl AgentServiceOut {
    /// Renders a stored service.
    pub(crate) fn from_service(s: &crate::state::Service, dc: &str) -> AgentServiceOut {
        AgentServiceOut {
            kind: s.kind.clone(),
            id: s.id.clone(),
            service: s.name.clone(),
            tags: s.tags.clone(),
            meta: s.meta.clone(),
            port: s.port,
            address: s.address.clone(),
            socket_path: s.socket_path.clone(),
            tagged_addresses: s.tagged_addresses.clone(),
            weights: s.weights,
            enable_tag_override: s.enable_tag_override,
            locality: s.locality.clone(),
            content_hash: None,
            datacenter: dc.to_owned(),
        }
    }
}

/// A node as the health and catalog endpoints show it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct NodeOut {
    #[serde(rename = "ID")]
    pub(crate) id: String,
    pub(crate) node: String,
    pub(crate) address: String,
    pub(crate) datacenter: String,
    pub(crate) tagged_addresses: BTreeMap<String, String>,
    pub(crate) meta: BTreeMap<String, String>,
    pub(crate) create_index: u64,
    pub(crate) modify_index: u64,
}

impl NodeOut {
    /// Renders a stored node.
    pub(crate) fn from_node(n: &crate::state::Node) -> NodeOut {
        NodeOut {
            id: n.id.clone(),
            node: n.name.clone(),
            address: n.address.clone(),
            datacenter: n.datacenter.clone(),
            tagged_addresses: n.tagged_addresses.clone(),
            meta: n.meta.clone(),
            create_index: n.create_index,
            modify_index: n.modify_index,
        }
    }
}

fn is_zero(p: &i64) -> bool {
    *p == 0
}

/// A service as `/v1/health/service` shows it (Consul's `NodeService`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct NodeServiceOut {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(crate) kind: String,
    #[serde(rename = "ID")]
    pub(crate) id: String,
    pub(crate) service: String,
    pub(crate) tags: Vec<String>,
    pub(crate) address: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) tagged_addresses: BTreeMap<String, TaggedAddr>,
    pub(crate) meta: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "is_zero")]
    pub(crate) port: i64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(crate) socket_path: String,
    pub(crate) weights: Weights,
    pub(crate) enable_tag_override: bool,
    pub(crate) proxy: Value,
    pub(crate) connect: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) locality: Option<Value>,
    pub(crate) peer_name: String,
    pub(crate) create_index: u64,
    pub(crate) modify_index: u64,
}

/// The empty proxy object Consul prints for non-proxy services.
pub(crate) fn empty_proxy() -> Value {
    serde_json::json!({"Mode": "", "MeshGateway": {}, "Expose": {}})
}

impl NodeServiceOut {
    /// Renders a stored service.
    pub(crate) fn from_service(s: &crate::state::Service) -> NodeServiceOut {
        NodeServiceOut {
            kind: s.kind.clone(),
            id: s.id.clone(),
            service: s.name.clone(),
            tags: s.tags.clone(),
            address: s.address.clone(),
            tagged_addresses: s.tagged_addresses.clone(),
            meta: s.meta.clone(),
            port: s.port,
            socket_path: s.socket_path.clone(),
            weights: s.weights,
            enable_tag_override: s.enable_tag_override,
            proxy: empty_proxy(),
            connect: Value::Object(serde_json::Map::new()),
            locality: s.locality.clone(),
            peer_name: String::new(),
            create_index: s.create_index,
            modify_index: s.modify_index,
        }
    }
}

/// One `/v1/health/service` entry.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ServiceEntryOut {
    pub(crate) node: NodeOut,
    pub(crate) service: NodeServiceOut,
    pub(crate) checks: Vec<CheckOut>,
}
