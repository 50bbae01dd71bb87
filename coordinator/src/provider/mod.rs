//! Where shards come from.
//!
//! - [`LocalProvider`]: native shards of this same binary as child
//!   processes on this host (`promshard local`), each with its own storage
//!   directory and ports; a shard that dies is restarted (as a StatefulSet
//!   would), and scaling starts or stops the highest ordinals.
//! - `Static` ([`ShardProvider::Static`]): shards are whoever attaches;
//!   the coordinator can only advise a shard count.
//!
//! A Kubernetes StatefulSet provider fits as one more variant: it too
//! scales by ordinal and reports what it runs.

mod local;

use std::time::Duration;

pub use local::{LocalOptions, LocalProvider};

/// A failure to start or stop shards.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("shard provider: cannot create the storage directory {path}: {source}")]
    StorageDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("shard provider: cannot start shard {shard} ({binary}): {source}")]
    Spawn {
        shard: String,
        binary: String,
        #[source]
        source: std::io::Error,
    },
    #[error("shard provider: {kind} cannot scale (shards attach by themselves; desired {desired})")]
    CannotScale { kind: &'static str, desired: usize },
}

/// One shard a provider runs.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ProvidedShard {
    /// The shard id it attaches with (`shard-N`).
    pub id: String,
    pub ordinal: usize,
    /// OS process id, while running.
    pub pid: Option<u32>,
    /// Times it was restarted after dying.
    pub restarts: u32,
}

/// The shard providers.
pub enum ShardProvider {
    Local(LocalProvider),
    Static,
}

impl ShardProvider {
    pub fn kind(&self) -> &'static str {
        match self {
            ShardProvider::Local(_) => "local",
            ShardProvider::Static => "static",
        }
    }

    /// The shards the provider runs (empty for `static`).
    pub fn shards(&self) -> Vec<ProvidedShard> {
        match self {
            ShardProvider::Local(p) => p.shards(),
            ShardProvider::Static => Vec::new(),
        }
    }

    /// Whether [`scale_to`](Self::scale_to) can change the shard count.
    pub fn can_scale(&self) -> bool {
        matches!(self, ShardProvider::Local(_))
    }

    /// Runs exactly `n` shards (ordinals `0..n`): starts missing ones,
    /// stops the highest ordinals beyond `n` (each within `grace`, so its
    /// WAL is delivered). The caller drains a shard before scaling it away.
    pub async fn scale_to(&self, n: usize, grace: Duration) -> Result<(), ProviderError> {
        match self {
            ShardProvider::Local(p) => p.scale_to(n, grace).await,
            ShardProvider::Static => Err(ProviderError::CannotScale {
                kind: "static",
                desired: n,
            }),
        }
    }

    /// Stops every shard it runs, each within `grace`.
    pub async fn shutdown(&self, grace: Duration) {
        if let ShardProvider::Local(p) = self {
            p.shutdown(grace).await;
        }
    }
}
