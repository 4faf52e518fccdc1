//! Queue names: the three queues tasks are published to (and the workers' triggers read).

use super::{Lookup, Setting};
use crate::domain::Queue;
use crate::error::Error;

/// Name of the notification queue.
pub const QUEUE_NOTIFICATION: &str = "RESPONDER_QUEUE_NOTIFICATION";
/// Name of the isolation queue.
pub const QUEUE_ISOLATION: &str = "RESPONDER_QUEUE_ISOLATION";
/// Name of the rotation queue.
pub const QUEUE_ROTATION: &str = "RESPONDER_QUEUE_ROTATION";

/// The settings of this area, for the documentation and the drift tests.
pub(super) const SETTINGS: &[Setting] = &[
    Setting {
        name: QUEUE_NOTIFICATION,
        default: "notification",
        description: "Name of the notification queue.",
    },
    Setting {
        name: QUEUE_ISOLATION,
        default: "isolation",
        description: "Name of the isolation queue.",
    },
    Setting {
        name: QUEUE_ROTATION,
        default: "rotation",
        description: "Name of the rotation queue.",
    },
];

/// The app setting that names `queue`.
pub fn setting_of(queue: Queue) -> &'static str {
    match queue {
        Queue::Notification => QUEUE_NOTIFICATION,
        Queue::Isolation => QUEUE_ISOLATION,
        Queue::Rotation => QUEUE_ROTATION,
    }
}

/// The queue names tasks are published under (configurable for Service Bus).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueNames {
    /// Name of the notification queue.
    pub notification: String,
    /// Name of the isolation queue.
    pub isolation: String,
    /// Name of the rotation queue.
    pub rotation: String,
}

impl QueueNames {
    /// Names every queue with `name` (e.g. a prefix per test run).
    pub fn from_fn(name: impl Fn(Queue) -> String) -> Self {
        QueueNames {
            notification: name(Queue::Notification),
            isolation: name(Queue::Isolation),
            rotation: name(Queue::Rotation),
        }
    }

    /// The configured name of a queue.
    pub fn name(&self, queue: Queue) -> &str {
        match queue {
            Queue::Notification => &self.notification,
            Queue::Isolation => &self.isolation,
            Queue::Rotation => &self.rotation,
        }
    }

    /// Each queue with its name, in the fixed order notification, isolation, rotation.
    pub fn iter(&self) -> impl Iterator<Item = (Queue, &str)> {
        [Queue::Notification, Queue::Isolation, Queue::Rotation]
            .into_iter()
            .map(move |queue| (queue, self.name(queue)))
    }

    /// Reads and validates the area's settings.
    pub fn from_lookup(get: Lookup<'_>) -> Result<Self, Error> {
        let read = |queue: Queue| -> Result<String, Error> {
            let setting = setting_of(queue);
            let value = get(setting).unwrap_or_else(|| queue.as_str().to_string());
            // Service Bus entity names: letters, digits, '.', '-', '_' and '/', up to 260.
            let valid = value.len() <= 260
                && value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '/'));
            if valid {
                Ok(value)
            } else {
                Err(Error::configuration(format!(
                    "{setting}={value:?} is not a valid queue name (letters, digits, '.', '-', '_', '/'; at most 260)"
                )))
            }
        };
        Ok(QueueNames {
            notification: read(Queue::Notification)?,
            isolation: read(Queue::Isolation)?,
            rotation: read(Queue::Rotation)?,
        })
    }
}

impl Default for QueueNames {
    fn default() -> Self {
        QueueNames::from_fn(|queue| queue.as_str().to_string())
    }
}
