//! Status and self: the raft leader, and what `/v1/agent/self` says about the agent. Conformance
//! cases 40, 41; `tests/README.md` lists every case and where it is tested.

mod common;

use common::Agent;

/// Case 40: `/v1/status/leader` → 200 JSON string `host:port`.
#[tokio::test]
async fn case_40_status_leader() {
    let a = Agent::start().await;
    let r = a.get("/v1/status/leader").await;
    assert_eq!(r.status, 200);
    let leader = r.json();
    let s = leader.as_str().expect("a JSON string");
    assert!(
        s.parse::<std::net::SocketAddr>().is_ok(),
        "host:port, got {s}"
    );
}

/// Case 41: `/v1/agent/self` has `Config.NodeName`, `Config.Datacenter`; every top-level value
/// object or null.
#[tokio::test]
async fn case_41_agent_self() {
    let a = Agent::start().await;
    let s = a.get_json("/v1/agent/self").await;
    assert_eq!(s["Config"]["NodeName"], "dev-node");
    assert_eq!(s["Config"]["Datacenter"], "dc1");
    for (k, v) in s.as_object().expect("object") {
        assert!(
            v.is_object() || v.is_null(),
            "{k} is an object or null: {v}"
        );
    }
}
