//! Real Redis for the tests: one redis-server, or a 3-node Redis Cluster made by
//! `redis-cli --cluster create`, each on free loopback ports, stopped when dropped.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::eventually;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn accepting(port: u16) {
    eventually(
        Duration::from_secs(5),
        "redis-server accepts connections",
        || async move {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
        },
    )
    .await;
}

fn server(port: u16, extra: &[&str]) -> Child {
    Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .args(extra)
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server is required (scripts/test.sh installs it)")
}

pub struct Redis {
    pub child: Child,
    pub port: u16,
}

impl Redis {
    pub async fn start() -> Redis {
        Redis::start_on(free_port()).await
    }

    pub async fn start_on(port: u16) -> Redis {
        let r = Redis {
            child: server(port, &[]),
            port,
        };
        accepting(port).await;
        r
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Kills the server (no clean shutdown, as a crash or a partition would look).
    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Three masters, no replicas, every slot assigned; ready when each node says `cluster_state:ok`.
pub struct Cluster {
    nodes: Vec<Child>,
    pub ports: Vec<u16>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    pub async fn start() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let mut nodes = Vec::new();
        let mut ports = Vec::new();
        for _ in 0..3 {
            let (port, bus) = (free_port(), free_port());
            let conf = dir.path().join(format!("nodes-{port}.conf"));
            nodes.push(server(
                port,
                &[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-port",
                    &bus.to_string(),
                    "--cluster-config-file",
                    conf.to_str().unwrap(),
                    "--dir",
                    dir.path().to_str().unwrap(),
                ],
            ));
            ports.push(port);
        }
        let cluster = Cluster {
            nodes,
            ports,
            _dir: dir,
        };
        for p in &cluster.ports {
            accepting(*p).await;
        }
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for p in &cluster.ports {
            create.arg(format!("127.0.0.1:{p}"));
        }
        let out = create
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli is required (scripts/test.sh installs redis-tools)");
        assert!(
            out.status.success(),
            "redis-cli --cluster create: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        for port in cluster.ports.clone() {
            eventually(
                Duration::from_secs(10),
                "every node reports cluster_state:ok",
                || async move {
                    let out = Command::new("redis-cli")
                        .args(["-p", &port.to_string(), "cluster", "info"])
                        .output()
                        .unwrap();
                    String::from_utf8_lossy(&out.stdout).contains("cluster_state:ok")
                },
            )
            .await;
        }
        cluster
    }

    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        format!("redis+cluster://{}", hosts.join(","))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            let _ = n.kill();
            let _ = n.wait();
        }
    }
}
