//! Applications and their packages: Azure's `BatchApplication` (`GET /applications`), and
//! the openbatch extension's fuller view (`/openbatch/applications`), which also says each
//! package's size, digest and upload time, and the default version.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Azure `BatchApplication`: an application that packages can be referenced from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Application {
    pub id: String,
    pub display_name: String,
    pub versions: Vec<String>,
}

/// openbatch extension: an application with its default version and packages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationDetails {
    pub id: String,
    pub display_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_version: Option<String>,
    pub packages: Vec<ApplicationPackageInfo>,
    pub last_modified: DateTime<Utc>,
}

/// openbatch extension: one version of an application.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationPackageInfo {
    pub version: String,
    /// Bytes of the zip file.
    pub size: u64,
    /// Hex SHA-256 of the zip file.
    pub sha256: String,
    pub last_modified: DateTime<Utc>,
}

/// openbatch extension: `PATCH /openbatch/applications/{id}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApplicationUpdate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// The version references without a version get. An empty string clears it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_version: Option<String>,
}
