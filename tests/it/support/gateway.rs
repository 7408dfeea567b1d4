//! The real `hookgate` binary, started on a loopback port-0 listener with a
//! config in a temporary directory, and killed when dropped.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long start-up may take (it compiles the plugins the routes use).
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The longest any one request of the test client may take, answer and
/// body. A wedged gateway then fails the test instead of hanging it
/// (`cargo test` has no per-test timeout). Nothing a test sends is meant
/// to wait this long: the longest waits the gateway itself may impose on
/// an answer are a route's `relay.reply_timeout` (at most 10 s) and a
/// plugin's deadline (seconds).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A running gateway.
pub struct TestGateway {
    child: Child,
    base: String,
    /// The stdout lines after the first (the admin listener's address).
    more: std::sync::Mutex<std::sync::mpsc::Receiver<String>>,
    dir: tempfile::TempDir,
    client: reqwest::Client,
    /// Extra environment for the process.
    env: Vec<(String, String)>,
}

impl TestGateway {
    /// Starts the binary with `yaml` as its config. `listen` and `data_dir`
    /// are set by the harness; `{dir}` in the YAML is replaced with the
    /// gateway's temporary directory.
    pub async fn spawn(yaml: &str) -> Self {
        Self::spawn_with(yaml, |_| {}).await
    }

    /// Like [`spawn`](Self::spawn), letting `prepare` put files (plugins)
    /// into the temporary directory first.
    pub async fn spawn_with(yaml: &str, prepare: impl FnOnce(&Path)) -> Self {
        Self::spawn_env(yaml, prepare, &[]).await
    }

    /// Like [`spawn_with`](Self::spawn_with), with extra environment
    /// variables for the process.
    pub async fn spawn_env(yaml: &str, prepare: impl FnOnce(&Path), env: &[(&str, &str)]) -> Self {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let dir = tempfile::tempdir().unwrap();
        prepare(dir.path());
        let yaml = yaml.replace("{dir}", &dir.path().display().to_string());
        let config = format!(
            "listen: 127.0.0.1:0\ndata_dir: {}\n{yaml}",
            dir.path().join("data").display()
        );
        std::fs::write(dir.path().join("hookgate.yaml"), config).unwrap();
        let (child, base, more) = launch(dir.path(), &env);
        let gw = TestGateway {
            child,
            base,
            more: std::sync::Mutex::new(more),
            dir,
            #[expect(
                clippy::disallowed_methods,
                reason = "the test's own client, not delivery; it has a timeout"
            )]
            client: reqwest::Client::builder()
                .timeout(REQUEST_TIMEOUT)
                .build()
                .expect("the test client"),
            env,
        };
        gw.wait_ready().await;
        gw
    }

    /// Stops the gateway and starts it again on the same directory (same
    /// config, plugins and data), on a new port.
    pub async fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let (child, base, more) = launch(self.dir.path(), &self.env);
        self.child = child;
        self.base = base;
        self.more = std::sync::Mutex::new(more);
        self.wait_ready().await;
    }
}

/// Starts the binary on `dir/hookgate.yaml`, logging to `dir/gateway.log`
/// (appended, so a restart keeps the earlier log), and returns it with its
/// base URL and a receiver of its later stdout lines.
fn launch(
    dir: &Path,
    env: &[(String, String)],
) -> (Child, String, std::sync::mpsc::Receiver<String>) {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("gateway.log"))
        .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_hookgate"))
        .arg("serve")
        .arg("--config")
        .arg(dir.join("hookgate.yaml"))
        .env("RUST_LOG", "info,hookgate=debug")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .stdin(Stdio::null())
        .spawn()
        .expect("starting hookgate");

    // The first stdout line names the address.
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // Every line goes to the channel, and reading goes on to the end
        // so the child never blocks on a full pipe.
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    let line = rx.recv_timeout(START_TIMEOUT).unwrap_or_else(|_| {
        let log = std::fs::read_to_string(dir.join("gateway.log")).unwrap_or_default();
        panic!("hookgate did not start:\n{log}")
    });
    let base = line
        .strip_prefix("hookgate listening on ")
        .unwrap_or_else(|| panic!("unexpected first line: {line}"))
        .to_owned();
    (child, base, rx)
}

impl TestGateway {
    /// Waits for `/healthz` (the listener is bound before plugins compile).
    async fn wait_ready(&self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(r) = self.client.get(self.url("/healthz")).send().await
                && r.status().is_success()
            {
                return;
            }
            if Instant::now() > deadline {
                panic!("hookgate never became healthy:\n{}", self.log());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The base URL of the operator listener (`admin.listen`), from the
    /// line the gateway prints once it is bound.
    pub fn admin_base(&self) -> String {
        loop {
            let line = self
                .more
                .lock()
                .unwrap()
                .recv_timeout(START_TIMEOUT)
                .unwrap_or_else(|_| panic!("no admin listener line:\n{}", self.log()));
            if let Some(base) = line.strip_prefix("hookgate admin listening on ") {
                return base.to_owned();
            }
        }
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A client for requests to the gateway.
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// POSTs `body` to `/hooks/{route}` with `headers`.
    pub async fn post(
        &self,
        route: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> reqwest::Response {
        let mut req = self.client.post(self.url(&format!("/hooks/{route}")));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.body(body.to_vec()).send().await.unwrap_or_else(|e| {
            panic!("POST /hooks/{route} (the client gives up after {REQUEST_TIMEOUT:?}): {e}")
        })
    }

    /// The gateway's temporary directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Path of the config file.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("hookgate.yaml")
    }

    /// Everything the gateway logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("gateway.log")).unwrap_or_default()
    }

    /// The process id (to send it signals).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl TestGateway {
    /// Kills the process with SIGKILL: a crash, nothing flushed.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits for the process to exit; returns whether it
    /// exited successfully within `timeout`.
    pub async fn terminate(&mut self, timeout: Duration) -> bool {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    /// A request to the admin API with the test token.
    pub fn admin(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, self.url(path))
            .bearer_auth(ADMIN_TOKEN)
    }

    /// Writes `yaml` as the config and reloads it through the admin API
    /// (which answers once the new generation serves), asserting success.
    pub async fn reload_with(&self, yaml: &str) {
        std::fs::write(self.config_path(), yaml).unwrap();
        let resp = self
            .admin(reqwest::Method::POST, "/admin/reload")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    }

    /// The gateway's `/metrics` text (on the public listener).
    pub async fn metrics(&self) -> String {
        let resp = self.client.get(self.url("/metrics")).send().await.unwrap();
        assert!(resp.status().is_success(), "/metrics: {}", resp.status());
        resp.text().await.unwrap()
    }

    /// `GET path` on the admin API, as JSON.
    pub async fn admin_get(&self, path: &str) -> serde_json::Value {
        let resp = self.admin(reqwest::Method::GET, path).send().await.unwrap();
        assert!(resp.status().is_success(), "{path}: {}", resp.status());
        resp.json().await.unwrap()
    }
}

/// The admin token test configs use (`admin: { token: ... }`).
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789abcdef";

impl Drop for TestGateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A config whose route `hooks` delivers to one destination named `name`
/// at `url`, retrying once after 30 s: a reload with another `name`
/// renames the destination while a delivery waits.
pub fn one_destination_config(name: &str, url: &str) -> String {
    format!(
        r#"
admin: {{ token: {ADMIN_TOKEN} }}
destinations:
  {name}: {{ url: "{url}", timeout: 5s, retry: {{ schedule: [30s], jitter: 0 }} }}
routes:
  hooks: {{ to: [{name}] }}
"#
    )
}
