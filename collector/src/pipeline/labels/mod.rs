//! Label work done on a cache miss: target labels (honor_labels) and
//! external labels.

pub(crate) mod external;
pub(crate) mod target_labels;
