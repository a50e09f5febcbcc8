//! `/v1/agent/self` and `/v1/agent/members`: what the agent says about itself and its one
//! member. Uses `config`, `acl` and the HTTP layer.

use axum::response::Response;
use serde_json::{Value, json};

use crate::config::CONSUL_VERSION;
use crate::error::Result;
use crate::web::{AppState, Ctx, json as json_resp};

fn member(state: &AppState) -> Value {
    json!({
        "Name": state.config().node_name,
        "Addr": "127.0.0.1",
        "Port": 8301,
        "Tags": {
            "dc": state.config().datacenter,
            "role": "consul",
            "build": CONSUL_VERSION,
            "port": "8300",
            "vsn": "2",
            "id": state.config().node_id,
            "bootstrap": "1",
            "segment": "",
        },
        "Status": 1,
        "ProtocolMin": 1,
        "ProtocolMax": 5,
        "ProtocolCur": 2,
        "DelegateMin": 2,
        "DelegateMax": 5,
        "DelegateCur": 4,
    })
}

pub(super) async fn agent_self(ctx: Ctx) -> Result<Response> {
    ctx.authz()?.require_plain("agent:read")?;
    let c = ctx.state.config();
    let body = json!({
        "Config": {
            "Datacenter": c.datacenter,
            "PrimaryDatacenter": c.datacenter,
            "NodeName": c.node_name,
            "NodeID": c.node_id,
            "Revision": "consul-dev",
            "Server": true,
            "Version": CONSUL_VERSION,
            "BuildDate": "2026-01-01T00:00:00Z",
        },
        "DebugConfig": {
            "ACLsEnabled": c.acl_token.is_some(),
            "ACLDefaultPolicy": crate::acl::default_policy(c),
            "DevMode": true,
        },
        "Coord": {"Vec": [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], "Error": 1.5, "Adjustment": 0.0, "Height": 1e-5},
        "Member": member(&ctx.state),
        "Stats": {
            "agent": {"check_monitors": "0", "check_ttls": "0", "checks": "0", "services": "0"},
            "consul": {"server": "true", "leader": "true", "bootstrap": "true", "known_datacenters": "1"},
        },
        "Meta": {"consul-network-segment": "", "consul-version": CONSUL_VERSION},
        "xDS": null,
    });
    Ok(json_resp(&ctx.query, &body))
}

pub(super) async fn members(ctx: Ctx) -> Result<Response> {
    let authz = ctx.authz()?;
    let list = if authz.can_read() {
        vec![member(&ctx.state)]
    } else {
        Vec::new()
    };
    Ok(json_resp(&ctx.query, &list))
}
