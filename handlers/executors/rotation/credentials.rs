//! `reset_credentials`: a service principal gets a new password (display name = the task's
//! message id, the marker) stored straight into the credentials vault, and its old passwords
//! are removed after the grace window; a user, where the settings allow it, gets a temporary
//! password (stored in the vault first, so it is never lost) with a forced change and their
//! sessions revoked.

use async_trait::async_trait;
use reqwest::Method;
use serde_json::{json, Value};

use super::generator::random_value;
use super::{
    foreign_step, marked, not_yet, rfc3339_of, saved_str, wrong_parameters, FollowUp, FollowUpStep,
    MARKER_TAG,
};
use crate::azure::key_vault::{ObjectVersion, SecretValue, VaultClient};
use crate::azure::Api;
use crate::config::rotation::ROTATION_CREDENTIALS_VAULT;
use crate::domain::ids::{Guid, PrincipalKind, PrincipalRef, SecretUri};
use crate::domain::parameters::Parameters;
use crate::domain::task::{Action, Task};
use crate::executors::{
    Applied, Change, Executor, ExecutorContext, ExecutorError, PlannedRequest, Preview,
    RefusalReason, SentRequest, Undone, Verification, WriteMethod,
};

/// Characters of a user's temporary password.
pub const USER_PASSWORD_LENGTH: usize = 24;

/// The `reset_credentials` executor.
#[derive(Clone, Copy, Debug, Default)]
pub struct ResetCredentials;

/// What the principal resolved to.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Holder {
    /// Passwords live on this Graph object (`/applications/{id}` or `/servicePrincipals/{id}`).
    Passwords {
        /// The Graph path.
        owner: String,
        /// The application (client) id.
        app_id: String,
        /// A display name, for notices.
        display_name: String,
    },
    /// A user.
    User {
        /// The object id or user principal name.
        id: String,
    },
}

fn principal_of(task: &Task) -> Result<&PrincipalRef, ExecutorError> {
    match &task.parameters {
        Parameters::ResetCredentials { principal } => Ok(principal),
        _ => Err(wrong_parameters("reset_credentials")),
    }
}

async fn optional(ctx: &ExecutorContext, path: &str) -> Result<Option<Value>, ExecutorError> {
    Ok(ctx.clients.graph.get_optional(path).await?)
}

/// Resolves where the principal's passwords live: an application registered in the tenant
/// holds them for its service principal; a service principal of another tenant's application
/// holds its own.
async fn resolve(ctx: &ExecutorContext, principal: &PrincipalRef) -> Result<Holder, ExecutorError> {
    let (id, kind) = match principal {
        PrincipalRef::ObjectId {
            object_id, kind, ..
        } => (object_id.as_str().to_string(), *kind),
        PrincipalRef::UserPrincipalName {
            user_principal_name,
        } => {
            return Ok(Holder::User {
                id: user_principal_name.as_str().to_string(),
            })
        }
    };
    let try_service_principal = matches!(
        kind,
        PrincipalKind::ServicePrincipal | PrincipalKind::Unresolved
    );
    let try_application = matches!(kind, PrincipalKind::Application | PrincipalKind::Unresolved);
    if try_service_principal {
        if let Some(sp) = optional(ctx, &format!("/servicePrincipals/{id}")).await? {
            let app_id = sp["appId"].as_str().unwrap_or_default().to_string();
            let display_name = sp["displayName"].as_str().unwrap_or_default().to_string();
            if let Some(app) = optional(ctx, &format!("/applications(appId='{app_id}')")).await? {
                if let Some(app_object) = app["id"].as_str() {
                    return Ok(Holder::Passwords {
                        owner: format!("/applications/{app_object}"),
                        app_id,
                        display_name,
                    });
                }
            }
            return Ok(Holder::Passwords {
                owner: format!("/servicePrincipals/{id}"),
                app_id,
                display_name,
            });
        }
    }
    if try_application {
        if let Some(app) = optional(ctx, &format!("/applications/{id}")).await? {
            return Ok(Holder::Passwords {
                owner: format!("/applications/{id}"),
                app_id: app["appId"].as_str().unwrap_or_default().to_string(),
                display_name: app["displayName"].as_str().unwrap_or_default().to_string(),
            });
        }
    }
    if matches!(kind, PrincipalKind::User | PrincipalKind::Unresolved)
        && optional(ctx, &format!("/users/{id}")).await?.is_some()
    {
        return Ok(Holder::User { id });
    }
    Err(ExecutorError::refused(
        RefusalReason::TargetNotFound,
        format!("no service principal, application or user has the object id {id}"),
    ))
}

/// The vault secret a new credential goes to, or the notice saying what to configure.
fn vault_secret(
    ctx: &ExecutorContext,
    name: &str,
    notice: &str,
) -> Result<SecretUri, ExecutorError> {
    let Some(vault) = ctx.rotation.settings.credentials_vault.as_deref() else {
        return Err(ExecutorError::refused(
            RefusalReason::ManualRotation,
            format!("{notice} (Set {ROTATION_CREDENTIALS_VAULT} to a vault the responder may write secrets to, and it does this itself.)"),
        ));
    };
    let host = vault.trim_start_matches("https://");
    SecretUri::parse(&format!("https://{host}/secrets/{name}"))
        .map_err(|e| ExecutorError::Permanent(format!("{ROTATION_CREDENTIALS_VAULT}: {e}")))
}

fn vault_client(ctx: &ExecutorContext, secret: &SecretUri) -> Result<VaultClient, ExecutorError> {
    super::vault_of(ctx, secret.uri())
}

/// The secret's versions, empty when it does not exist yet.
async fn versions_of(
    vault: &VaultClient,
    secret: &SecretUri,
) -> Result<Vec<ObjectVersion>, ExecutorError> {
    match vault.secret_versions(secret.uri().name()).await {
        Ok(versions) => Ok(versions),
        Err(error) if error.is_not_found() => Ok(Vec::new()),
        Err(error) => Err(error.into()),
    }
}

/// The password credentials of a Graph object, as metadata.
async fn passwords(ctx: &ExecutorContext, owner: &str) -> Result<Vec<Value>, ExecutorError> {
    let object = ctx.clients.graph.get(owner).await?;
    Ok(object["passwordCredentials"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|c| {
            json!({
                "keyId": c["keyId"], "displayName": c["displayName"],
                "hint": c["hint"], "endDateTime": c["endDateTime"],
            })
        })
        .collect())
}

fn with_marker<'c>(credentials: &'c [Value], task: &Task) -> Option<&'c Value> {
    credentials
        .iter()
        .find(|c| c["displayName"].as_str() == Some(task.message_id.as_str()))
}

fn old_key_ids(credentials: &[Value], task: &Task) -> Vec<Guid> {
    credentials
        .iter()
        .filter(|c| c["displayName"].as_str() != Some(task.message_id.as_str()))
        .filter_map(|c| c["keyId"].as_str().and_then(|k| Guid::parse(k).ok()))
        .collect()
}

fn graph_sent(ctx: &ExecutorContext, method: &str, path: &str, status: u16) -> SentRequest {
    SentRequest {
        method: method.into(),
        url: ctx.clients.graph.url(path),
        status,
    }
}

fn secret_name_for_app(app_id: &str) -> String {
    format!("dr-app-{app_id}")
}

fn secret_name_for_user(id: &str) -> String {
    let safe: String = id
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    format!("dr-user-{safe}")
}

fn marker_tags(task: &Task, extra: &[(&str, &str)]) -> std::collections::BTreeMap<String, String> {
    let mut tags: std::collections::BTreeMap<String, String> = extra
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    tags.insert(MARKER_TAG.into(), task.message_id.as_str().to_string());
    tags
}

/// `addPassword`: the new credential's key id and its text (returned once; it goes nowhere
/// but the vault).
async fn add_password(
    ctx: &ExecutorContext,
    owner: &str,
    task: &Task,
) -> Result<(Guid, SecretValue, SentRequest), ExecutorError> {
    let end = rfc3339_of(ctx.rotation.clock.now() + ctx.rotation.settings.password_days * 86_400);
    let path = format!("{owner}/addPassword");
    let response = ctx
        .clients
        .graph
        .write(
            Method::POST,
            &ctx.clients.graph.url(&path),
            Some(&json!({"passwordCredential": {"displayName": task.message_id.as_str(), "endDateTime": end}})),
        )
        .await?;
    let key_id = response.body["keyId"]
        .as_str()
        .and_then(|k| Guid::parse(k).ok())
        .ok_or_else(|| ExecutorError::Permanent(format!("{path} answered no keyId")))?;
    let text = response.body["secretText"]
        .as_str()
        .map(SecretValue::new)
        .ok_or_else(|| ExecutorError::Permanent(format!("{path} answered no secretText")))?;
    Ok((
        key_id,
        text,
        graph_sent(ctx, "POST", &path, response.status),
    ))
}

async fn remove_password(
    ctx: &ExecutorContext,
    owner: &str,
    key_id: &str,
) -> Result<SentRequest, ExecutorError> {
    let path = format!("{owner}/removePassword");
    let response = ctx
        .clients
        .graph
        .write(
            Method::POST,
            &ctx.clients.graph.url(&path),
            Some(&json!({"keyId": key_id})),
        )
        .await?;
    Ok(graph_sent(ctx, "POST", &path, response.status))
}

fn removal(ctx: &ExecutorContext, owner: &str, old: Vec<Guid>, new: Guid) -> Option<FollowUp> {
    (!old.is_empty()).then(|| FollowUp {
        not_before: ctx.rotation.clock.now() + ctx.rotation.settings.grace_seconds,
        step: FollowUpStep::RemovePasswords {
            owner: owner.to_string(),
            key_ids: old,
            replacement: new,
        },
    })
}

#[async_trait]
impl Executor for ResetCredentials {
    fn action(&self) -> Action {
        Action::ResetCredentials
    }

    async fn preview(&self, task: &Task, ctx: &ExecutorContext) -> Result<Preview, ExecutorError> {
        let principal = principal_of(task)?;
        match resolve(ctx, principal).await? {
            Holder::Passwords {
                owner,
                app_id,
                display_name,
            } => {
                let credentials = passwords(ctx, &owner).await?;
                let notice = format!(
                    "The credentials of {display_name} (application {app_id}) may be exposed: add a new client secret to it in Entra, store it where its consumers read it, move them, then remove the old secrets ({}).",
                    old_key_ids(&credentials, task).iter().map(Guid::as_str).collect::<Vec<_>>().join(", ")
                );
                let secret = vault_secret(ctx, &secret_name_for_app(&app_id), &notice)?;
                let vault = vault_client(ctx, &secret)?;
                let versions = versions_of(&vault, &secret).await?;
                let done =
                    with_marker(&credentials, task).is_some() && marked(&versions, task).is_some();
                let requests = if done {
                    Vec::new()
                } else {
                    vec![
                        PlannedRequest::new(
                            Api::Graph,
                            WriteMethod::Post,
                            ctx.clients.graph.url(&format!("{owner}/addPassword")),
                            Some(
                                json!({"passwordCredential": {"displayName": task.message_id.as_str(), "endDateTime": format!("<now + {} days>", ctx.rotation.settings.password_days)}}),
                            ),
                        ),
                        PlannedRequest::new(
                            Api::KeyVault,
                            WriteMethod::Put,
                            vault.url(&format!("secrets/{}", secret.uri().name())),
                            Some(
                                json!({"value": "<the new password's secretText>", "contentType": format!("application-password:{}", owner.rsplit('/').next().unwrap_or_default()), "tags": marker_tags(task, &[("application", &app_id)])}),
                            ),
                        ),
                    ]
                };
                let old = old_key_ids(&credentials, task);
                Ok(Preview {
                    change: Change::new(
                        if done {
                            format!(
                                "{owner} already has this task's password, stored in {}",
                                secret.as_str()
                            )
                        } else {
                            format!(
                                "would add a password named {} to {owner}, store it in {}, and remove its {} old password(s) {} s later",
                                task.message_id,
                                secret.as_str(),
                                old.len(),
                                ctx.rotation.settings.grace_seconds
                            )
                        },
                        requests,
                    ),
                    prior_state: json!({
                        "kind": "passwords",
                        "owner": owner,
                        "app_id": app_id,
                        "credentials": credentials,
                        "secret": secret.as_str(),
                    }),
                    leases: vec![owner.to_ascii_lowercase()],
                    subscriptions: Vec::new(),
                })
            }
            Holder::User { id } => {
                let notice = format!(
                    "The user {id} may be compromised: reset their password (forcing a change at next sign-in) and revoke their sessions (Revoke sessions in Entra, or POST /users/{id}/revokeSignInSessions); a synced user needs password writeback."
                );
                if !ctx.rotation.settings.reset_users {
                    return Err(ExecutorError::refused(
                        RefusalReason::ManualRotation,
                        format!("{notice} (The responder resets users only where the policy allows it: RESPONDER_ROTATION_RESET_USERS.)"),
                    ));
                }
                let secret = vault_secret(ctx, &secret_name_for_user(&id), &notice)?;
                let vault = vault_client(ctx, &secret)?;
                let requests = vec![
                    PlannedRequest::new(
                        Api::KeyVault,
                        WriteMethod::Put,
                        vault.url(&format!("secrets/{}", secret.uri().name())),
                        Some(
                            json!({"value": format!("<a new temporary password: {USER_PASSWORD_LENGTH} characters>"), "tags": marker_tags(task, &[("user", &id)])}),
                        ),
                    ),
                    PlannedRequest::new(
                        Api::Graph,
                        WriteMethod::Patch,
                        ctx.clients.graph.url(&format!("/users/{id}")),
                        Some(
                            json!({"passwordProfile": {"forceChangePasswordNextSignIn": true, "password": "<the temporary password, as stored>"}}),
                        ),
                    ),
                    PlannedRequest::new(
                        Api::Graph,
                        WriteMethod::Post,
                        ctx.clients
                            .graph
                            .url(&format!("/users/{id}/revokeSignInSessions")),
                        None,
                    ),
                ];
                Ok(Preview {
                    change: Change::new(
                        format!("would store a temporary password for {id} in {}, set it with a forced change at next sign-in, and revoke their sessions", secret.as_str()),
                        requests,
                    ),
                    prior_state: json!({"kind": "user", "user": id, "secret": secret.as_str()}),
                    leases: vec![format!("/users/{}", id.to_ascii_lowercase())],
                    subscriptions: Vec::new(),
                })
            }
        }
    }

    async fn apply(
        &self,
        task: &Task,
        preview: &Preview,
        ctx: &ExecutorContext,
    ) -> Result<Applied, ExecutorError> {
        principal_of(task)?;
        let prior = &preview.prior_state;
        let secret = SecretUri::parse(saved_str(prior, "secret")?)
            .map_err(|e| ExecutorError::Permanent(e.to_string()))?;
        let vault = vault_client(ctx, &secret)?;
        let versions = versions_of(&vault, &secret).await?;
        if saved_str(prior, "kind")? == "user" {
            let user = saved_str(prior, "user")?;
            let mut applied = Applied::default();
            // The vault first: a crash after it leaves the password where the next run reads it.
            let value = match marked(&versions, task) {
                Some(version) => {
                    vault
                        .secret_value(secret.uri().name(), &version.version)
                        .await?
                }
                None => {
                    let value = random_value(USER_PASSWORD_LENGTH).map_err(|e| {
                        ExecutorError::Retryable {
                            reason: format!("the operating system's random generator failed: {e}"),
                            retry_after: None,
                        }
                    })?;
                    vault
                        .set_secret(
                            secret.uri().name(),
                            &value,
                            None,
                            &marker_tags(task, &[("user", user)]),
                        )
                        .await?;
                    applied.sent.push(SentRequest {
                        method: "PUT".into(),
                        url: vault.url(&format!("secrets/{}", secret.uri().name())),
                        status: 200,
                    });
                    value
                }
            };
            let path = format!("/users/{user}");
            let response = ctx
                .clients
                .graph
                .write(
                    Method::PATCH,
                    &ctx.clients.graph.url(&path),
                    Some(&json!({"passwordProfile": {"forceChangePasswordNextSignIn": true, "password": value.expose()}})),
                )
                .await?;
            applied
                .sent
                .push(graph_sent(ctx, "PATCH", &path, response.status));
            let revoke = format!("{path}/revokeSignInSessions");
            let response = ctx
                .clients
                .graph
                .write(Method::POST, &ctx.clients.graph.url(&revoke), None)
                .await?;
            applied
                .sent
                .push(graph_sent(ctx, "POST", &revoke, response.status));
            applied.output = json!({"user": user, "secret": secret.as_str()});
            return Ok(applied);
        }
        let owner = saved_str(prior, "owner")?.to_string();
        let app_id = saved_str(prior, "app_id")?.to_string();
        let credentials = passwords(ctx, &owner).await?;
        let old = old_key_ids(&credentials, task);
        let mut applied = Applied::default();
        if let Some(existing) = with_marker(&credentials, task) {
            let key_id = existing["keyId"].as_str().unwrap_or_default().to_string();
            if let Some(version) = marked(&versions, task) {
                // A redelivery after the vault write: done; the removal is scheduled again.
                let new =
                    Guid::parse(&key_id).map_err(|e| ExecutorError::Permanent(e.to_string()))?;
                applied.output = json!({"owner": owner, "new_key_id": key_id, "secret_version": version.version, "already_rotated": true});
                applied.follow_up = removal(ctx, &owner, old, new);
                return Ok(applied);
            }
            // Added before a crash but never stored: its text is gone, so it is removed and
            // replaced (it was never handed to anyone).
            applied
                .sent
                .push(remove_password(ctx, &owner, &key_id).await?);
        }
        let (new, text, sent) = add_password(ctx, &owner, task).await?;
        applied.sent.push(sent);
        let owner_object = owner.rsplit('/').next().unwrap_or_default().to_string();
        let written = vault
            .set_secret(
                secret.uri().name(),
                &text,
                Some(&format!("application-password:{owner_object}")),
                &marker_tags(task, &[("application", &app_id)]),
            )
            .await?;
        applied.sent.push(SentRequest {
            method: "PUT".into(),
            url: vault.url(&format!("secrets/{}", secret.uri().name())),
            status: 200,
        });
        applied.output =
            json!({"owner": owner, "new_key_id": new.as_str(), "secret_version": written.version});
        applied.follow_up = removal(ctx, &owner, old, new);
        Ok(applied)
    }

    async fn verify(
        &self,
        task: &Task,
        preview: &Preview,
        applied: &Applied,
        ctx: &ExecutorContext,
    ) -> Result<Verification, ExecutorError> {
        let prior = &preview.prior_state;
        let secret = SecretUri::parse(saved_str(prior, "secret")?)
            .map_err(|e| ExecutorError::Permanent(e.to_string()))?;
        let vault = vault_client(ctx, &secret)?;
        let versions = versions_of(&vault, &secret).await?;
        let mut verification = Verification::default().check(
            "the vault holds the new credential under the task's marker",
            json!(true),
            json!(marked(&versions, task).is_some()),
        );
        if let Some(owner) = applied.output["owner"].as_str() {
            let credentials = passwords(ctx, owner).await?;
            verification = verification.check(
                "the new password exists",
                applied.output["new_key_id"].clone(),
                with_marker(&credentials, task)
                    .map(|c| c["keyId"].clone())
                    .unwrap_or(Value::Null),
            );
        }
        Ok(verification)
    }

    async fn undo(
        &self,
        _task: &Task,
        preview: &Preview,
        _applied: &Applied,
        _ctx: &ExecutorContext,
    ) -> Result<Undone, ExecutorError> {
        Ok(Undone {
            not_restored: vec![format!(
                "credentials are not restored: removed passwords cannot be recreated and a reset password stays reset ({})",
                preview.prior_state["owner"]
                    .as_str()
                    .or(preview.prior_state["user"].as_str())
                    .unwrap_or_default()
            )],
            ..Undone::default()
        })
    }

    async fn follow_up(
        &self,
        _task: &Task,
        follow_up: &FollowUp,
        ctx: &ExecutorContext,
    ) -> Result<Applied, ExecutorError> {
        let FollowUpStep::RemovePasswords {
            owner,
            key_ids,
            replacement,
        } = &follow_up.step
        else {
            return Err(foreign_step(&follow_up.step, "reset_credentials"));
        };
        not_yet(follow_up, ctx.rotation.clock.now())?;
        let credentials = passwords(ctx, owner).await?;
        let present = |key: &str| {
            credentials.iter().any(|c| {
                c["keyId"]
                    .as_str()
                    .is_some_and(|k| k.eq_ignore_ascii_case(key))
            })
        };
        if !present(replacement.as_str()) {
            return Err(ExecutorError::refused(
                RefusalReason::VersionChanged,
                format!(
                    "{owner}: the password {} that replaced the old ones is gone; the old ones were kept",
                    replacement.as_str()
                ),
            ));
        }
        let mut applied = Applied::default();
        for key_id in key_ids.iter().filter(|k| present(k.as_str())) {
            match remove_password(ctx, owner, key_id.as_str()).await {
                Ok(sent) => applied.sent.push(sent),
                Err(ExecutorError::Permanent(reason))
                    if reason.contains("CannotDeleteNonexistentCredential") => {}
                Err(error) => return Err(error),
            }
        }
        applied.output = json!({"owner": owner, "removed": key_ids.iter().map(Guid::as_str).collect::<Vec<_>>()});
        Ok(applied)
    }
}
