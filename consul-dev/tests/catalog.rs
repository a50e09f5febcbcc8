//! Catalog: `/v1/catalog/services` and `/v1/catalog/service/:name`. Conformance cases 38, 39;
//! `tests/README.md` lists every case and where it is tested.

mod common;

use common::Agent;
use serde_json::json;

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
