//! Outbound HTTP for plugins (the WIT `http` import): what PayPal IPN
//! verify-back and JWKS fetching need, sandboxed.
//!
//! Off unless a route allows it for one plugin use (`http: { allow: [...] }`).
//! Every request must name an allow-listed host, passes the same SSRF guard
//! as subscriber callbacks (private addresses refused unless their CIDR is
//! in `allow_private`, checked again at connect time), never follows a
//! redirect, and reads at most `max_response_size` bytes. The plugin's
//! deadline bounds it from outside (the call's wall-clock timer), and the
//! client's own timeout is set to the same deadline.
//!
//! Deliberately not here: the WIT types (that is `plugin::host`).

use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;

use super::ssrf;

/// Response bytes a plugin may read unless the route says otherwise. A
/// JWKS or a verify-back answer is a few KiB.
pub const DEFAULT_PLUGIN_HTTP_RESPONSE: usize = 256 << 10;

/// A request from a plugin.
#[derive(Debug)]
pub struct PluginHttpRequest {
    /// Method.
    pub method: String,
    /// Absolute URL.
    pub url: String,
    /// Headers (name, raw value).
    pub headers: Vec<(String, Vec<u8>)>,
    /// Body.
    pub body: Vec<u8>,
}

/// The answer, read whole.
#[derive(Debug)]
pub struct PluginHttpResponse {
    /// Status.
    pub status: u16,
    /// Headers (lowercase name, raw value).
    pub headers: Vec<(String, Vec<u8>)>,
    /// Body (at most the cap).
    pub body: Vec<u8>,
}

/// Why a plugin's request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum PluginHttpError {
    /// Refused before sending.
    #[error("refused: {0}")]
    Denied(String),
    /// A 3xx answer; never followed.
    #[error("redirect to {0} not followed")]
    Redirect(String),
    /// Body over the cap.
    #[error("response too large")]
    TooLarge,
    /// The deadline passed.
    #[error("timed out")]
    Timeout,
    /// Connecting or reading failed.
    #[error("failed: {0}")]
    Failed(String),
}

/// Outbound HTTP for one plugin use on one route.
#[derive(Debug)]
pub struct PluginHttp {
    client: reqwest::Client,
    hosts: Vec<String>,
    allow_private: Arc<Vec<IpNet>>,
    max_response: usize,
}

impl PluginHttp {
    /// A client for `hosts` (lowercase host names or IP literals), reaching
    /// private addresses only inside `allow_private`.
    pub fn new(
        hosts: Vec<String>,
        allow_private: Vec<IpNet>,
        max_response: usize,
        timeout: Duration,
    ) -> Result<Self, String> {
        let allow_private = Arc::new(allow_private);
        let for_resolver = allow_private.clone();
        #[expect(
            clippy::disallowed_methods,
            reason = "delivery is where outbound clients are built"
        )]
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .user_agent(concat!("hookgate/", env!("CARGO_PKG_VERSION")))
            .timeout(timeout)
            .dns_resolver(Arc::new(ssrf::GuardedResolver::new(Arc::new(move || {
                for_resolver.clone()
            }))))
            .build()
            .map_err(|e| format!("cannot build the plugin's HTTP client: {e}"))?;
        Ok(PluginHttp {
            client,
            hosts: hosts.into_iter().map(|h| h.to_ascii_lowercase()).collect(),
            allow_private,
            max_response,
        })
    }

    /// Sends `req` if its host is allowed and its addresses pass the guard.
    pub async fn send(
        &self,
        req: PluginHttpRequest,
    ) -> Result<PluginHttpResponse, PluginHttpError> {
        let url = reqwest::Url::parse(&req.url)
            .map_err(|e| PluginHttpError::Denied(format!("{:?} is not a URL: {e}", req.url)))?;
        let host = url
            .host_str()
            .map(|h| {
                h.trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_ascii_lowercase()
            })
            .ok_or_else(|| PluginHttpError::Denied("the URL has no host".into()))?;
        if !self.hosts.contains(&host) {
            return Err(PluginHttpError::Denied(format!(
                "host {host} is not on this plugin's allow-list"
            )));
        }
        ssrf::check_url(&url, &self.allow_private)
            .await
            .map_err(PluginHttpError::Denied)?;
        let method = reqwest::Method::from_bytes(req.method.as_bytes())
            .map_err(|_| PluginHttpError::Denied(format!("{:?} is not a method", req.method)))?;
        let mut builder = self.client.request(method, url).body(req.body);
        for (name, value) in req.headers {
            builder = builder.header(name, value);
        }
        let mut resp = builder.send().await.map_err(failed)?;
        let status = resp.status();
        if status.is_redirection() {
            let to = resp
                .headers()
                .get(http::header::LOCATION)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .unwrap_or_default();
            return Err(PluginHttpError::Redirect(to));
        }
        if resp
            .content_length()
            .is_some_and(|n| n > self.max_response as u64)
        {
            return Err(PluginHttpError::TooLarge);
        }
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.as_bytes().to_vec()))
            .collect();
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(failed)? {
            if body.len() + chunk.len() > self.max_response {
                return Err(PluginHttpError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(PluginHttpResponse {
            status: status.as_u16(),
            headers,
            body,
        })
    }
}

fn failed(e: reqwest::Error) -> PluginHttpError {
    if e.is_timeout() {
        PluginHttpError::Timeout
    } else {
        // Without the URL: the plugin knows it, and it may carry a query.
        PluginHttpError::Failed(format!("{}", e.without_url()))
    }
}
