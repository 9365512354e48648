//! An HTTP client bound to one test application and one bearer token.

use std::future::Future;
use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::{Method, RequestBuilder};
use serde_json::Value;

/// Requests by path (`/api/v1/equipment`) to one application, with one
/// bearer token or none. Cheap to clone. Its requests are built when called
/// and borrow nothing, so closures may return them.
#[derive(Clone)]
pub struct Client {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

/// What came back: the body as JSON (`null` when it is not JSON) and as
/// text.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
    pub text: String,
    pub headers: HeaderMap,
}

impl Client {
    pub(super) fn new(base: String, token: Option<String>) -> Client {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("client");
        Client { base, token, http }
    }

    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// A request to build further (headers, raw bodies) and [`send`].
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let request = self.http.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    pub fn get(&self, path: &str) -> impl Future<Output = Reply> + use<> {
        send(self.request(Method::GET, path))
    }

    pub fn delete(&self, path: &str) -> impl Future<Output = Reply> + use<> {
        send(self.request(Method::DELETE, path))
    }

    pub fn post(&self, path: &str, body: Value) -> impl Future<Output = Reply> + use<> {
        send(self.request(Method::POST, path).json(&body))
    }

    pub fn put(&self, path: &str, body: Value) -> impl Future<Output = Reply> + use<> {
        send(self.request(Method::PUT, path).json(&body))
    }

    pub fn patch(&self, path: &str, body: Value) -> impl Future<Output = Reply> + use<> {
        send(self.request(Method::PATCH, path).json(&body))
    }
}

/// Sends a request built with [`Client::request`].
pub async fn send(request: RequestBuilder) -> Reply {
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.expect("body");
    Reply {
        status,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
        text,
        headers,
    }
}
