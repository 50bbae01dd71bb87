//! Shipping the WAL to remote write: one WAL consumer per `remote_write`
//! entry feeds its [`RemoteWriteQueue`] and commits the consumer's
//! checkpoint up to what the queue delivered, so delivered segments are
//! deleted and undelivered ones are replayed after a restart.
//!
//! SKELETON: the signatures are the contract; bodies are being written.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use promshard_promlib::config::RemoteWriteConfig;

use crate::remote::RemoteStats;
use crate::wal::Wal;

#[derive(Debug, thiserror::Error)]
pub enum ShipError {
    #[error("remote_write {remote:?}: {reason}")]
    Start { remote: String, reason: String },
}

/// One remote's state for `/metrics`.
#[derive(Clone, Debug)]
pub struct RemoteStatus {
    /// The queue name (`name`, or the redacted URL).
    pub name: String,
    /// The redacted URL.
    pub url: String,
    pub stats: Arc<RemoteStats>,
    /// WAL bytes not yet delivered to this remote.
    pub backlog_bytes: u64,
}

/// Every remote's shipper.
pub struct Shippers {
    _private: (),
}

impl Shippers {
    /// Starts one shipper per entry (consumer name: a stable hash of the
    /// entry's URL and name, so a restart resumes at its checkpoint) and
    /// drops WAL consumers of remotes no longer configured.
    pub fn start(
        wal: Arc<Wal>,
        remotes: &[RemoteWriteConfig],
        base_dir: &Path,
    ) -> Result<Shippers, ShipError> {
        let _ = (wal, remotes, base_dir);
        todo!("ship")
    }

    /// Applies a reloaded `remote_write` list: unchanged entries keep
    /// running, changed or removed ones stop (their undelivered data stays
    /// in the WAL for the new entry with the same consumer name), new ones
    /// start. On error nothing changes.
    pub async fn reload(
        &mut self,
        remotes: &[RemoteWriteConfig],
        base_dir: &Path,
    ) -> Result<(), ShipError> {
        let _ = (remotes, base_dir);
        todo!("ship")
    }

    pub fn statuses(&self) -> Vec<RemoteStatus> {
        todo!("ship")
    }

    /// Delivers what the WAL holds within `grace`, then stops. Returns the
    /// samples left undelivered (they stay in the WAL).
    pub async fn shutdown(self, grace: Duration) -> u64 {
        let _ = grace;
        todo!("ship")
    }
}
