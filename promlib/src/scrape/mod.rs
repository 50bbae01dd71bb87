//! The one-target scrape: an HTTP GET with Prometheus' headers, auth, TLS,
//! gzip, timeout and body size limit, as Prometheus 2.42 scrapes.
//!
//! A [`ScrapeClient`] is built once per job from its [`ScrapeConfig`]
//! (`HttpClientConfig` + `body_size_limit`) and then scrapes any number of
//! target URLs, concurrently.
//!
//! [`ScrapeConfig`]: crate::config::ScrapeConfig

mod auth;
mod client;
mod error;
mod headers;
mod oauth2;
mod plain;
mod tls;

pub use client::{HttpClient, ScrapeClient, ScrapeResponse, ScrapeUrl};
pub use error::{ClientError, ScrapeError, error_chain, redact_url};
pub use headers::{
    ACCEPT_ENCODING_HEADER, ACCEPT_HEADER, TIMEOUT_HEADER, format_timeout_seconds, user_agent,
};
pub use plain::{PlainPoster, PostResponse};
