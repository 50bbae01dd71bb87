//! Errors of remote write.

use promshard_promlib::scrape::ClientError;

#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("remote_write {remote}: building the HTTP client: {source}")]
    Client {
        remote: String,
        #[source]
        source: ClientError,
    },
    #[error("remote_write {remote}: invalid url {url}: {reason}")]
    Url {
        remote: String,
        url: String,
        reason: String,
    },
    #[error("remote_write {remote}: invalid header {name}: {reason}")]
    Header {
        remote: String,
        name: String,
        reason: String,
    },
    #[error("remote_write {remote}: {what} is not supported by promshard")]
    Unsupported { remote: String, what: &'static str },
    #[error("remote_write {remote}: queue_config: {reason}")]
    QueueConfig { remote: String, reason: String },
    #[error("remote_write {remote}: the queue is shut down; input not taken")]
    Closed { remote: String },
    #[error(
        "remote_write {remote}: position {position} is not after the last input position {last}"
    )]
    PositionOrder {
        remote: String,
        position: u64,
        last: u64,
    },
}
