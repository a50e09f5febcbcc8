//! The `consul-dev` binary run as a user would: the management token taken from the
//! environment, which unlike a command-line argument is not shown in process listings.
//!
//! The variable is set on the child process only, so these tests never touch their own
//! environment.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

const TOKEN: &str = "s3cr3t-from-env";

/// Kills the agent when the test ends, passing or not.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn help_names_the_env_var_but_not_its_value() {
    let out = Command::new(env!("CARGO_BIN_EXE_consul-dev"))
        .arg("--help")
        .env("CONSUL_DEV_ACL_TOKEN", TOKEN)
        .output()
        .expect("consul-dev --help runs");
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "--help exits 0: {help}");
    assert!(
        help.contains("[env: CONSUL_DEV_ACL_TOKEN]"),
        "--help names the variable: {help}"
    );
    assert!(
        !help.contains(TOKEN),
        "--help must not print the token: {help}"
    );
}

#[tokio::test]
async fn acl_token_from_the_environment_turns_acls_on() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_consul-dev"))
        .args(["--http-addr", "127.0.0.1:0", "--node", "cli-node"])
        .env("CONSUL_DEV_ACL_TOKEN", TOKEN)
        .env("RUST_LOG", "debug")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("consul-dev starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let stderr = child.stderr.take().expect("piped stderr");
    let agent = Running(child);

    let (tx, lines) = mpsc::channel();
    let readers = [
        Box::new(stdout) as Box<dyn std::io::Read + Send>,
        Box::new(stderr),
    ]
    .map(|pipe| {
        let tx = tx.clone();
        thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        })
    });
    drop(tx);

    let mut log = Vec::new();
    let addr = loop {
        let line = lines
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("expected the address line ({e}); log so far: {log:#?}"));
        let addr = line.split_once("HTTP API on http://").map(|(_, rest)| {
            rest.chars()
                .take_while(|c| c.is_ascii_alphanumeric() || ".:[]".contains(*c))
                .collect::<String>()
        });
        log.push(line);
        if let Some(addr) = addr {
            break addr;
        }
    };

    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client builds");
    let url = format!("http://{addr}/v1/agent/service/register");
    let body = r#"{"Name": "web"}"#;
    let anonymous = http
        .put(&url)
        .body(body)
        .send()
        .await
        .expect("request succeeds");
    assert_eq!(
        anonymous.status().as_u16(),
        403,
        "ACLs are on: a write without a token is denied"
    );
    let with_token = http
        .put(&url)
        .header("X-Consul-Token", TOKEN)
        .body(body)
        .send()
        .await
        .expect("request succeeds");
    assert_eq!(
        with_token.status().as_u16(),
        200,
        "the token from CONSUL_DEV_ACL_TOKEN is the management token"
    );

    drop(agent);
    for reader in readers {
        reader.join().expect("log reader ends");
    }
    log.extend(lines.try_iter());
    assert!(
        log.iter().all(|line| !line.contains(TOKEN)),
        "the token must not appear in the agent's logs: {log:#?}"
    );
}
