//! Catalog: `/v1/catalog/services` and `/v1/catalog/service/:name`, and registration
//! through the catalog. Conformance cases 38, 39, 62, 63, 64; `tests/README.md` lists
//! every case and where it is tested.

mod common;

use common::Agent;
use serde_json::{Value, json};

/// Case 38: `/v1/catalog/services` has `"consul": []` and `web` with merged unique tags.
#[tokio::test]
async fn case_38_catalog_services() {
    let a = Agent::start().await;
    a.register(json!({"Name": "web", "ID": "w1", "Tags": ["a", "b"]}))
        .await;
    a.register(json!({"Name": "web", "ID": "w2", "Tags": ["b", "c"]}))
        .await;
    let s = a.get_json("/v1/catalog/services").await;
    assert_eq!(s["consul"], json!([]));
    let mut tags: Vec<String> = serde_json::from_value(s["web"].clone()).expect("tags");
    tags.sort();
    assert_eq!(tags, ["a", "b", "c"], "merged unique tags");
}

/// Case 39: `/v1/catalog/service/web` has ServiceID, ServiceAddress, ServicePort, ServiceTags
/// (`[]`).
#[tokio::test]
async fn case_39_catalog_service() {
    let a = Agent::start().await;
    a.register(json!({"Name": "web", "Address": "10.1.1.1", "Port": 81}))
        .await;
    let s = a.get_json("/v1/catalog/service/web").await;
    let e = &s[0];
    assert_eq!(e["ServiceID"], "web");
    assert_eq!(e["ServiceAddress"], "10.1.1.1");
    assert_eq!(e["ServicePort"], 81);
    assert_eq!(e["ServiceTags"], json!([]));
    assert_eq!(e["Node"], "dev-node");
}

/// Case 62: a `Datacenter` in the body of `PUT /v1/catalog/register` / `deregister` names
/// where Consul forwards the request: an unknown one is 500 `No path to datacenter` and
/// nothing changes here; the agent's own (or none) registers locally. `?dc=` is not read
/// by these two handlers at all.
#[tokio::test]
async fn case_62_catalog_write_body_datacenter() {
    let a = Agent::start().await;
    let ext = |dc: &str| json!({"Datacenter": dc, "Node": "ext", "Address": "10.1.1.1"});
    let r = a.put_json("/v1/catalog/register", &ext("dc2")).await;
    assert_eq!((r.status, r.body.as_str()), (500, "No path to datacenter"));
    assert_eq!(
        a.get_json("/v1/catalog/node/ext").await,
        Value::Null,
        "nothing registered here"
    );
    let r = a.put_json("/v1/catalog/register", &ext("dc1")).await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (200, "true"),
        "the agent's own dc"
    );
    let r = a
        .put_json(
            "/v1/catalog/deregister",
            &json!({"Datacenter": "DC1", "Node": "ext"}),
        )
        .await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (500, "No path to datacenter"),
        "compared verbatim"
    );
    assert_ne!(
        a.get_json("/v1/catalog/node/ext").await,
        Value::Null,
        "still there"
    );
    let r = a
        .put_json(
            "/v1/catalog/deregister?dc=elsewhere",
            &json!({"Node": "ext"}),
        )
        .await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (200, "true"),
        "?dc= is not read by catalog writes"
    );
    assert_eq!(a.get_json("/v1/catalog/node/ext").await, Value::Null);
}

/// Case 63: `SkipNodeUpdate` keeps an existing node exactly as it is (address, meta,
/// tagged addresses, index) while its service is registered, and waives the address; without
/// it a registration replaces the node: omitted meta and tagged addresses are cleared.
#[tokio::test]
async fn case_63_skip_node_update_and_node_replacement() {
    let a = Agent::start().await;
    let r = a
        .put_json(
            "/v1/catalog/register",
            &json!({"Node": "ext", "Address": "10.0.0.1", "NodeMeta": {"rack": "r1"},
                "TaggedAddresses": {"wan": "1.2.3.4"}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let before = a.get_json("/v1/catalog/node/ext").await["Node"].clone();
    let r = a
        .put_json(
            "/v1/catalog/register",
            &json!({"Node": "ext", "Address": "10.0.0.2", "NodeMeta": {"rack": "r2"},
                "SkipNodeUpdate": true, "Service": {"Service": "redis", "Port": 6379}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let node = a.get_json("/v1/catalog/node/ext").await;
    assert_eq!(
        node["Node"], before,
        "the node is untouched, its ModifyIndex too"
    );
    assert_eq!(
        node["Services"]["redis"]["Port"], 6379,
        "the service is registered"
    );
    let r = a
        .put_json(
            "/v1/catalog/register",
            &json!({"Node": "ext", "SkipNodeUpdate": true,
                "Service": {"Service": "cache", "Port": 11211}}),
        )
        .await;
    assert_eq!(
        r.status, 200,
        "no address needed with SkipNodeUpdate: {}",
        r.body
    );
    let r = a
        .put_json(
            "/v1/catalog/register",
            &json!({"Node": "ext", "Service": {"Service": "cache"}}),
        )
        .await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (500, "Must provide address if SkipNodeUpdate is not set")
    );
    let r = a
        .put_json(
            "/v1/catalog/register",
            &json!({"Node": "ext", "Address": "10.0.0.3"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let node = a.get_json("/v1/catalog/node/ext").await["Node"].clone();
    assert_eq!(node["Address"], "10.0.0.3");
    assert!(
        node["Meta"].get("rack").is_none(),
        "omitted meta replaces the old: {node}"
    );
    assert!(
        node["TaggedAddresses"].get("wan").is_none(),
        "so do omitted tagged addresses: {node}"
    );
    assert!(
        node["ModifyIndex"].as_u64() > before["ModifyIndex"].as_u64(),
        "a changed node takes a new index"
    );
}

/// Case 64: what Consul's `Catalog.Register` RPC refuses is a 500 with its text, in its
/// order: a peer name, the node, a node ID that is not a UUID (go-uuid's text), the
/// address, a service ID without a name, an unspecified service address, a check claiming
/// another node.
#[tokio::test]
async fn case_64_catalog_register_refusals() {
    let a = Agent::start().await;
    for (body, want) in [
        (
            json!({"Node": "n", "Address": "a", "PeerName": "p"}),
            "cannot register requests with PeerName in them",
        ),
        (json!({"Address": "a"}), "Must provide node"),
        (
            json!({"Node": "n", "Address": "a", "ID": "nope"}),
            "Bad node ID: uuid string is wrong length",
        ),
        (
            json!({"Node": "n", "Address": "a", "ID": "0123456789abcdef0123456789abcdef0123"}),
            "Bad node ID: uuid is improperly formatted",
        ),
        (
            json!({"Node": "n", "Address": "a", "ID": "0123456g-89ab-cdef-0123-456789abcdef"}),
            "Bad node ID: encoding/hex: invalid byte: U+0067 'g'",
        ),
        (
            json!({"Node": "n"}),
            "Must provide address if SkipNodeUpdate is not set",
        ),
        (
            json!({"Node": "n", "Address": "a", "Service": {"ID": "s1"}}),
            "Must provide service name (Service.Service) when service ID is provided",
        ),
        (
            json!({"Node": "n", "Address": "a", "Service": {"Service": "s", "Address": "0.0.0.0"}}),
            "Invalid service address",
        ),
        (
            json!({"Node": "n", "Address": "a", "Check": {"Node": "m", "CheckID": "c"}}),
            "Node 'm' for check 'c' doesn't match register request node 'n'",
        ),
    ] {
        let r = a.put_json("/v1/catalog/register", &body).await;
        assert_eq!((r.status, r.body.as_str()), (500, want), "{body}");
    }
    let r = a
        .put_json(
            "/v1/catalog/register",
            &json!({"Node": "n", "Address": "a", "ID": "0123abcd-89ab-cdef-0123-456789ABCDEF",
                "PeerName": "", "CreateIndex": 3, "ModifyIndex": 4}),
        )
        .await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (200, "true"),
        "a UUID node ID, an empty PeerName and the raft indexes are accepted"
    );
    assert_eq!(
        a.get_json("/v1/catalog/node/n").await["Node"]["ID"],
        "0123abcd-89ab-cdef-0123-456789ABCDEF"
    );
}
