//! Catalog request shapes: what a client sends to `PUT /v1/catalog/register` and
//! `/deregister`, decoded with Go's rules and texts. Uses the decoder, the agent request
//! shapes (weights, tagged addresses, check definitions) and `state`'s model.

use std::collections::BTreeMap;

use serde_json::Value;

use super::agent_request::{CheckDef, Nulls, decode_tagged, decode_weights};
use super::decode::{DecodeError, FieldSpec, Fields};
use crate::state::{Service, Weights};

/// A decoded catalog registration.
#[derive(Debug)]
pub(crate) struct CatalogRegistration {
    /// Where to register; empty means the agent's own datacenter.
    pub(crate) datacenter: String,
    pub(crate) node: String,
    pub(crate) id: String,
    pub(crate) address: String,
    /// Keep an existing node's record as it is (only its services and checks change).
    pub(crate) skip_node_update: bool,
    /// Whether the request, its service or a check names a peer (Consul refuses those).
    pub(crate) names_a_peer: bool,
    pub(crate) tagged_addresses: BTreeMap<String, String>,
    pub(crate) node_meta: BTreeMap<String, String>,
    pub(crate) service: Option<Service>,
    pub(crate) checks: Vec<CatalogCheck>,
}

/// A check of a catalog registration, stored as sent and never run.
#[derive(Debug)]
pub(crate) struct CatalogCheck {
    /// The node the check claims to be on; empty means the registration's.
    pub(crate) node: String,
    pub(crate) def: CheckDef,
    pub(crate) output: String,
    /// `Type` as sent.
    pub(crate) kind: String,
}

const REGISTER_FIELDS: &[FieldSpec] = &[
    ("ID", &[]),
    ("Node", &[]),
    ("Address", &[]),
    ("Datacenter", &[]),
    // `RegisterRequest` has no decoder of its own: no snake_case aliases.
    ("TaggedAddresses", &[]),
    ("NodeMeta", &[]),
    ("Service", &[]),
    ("Check", &[]),
    ("Checks", &[]),
    ("SkipNodeUpdate", &[]),
    ("Token", &[]),
    ("Locality", &[]),
    ("PeerName", &[]),
    ("CreateIndex", &[]),
    ("ModifyIndex", &[]),
];

const NODE_SERVICE_FIELDS: &[FieldSpec] = &[
    ("Kind", &[]),
    ("ID", &[]),
    ("Service", &[]),
    ("Tags", &[]),
    ("Address", &[]),
    ("TaggedAddresses", &["tagged_addresses"]),
    ("Meta", &[]),
    ("Port", &[]),
    ("SocketPath", &["socket_path"]),
    ("Weights", &[]),
    ("EnableTagOverride", &["enable_tag_override"]),
    ("Proxy", &[]),
    ("Connect", &[]),
    ("Locality", &[]),
    ("PeerName", &[]),
    ("CreateIndex", &[]),
    ("ModifyIndex", &[]),
];

const HEALTH_CHECK_FIELDS: &[FieldSpec] = &[
    ("Node", &[]),
    ("CheckID", &[]),
    ("Name", &[]),
    ("Status", &[]),
    ("Notes", &[]),
    ("Output", &[]),
    ("ServiceID", &[]),
    ("ServiceName", &[]),
    ("ServiceTags", &[]),
    ("Type", &[]),
    ("Interval", &[]),
    ("Timeout", &[]),
    ("ExposedPort", &[]),
    ("Definition", &[]),
    ("PeerName", &[]),
    ("CreateIndex", &[]),
    ("ModifyIndex", &[]),
];

impl CatalogRegistration {
    /// Decodes a `PUT /v1/catalog/register` body.
    pub(crate) fn decode(v: &Value) -> Result<Self, DecodeError> {
        let f = Fields::new(v, "RegisterRequest", REGISTER_FIELDS)?;
        let node = f.string("Node")?;
        let mut names_a_peer = !f.string("PeerName")?.is_empty();
        let service = match f.object("Service", "structs.NodeService")? {
            None => None,
            Some(sv) => {
                let s = Fields::new(sv, "NodeService", NODE_SERVICE_FIELDS)?;
                let weights = match s.object("Weights", "structs.Weights")? {
                    Some(w) => decode_weights(w)?,
                    None => Weights::default(),
                };
                let tagged = decode_tagged(&s, "map", Nulls::Refuse)?;
                let name = s.string("Service")?;
                let id = s.string("ID")?;
                names_a_peer |= !s.string("PeerName")?.is_empty();
                Some(Service {
                    node: node.clone(),
                    kind: s.string("Kind")?,
                    id: if id.is_empty() { name.clone() } else { id },
                    name,
                    tags: s.strings("Tags")?,
                    address: s.string("Address")?,
                    tagged_addresses: tagged,
                    meta: s.string_map("Meta")?,
                    port: s.int("Port")?,
                    socket_path: s.string("SocketPath")?,
                    weights,
                    enable_tag_override: s.boolean("EnableTagOverride")?,
                    locality: s.object("Locality", "structs.Locality")?.cloned(),
                    create_index: 0,
                    modify_index: 0,
                })
            }
        };
        let mut checks = Vec::new();
        let single = f.object("Check", "structs.HealthCheck")?;
        for cv in single
            .into_iter()
            .chain(f.array("Checks", "structs.HealthChecks")?)
        {
            if cv.is_null() {
                continue;
            }
            let c = Fields::new(cv, "HealthCheck", HEALTH_CHECK_FIELDS)?;
            names_a_peer |= !c.string("PeerName")?.is_empty();
            let def = CheckDef {
                check_id: c.string("CheckID")?,
                name: c.string("Name")?,
                status: c.string("Status")?,
                notes: c.string("Notes")?,
                service_id: c.string("ServiceID")?,
                ..CheckDef::default()
            };
            checks.push(CatalogCheck {
                node: c.string("Node")?,
                def,
                output: c.string("Output")?,
                kind: c.string("Type")?,
            });
        }
        Ok(CatalogRegistration {
            datacenter: f.string("Datacenter")?,
            skip_node_update: f.boolean("SkipNodeUpdate")?,
            names_a_peer,
            node,
            id: f.string("ID")?,
            address: f.string("Address")?,
            tagged_addresses: f.string_map("TaggedAddresses")?,
            node_meta: f.string_map("NodeMeta")?,
            service,
            checks,
        })
    }
}

/// A decoded `PUT /v1/catalog/deregister` body: a whole node, or one of its services or
/// checks.
#[derive(Debug)]
pub(crate) struct CatalogDeregistration {
    /// Where to deregister; empty means the agent's own datacenter.
    pub(crate) datacenter: String,
    pub(crate) node: String,
    pub(crate) service_id: String,
    pub(crate) check_id: String,
}

impl CatalogDeregistration {
    /// Decodes `{"Node", "ServiceID", "CheckID", ...}`. `Address` (obsolete) and `PeerName`
    /// are accepted, as Consul's `DeregisterRequest` decoder accepts them.
    pub(crate) fn decode(v: &Value) -> Result<Self, DecodeError> {
        let f = Fields::new(
            v,
            "DeregisterRequest",
            &[
                ("Node", &[]),
                ("Datacenter", &[]),
                ("ServiceID", &[]),
                ("CheckID", &[]),
                ("Token", &[]),
                ("Address", &[]),
                ("PeerName", &[]),
            ],
        )?;
        Ok(CatalogDeregistration {
            datacenter: f.string("Datacenter")?,
            node: f.string("Node")?,
            service_id: f.string("ServiceID")?,
            check_id: f.string("CheckID")?,
        })
    }
}
