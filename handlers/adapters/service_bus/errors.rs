//! Sorts what the broker answers into the handler's error kinds, by the AMQP condition codes,
//! the `$cbs` status codes and the fe2o3 error types; never by searching error text.

use azure_core_amqp::error::{AmqpDescribedError, AmqpErrorCondition, AmqpErrorKind};
use azure_core_amqp::{AmqpError, AmqpSendOutcome};
use fe2o3_amqp::connection::OpenError;
use fe2o3_amqp::types::sasl::SaslCode;

use crate::config::{BrokerFlavour, ServiceBusAuth, ServiceBusSettings};
use crate::error::{Error, ErrorKind};

/// What the failing operation was about, so that a configuration fault names what to fix.
#[derive(Clone, Copy, Debug)]
pub(super) enum Subject<'a> {
    /// The connection as a whole (TCP, TLS, SASL, sessions).
    Connection,
    /// One queue (attach, `$cbs` authorisation, send).
    Queue(&'a str),
}

/// The kind of an AMQP error condition.
pub(super) fn condition_kind(condition: &AmqpErrorCondition) -> ErrorKind {
    match condition {
        AmqpErrorCondition::NotFound
        | AmqpErrorCondition::UnauthorizedAccess
        | AmqpErrorCondition::EntityDisabledError
        | AmqpErrorCondition::NotAllowed
        | AmqpErrorCondition::PreconditionFailed
        | AmqpErrorCondition::ResourceDeleted
        | AmqpErrorCondition::PublisherRevokedError => ErrorKind::Configuration,
        AmqpErrorCondition::LinkPayloadSizeExceeded
        | AmqpErrorCondition::DecodeError
        | AmqpErrorCondition::InvalidField
        | AmqpErrorCondition::ArgumentError
        | AmqpErrorCondition::ArgumentOutOfRangeError => ErrorKind::Permanent,
        _ => ErrorKind::Transient,
    }
}

/// Sorts an AMQP error from `what` (e.g. "attaching a sender") about `subject`.
pub(super) fn classify(
    settings: &ServiceBusSettings,
    what: &str,
    subject: Subject<'_>,
    error: AmqpError,
) -> Error {
    let (kind, detail) = match error.kind() {
        AmqpErrorKind::AmqpDescribedError(described) => {
            (condition_kind(&described.condition), describe(described))
        }
        AmqpErrorKind::ManagementStatusCode(status, description) => {
            let code = u16::from(*status);
            let kind = match code {
                401 | 403 | 404 => ErrorKind::Configuration,
                400 => ErrorKind::Configuration,
                _ => ErrorKind::Transient,
            };
            let text = description.as_deref().unwrap_or("no description");
            (kind, format!("$cbs answered {code}: {text}"))
        }
        AmqpErrorKind::TransportImplementationError(inner) => {
            match inner.downcast_ref::<OpenError>() {
                Some(OpenError::SaslError { code, .. }) => match code {
                    SaslCode::Auth | SaslCode::SysPerm => (
                        ErrorKind::Configuration,
                        format!("SASL authentication failed ({code:?})"),
                    ),
                    _ => (
                        ErrorKind::Transient,
                        format!("SASL authentication failed ({code:?})"),
                    ),
                },
                Some(
                    OpenError::InvalidScheme | OpenError::InvalidDomain | OpenError::UrlError(_),
                ) => (ErrorKind::Configuration, error.to_string()),
                _ => (ErrorKind::Transient, error.to_string()),
            }
        }
        _ => (ErrorKind::Transient, error.to_string()),
    };
    let message = match (kind, subject) {
        (ErrorKind::Configuration, _) => {
            format!("{what}: {detail}. {}", remedy(settings, &error, subject))
        }
        (_, Subject::Queue(queue)) => format!("{what} (queue {queue}): {detail}"),
        (_, Subject::Connection) => format!("{what}: {detail}"),
    };
    // Service Bus asks clients to back off for 10 seconds when it is busy.
    let busy = matches!(error.kind(), AmqpErrorKind::AmqpDescribedError(d)
        if d.condition == AmqpErrorCondition::ServerBusyError);
    let err = Error::new(kind, message).with_source(error);
    if busy {
        err.with_retry_after(SERVER_BUSY_BACKOFF)
    } else {
        err
    }
}

/// How long Service Bus asks clients to wait after `com.microsoft:server-busy`.
const SERVER_BUSY_BACKOFF: std::time::Duration = std::time::Duration::from_secs(10);

/// What the operator should fix for a configuration fault.
fn remedy(settings: &ServiceBusSettings, error: &AmqpError, subject: Subject<'_>) -> String {
    let condition = match error.kind() {
        AmqpErrorKind::AmqpDescribedError(described) => Some(&described.condition),
        _ => None,
    };
    let status = match error.kind() {
        AmqpErrorKind::ManagementStatusCode(status, _) => Some(u16::from(*status)),
        _ => None,
    };
    let sasl = matches!(error.kind(), AmqpErrorKind::TransportImplementationError(inner)
        if matches!(inner.downcast_ref::<OpenError>(), Some(OpenError::SaslError { .. })));
    let queue_setting = |queue: &str| {
        settings
            .queues
            .iter()
            .find(|(_, name)| *name == queue)
            .map(|(kind, _)| crate::config::queues::setting_of(kind))
            .unwrap_or("RESPONDER_QUEUE_*")
    };
    if sasl {
        return format!(
            "The broker refused the credentials: check the user name and password in {} (the value is never logged)",
            settings.credential_setting()
        );
    }
    let not_found = condition == Some(&AmqpErrorCondition::NotFound) || status == Some(404);
    let unauthorized = condition == Some(&AmqpErrorCondition::UnauthorizedAccess)
        || matches!(status, Some(401 | 403));
    let shared_key = matches!(settings.auth, ServiceBusAuth::SharedKey { .. });
    if unauthorized && shared_key {
        return format!(
            "The shared access key in {} was refused or lacks the Send right on {}",
            settings.credential_setting(),
            match subject {
                Subject::Queue(queue) => format!("queue {queue}"),
                Subject::Connection => format!("namespace {}", settings.host()),
            }
        );
    }
    match (subject, not_found, unauthorized, settings.flavour) {
        (Subject::Queue(queue), true, _, _) => format!(
            "Queue {queue} (from {}) does not exist on {}: create it, or correct the setting",
            queue_setting(queue),
            settings.host()
        ),
        (Subject::Queue(queue), _, true, BrokerFlavour::ServiceBus) => format!(
            "The app's identity may not send to queue {queue}: it needs the role 'Azure Service Bus Data Sender' on the queue or the namespace {} (a new role assignment can take several minutes to apply)",
            settings.host()
        ),
        (_, _, true, BrokerFlavour::ServiceBus) => format!(
            "The app's identity is not authorised on the namespace {}: it needs the role 'Azure Service Bus Data Sender' (check {})",
            settings.host(),
            settings.credential_setting()
        ),
        (_, _, true, BrokerFlavour::RabbitMq) => format!(
            "The broker user in {} lacks permissions: it needs access to the virtual host and write permission on the queues",
            settings.credential_setting()
        ),
        (Subject::Queue(queue), _, _, _) => format!(
            "Queue {queue} on {} refuses messages from this app: check the queue's settings",
            settings.host()
        ),
        (Subject::Connection, _, _, _) => format!(
            "Check {} and the broker's settings",
            settings.credential_setting()
        ),
    }
}

fn describe(described: &AmqpDescribedError) -> String {
    match &described.description {
        Some(text) => format!("{} ({text})", described.condition),
        None => described.condition.to_string(),
    }
}

/// The result of a send's disposition.
pub(super) fn outcome_to_result(
    settings: &ServiceBusSettings,
    outcome: AmqpSendOutcome,
    queue: &str,
    message_id: &str,
) -> Result<(), Error> {
    match outcome {
        AmqpSendOutcome::Accepted => Ok(()),
        AmqpSendOutcome::Rejected(Some(described)) => {
            let what = format!("queue {queue} rejected message {message_id}");
            Err(classify(
                settings,
                &what,
                Subject::Queue(queue),
                AmqpErrorKind::AmqpDescribedError(described).into(),
            ))
        }
        AmqpSendOutcome::Rejected(None) => Err(Error::permanent(format!(
            "queue {queue} rejected message {message_id} without a reason"
        ))),
        AmqpSendOutcome::Released => Err(Error::transient(format!(
            "queue {queue} released message {message_id}"
        ))),
        AmqpSendOutcome::Modified(m) => Err(Error::transient(format!(
            "queue {queue} modified message {message_id} (delivery_failed {:?}, undeliverable_here {:?})",
            m.delivery_failed, m.undeliverable_here
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use azure_core_amqp::AmqpOrderedMap;

    fn settings(url: &str) -> ServiceBusSettings {
        let get = |k: &str| (k == "ServiceBusConnection").then(|| url.to_string());
        ServiceBusSettings::from_lookup(&get, Default::default())
            .unwrap()
            .unwrap()
    }

    fn described(condition: AmqpErrorCondition) -> AmqpError {
        AmqpErrorKind::AmqpDescribedError(AmqpDescribedError::new(
            condition,
            Some("from the broker".into()),
            AmqpOrderedMap::new(),
        ))
        .into()
    }

    #[test]
    fn broker_conditions_are_classified_by_code() {
        let s = settings(
            "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=k;SharedAccessKey=v",
        );
        let kind = |e| classify(&s, "sending", Subject::Queue("rotation"), e).kind();
        assert_eq!(
            kind(described(AmqpErrorCondition::NotFound)),
            ErrorKind::Configuration
        );
        assert_eq!(
            kind(described(AmqpErrorCondition::UnauthorizedAccess)),
            ErrorKind::Configuration
        );
        assert_eq!(
            kind(described(AmqpErrorCondition::LinkPayloadSizeExceeded)),
            ErrorKind::Permanent
        );
        for transient in [
            AmqpErrorCondition::ServerBusyError,
            AmqpErrorCondition::ConnectionForced,
            AmqpErrorCondition::LinkDetachForced,
            AmqpErrorCondition::InternalError,
            AmqpErrorCondition::ResourceLimitExceeded,
        ] {
            assert_eq!(
                kind(described(transient.clone())),
                ErrorKind::Transient,
                "{transient}"
            );
        }
        let cbs = |code: u16| -> AmqpError {
            AmqpErrorKind::ManagementStatusCode(code.into(), Some("put-token".into())).into()
        };
        assert_eq!(kind(cbs(401)), ErrorKind::Configuration);
        assert_eq!(kind(cbs(404)), ErrorKind::Configuration);
        assert_eq!(kind(cbs(503)), ErrorKind::Transient);
        let busy = classify(
            &s,
            "sending",
            Subject::Queue("rotation"),
            described(AmqpErrorCondition::ServerBusyError),
        );
        assert_eq!(busy.retry_after(), Some(SERVER_BUSY_BACKOFF));
        let io: AmqpError =
            azure_core::Error::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused))
                .into();
        assert_eq!(kind(io), ErrorKind::Transient);
    }

    #[test]
    fn configuration_faults_name_the_role_or_the_queue_and_its_setting() {
        let get = |k: &str| {
            (k == "ServiceBusConnection__fullyQualifiedNamespace")
                .then(|| "ns.servicebus.windows.net".to_string())
        };
        let s = ServiceBusSettings::from_lookup(&get, Default::default())
            .unwrap()
            .unwrap();
        let err = classify(
            &s,
            "attaching a sender",
            Subject::Queue("rotation"),
            described(AmqpErrorCondition::UnauthorizedAccess),
        );
        assert!(
            err.message().contains("Azure Service Bus Data Sender"),
            "{err}"
        );
        assert!(err.message().contains("rotation"), "{err}");
        let err = classify(
            &s,
            "attaching a sender",
            Subject::Queue("rotation"),
            described(AmqpErrorCondition::NotFound),
        );
        assert!(
            err.message()
                .contains("Queue rotation (from RESPONDER_QUEUE_ROTATION) does not exist"),
            "{err}"
        );
    }

    #[test]
    fn a_refused_shared_key_names_the_connection_string_not_a_role() {
        let s = settings(
            "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=k;SharedAccessKey=v",
        );
        let cbs: AmqpError =
            AmqpErrorKind::ManagementStatusCode(401u16.into(), Some("InvalidSignature".into()))
                .into();
        let err = classify(&s, "authorising on $cbs", Subject::Queue("rotation"), cbs);
        assert_eq!(err.kind(), ErrorKind::Configuration);
        assert!(
            err.message()
                .contains("shared access key in ServiceBusConnection"),
            "{err}"
        );
        assert!(!err.message().contains("Data Sender"), "{err}");
    }

    #[test]
    fn a_sasl_refusal_is_an_authentication_fault_naming_the_setting() {
        let s = settings("amqp://guest:wrong@127.0.0.1:5672");
        let sasl: AmqpError =
            AmqpErrorKind::TransportImplementationError(Box::new(OpenError::SaslError {
                code: SaslCode::Auth,
                additional_data: None,
            }))
            .into();
        let err = classify(
            &s,
            "connecting to 127.0.0.1:5672",
            Subject::Connection,
            sasl,
        );
        assert_eq!(err.kind(), ErrorKind::Configuration);
        assert!(
            err.message().contains("SASL authentication failed"),
            "{err}"
        );
        assert!(err.message().contains("ServiceBusConnection"), "{err}");
        assert!(!err.to_string().contains("wrong"), "{err}");
    }
}
