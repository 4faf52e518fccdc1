//! Resolving a task's principal to one exact Entra object (users, service principals,
//! applications), with the own-identity and exclusion guard rails applied.

use serde_json::Value;

use super::super::guards::refuse_protected_principal;
use super::super::{ExecutorContext, ExecutorError, RefusalReason};
use crate::azure::http::encode_query;
use crate::domain::ids::{PrincipalKind, PrincipalRef};

/// The Graph collection an object lives in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DirectoryCollection {
    /// `/users`.
    Users,
    /// `/servicePrincipals`.
    ServicePrincipals,
    /// `/applications`.
    Applications,
}

impl DirectoryCollection {
    /// The path segment.
    pub fn as_str(self) -> &'static str {
        match self {
            DirectoryCollection::Users => "users",
            DirectoryCollection::ServicePrincipals => "servicePrincipals",
            DirectoryCollection::Applications => "applications",
        }
    }
}

/// One resolved directory object.
#[derive(Clone, Debug, PartialEq)]
pub struct DirectoryObject {
    /// Its object id.
    pub object_id: String,
    /// Its collection.
    pub collection: DirectoryCollection,
    /// The object as read (with `accountEnabled` selected where it exists).
    pub body: Value,
}

impl DirectoryObject {
    /// `/users/{id}`, `/servicePrincipals/{id}`, `/applications/{id}`.
    pub fn path(&self) -> String {
        format!("/{}/{}", self.collection.as_str(), self.object_id)
    }
}

async fn read(
    ctx: &ExecutorContext,
    collection: DirectoryCollection,
    key: &str,
) -> Result<Option<DirectoryObject>, ExecutorError> {
    let select = match collection {
        DirectoryCollection::Users => "?$select=id,displayName,userPrincipalName,accountEnabled",
        DirectoryCollection::ServicePrincipals => "?$select=id,appId,displayName,accountEnabled",
        DirectoryCollection::Applications => "?$select=id,appId,displayName",
    };
    let path = format!("/{}/{}{select}", collection.as_str(), encode_query(key));
    let Some(body) = ctx.clients.graph.get_optional(&path).await? else {
        return Ok(None);
    };
    let object_id = body
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or(key)
        .to_string();
    Ok(Some(DirectoryObject {
        object_id,
        collection,
        body,
    }))
}

/// Reads the principal exactly: by object id in the collection its kind names (each
/// collection in turn when the alert did not say), or a user by user principal name. Refuses
/// the responder's own identities, excluded principals and principals that do not exist.
pub async fn resolve(
    principal: &PrincipalRef,
    ctx: &ExecutorContext,
) -> Result<DirectoryObject, ExecutorError> {
    let (key, collections): (&str, &[DirectoryCollection]) = match principal {
        PrincipalRef::ObjectId {
            object_id, kind, ..
        } => (
            object_id.as_str(),
            match kind {
                PrincipalKind::User => &[DirectoryCollection::Users],
                PrincipalKind::ServicePrincipal => &[DirectoryCollection::ServicePrincipals],
                PrincipalKind::Application => &[DirectoryCollection::Applications],
                PrincipalKind::Unresolved => &[
                    DirectoryCollection::Users,
                    DirectoryCollection::ServicePrincipals,
                    DirectoryCollection::Applications,
                ],
            },
        ),
        PrincipalRef::UserPrincipalName {
            user_principal_name,
        } => (user_principal_name.as_str(), &[DirectoryCollection::Users]),
    };
    // Refuse before any read when the id itself is protected.
    refuse_protected_principal(key, &ctx.settings)?;
    for collection in collections {
        if let Some(object) = read(ctx, *collection, key).await? {
            refuse_protected_principal(&object.object_id, &ctx.settings)?;
            return Ok(object);
        }
    }
    Err(ExecutorError::refused(
        RefusalReason::TargetNotFound,
        format!("no directory object {key} in Entra"),
    ))
}

/// The object id of a principal without reading the directory when the task names it.
pub async fn object_id(
    principal: &PrincipalRef,
    ctx: &ExecutorContext,
) -> Result<String, ExecutorError> {
    match principal {
        PrincipalRef::ObjectId { object_id, .. } => {
            refuse_protected_principal(object_id.as_str(), &ctx.settings)?;
            Ok(object_id.as_str().to_ascii_lowercase())
        }
        PrincipalRef::UserPrincipalName { .. } => Ok(resolve(principal, ctx)
            .await?
            .object_id
            .to_ascii_lowercase()),
    }
}
