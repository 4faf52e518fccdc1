//! Owners by the `owner` tag through ARM on the simulator: the resource's tag, else its
//! resource group's, else its subscription's; the policy's static owners, then the security
//! team, when no tag names anyone.

use defender_responder::notify::owners::{from_tags, resolve, OwnerSource};
use defender_responder::policy::Policy;

use super::email::simulator;

const SUB: &str = "/subscriptions/4a9d62b4-c70d-4263-9280-1c7fce8ab0e7";

#[tokio::test]
async fn the_nearest_tag_wins_from_resource_to_group_to_subscription() {
    let (sim, clients) = simulator().await;
    let payments = format!("{SUB}/resourceGroups/rg-payments-prod/providers/Microsoft.KeyVault/vaults/kv-contoso-payments");
    let found = from_tags(&clients.arm, &payments, "owner")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.people, ["payments-oncall@contoso.com"]);
    assert_eq!(found.source, OwnerSource::Tag(payments.clone()));

    // A resource the group knows but that has no tag of its own (here: none at all).
    let untagged = format!("{SUB}/resourceGroups/rg-payments-prod/providers/Microsoft.Storage/storageAccounts/stnotthere");
    let found = from_tags(&clients.arm, &untagged, "owner")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.people, ["payments-team@contoso.com"]);
    assert_eq!(
        found.source,
        OwnerSource::Tag(format!("{SUB}/resourceGroups/rg-payments-prod"))
    );

    // The HR vault and its group have no owner tag: the subscription's.
    let hr = format!(
        "{SUB}/resourceGroups/rg-hr-prod/providers/Microsoft.KeyVault/vaults/kv-contoso-hr"
    );
    let found = from_tags(&clients.arm, &hr, "owner")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.people, ["platform-team@contoso.com"]);
    assert_eq!(found.source, OwnerSource::Tag(SUB.to_string()));

    // The reads are the tags API, with a management token.
    let reads: Vec<_> = sim
        .requests()
        .into_iter()
        .filter(|r| {
            r["path"]
                .as_str()
                .unwrap_or("")
                .ends_with("/providers/Microsoft.Resources/tags/default")
        })
        .collect();
    assert!(reads.len() >= 6, "{reads:#?}");
    assert!(reads
        .iter()
        .all(|r| r["query"]["api-version"] == "2021-04-01"));
    assert!(reads
        .iter()
        .all(|r| r["audience"] == "https://management.azure.com"));

    // A tag name nobody uses: the policy's static owners, then the security team.
    assert!(from_tags(&clients.arm, &hr, "steward")
        .await
        .unwrap()
        .is_none());
    let policy = Policy {
        owners: [(
            format!("{SUB}/resourceGroups/rg-hr-prod"),
            vec!["hr-it@contoso.com".to_string()],
        )]
        .into(),
        notify_recipients: vec!["secops@contoso.com".into()],
        ..Policy::default()
    };
    let found = resolve(Some(&clients.arm), &policy, &hr, "steward").await;
    assert_eq!(
        (found.people, found.source),
        (vec!["hr-it@contoso.com".to_string()], OwnerSource::Policy)
    );
    let found = resolve(Some(&clients.arm), &policy, &payments, "steward").await;
    assert_eq!(
        (found.people, found.source),
        (
            vec!["secops@contoso.com".to_string()],
            OwnerSource::SecurityTeam
        )
    );
}
