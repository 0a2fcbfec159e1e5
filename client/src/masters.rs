//! Several masters behind one client: every master serves the whole API
//! (one of them leads the controllers, which clients need not know), so a
//! request that finds its master gone goes to the next one, and the one
//! that answered is remembered for the requests after it. Agents, routers
//! and the CLI all fail over through [`Masters::send`].

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use reqwest::{RequestBuilder, Response, StatusCode};

/// The masters' base URLs, and which one answered last. Clones share what
/// they learn.
#[derive(Debug, Clone)]
pub struct Masters {
    urls: Arc<[String]>,
    current: Arc<AtomicUsize>,
}

/// No master answered: the last one's URL and what went wrong with it.
#[derive(Debug)]
pub struct Unreachable {
    /// The last master tried.
    pub url: String,
    /// What reqwest reported for it.
    pub source: reqwest::Error,
}

/// Whether a request may be sent again after the connection broke with it
/// possibly delivered: the ones whose repetition changes nothing.
pub fn idempotent(method: &reqwest::Method) -> bool {
    !matches!(*method, reqwest::Method::POST | reqwest::Method::PATCH)
}

/// Splits `URL1,URL2,...` (`berth login`, `BERTH_URL`, `berth-agent join`)
/// into its URLs, each without a trailing slash; blanks are dropped.
pub fn split_list(text: &str) -> Vec<String> {
    text.split(',')
        .map(|url| url.trim().trim_end_matches('/'))
        .filter(|url| !url.is_empty())
        .map(str::to_owned)
        .collect()
}

impl Masters {
    /// The masters at `urls`, in the order to try them; duplicates are
    /// dropped. `urls` must not be empty.
    pub fn new<I: IntoIterator<Item = String>>(urls: I) -> Self {
        let mut list: Vec<String> = Vec::new();
        for url in urls {
            let url = url.trim_end_matches('/').to_owned();
            if !list.contains(&url) {
                list.push(url);
            }
        }
        assert!(!list.is_empty(), "a client needs at least one master URL");
        Self {
            urls: list.into(),
            current: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Every master's URL.
    pub fn urls(&self) -> &[String] {
        &self.urls
    }

    /// The master that answered last (the first one until one fails).
    pub fn current(&self) -> &str {
        &self.urls[self.current.load(Ordering::Relaxed) % self.urls.len()]
    }

    /// `url` did not answer: move on to the next master, unless another
    /// request already did.
    pub fn failed(&self, url: &str) {
        let now = self.current.load(Ordering::Relaxed) % self.urls.len();
        if self.urls[now] == url {
            let _ = self.current.compare_exchange(
                now,
                (now + 1) % self.urls.len(),
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
    }

    /// Sends `build(base_url)` to the current master and, while the answer
    /// says that master is gone, to each other one in turn: no connection
    /// at all, a connection that broke before the answer (only when
    /// `idempotent`: a create may have landed), or 502/503/504 (a proxy in
    /// front of a dead master, a master without its store). The master
    /// that answered becomes the current one. A gone-answer from the last
    /// master tried is returned as it is.
    pub async fn send(
        &self,
        idempotent: bool,
        build: impl Fn(&str) -> RequestBuilder,
    ) -> Result<Response, Unreachable> {
        let start = self.current.load(Ordering::Relaxed) % self.urls.len();
        let count = self.urls.len();
        let mut last = None;
        for step in 0..count {
            let index = (start + step) % count;
            let url = &self.urls[index];
            let is_last = step + 1 == count;
            match build(url).send().await {
                Ok(response) if is_last || !gone(response.status()) => {
                    self.current.store(index, Ordering::Relaxed);
                    return Ok(response);
                }
                Ok(_) => {}
                Err(source) => {
                    let retry = source.is_connect() || (idempotent && !source.is_builder());
                    if !retry || is_last {
                        // The next request starts at the next master: this
                        // one may be gone even if the request could not be
                        // sent again.
                        if !source.is_builder() {
                            self.failed(url);
                        }
                        return Err(Unreachable {
                            url: url.clone(),
                            source,
                        });
                    }
                    last = Some(source);
                }
            }
        }
        // Unreachable with at least one URL: the last step always returns.
        Err(Unreachable {
            url: self.urls[start].clone(),
            source: last.expect("the loop returns on its last step"),
        })
    }
}

/// An answer that means "this master cannot serve now; another may".
fn gone(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT
    )
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use axum::http::StatusCode;

    use super::*;

    /// A master that answers `status` to everything and counts requests.
    async fn master(status: StatusCode, hits: Arc<Mutex<usize>>) -> String {
        let app = axum::Router::new().fallback(move || {
            let hits = Arc::clone(&hits);
            async move {
                *hits.lock().unwrap() += 1;
                status
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        url
    }

    /// A URL where nothing listens.
    async fn dead() -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        url
    }

    #[tokio::test]
    async fn a_dead_master_is_skipped_and_the_one_that_answered_is_kept() {
        let hits = Arc::new(Mutex::new(0));
        let (gone, alive) = (
            dead().await,
            master(StatusCode::OK, Arc::clone(&hits)).await,
        );
        let masters = Masters::new([gone.clone(), alive.clone()]);
        let http = reqwest::Client::new();
        for _ in 0..2 {
            let answer = masters
                .send(false, |url| http.post(format!("{url}/v1/services")))
                .await
                .unwrap();
            assert_eq!(answer.status(), StatusCode::OK);
            assert_eq!(masters.current(), alive);
        }
        assert_eq!(*hits.lock().unwrap(), 2);
        let clone = masters.clone();
        assert_eq!(clone.current(), alive, "clones share the current master");
    }

    #[tokio::test]
    async fn unavailable_moves_on_but_the_last_answer_is_returned_as_is() {
        let (hits_a, hits_b) = (Arc::new(Mutex::new(0)), Arc::new(Mutex::new(0)));
        let a = master(StatusCode::SERVICE_UNAVAILABLE, Arc::clone(&hits_a)).await;
        let b = master(StatusCode::NOT_FOUND, Arc::clone(&hits_b)).await;
        let masters = Masters::new([a.clone(), b.clone()]);
        let http = reqwest::Client::new();
        let answer = masters
            .send(true, |url| http.get(format!("{url}/v1/x")))
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::NOT_FOUND, "a 404 is an answer");
        assert_eq!(masters.current(), b);
        let only = Masters::new([a.clone()]);
        let answer = only
            .send(true, |url| http.get(format!("{url}/v1/x")))
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE);
        let none = Masters::new([dead().await, dead().await]);
        let error = none
            .send(true, |url| http.get(format!("{url}/v1/x")))
            .await
            .unwrap_err();
        assert!(error.source.is_connect(), "{error:?}");
        assert_eq!(
            none.current(),
            none.urls()[0],
            "after no answer at all, the next request starts over"
        );
    }

    #[test]
    fn lists_split_on_commas_and_failures_rotate_once() {
        assert_eq!(
            split_list("https://h1:7443/, https://h2:7443,,https://h3:7443"),
            ["https://h1:7443", "https://h2:7443", "https://h3:7443"]
        );
        let masters = Masters::new(["a".to_owned(), "b".to_owned(), "a".to_owned()]);
        assert_eq!(masters.urls(), ["a", "b"]);
        masters.failed("a");
        masters.failed("a");
        assert_eq!(masters.current(), "b", "a second report of a is stale");
        masters.failed("b");
        assert_eq!(masters.current(), "a");
    }
}
