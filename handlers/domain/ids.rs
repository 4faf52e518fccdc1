//! Identifier newtypes of the task contract: each parses once and cannot hold a malformed id.
//!
//! Every type keeps the text exactly as the alert wrote it (trimmed) for display and for
//! message ids, which are derived from that text, and compares case-insensitively where Azure
//! does. Serialised as the plain text; deserialising parses again, so a message that names a
//! malformed id is refused as a whole.

use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a text is not an identifier of the expected kind.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {text:?} {problem}")]
pub struct IdError {
    /// The kind of identifier expected.
    pub kind: &'static str,
    /// The text given (shortened when long).
    pub text: String,
    /// What is wrong with it.
    pub problem: &'static str,
}

impl IdError {
    fn new(kind: &'static str, text: &str, problem: &'static str) -> Self {
        let text: String = text.chars().take(200).collect();
        IdError {
            kind,
            text,
            problem,
        }
    }
}

/// Implements text serialisation, parsing deserialisation, `Display` and a JSON Schema string
/// with a pattern for a newtype that has `parse(&str) -> Result<Self, IdError>` and `as_str`.
macro_rules! text_id {
    ($type:ident, $name:literal, $description:literal, $pattern:expr) => {
        impl fmt::Display for $type {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $type {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $type {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                $type::parse(&text).map_err(serde::de::Error::custom)
            }
        }

        impl JsonSchema for $type {
            fn schema_name() -> Cow<'static, str> {
                Cow::Borrowed($name)
            }

            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!({
                    "type": "string",
                    "description": $description,
                    "pattern": $pattern,
                })
            }
        }
    };
}

// ---------------------------------------------------------------------------------------------
// GUIDs

/// A GUID (`8-4-4-4-12` hex digits), never the nil GUID: Defender writes
/// `00000000-0000-0000-0000-000000000000` where it has no id, so it never names anything.
#[derive(Clone, Debug)]
pub struct Guid(String);

/// The nil GUID Defender uses as a placeholder.
pub const NIL_GUID: &str = "00000000-0000-0000-0000-000000000000";

impl Guid {
    /// Parses a GUID, with or without braces; `Err` for other text and for the nil GUID.
    pub fn parse(text: &str) -> Result<Self, IdError> {
        let trimmed = text.trim();
        let bare = trimmed
            .strip_prefix('{')
            .and_then(|rest| rest.strip_suffix('}'))
            .unwrap_or(trimmed);
        let groups: Vec<&str> = bare.split('-').collect();
        let shape_ok = groups.len() == 5
            && groups.iter().zip([8, 4, 4, 4, 12]).all(|(group, len)| {
                group.len() == len && group.chars().all(|c| c.is_ascii_hexdigit())
            });
        if !shape_ok {
            return Err(IdError::new(
                "GUID",
                text,
                "is not 8-4-4-4-12 hexadecimal digits",
            ));
        }
        if bare.chars().all(|c| c == '0' || c == '-') {
            return Err(IdError::new(
                "GUID",
                text,
                "is the nil GUID, Defender's placeholder for no id",
            ));
        }
        Ok(Guid(trimmed.to_string()))
    }

    /// Whether a text is the nil GUID (in any case, with or without braces).
    pub fn is_nil(text: &str) -> bool {
        let trimmed = text.trim().trim_start_matches('{').trim_end_matches('}');
        trimmed.eq_ignore_ascii_case(NIL_GUID)
    }

    /// The GUID as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl PartialEq for Guid {
    fn eq(&self, other: &Self) -> bool {
        self.0.eq_ignore_ascii_case(&other.0)
    }
}

impl Eq for Guid {}

text_id!(
    Guid,
    "Guid",
    "A GUID (never the nil GUID).",
    "^\\{?[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\\}?$"
);

// ---------------------------------------------------------------------------------------------
// Azure Resource Manager ids

/// Whether `text` holds whitespace, a control character, or one of `"'<>?#`, which no ARM id
/// has. Byte by byte while the text is ASCII (the rule's ASCII part is "at most a space, DEL,
/// or one of those six"); the characters' own tests when it is not.
fn has_character_no_id_has(text: &str) -> bool {
    let forbidden = |c: char| {
        c.is_whitespace() || c.is_control() || matches!(c, '"' | '\'' | '<' | '>' | '?' | '#')
    };
    if !text.is_ascii() {
        return text.chars().any(forbidden);
    }
    text.bytes()
        .any(|b| b <= b' ' || b == 0x7f || matches!(b, b'"' | b'\'' | b'<' | b'>' | b'?' | b'#'))
}

/// A parsed Azure Resource Manager id: `/subscriptions/{s}[/resourceGroups/{rg}]
/// [/providers/{Namespace}/{type}/{name}[/{type}/{name}]…]`, or a tenant-level
/// `/providers/{Namespace}/{type}/{name}…` id. Segment names match case-insensitively.
#[derive(Clone, Debug)]
pub struct AzureResourceId {
    text: String,
    subscription: Option<(usize, usize)>,
    resource_group: Option<(usize, usize)>,
    provider: Option<(usize, usize)>,
    /// `type/name` pairs after the provider namespace, as ranges of `text`.
    pairs: Vec<((usize, usize), (usize, usize))>,
}

impl AzureResourceId {
    /// Parses an ARM id; `Err` says what is wrong.
    pub fn parse(text: &str) -> Result<Self, IdError> {
        const KIND: &str = "Azure resource id";
        let trimmed = text.trim().trim_end_matches('/');
        if !trimmed.starts_with('/') {
            return Err(IdError::new(
                KIND,
                text,
                "does not start with /subscriptions/ or /providers/",
            ));
        }
        if has_character_no_id_has(trimmed) {
            return Err(IdError::new(
                KIND,
                text,
                "holds a character no resource id has",
            ));
        }
        // Offsets of each segment in `trimmed` ('/' is one byte: its offsets are boundaries).
        let mut segments: Vec<(usize, usize)> = Vec::with_capacity(16);
        let mut start = 1;
        for (index, byte) in trimmed.bytes().enumerate().skip(1) {
            if byte == b'/' {
                segments.push((start, index));
                start = index + 1;
            }
        }
        segments.push((start, trimmed.len()));
        if segments.iter().any(|(a, b)| a == b) {
            return Err(IdError::new(KIND, text, "has an empty segment"));
        }
        let word = |range: &(usize, usize)| &trimmed[range.0..range.1];
        let mut id = AzureResourceId {
            text: trimmed.to_string(),
            subscription: None,
            resource_group: None,
            provider: None,
            pairs: Vec::new(),
        };
        let mut at = 0;
        if word(&segments[0]).eq_ignore_ascii_case("subscriptions") {
            let Some(sub) = segments.get(1) else {
                return Err(IdError::new(KIND, text, "names no subscription"));
            };
            id.subscription = Some(*sub);
            at = 2;
            if segments
                .get(at)
                .is_some_and(|s| word(s).eq_ignore_ascii_case("resourceGroups"))
            {
                let Some(group) = segments.get(at + 1) else {
                    return Err(IdError::new(
                        KIND,
                        text,
                        "names no resource group after resourceGroups",
                    ));
                };
                id.resource_group = Some(*group);
                at += 2;
            }
        } else if !word(&segments[0]).eq_ignore_ascii_case("providers") {
            return Err(IdError::new(
                KIND,
                text,
                "does not start with /subscriptions/ or /providers/",
            ));
        }
        if at < segments.len() {
            if !word(&segments[at]).eq_ignore_ascii_case("providers") {
                return Err(IdError::new(
                    KIND,
                    text,
                    "has segments that are neither resourceGroups nor providers",
                ));
            }
            let Some(namespace) = segments.get(at + 1) else {
                return Err(IdError::new(KIND, text, "names no provider namespace"));
            };
            if !word(namespace).contains('.') {
                return Err(IdError::new(
                    KIND,
                    text,
                    "has a provider namespace without a dot (Microsoft.X)",
                ));
            }
            id.provider = Some(*namespace);
            let rest = &segments[at + 2..];
            // Extension resources (`…/providers/Microsoft.Authorization/roleAssignments/x`
            // under another resource) start a new provider: keep the innermost one.
            let mut index = 0;
            while index < rest.len() {
                if word(&rest[index]).eq_ignore_ascii_case("providers") {
                    let Some(inner) = rest.get(index + 1) else {
                        return Err(IdError::new(KIND, text, "names no provider namespace"));
                    };
                    id.provider = Some(*inner);
                    id.pairs.clear();
                    index += 2;
                    continue;
                }
                let Some(name) = rest.get(index + 1) else {
                    return Err(IdError::new(
                        KIND,
                        text,
                        "ends with a resource type that has no name",
                    ));
                };
                id.pairs.push((rest[index], *name));
                index += 2;
            }
        }
        Ok(id)
    }

    /// The id as written (trailing `/` removed).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    fn part(&self, range: Option<(usize, usize)>) -> Option<&str> {
        range.map(|(a, b)| &self.text[a..b])
    }

    /// The subscription id.
    pub fn subscription_id(&self) -> Option<&str> {
        self.part(self.subscription)
    }

    /// The resource group name.
    pub fn resource_group(&self) -> Option<&str> {
        self.part(self.resource_group)
    }

    /// The provider namespace, e.g. `Microsoft.KeyVault`.
    pub fn provider(&self) -> Option<&str> {
        self.part(self.provider)
    }

    /// The provider namespace and type, e.g. `Microsoft.KeyVault/vaults` (nested types joined:
    /// `Microsoft.Compute/virtualMachines/extensions`).
    pub fn resource_type(&self) -> Option<String> {
        let provider = self.provider()?;
        if self.pairs.is_empty() {
            return None;
        }
        let mut out = provider.to_string();
        for (kind, _) in &self.pairs {
            out.push('/');
            out.push_str(&self.text[kind.0..kind.1]);
        }
        Some(out)
    }

    /// The resource's own name (the last name of the id).
    pub fn name(&self) -> Option<&str> {
        self.pairs
            .last()
            .map(|(_, name)| &self.text[name.0..name.1])
    }

    /// Whether the resource is exactly of the given `Namespace/type`, case-insensitively.
    pub fn is_type(&self, kind: &str) -> bool {
        self.resource_type()
            .is_some_and(|own| own.eq_ignore_ascii_case(kind))
    }

    /// Whether this id is a subscription scope (`/subscriptions/{s}` and nothing more).
    pub fn is_subscription(&self) -> bool {
        self.subscription.is_some() && self.resource_group.is_none() && self.provider.is_none()
    }

    /// The value following a path segment, case-insensitively (`segment("resourceGroups")`).
    pub fn segment(&self, name: &str) -> Option<&str> {
        let mut parts = self.text.split('/');
        while let Some(part) = parts.next() {
            if part.eq_ignore_ascii_case(name) {
                return parts.next().filter(|value| !value.is_empty());
            }
        }
        None
    }

    /// The lower-cased id: what two spellings of one resource share.
    pub fn normalized(&self) -> String {
        self.text.to_ascii_lowercase()
    }
}

impl PartialEq for AzureResourceId {
    fn eq(&self, other: &Self) -> bool {
        self.text.eq_ignore_ascii_case(&other.text)
    }
}

impl Eq for AzureResourceId {}

impl std::hash::Hash for AzureResourceId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.normalized().hash(state);
    }
}

impl PartialOrd for AzureResourceId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for AzureResourceId {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.normalized().cmp(&other.normalized())
    }
}

text_id!(
    AzureResourceId,
    "AzureResourceId",
    "An Azure Resource Manager id: /subscriptions/{subscription}[/resourceGroups/{group}][/providers/{Namespace}/{type}/{name}...], segment names case-insensitive.",
    "^/([sS][uU][bB][sS][cC][rR][iI][pP][tT][iI][oO][nN][sS]|[pP][rR][oO][vV][iI][dD][eE][rR][sS])/[^/\\s]+(/[^/\\s]+)*$"
);

/// The resource id of a key vault (`Microsoft.KeyVault/vaults`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyVaultId(AzureResourceId);

impl KeyVaultId {
    /// Parses a key vault's resource id.
    pub fn parse(text: &str) -> Result<Self, IdError> {
        Self::from_id(AzureResourceId::parse(text)?).ok_or_else(|| {
            IdError::new(
                "Key Vault resource id",
                text,
                "is not of type Microsoft.KeyVault/vaults",
            )
        })
    }

    /// The id as a vault's, when it is of type `Microsoft.KeyVault/vaults`.
    pub fn from_id(id: AzureResourceId) -> Option<Self> {
        id.is_type("Microsoft.KeyVault/vaults")
            .then_some(KeyVaultId(id))
    }

    /// The id as written.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The underlying resource id.
    pub fn resource_id(&self) -> &AzureResourceId {
        &self.0
    }
}

text_id!(
    KeyVaultId,
    "KeyVaultId",
    "The resource id of a key vault: /subscriptions/{s}/resourceGroups/{g}/providers/Microsoft.KeyVault/vaults/{name}.",
    "^/[sS][uU][bB][sS][cC][rR][iI][pP][tT][iI][oO][nN][sS]/[^/]+/[rR][eE][sS][oO][uU][rR][cC][eE][gG][rR][oO][uU][pP][sS]/[^/]+/[pP][rR][oO][vV][iI][dD][eE][rR][sS]/[mM][iI][cC][rR][oO][sS][oO][fF][tT]\\.[kK][eE][yY][vV][aA][uU][lL][tT]/[vV][aA][uU][lL][tT][sS]/[^/]+$"
);

/// A subscription scope: `/subscriptions/{subscription}`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubscriptionScope(AzureResourceId);

impl SubscriptionScope {
    /// Parses `/subscriptions/{id}`.
    pub fn parse(text: &str) -> Result<Self, IdError> {
        let id = AzureResourceId::parse(text)?;
        if id.is_subscription() {
            Ok(SubscriptionScope(id))
        } else {
            Err(IdError::new(
                "subscription scope",
                text,
                "is not /subscriptions/{id} alone",
            ))
        }
    }

    /// The scope of a subscription id.
    pub fn of(subscription_id: &str) -> Result<Self, IdError> {
        Self::parse(&format!("/subscriptions/{}", subscription_id.trim()))
    }

    /// The scope as text.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The scope as a resource id.
    pub fn resource_id(&self) -> &AzureResourceId {
        &self.0
    }
}

text_id!(
    SubscriptionScope,
    "SubscriptionScope",
    "A subscription scope: /subscriptions/{subscription}.",
    "^/[sS][uU][bB][sS][cC][rR][iI][pP][tT][iI][oO][nN][sS]/[^/]+$"
);

// ---------------------------------------------------------------------------------------------
// Key Vault object URIs

/// What kind of object in a vault.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum VaultObjectKind {
    /// A secret.
    Secret,
    /// A key.
    Key,
    /// A certificate.
    Certificate,
}

impl VaultObjectKind {
    /// The collection name used in vault URIs.
    pub fn collection(self) -> &'static str {
        match self {
            VaultObjectKind::Secret => "secrets",
            VaultObjectKind::Key => "keys",
            VaultObjectKind::Certificate => "certificates",
        }
    }
}

/// A Key Vault (or Managed HSM) object URI:
/// `https://{vault}.vault.azure.net/{secrets|keys|certificates}/{name}[/{version}]`, any
/// cloud's vault domain. The host is lower-cased (DNS is case-insensitive); the name is kept.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VaultObjectUri {
    host: String,
    kind: VaultObjectKind,
    name: String,
    version: Option<String>,
    text: String,
}

impl VaultObjectUri {
    /// Parses a vault object URI.
    pub fn parse(text: &str) -> Result<Self, IdError> {
        const KIND: &str = "Key Vault object URI";
        let trimmed = text.trim();
        let Some(rest) = trimmed
            .get(..8)
            .filter(|scheme| scheme.eq_ignore_ascii_case("https://"))
            .map(|_| &trimmed[8..])
        else {
            return Err(IdError::new(KIND, text, "does not start with https://"));
        };
        let mut parts = rest.split('/');
        let host = parts.next().unwrap_or_default().to_ascii_lowercase();
        let vault_name = host.split('.').next().unwrap_or_default();
        if !(host.contains(".vault.") || host.contains(".managedhsm.")) || vault_name.is_empty() {
            return Err(IdError::new(
                KIND,
                text,
                "is not on a Key Vault or Managed HSM host",
            ));
        }
        let kind = match parts.next().map(str::to_ascii_lowercase).as_deref() {
            Some("secrets") => VaultObjectKind::Secret,
            Some("keys") => VaultObjectKind::Key,
            Some("certificates") => VaultObjectKind::Certificate,
            _ => {
                return Err(IdError::new(
                    KIND,
                    text,
                    "names no secrets, keys or certificates collection",
                ))
            }
        };
        let name = parts.next().unwrap_or_default();
        let valid_name = |part: &str| {
            !part.is_empty() && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        };
        if !valid_name(name) {
            return Err(IdError::new(
                KIND,
                text,
                "has no valid object name (letters, digits and -)",
            ));
        }
        let version = parts.next().filter(|part| !part.is_empty());
        if version.is_some_and(|version| !valid_name(version)) || parts.any(|part| !part.is_empty())
        {
            return Err(IdError::new(
                KIND,
                text,
                "has more than a name and a version",
            ));
        }
        let version = version.map(str::to_string);
        let mut out = VaultObjectUri {
            host,
            kind,
            name: name.to_string(),
            version,
            text: String::new(),
        };
        out.text = out.render(true);
        Ok(out)
    }

    fn render(&self, with_version: bool) -> String {
        let mut text = format!(
            "https://{}/{}/{}",
            self.host,
            self.kind.collection(),
            self.name
        );
        if let (true, Some(version)) = (with_version, &self.version) {
            text.push('/');
            text.push_str(version);
        }
        text
    }

    /// The URI (with the version when it has one).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The object without a version: what rotation acts on.
    pub fn without_version(&self) -> VaultObjectUri {
        let mut out = self.clone();
        out.version = None;
        out.text = out.render(false);
        out
    }

    /// Its kind.
    pub fn kind(&self) -> VaultObjectKind {
        self.kind
    }

    /// The object's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The version, when the URI names one.
    pub fn version(&self) -> Option<&str> {
        self.version.as_deref()
    }

    /// The vault's host (`kv-hr.vault.azure.net`).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The vault's name (the first label of the host).
    pub fn vault_name(&self) -> &str {
        self.host.split('.').next().unwrap_or_default()
    }
}

text_id!(
    VaultObjectUri,
    "VaultObjectUri",
    "A Key Vault object URI: https://{vault}.vault.azure.net/{secrets|keys|certificates}/{name}[/{version}].",
    "^https://[^/]+\\.(vault|managedhsm)\\.[^/]+/(secrets|keys|certificates)/[0-9A-Za-z-]+(/[0-9A-Za-z-]+)?$"
);

macro_rules! vault_object_of_kind {
    ($type:ident, $kind:ident, $name:literal, $description:literal, $collection:literal) => {
        #[doc = $description]
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $type(VaultObjectUri);

        impl $type {
            /// Parses the URI and checks its collection.
            pub fn parse(text: &str) -> Result<Self, IdError> {
                Self::from_uri(VaultObjectUri::parse(text)?).ok_or_else(|| {
                    IdError::new(
                        $name,
                        text,
                        concat!("is not in the ", $collection, " collection"),
                    )
                })
            }

            /// The URI as this kind, when it is one.
            pub fn from_uri(uri: VaultObjectUri) -> Option<Self> {
                (uri.kind() == VaultObjectKind::$kind).then_some($type(uri))
            }

            /// The URI as text.
            pub fn as_str(&self) -> &str {
                self.0.as_str()
            }

            /// The general object URI.
            pub fn uri(&self) -> &VaultObjectUri {
                &self.0
            }
        }

        text_id!(
            $type,
            $name,
            $description,
            concat!(
                "^https://[^/]+\\.(vault|managedhsm)\\.[^/]+/",
                $collection,
                "/[0-9A-Za-z-]+(/[0-9A-Za-z-]+)?$"
            )
        );
    };
}

vault_object_of_kind!(
    SecretUri,
    Secret,
    "SecretUri",
    "A Key Vault secret URI, with an optional version.",
    "secrets"
);
vault_object_of_kind!(
    KeyUri,
    Key,
    "KeyUri",
    "A Key Vault key URI, with an optional version.",
    "keys"
);
vault_object_of_kind!(
    CertificateUri,
    Certificate,
    "CertificateUri",
    "A Key Vault certificate URI, with an optional version.",
    "certificates"
);

// ---------------------------------------------------------------------------------------------
// People and principals

/// A person's (or a user principal's) address: `local@domain`, no spaces.
#[derive(Clone, Debug)]
pub struct PersonAddress(String);

impl PersonAddress {
    /// Parses `local@domain.tld`.
    pub fn parse(text: &str) -> Result<Self, IdError> {
        let trimmed = text.trim();
        let ok = match trimmed.split_once('@') {
            Some((local, domain)) => {
                !local.is_empty()
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
                    && !domain.contains('@')
                    && !trimmed.chars().any(|c| {
                        c.is_whitespace()
                            || c.is_control()
                            || matches!(c, '<' | '>' | '"' | ',' | ';')
                    })
            }
            None => false,
        };
        if ok {
            Ok(PersonAddress(trimmed.to_string()))
        } else {
            Err(IdError::new("address", text, "is not local@domain"))
        }
    }

    /// The address as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl PartialEq for PersonAddress {
    fn eq(&self, other: &Self) -> bool {
        self.0.eq_ignore_ascii_case(&other.0)
    }
}

impl Eq for PersonAddress {}

text_id!(
    PersonAddress,
    "PersonAddress",
    "A person's or user principal's address: local@domain.",
    "^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$"
);

/// What kind of Entra object a principal is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PrincipalKind {
    /// A user (`/users/{id}`): the alert names a user principal name.
    User,
    /// A service principal (`/servicePrincipals/{id}`): an application's identity in the tenant.
    ServicePrincipal,
    /// An application registration (`/applications/{id}`).
    Application,
    /// The alert does not say: the worker reads `GET /directoryObjects/{id}` and acts on the
    /// `@odata.type` it returns, never on a guess.
    Unresolved,
}

/// The Entra principal a task acts on: its object id (with its kind), or only its user
/// principal name when the alert gives no object id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum PrincipalRef {
    /// By object id.
    ObjectId {
        /// The Entra object id.
        object_id: Guid,
        /// What kind of object it is.
        kind: PrincipalKind,
        /// The user principal name, when the alert gives it too.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        user_principal_name: Option<PersonAddress>,
    },
    /// A user known only by user principal name.
    UserPrincipalName {
        /// The user principal name.
        user_principal_name: PersonAddress,
    },
}

impl PrincipalRef {
    /// The text tasks use as their target: the object id, else the user principal name.
    pub fn target(&self) -> &str {
        match self {
            PrincipalRef::ObjectId { object_id, .. } => object_id.as_str(),
            PrincipalRef::UserPrincipalName {
                user_principal_name,
            } => user_principal_name.as_str(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Networks

/// An IP address as the contract carries it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IpAddress(pub IpAddr);

impl IpAddress {
    /// Parses an IPv4 or IPv6 address (`00.00.00.00` and other non-canonical forms fail).
    pub fn parse(text: &str) -> Result<Self, IdError> {
        text.trim()
            .parse::<IpAddr>()
            .map(IpAddress)
            .map_err(|_| IdError::new("IP address", text, "is not an IPv4 or IPv6 address"))
    }
}

impl fmt::Display for IpAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl Serialize for IpAddress {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for IpAddress {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        IpAddress::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for IpAddress {
    fn schema_name() -> Cow<'static, str> {
        Cow::Borrowed("IpAddress")
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"type": "string", "description": "An IPv4 or IPv6 address.", "anyOf": [{"format": "ipv4"}, {"format": "ipv6"}]})
    }
}

/// An address range in CIDR notation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IpRange(pub IpNet);

impl fmt::Display for IpRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl Serialize for IpRange {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for IpRange {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.trim()
            .parse::<IpNet>()
            .map(IpRange)
            .map_err(|_| serde::de::Error::custom(format!("{text:?} is not a CIDR range")))
    }
}

impl JsonSchema for IpRange {
    fn schema_name() -> Cow<'static, str> {
        Cow::Borrowed("IpRange")
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"type": "string", "description": "An address range in CIDR notation (198.51.100.0/24, 2001:db8::/32).", "pattern": "^[0-9A-Fa-f:.]+/[0-9]{1,3}$"})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_ids_parse_their_parts_case_insensitively() {
        let id = AzureResourceId::parse(
            "/SUBSCRIPTIONS/4a9d62b4-c70d-4263-9280-1c7fce8ab0e7/resourcegroups/rg-hr/providers/Microsoft.KeyVault/vaults/kv-hr/",
        )
        .expect("vault id");
        assert_eq!(
            id.subscription_id(),
            Some("4a9d62b4-c70d-4263-9280-1c7fce8ab0e7")
        );
        assert_eq!(id.resource_group(), Some("rg-hr"));
        assert_eq!(id.provider(), Some("Microsoft.KeyVault"));
        assert_eq!(
            id.resource_type().as_deref(),
            Some("Microsoft.KeyVault/vaults")
        );
        assert_eq!(id.name(), Some("kv-hr"));
        assert!(id.is_type("microsoft.keyvault/VAULTS"));
        assert!(KeyVaultId::from_id(id.clone()).is_some());
        assert_eq!(
            id,
            AzureResourceId::parse("/subscriptions/4A9D62B4-C70D-4263-9280-1C7FCE8AB0E7/resourceGroups/RG-HR/providers/microsoft.keyvault/vaults/KV-HR").expect("same")
        );
        let nested = AzureResourceId::parse("/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/virtualMachines/vm/extensions/e").expect("nested");
        assert_eq!(
            nested.resource_type().as_deref(),
            Some("Microsoft.Compute/virtualMachines/extensions")
        );
        let assignment = AzureResourceId::parse(
            "/subscriptions/s/providers/Microsoft.Authorization/roleAssignments/a1",
        )
        .expect("extension");
        assert!(assignment.is_type("Microsoft.Authorization/roleAssignments"));
        assert!(SubscriptionScope::parse("/subscriptions/s").is_ok());
        assert!(SubscriptionScope::parse("/subscriptions/s/resourceGroups/g").is_err());
    }

    #[test]
    fn the_characters_refused_in_an_id_are_those_of_the_rule_for_every_ascii_and_some_others() {
        let rule = |c: char| {
            c.is_whitespace() || c.is_control() || matches!(c, '"' | '\'' | '<' | '>' | '?' | '#')
        };
        let others = [
            'é', '\u{85}', '\u{a0}', '\u{2028}', '\u{3000}', '\u{9f}', '€',
        ];
        // Every character but the separator, inside a segment of a valid id.
        for c in (0u8..0x80)
            .map(char::from)
            .filter(|c| *c != '/')
            .chain(others)
        {
            let text = format!("/subscriptions/s/resourceGroups/g{c}x");
            assert_eq!(
                AzureResourceId::parse(&text).is_err(),
                rule(c),
                "{:?} in an id",
                c
            );
        }
    }

    #[test]
    fn malformed_resource_ids_are_refused_with_the_problem_named() {
        for (text, problem) in [
            ("kv-hr", "does not start"),
            ("/subscriptions/", "names no subscription"),
            ("/subscriptions/s//resourceGroups/g", "empty segment"),
            ("/subscriptions/s/resourceGroups", "no resource group"),
            (
                "/subscriptions/s/providers/Microsoft.Compute/virtualMachines",
                "no name",
            ),
            ("/subscriptions/s/providers/compute/vm/x", "without a dot"),
            ("/subscriptions/s/rg/x", "neither"),
            ("/subscriptions/a b", "character"),
        ] {
            let err = AzureResourceId::parse(text).expect_err(text);
            assert!(err.to_string().contains(problem), "{text}: {err}");
        }
        assert!(KeyVaultId::parse(
            "/subscriptions/s/resourceGroups/g/providers/Microsoft.Storage/storageAccounts/a"
        )
        .is_err());
    }

    #[test]
    fn guids_refuse_malformed_text_and_the_nil_guid() {
        assert!(Guid::parse("ae5ee9f6-5af4-4e1e-8d8f-8e9bb3b0a1c2").is_ok());
        assert!(Guid::parse("{AE5EE9F6-5AF4-4E1E-8D8F-8E9BB3B0A1C2}").is_ok());
        assert!(Guid::parse("ae5ee9f6-5af4-4e1e-8d8f").is_err());
        assert!(Guid::parse("zz5ee9f6-5af4-4e1e-8d8f-8e9bb3b0a1c2").is_err());
        let nil = Guid::parse(NIL_GUID).expect_err("nil");
        assert!(nil.to_string().contains("nil GUID"));
        assert!(Guid::is_nil("{00000000-0000-0000-0000-000000000000}"));
    }

    #[test]
    fn vault_object_uris_keep_kind_name_and_version() {
        let uri = VaultObjectUri::parse("https://KV-HR.vault.azure.net/secrets/app-1/43f78ef7cca9")
            .expect("uri");
        assert_eq!(uri.kind(), VaultObjectKind::Secret);
        assert_eq!(uri.name(), "app-1");
        assert_eq!(uri.version(), Some("43f78ef7cca9"));
        assert_eq!(uri.vault_name(), "kv-hr");
        assert_eq!(
            uri.without_version().as_str(),
            "https://kv-hr.vault.azure.net/secrets/app-1"
        );
        assert!(SecretUri::parse(uri.as_str()).is_ok());
        assert!(KeyUri::parse(uri.as_str()).is_err());
        assert!(KeyUri::parse("https://kv.vault.azure.cn/keys/signing").is_ok());
        assert!(VaultObjectUri::parse("https://example.com/secrets/x").is_err());
        assert!(VaultObjectUri::parse("https://kv.vault.azure.net/secrets/").is_err());
        assert!(VaultObjectUri::parse("https://kv.vault.azure.net/secrets/a/b/c").is_err());
    }

    #[test]
    fn addresses_and_ips_parse_strictly() {
        assert!(PersonAddress::parse("alice@contoso.com").is_ok());
        assert!(PersonAddress::parse("alice").is_err());
        assert!(PersonAddress::parse("a b@contoso.com").is_err());
        assert!(IpAddress::parse("203.0.113.45").is_ok());
        assert!(IpAddress::parse("00.00.00.00").is_err());
    }
}
