//! Work on a window, sent through the dispatch queue.

use serde::{Deserialize, Serialize};

use super::id::{CreditId, WindowId};

/// Work on a window, sent through the dispatch queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WindowWork {
    /// Plan (or go on planning) the window.
    Plan { window: WindowId },
    /// Send (or settle) one credit.
    Credit { credit: CreditId },
}
