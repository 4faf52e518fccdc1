//! Adding a service, walked through in test code only: a handler and its registration are all
//! routing, the playbook's step list, policy validation and status updates need.

use super::super::{PlanInput, Registry, ServiceHandler};
use super::fixture;
use crate::adapters::MemoryLedger;
use crate::decode::{EventKind, InboundEvent};
use crate::domain::catalog::{entry, CatalogEntry, Traits};
use crate::domain::{
    Action, AlertStatus, Parameters, ResponsePlan, ServiceName, Severity, Subject, Task, TaskStatus,
};
use crate::pipeline::{Outcome, Pipeline};
use crate::policy::file::parse_policy;
use crate::policy::Policy;

/// A service the standard registry does not know: one catalogue row, two steps.
struct ToyStorage;

impl ToyStorage {
    const NAME: ServiceName = ServiceName::new("toy_storage");
}

const TOY_TYPE: &str = "Storage.Blob_ToyAnomaly";

#[rustfmt::skip]
const CATALOG: &[CatalogEntry] = &[
    entry(TOY_TYPE, ToyStorage::NAME, Severity::High, "Exfiltration", "Toy anomaly in a storage account", Traits::NONE),
];

impl ServiceHandler for ToyStorage {
    fn service(&self) -> ServiceName {
        ToyStorage::NAME
    }

    fn catalog(&self) -> &'static [CatalogEntry] {
        CATALOG
    }

    fn steps(&self) -> &'static [&'static str] {
        &["TOY-1", "TOY-2a"]
    }

    fn contact_step(&self) -> &'static str {
        "TOY-1"
    }

    fn plan(&self, input: &PlanInput<'_>) -> ResponsePlan {
        let resource = input.alert.resource_label();
        let mut plan = ResponsePlan::new();
        plan.push(Task::new(
            input.alert_ref,
            Parameters::ContactOwner {
                subject: Subject::from_label(&resource),
                owner_lookup: None,
            },
            &["TOY-1"],
            format!("TOY-1: ask the owner of {resource} whether the access was expected."),
        ));
        if let Some(id) = &input.alert.resource_id {
            plan.push(Task::new(
                input.alert_ref,
                Parameters::IsolateResourceNetwork {
                    resource: id.clone(),
                },
                &["TOY-2a"],
                format!("TOY-2a: isolate {resource} from the network."),
            ));
        }
        plan
    }
}

/// A handler that claims a type the Key Vault handler owns.
struct Squatter;

impl ServiceHandler for Squatter {
    fn service(&self) -> ServiceName {
        ServiceName::new("squatter")
    }

    fn catalog(&self) -> &'static [CatalogEntry] {
        #[rustfmt::skip]
        const ROWS: &[CatalogEntry] = &[
            entry("KV_SuspiciousIPAccess", ServiceName::new("squatter"), Severity::Medium, "-", "-", Traits::NONE),
        ];
        ROWS
    }

    fn steps(&self) -> &'static [&'static str] {
        &["SQ-1"]
    }

    fn contact_step(&self) -> &'static str {
        "SQ-1"
    }

    fn plan(&self, _input: &PlanInput<'_>) -> ResponsePlan {
        ResponsePlan::new()
    }
}

/// A real-shaped alert event of the toy type (the Key Vault fixture, retyped), with a status.
fn toy_event(status: AlertStatus) -> InboundEvent {
    let mut alert = fixture("keyvault-KV_UserAnomaly-egrest.json");
    alert.alert_type = format!("SIMULATED_{TOY_TYPE}");
    alert.status = status;
    InboundEvent {
        event_id: "toy-event".into(),
        event_type: None,
        kind: EventKind::Alert(Box::new(crate::decode::DecodedAlert {
            alert,
            warnings: Vec::new(),
        })),
    }
}

fn alert_of(event: &InboundEvent) -> &crate::domain::SecurityAlert {
    match &event.kind {
        EventKind::Alert(decoded) => &decoded.alert,
        _ => unreachable!("toy events hold an alert"),
    }
}

#[test]
fn a_registered_handler_is_routed_to_and_its_tasks_carry_its_name_and_steps() {
    let event = toy_event(AlertStatus::Active);
    let alert = alert_of(&event);
    // Unregistered, the type is undocumented: GEN-1.
    let standard = Registry::standard();
    assert_eq!(standard.route(alert).service.as_str(), "unknown");

    let registry = Registry::standard().register(ToyStorage);
    let route = registry.route(alert);
    assert_eq!(route.service, ToyStorage::NAME);
    assert_eq!(route.entry.map(|row| row.alert_type), Some(TOY_TYPE));
    assert_eq!(route.contact_step(), "TOY-1");
    assert_eq!(
        registry
            .services()
            .map(|name| name.as_str())
            .collect::<Vec<_>>(),
        [
            "key_vault",
            "dns",
            "resource_manager",
            "toy_storage",
            "unknown"
        ]
    );

    let policy = Policy::default();
    let mut plan = route.plan(alert, &policy);
    policy.finalize(alert, &mut plan);
    let tasks = plan.into_tasks();
    let isolate = tasks
        .iter()
        .find(|task| task.action == Action::IsolateResourceNetwork)
        .expect("the toy handler's containment is planned");
    assert_eq!(isolate.steps, ["TOY-2a"]);
    // Simulated alert, default policy: a pending dry run with its decision request.
    assert_eq!(isolate.status, TaskStatus::PendingApproval);
    assert!(tasks
        .iter()
        .any(|task| task.action == Action::RequestDecision));
    let json = serde_json::to_value(isolate).unwrap();
    assert_eq!(json["alert"]["service"], "toy_storage");
}

#[test]
fn the_playbook_steps_and_policy_validation_take_the_new_steps_from_the_registry() {
    let registry = Registry::standard().register(ToyStorage);
    let steps = registry.steps();
    assert!(steps.contains("TOY-1") && steps.contains("TOY-2a") && steps.contains("GEN-1"));
    assert!(steps.headings().contains(&"TOY-2"));
    assert!(!Registry::standard().steps().contains("TOY-1"));

    let text = r#"{"automation": [{"step": "toy-2", "mode": "auto"}]}"#;
    let err = parse_policy(text, &Registry::standard().steps()).unwrap_err();
    assert!(
        err.contains(r#"automation[0].step: "toy-2" is not a playbook step id"#),
        "{err}"
    );
    let policy = parse_policy(text, &steps).expect("the toy steps are playbook steps");
    assert_eq!(policy.automation[0].step.as_deref(), Some("TOY-2"));

    // The rule applies to the toy's tasks: a real alert's isolation now runs automatically.
    let mut event = toy_event(AlertStatus::Active);
    if let EventKind::Alert(decoded) = &mut event.kind {
        decoded.alert.alert_type = TOY_TYPE.to_string();
    }
    let alert = alert_of(&event);
    let mut plan = registry.route(alert).plan(alert, &policy);
    policy.finalize(alert, &mut plan);
    let isolate = plan
        .tasks()
        .iter()
        .find(|task| task.action == Action::IsolateResourceNetwork)
        .expect("isolation planned");
    assert_eq!(isolate.status, TaskStatus::Ready);
    assert!(!isolate.dry_run);
    assert_eq!(isolate.policy.as_ref().unwrap().mode, "auto");
}

#[test]
fn the_pipeline_plans_the_new_service_and_cites_its_contact_step_on_closure() {
    let pipeline = Pipeline::new(Registry::standard().register(ToyStorage), Policy::default());
    let ledger = MemoryLedger::default();
    let report = pipeline
        .assess(&toy_event(AlertStatus::Active), &ledger)
        .unwrap();
    assert_eq!(report.outcome, Outcome::Planned);
    assert_eq!(report.alert.as_ref().unwrap().service, ToyStorage::NAME);
    assert!(
        report.reason.contains("routed to the toy_storage handler"),
        "{}",
        report.reason
    );
    pipeline.remember(&report, &ledger).unwrap();

    let closed = pipeline
        .assess(&toy_event(AlertStatus::Resolved), &ledger)
        .unwrap();
    assert_eq!(closed.outcome, Outcome::StatusUpdate);
    let notice = closed
        .tasks
        .iter()
        .find(|task| task.action == Action::NotifyStatusChange)
        .expect("a status-change notice");
    assert_eq!(notice.steps, ["TOY-1"]);
}

#[test]
#[should_panic(
    expected = "alert type KV_SuspiciousIPAccess is claimed by both the key_vault and the squatter handler"
)]
fn registry_refuses_two_handlers_claiming_one_alert_type() {
    let _ = Registry::standard().register(Squatter);
}

#[test]
#[should_panic(expected = "the toy_storage service is registered twice")]
fn registry_refuses_one_name_registered_twice() {
    let _ = Registry::empty().register(ToyStorage).register(ToyStorage);
}

#[test]
#[should_panic(
    expected = "catalogue row Storage.Blob_ToyAnomaly of the squatter handler names the toy_storage service"
)]
fn registry_refuses_a_row_naming_another_service() {
    struct Borrower;
    impl ServiceHandler for Borrower {
        fn service(&self) -> ServiceName {
            ServiceName::new("squatter")
        }
        fn catalog(&self) -> &'static [CatalogEntry] {
            CATALOG
        }
        fn steps(&self) -> &'static [&'static str] {
            &["SQ-1"]
        }
        fn contact_step(&self) -> &'static str {
            "SQ-1"
        }
        fn plan(&self, _input: &PlanInput<'_>) -> ResponsePlan {
            ResponsePlan::new()
        }
    }
    let _ = Registry::empty().register(Borrower);
}
